"""Old classpath ``cognito_streams.triggers.records_waiting.RecordsWaitingTrigger`` (see ``triggers/__init__``)."""

from __future__ import annotations

from cognito_streams.landing.trigger import RecordsWaitingTrigger

__all__ = ["RecordsWaitingTrigger"]
