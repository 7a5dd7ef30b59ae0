"""When may a bulk publish start? A pure function of ``GetBulkPublishDetails``, the pool's streaming
status and the clock.

Cognito Sync's limits (AWS docs): one bulk publish in progress at a time
(``DuplicateRequestException``), and one *successful* bulk publish per 24 hours, counted from the
completion of the last success (``AlreadyStreamedException``). A bulk publish needs streaming
ENABLED: it publishes to the pool's configured stream.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

#: Minimum time between the completion of a successful bulk publish and the next request.
SUCCESS_COOLDOWN = timedelta(hours=24)

STATUSES = ("NOT_STARTED", "IN_PROGRESS", "FAILED", "SUCCEEDED")


class Action(enum.StrEnum):
    """What the bulk-publish task does for one pool."""

    START = "start"  # request a bulk publish now
    WAIT = "wait"  # one is in progress: wait for its outcome
    SKIP = "skip"  # not eligible yet: report the next eligible time
    WAIT_UNTIL_ELIGIBLE = "wait_until_eligible"  # manual backfill: sleep (deferred) until eligible, then start
    FAIL = "fail"  # cannot publish (streaming not enabled): fail with the reason


@dataclass(frozen=True)
class BulkPublishState:
    """The parts of ``GetBulkPublishDetails`` and ``GetIdentityPoolConfiguration`` that matter."""

    status: str  # NOT_STARTED | IN_PROGRESS | FAILED | SUCCEEDED
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failure_message: str | None = None
    streaming_status: str | None = None  # ENABLED | DISABLED | None (not configured)
    disabled_reason: str | None = None
    stream_name: str | None = None

    @classmethod
    def from_api(cls, details: dict[str, Any], configuration: dict[str, Any]) -> BulkPublishState:
        """Build from the two API responses (boto3 gives datetimes for the timestamps)."""
        streams = configuration.get("CognitoStreams") or {}
        status = details.get("BulkPublishStatus") or "NOT_STARTED"
        if status not in STATUSES:
            raise ValueError(f"unknown BulkPublishStatus {status!r} from GetBulkPublishDetails")
        return cls(
            status=status,
            started_at=_utc(details.get("BulkPublishStartTime")),
            completed_at=_utc(details.get("BulkPublishCompleteTime")),
            failure_message=details.get("FailureMessage"),
            streaming_status=streams.get("StreamingStatus"),
            disabled_reason=streams.get("DisabledReason"),
            stream_name=streams.get("StreamName"),
        )


@dataclass(frozen=True)
class Plan:
    """The decision, with the reason in words for logs and ``bulk_publish_runs``."""

    action: Action
    reason: str
    next_eligible_at: datetime | None = None


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    raise TypeError(f"not a timestamp: {value!r}")


def next_eligible_at(state: BulkPublishState) -> datetime | None:
    """When the 24-hour rule next allows a request (``None``: no success to wait for)."""
    if state.status == "SUCCEEDED" and state.completed_at is not None:
        return state.completed_at + SUCCESS_COOLDOWN
    return None


def decide(state: BulkPublishState, now: datetime, *, wait_until_eligible: bool = False) -> Plan:
    """What to do for one pool now.

    - streaming not ENABLED: FAIL with the DisabledReason (a bulk publish would publish nowhere);
    - one IN_PROGRESS: WAIT for it (starting would raise DuplicateRequestException);
    - last SUCCEEDED less than 24 h ago: SKIP until completed_at + 24 h, or WAIT_UNTIL_ELIGIBLE when
      a manual backfill asked to wait;
    - otherwise (never run, last FAILED, last success 24 h ago or more): START.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    if state.streaming_status != "ENABLED":
        if state.streaming_status is None:
            why = "Cognito Streams is not configured for this pool; run cognito_streams_configure first"
        else:
            why = f"streaming is {state.streaming_status}"
            if state.disabled_reason:
                why += f" (DisabledReason: {state.disabled_reason})"
            why += "; fix it with cognito_streams_configure, then retry"
        return Plan(Action.FAIL, why)
    if state.status == "IN_PROGRESS":
        started = f" since {state.started_at:%Y-%m-%d %H:%M:%S} UTC" if state.started_at else ""
        return Plan(Action.WAIT, f"a bulk publish is already in progress{started}")
    eligible = next_eligible_at(state)
    if eligible is not None and now < eligible:
        assert state.completed_at is not None  # noqa: S101 - implied by next_eligible_at
        why = (
            f"last bulk publish succeeded at {state.completed_at:%Y-%m-%d %H:%M:%S} UTC; Cognito allows one success "
            f"per 24 hours, next eligible at {eligible:%Y-%m-%d %H:%M:%S} UTC"
        )
        action = Action.WAIT_UNTIL_ELIGIBLE if wait_until_eligible else Action.SKIP
        return Plan(action, why, eligible)
    if state.status == "FAILED":
        return Plan(Action.START, f"last bulk publish failed ({state.failure_message or 'no message'}); retrying")
    if state.status == "SUCCEEDED":
        return Plan(Action.START, "last success is 24 hours old or more")
    return Plan(Action.START, "no bulk publish has run for this pool")


#: Statuses that end a bulk publish.
TERMINAL = ("SUCCEEDED", "FAILED")


@dataclass(frozen=True)
class OutcomeFilter:
    """Which terminal ``GetBulkPublishDetails`` answer is the outcome of the bulk publish a task waits
    for, and not one of an earlier publish still shown (a stale read, or a request Cognito has not
    registered yet): its ``BulkPublishStartTime`` must be

    - later than ``superseded_start``, the start time shown before the request (exact: both are
      Cognito's timestamps), and
    - not earlier than ``not_before``: the request's time by the worker's clock less the tolerated
      clock difference (``bulk_publish_clock_skew_seconds``), or, waiting for a publish already in
      progress, that publish's own start time.
    """

    not_before: datetime | None = None
    superseded_start: datetime | None = None

    @classmethod
    def after_request(
        cls, requested_at: datetime, clock_skew: timedelta, superseded_start: datetime | None
    ) -> OutcomeFilter:
        """For a publish this task requested at ``requested_at`` (its clock)."""
        return cls(requested_at - clock_skew, superseded_start)

    @classmethod
    def for_running(cls, started_at: datetime | None) -> OutcomeFilter:
        """For a publish already IN_PROGRESS, started at ``started_at`` (Cognito's clock)."""
        return cls(started_at, None)

    def classify(self, status: str | None, started_at: datetime | None) -> str:
        """``pending`` (not ended), ``outcome`` (this publish's end) or ``stale`` (an earlier publish)."""
        if status not in TERMINAL:
            return "pending"
        if self.not_before is None and self.superseded_start is None:
            return "outcome"
        if started_at is None:
            return "stale"  # a terminal answer without a start time cannot be told apart: wait for more
        if self.superseded_start is not None and started_at <= self.superseded_start:
            return "stale"
        if self.not_before is not None and started_at < self.not_before:
            return "stale"
        return "outcome"

    def describe(self) -> str:
        """For logs and messages."""
        parts = []
        if self.not_before is not None:
            parts.append(f"started at or after {self.not_before:%Y-%m-%d %H:%M:%S} UTC")
        if self.superseded_start is not None:
            parts.append(f"after the one started at {self.superseded_start:%Y-%m-%d %H:%M:%S} UTC")
        return " and ".join(parts) or "any"


def parse_time(value: Any) -> datetime | None:
    """A ``GetBulkPublishDetails`` timestamp (datetime, epoch seconds or ISO text) in UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return _utc(value)
