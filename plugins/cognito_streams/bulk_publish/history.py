"""Recording bulk publish attempts in the warehouse table ``bulk_publish_runs``.

One attempt (one pool in one DAG run) is written several times as it goes (requested -> in
progress -> SUCCEEDED/FAILED), possibly from different processes (the task defers and resumes), so
each write reads the row back and merges what is new: every write carries the whole state.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from cognito_streams.settings import PipelineSettings

log = logging.getLogger(__name__)


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


class BulkPublishRecorder:
    """Writes one attempt's state to ``bulk_publish_runs`` (idempotent upsert by attempt id)."""

    def __init__(self, settings: PipelineSettings, *, attempt_id: str, identity_pool_id: str, dag_run_id: str) -> None:
        self.settings = settings
        self.attempt_id = attempt_id
        self.identity_pool_id = identity_pool_id
        self.dag_run_id = dag_run_id

    def record(
        self,
        *,
        decision: str,
        status: str,
        reason: str | None = None,
        requested_at: datetime | None = None,
        started_at: Any = None,
        completed_at: Any = None,
        failure_message: str | None = None,
        next_eligible_at: datetime | None = None,
    ) -> None:
        """Upsert the attempt with these fields; fields not given keep their stored values."""
        from cognito_streams.warehouse import BulkPublishAttempt
        from cognito_streams.warehouse.connect import open_warehouse

        with open_warehouse(self.settings) as warehouse:
            warehouse.ensure_schema()
            previous = next(
                (
                    a
                    for a in warehouse.bulk_publish_attempts(self.identity_pool_id, limit=50)
                    if a.attempt_id == self.attempt_id
                ),
                None,
            )
            stored = previous.model_dump() if previous else {}
            why = reason or stored.get("reason")
            attempt = BulkPublishAttempt(
                attempt_id=self.attempt_id,
                identity_pool_id=self.identity_pool_id,
                requested_at=requested_at or stored.get("requested_at") or datetime.now(UTC),
                decision=decision,
                status=status,
                reason=str(why) if why else None,  # cut to its column's width by the model
                started_at=_as_datetime(started_at) or stored.get("started_at"),
                completed_at=_as_datetime(completed_at) or stored.get("completed_at"),
                failure_message=failure_message or stored.get("failure_message"),
                next_eligible_at=next_eligible_at or stored.get("next_eligible_at"),
                dag_run_id=self.dag_run_id,
            )
            warehouse.record_bulk_publish_attempt(attempt)
        log.info("bulk_publish_runs: %s -> %s (%s)", self.attempt_id, status, decision)
