"""Deferrable wait for a bulk publish: the triggerer polls ``GetBulkPublishDetails`` so that no
worker slot is held for the minutes or hours a bulk publish takes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

TERMINAL = ("SUCCEEDED", "FAILED")


class BulkPublishTrigger(BaseTrigger):
    """Fires once the pool's bulk publish is SUCCEEDED or FAILED, or when ``timeout_at`` (epoch
    seconds) passes. The event payload: ``{"status", "details", "timed_out"}``."""

    def __init__(self, identity_pool_id: str, aws_conn_id: str, poll_seconds: float, timeout_at: float) -> None:
        super().__init__()
        self.identity_pool_id = identity_pool_id
        self.aws_conn_id = aws_conn_id
        self.poll_seconds = poll_seconds
        self.timeout_at = timeout_at

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "cognito_streams.triggers.bulk_publish.BulkPublishTrigger",
            {
                "identity_pool_id": self.identity_pool_id,
                "aws_conn_id": self.aws_conn_id,
                "poll_seconds": self.poll_seconds,
                "timeout_at": self.timeout_at,
            },
        )

    def _details(self) -> dict[str, Any]:
        from cognito_streams.hooks.cognito_sync import CognitoSyncHook

        details = CognitoSyncHook(aws_conn_id=self.aws_conn_id).get_bulk_publish_details(self.identity_pool_id)
        details.pop("ResponseMetadata", None)
        return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in details.items()}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll without blocking the triggerer's event loop (boto3 is synchronous: run it in a thread)."""
        while True:
            details = await asyncio.to_thread(self._details)
            status = details.get("BulkPublishStatus")
            if status in TERMINAL:
                yield TriggerEvent({"status": status, "details": details, "timed_out": False})
                return
            if time.time() >= self.timeout_at:
                yield TriggerEvent({"status": status, "details": details, "timed_out": True})
                return
            self.log.info(
                "bulk publish of %s is %s; next check in %g s", self.identity_pool_id, status, self.poll_seconds
            )
            await asyncio.sleep(min(self.poll_seconds, max(0.0, self.timeout_at - time.time())))
