"""Old classpath ``cognito_streams.triggers.bulk_publish.BulkPublishTrigger`` (see ``triggers/__init__``)."""

from __future__ import annotations

from cognito_streams.bulk_publish.trigger import BulkPublishTrigger

__all__ = ["BulkPublishTrigger"]
