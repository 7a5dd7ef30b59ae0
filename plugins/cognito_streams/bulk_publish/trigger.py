"""Deferrable wait for a bulk publish: the triggerer polls ``GetBulkPublishDetails`` so that no
worker slot is held for the minutes or hours a bulk publish takes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from cognito_streams.core.bulk_publish import OutcomeFilter, parse_time


def _moment(epoch_seconds: float | None) -> datetime | None:
    return None if epoch_seconds is None else datetime.fromtimestamp(epoch_seconds, tz=UTC)


class BulkPublishTrigger(BaseTrigger):
    """Fires once the pool's bulk publish is SUCCEEDED or FAILED, or when ``timeout_at`` (epoch
    seconds) passes. The event payload: ``{"status", "details", "timed_out", "stale"}``.

    ``not_before`` and ``superseded_start`` (epoch seconds, :class:`core.bulk_publish.OutcomeFilter`)
    tell the awaited publish from an earlier one: a terminal status whose ``BulkPublishStartTime``
    does not fit is stale, and polling goes on (``stale`` is true when the timeout comes on one)."""

    def __init__(
        self,
        identity_pool_id: str,
        aws_conn_id: str,
        poll_seconds: float,
        timeout_at: float,
        not_before: float | None = None,
        superseded_start: float | None = None,
    ) -> None:
        super().__init__()
        self.identity_pool_id = identity_pool_id
        self.aws_conn_id = aws_conn_id
        self.poll_seconds = poll_seconds
        self.timeout_at = timeout_at
        self.not_before = not_before
        self.superseded_start = superseded_start

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "cognito_streams.bulk_publish.trigger.BulkPublishTrigger",
            {
                "identity_pool_id": self.identity_pool_id,
                "aws_conn_id": self.aws_conn_id,
                "poll_seconds": self.poll_seconds,
                "timeout_at": self.timeout_at,
                "not_before": self.not_before,
                "superseded_start": self.superseded_start,
            },
        )

    def _details(self) -> dict[str, Any]:
        from cognito_streams.hooks.cognito_sync import CognitoSyncHook

        details = CognitoSyncHook(aws_conn_id=self.aws_conn_id).get_bulk_publish_details(self.identity_pool_id)
        details.pop("ResponseMetadata", None)
        return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in details.items()}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll without blocking the triggerer's event loop (boto3 is synchronous: run it in a thread)."""
        wanted = OutcomeFilter(_moment(self.not_before), _moment(self.superseded_start))
        while True:
            details = await asyncio.to_thread(self._details)
            status = details.get("BulkPublishStatus")
            kind = wanted.classify(status, parse_time(details.get("BulkPublishStartTime")))
            if kind == "outcome":
                yield TriggerEvent({"status": status, "details": details, "timed_out": False, "stale": False})
                return
            if time.time() >= self.timeout_at:
                yield TriggerEvent({"status": status, "details": details, "timed_out": True, "stale": kind == "stale"})
                return
            if kind == "stale":
                self.log.info(
                    "bulk publish of %s: GetBulkPublishDetails still shows an earlier publish (%s, started %s); "
                    "waiting for the one %s; next check in %g s",
                    self.identity_pool_id,
                    status,
                    details.get("BulkPublishStartTime"),
                    wanted.describe(),
                    self.poll_seconds,
                )
            else:
                self.log.info(
                    "bulk publish of %s is %s; next check in %g s", self.identity_pool_id, status, self.poll_seconds
                )
            await asyncio.sleep(min(self.poll_seconds, max(0.0, self.timeout_at - time.time())))
