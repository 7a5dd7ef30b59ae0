"""Failure alerts: every task of the pipeline's DAGs can notify an Amazon SNS topic when it fails.

Off unless ``[cognito_streams] alert_sns_topic_arn`` is set in airflow.cfg (or the environment variable
``AIRFLOW__COGNITO_STREAMS__ALERT_SNS_TOPIC_ARN``). It is Airflow configuration, not the
``cognito_pipeline`` Variable, because the DAG files read it when they are parsed and a parse must not
touch the metadata database. The message names the DAG, task, run, try and the error, and links to the
task's log; the error messages of this pipeline never carry record values, credentials or presigned
URLs (docs/operations.md, "Security"), so neither does the alert.

The Airflow worker's role needs ``sns:Publish`` on that topic (docs/operations.md, "Alerts to set").
"""

from __future__ import annotations

import re
from typing import Any

SECTION = "cognito_streams"
TOPIC_OPTION = "alert_sns_topic_arn"
CONN_OPTION = "alert_aws_conn_id"

_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")

SUBJECT = "cognito-streams: {{ ti.dag_id }}.{{ ti.task_id }} failed"
MESSAGE = (
    "cognito-streams: task {{ ti.dag_id }}.{{ ti.task_id }}"
    "{% if ti.map_index is not none and ti.map_index >= 0 %}[{{ ti.map_index }}]{% endif %} failed"
    " (run {{ run_id }}, try {{ ti.try_number }}).\n"
    "Error: {{ (exception | string)[:1000] if exception else 'see the log' }}\n"
    "Log: {{ ti.log_url }}\n"
    "What to do: docs/operations.md of cognito-streams lists each failure mode and its recovery."
)


class AlertConfigError(ValueError):
    """The alert settings in airflow.cfg are malformed."""


def failure_callbacks(config: Any = None) -> list[Any]:
    """The ``on_failure_callback`` list for the pipeline's DAGs: an SNS notifier, or nothing.

    ``config`` is Airflow's ``conf`` (injected by tests). A malformed topic ARN fails the DAG's parse with a
    message naming the option, so a typo cannot silently switch alerts off.
    """
    if config is None:
        from airflow.sdk.configuration import conf

        config = conf
    topic = (config.get(SECTION, TOPIC_OPTION, fallback="") or "").strip()
    if not topic:
        return []
    if not _TOPIC_ARN.fullmatch(topic):
        raise AlertConfigError(
            f"[{SECTION}] {TOPIC_OPTION} = {topic!r} is not an SNS topic ARN "
            "(arn:aws:sns:<region>:<account>:<topic>); fix it in airflow.cfg or "
            f"AIRFLOW__{SECTION.upper()}__{TOPIC_OPTION.upper()}, or unset it to turn alerts off"
        )
    conn_id = (config.get(SECTION, CONN_OPTION, fallback="") or "").strip() or "aws_default"
    return [FailureAlert(topic_arn=topic, aws_conn_id=conn_id)]


class FailureAlert:
    """An ``on_failure_callback`` publishing the failed task's summary to an SNS topic.

    A new ``SnsNotifier`` per call: a notifier renders its templates into its own attributes, so one
    instance shared by every task (``default_args``) would repeat the first task's message for the next
    task failing in the same process (``dag.test()``, a worker running several tasks).
    """

    def __init__(self, topic_arn: str, aws_conn_id: str) -> None:
        self.target_arn = topic_arn
        self.aws_conn_id = aws_conn_id
        self.region_name = topic_arn.split(":")[3]

    def __call__(self, context: Any) -> None:
        """Render the message for this task's context and publish it (unless the error says not to: a stall
        already alerted, ``cognito_streams.report.check.StallDetected`` with ``notify`` False)."""
        from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

        if getattr(context.get("exception"), "notify", True) is False:
            return

        notifier = SnsNotifier(
            aws_conn_id=self.aws_conn_id,
            target_arn=self.target_arn,
            subject=SUBJECT,
            message=MESSAGE,
            region_name=self.region_name,
        )
        notifier(context)
