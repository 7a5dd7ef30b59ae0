"""The report's Airflow tasks: the stall check of ``cognito_pipeline_health`` and the report file that
``cognito_reconcile`` writes after reconciling, so that the DAG files only wire them.

Each opens what it reads (the settings, the warehouse, S3, Kinesis) at run time; the report's modules and the
warehouse drivers are imported inside the functions, as the DAG files' task bodies did.
"""

from __future__ import annotations

from typing import Any


def check() -> dict[str, Any]:
    """The ``check`` task of ``cognito_pipeline_health``: the stall check on the warehouse, the landing zone
    and Kinesis (:func:`cognito_streams.report.check.run_check`). A bad setting fails at once."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from cognito_streams.dag_defaults import user_errors
    from cognito_streams.hooks.kinesis_reader import KinesisReaderHook
    from cognito_streams.report.check import run_check
    from cognito_streams.settings import load_settings
    from cognito_streams.warehouse.connect import open_warehouse

    with user_errors():
        settings = load_settings()
    with open_warehouse(settings) as warehouse:
        warehouse.ensure_schema()
        return run_check(
            settings,
            warehouse,
            S3Hook(aws_conn_id=settings.aws_conn_id).get_conn(),
            KinesisReaderHook(aws_conn_id=settings.aws_conn_id),
        )


def write_report() -> dict[str, Any]:
    """The ``write_report`` task of ``cognito_reconcile``: the health report as one HTML file in the landing
    bucket (:func:`cognito_streams.report.html_report.write_report`)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from cognito_streams.report.html_report import write_report as write
    from cognito_streams.settings import load_settings
    from cognito_streams.warehouse.connect import open_warehouse

    settings = load_settings()
    with open_warehouse(settings) as warehouse:
        warehouse.ensure_schema()
        return write(settings, warehouse, S3Hook(aws_conn_id=settings.aws_conn_id).get_conn())
