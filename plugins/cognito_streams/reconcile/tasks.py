"""The work of the ``cognito_reconcile`` DAG's reconciliation tasks, so that the DAG file only wires them
(its ``write_report`` task is the report's: ``cognito_streams.report.tasks``).

The reconciler, the hooks and the warehouse drivers are imported inside ``reconcile``: ``check_mismatches``
only reads its upstream task's summary.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def reconcile(params: dict[str, Any] | None, run_id: str) -> dict[str, Any]:
    """The ``reconcile`` task: the warehouse against Cognito Sync for the pools of the params (or all
    configured), recorded under ``run_id``; returns the run's summary (``ReconcileSummary.as_dict``). A bad
    setting or Param fails at once, never retried; the reads and writes are retried."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from cognito_streams.dag_defaults import user_errors
    from cognito_streams.hooks.kinesis_reader import KinesisReaderHook
    from cognito_streams.monitoring.state import pipeline_state
    from cognito_streams.reconcile.reconciler import Reconciler
    from cognito_streams.settings import SettingsError, load_settings
    from cognito_streams.warehouse.connect import open_warehouse

    with user_errors():
        settings, p = load_settings(), params or {}
        pools = list(p.get("identity_pool_ids") or settings.identity_pool_ids)
        unknown = sorted(set(pools) - set(settings.identity_pool_ids))
        if unknown:
            raise SettingsError(
                f"identity_pool_ids param names pools not in cognito_pipeline.identity_pool_ids: {unknown}"
            )

    def pick(name: str, default: Any) -> Any:
        return default if p.get(name) is None else int(p[name])

    s3 = S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()
    kinesis = KinesisReaderHook(aws_conn_id=settings.aws_conn_id)
    with open_warehouse(settings) as warehouse:
        warehouse.ensure_schema()

        def pipeline() -> tuple[bool, Any]:
            state = pipeline_state(settings, warehouse, s3, kinesis)
            return state.assessment.stalled, state.assessment.watermark

        summary = Reconciler(settings, warehouse).run(
            run_id,
            pool_ids=pools,
            sample_size=pick("sample_size", settings.reconcile_sample_size),
            settle_seconds=pick("settle_seconds", settings.reconcile_settle_seconds),
            max_mismatches=pick("max_mismatches", settings.reconcile_max_mismatches),
            depth=p.get("depth") or settings.reconcile_depth,
            pipeline=pipeline,
        )
    return summary.as_dict()


def check_mismatches(summary: dict[str, Any]) -> dict[str, int]:
    """The ``check_mismatches`` task: raises ``ValueError`` when the run found more mismatches than
    ``max_mismatches``; a run not judged (the pipeline stalled) is logged; returns the counts by kind."""
    if summary.get("verdict", "judged") != "judged":
        log.warning(
            "reconciliation %s: %s (the stall alarm of cognito_pipeline_health covers the pipeline; "
            "reconcile again once it has caught up)",
            summary["run_id"],
            summary["verdict"],
        )
    if not summary["passed"]:
        raise ValueError(
            f"reconciliation {summary['run_id']}: {summary['mismatches']} mismatch(es) > max_mismatches "
            f"{summary['max_mismatches']} ({summary['by_kind']}); see reconciliation_results for this run_id"
        )
    return summary["by_kind"]  # type: ignore[no-any-return]
