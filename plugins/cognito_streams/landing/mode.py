"""The landing DAG's schedule: ``[cognito_streams] landing_mode`` (Airflow configuration, read when the
DAG file is parsed, like ``landing_schedule``).

- ``schedule`` (the default): a cron schedule, ``landing_schedule`` (every 5 minutes by default).
- ``event``: event-driven scheduling. The DAG is scheduled on the asset ``RECORDS_WAITING``, whose
  ``AssetWatcher`` runs :class:`~cognito_streams.landing.trigger.RecordsWaitingTrigger` in
  the triggerer: it fires when records wait after a shard's checkpoint. While nothing arrives, no task
  instance starts and no worker slot is held.

Nothing here does I/O: the watcher reads the pipeline's settings at run time, in the triggerer.
"""

from __future__ import annotations

from typing import Any, Literal

LandingMode = Literal["schedule", "event"]
LANDING_MODES: tuple[LandingMode, ...] = ("schedule", "event")
DEFAULT_SCHEDULE = "*/5 * * * *"


class LandingModeError(ValueError):
    """``[cognito_streams] landing_mode`` (or a watcher option) has a value we do not know."""


def parse_landing_mode(value: str | None) -> LandingMode:
    """The configured mode; empty means ``schedule``."""
    text = (value or "schedule").strip().lower()
    if text == "schedule":
        return "schedule"
    if text == "event":
        return "event"
    raise LandingModeError(
        f"[cognito_streams] landing_mode = {value!r} is not a landing mode; use 'schedule' (cron, "
        "landing_schedule) or 'event' (an AssetWatcher in the triggerer starts a run when records arrive). "
        "Set it in airflow.cfg or AIRFLOW__COGNITO_STREAMS__LANDING_MODE"
    )


def parse_poll_seconds(value: str | None) -> float:
    """``[cognito_streams] event_poll_seconds``: seconds between two probes of a shard (at least 1)."""
    from cognito_streams.core.landing.watch import WATCHER_MIN_CALL_INTERVAL_SECONDS

    try:
        seconds = float(value) if value not in (None, "") else WATCHER_MIN_CALL_INTERVAL_SECONDS
    except ValueError:
        raise LandingModeError(f"[cognito_streams] event_poll_seconds = {value!r} is not a number of seconds") from None
    if not seconds >= WATCHER_MIN_CALL_INTERVAL_SECONDS:
        raise LandingModeError(
            f"[cognito_streams] event_poll_seconds = {value!r}: at least {WATCHER_MIN_CALL_INTERVAL_SECONDS:g} s "
            "(the watcher may take one GetRecords per shard per second of Kinesis' 5; land_shard needs the rest)"
        )
    return seconds


def landing_schedule(mode: LandingMode, cron: str, poll_seconds: float) -> Any:
    """The ``schedule`` of ``cognito_stream_to_s3`` for this mode."""
    if mode == "schedule":
        return cron
    return [records_waiting(poll_seconds)]


def records_waiting(poll_seconds: float = 1.0) -> Any:
    """The asset that schedules ``cognito_stream_to_s3`` in event mode: its ``AssetWatcher`` fires when
    records wait in the Kinesis stream after a shard's checkpoint (``landing.trigger``). The
    event's extra: ``{"from_trigger": true, "payload": {"shards": [...], "at": ISO time}}``."""
    from airflow.sdk import Asset, AssetWatcher

    from cognito_streams.landing.trigger import RecordsWaitingTrigger

    return Asset(
        name="cognito_streams_records_waiting",
        uri="cognito-streams://kinesis/records-waiting",
        group="cognito_streams",
        watchers=[
            AssetWatcher(
                name="cognito_streams_records_watcher", trigger=RecordsWaitingTrigger(poll_seconds=poll_seconds)
            )
        ],
    )
