"""Pipeline health, pure: what is red now, the watermark, the numbers of the health page and its JSON.

The adapter (``cognito_streams.monitoring.state``) gathers the inputs live: each open shard's checkpoint and a
one-record peek at Kinesis after it, the landed batches not yet in ``loaded_batches``, the last
load. Nothing here knows Airflow, boto3 or SQL.

**Stall** (the alarm): records waiting in Kinesis, or landed and not loaded, for longer than
``stall_alert_seconds`` with no successful landing (of that shard) or load in that time. It does
not depend on how landing is triggered (a cron or events): it looks at the data, not at DAG runs.
A backlog that is being worked off (landings or loads keep succeeding) is *behind*, not stalled.

**Watermark**: every Kinesis record that arrived before it is landed and loaded. Per open shard it
is the arrival of the oldest record still waiting in Kinesis (or the time of the peek when none
waits, or the checkpoint's ``verified_at`` when Kinesis could not be asked), and no later than the
first arrival of the shard's oldest landed-but-not-loaded batch; the pipeline's watermark is the
lowest of its shards'. Reconciliation judges only changes older than it (``cognito_streams.reconcile.reconciler``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

#: The JSON's schema version (bump on an incompatible change of a field).
HEALTH_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ShardState:
    """One open shard, from its checkpoint and a peek at Kinesis after it."""

    shard_id: str
    #: Checkpoint ``verified_at``: every record that arrived before it was landed (None: never landed).
    landed_through: datetime | None = None
    #: Arrival of the oldest record after the checkpoint (None: nothing waits, or the peek failed).
    oldest_waiting_at: datetime | None = None
    #: When Kinesis answered the peek (None: not asked or failed; then the numbers come from the checkpoint).
    peeked_at: datetime | None = None
    #: MillisBehindLatest of the peek's GetRecords (how far the checkpoint is behind the tip).
    behind_ms: int | None = None
    #: The latest landed batch of this shard (descriptor written), from the landing zone.
    last_landed_at: datetime | None = None
    #: Checkpoint ``lag_ms`` at the last landing run (used when the peek failed).
    checkpoint_lag_ms: int | None = None
    #: Checkpoint ``updated_at``.
    checkpoint_at: datetime | None = None
    #: First arrival of the oldest landed-but-not-loaded batch of this shard (None: all loaded).
    unloaded_since: datetime | None = None
    peek_error: str = ""
    #: A child shard whose parent is not read to its end yet: its records wait on purpose.
    waiting_for_parent: bool = False

    def lag_seconds(self, now: datetime) -> float:
        """Seconds the oldest record not yet landed has waited in Kinesis (0: the checkpoint is at the tip).

        When Kinesis could not be asked, the checkpoint's lag at its last run plus the time since."""
        if self.peeked_at is not None:
            if self.oldest_waiting_at is None:
                return 0.0
            return max(0.0, (now - self.oldest_waiting_at).total_seconds())
        if self.checkpoint_lag_ms is None or self.checkpoint_at is None:
            return 0.0
        return max(0.0, self.checkpoint_lag_ms / 1000.0 + (now - self.checkpoint_at).total_seconds())

    def landed_until(self) -> datetime | None:
        """Every record of the shard that arrived before this is landed."""
        if self.peeked_at is not None:
            # The peek read the first record after the checkpoint: everything before it is landed.
            return self.oldest_waiting_at if self.oldest_waiting_at is not None else self.peeked_at
        return self.landed_through

    def loaded_until(self) -> datetime | None:
        """Every record of the shard that arrived before this is landed and loaded."""
        landed = self.landed_until()
        if self.unloaded_since is None:
            return landed
        if landed is None:
            return None
        return min(landed, self.unloaded_since)


@dataclass(frozen=True)
class Backlog:
    """Landed batches (descriptors in the landing zone) not in ``loaded_batches``."""

    batches: int = 0
    #: When the oldest of them was landed (its descriptor written).
    oldest_landed_at: datetime | None = None
    #: The landing days listed (``dt=`` partitions); older days are not looked at.
    days: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class Problem:
    """Something red now: what, since when, and what to do."""

    code: str
    title: str
    detail: str
    what_to_do: str
    since: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """For the JSON."""
        return {
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
            "what_to_do": self.what_to_do,
            "since": iso(self.since),
        }


@dataclass(frozen=True)
class Assessment:
    """The verdict: stalled or not, why, and the watermark."""

    stalled: bool
    problems: tuple[Problem, ...]
    watermark: datetime | None
    behind: tuple[str, ...] = ()

    @property
    def state(self) -> str:
        """``stalled`` (red), ``behind`` (a backlog that is being worked off) or ``ok``."""
        if self.stalled:
            return "stalled"
        return "behind" if self.behind else "ok"


def assess(
    now: datetime,
    shards: Sequence[ShardState],
    backlog: Backlog,
    last_load_at: datetime | None,
    stall_alert_seconds: float,
) -> Assessment:
    """Whether the pipeline is stalled, why, and its watermark (see the module docstring)."""
    limit = timedelta(seconds=stall_alert_seconds)
    problems: list[Problem] = []
    behind: list[str] = []
    for shard in shards:
        waited = shard.lag_seconds(now)
        if waited <= stall_alert_seconds:
            continue
        if shard.waiting_for_parent:
            behind.append(f"shard {shard.shard_id} waits for its parent shard to be read to its end")
            continue
        landed_recently = shard.last_landed_at is not None and now - shard.last_landed_at <= limit
        if landed_recently:
            behind.append(f"shard {shard.shard_id} is {waited:,.0f} s behind and landing")
            continue
        since = shard.oldest_waiting_at or (
            shard.checkpoint_at - timedelta(milliseconds=shard.checkpoint_lag_ms or 0) if shard.checkpoint_at else None
        )
        problems.append(
            Problem(
                code="landing_stalled",
                title=f"Landing stalled on shard {shard.shard_id}",
                detail=(
                    f"records have waited in Kinesis for {waited:,.0f} s (stall_alert_seconds "
                    f"{stall_alert_seconds:,.0f}); no batch of this shard was landed since "
                    f"{iso(shard.last_landed_at) or 'ever'}"
                ),
                what_to_do=(
                    "Open cognito_stream_to_s3: is it paused, queued behind a long run, or red? Read the failed "
                    "land_shard log (docs/operations.md, 'Landing'). In event mode, check that the triggerer runs."
                ),
                since=since,
            )
        )
    if backlog.batches and backlog.oldest_landed_at is not None and now - backlog.oldest_landed_at > limit:
        waited = (now - backlog.oldest_landed_at).total_seconds()
        if last_load_at is not None and now - last_load_at <= limit:
            behind.append(f"{backlog.batches} landed batch(es) waiting, loading")
        else:
            problems.append(
                Problem(
                    code="loading_stalled",
                    title="Loading stalled",
                    detail=(
                        f"{backlog.batches} landed batch(es) not loaded, the oldest for {waited:,.0f} s "
                        f"(stall_alert_seconds {stall_alert_seconds:,.0f}); last successful load "
                        f"{iso(last_load_at) or 'never'}"
                    ),
                    what_to_do=(
                        "Open cognito_s3_to_redshift: is it paused, or red (COPY error, data-quality check, "
                        "warehouse unreachable)? Fix what its log names and clear the task (docs/operations.md, "
                        "'Loading')."
                    ),
                    since=backlog.oldest_landed_at,
                )
            )
    return Assessment(
        stalled=bool(problems), problems=tuple(problems), watermark=watermark(shards), behind=tuple(behind)
    )


def watermark(shards: Iterable[ShardState]) -> datetime | None:
    """The lowest ``loaded_until`` of the shards (None: a shard has never been landed, or no shard)."""
    marks = [s.loaded_until() for s in shards]
    if not marks or any(m is None for m in marks):
        return None
    return min(m for m in marks if m is not None)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, to the millisecond (None stays None)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear-interpolated percentile (PERCENTILE_CONT's definition); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Series:
    """One line of a chart: ``[(time, value), ...]`` with its unit."""

    name: str
    unit: str
    points: list[tuple[datetime, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """For the JSON: times as ISO strings."""
        return {"name": self.name, "unit": self.unit, "points": [[iso(t), round(v, 3)] for t, v in self.points]}


@dataclass
class HealthReport:
    """Everything the page and the JSON show. ``as_dict`` is the JSON (docs/operations.md lists the fields)."""

    generated_at: datetime
    stall_alert_seconds: float
    assessment: Assessment
    shards: list[ShardState] = field(default_factory=list)
    backlog: Backlog = field(default_factory=Backlog)
    last_load: dict[str, Any] = field(default_factory=dict)
    freshness: dict[str, Any] = field(default_factory=dict)
    reconciliation: dict[str, Any] = field(default_factory=dict)
    bulk_publish: list[dict[str, Any]] = field(default_factory=list)
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    charts: dict[str, list[Series]] = field(default_factory=dict)
    #: The latest ``cognito_snapshot``'s progress from its cursor in S3 (``landing_zone.snapshots.snapshot_status``):
    #: identities done and total, rate, ETA, batches; ``{"snapshot_id": None}`` when none ever ran.
    snapshot: dict[str, Any] = field(default_factory=dict)
    #: What each source said when it could not be read (a partial page says why).
    errors: dict[str, str] = field(default_factory=dict)
    #: How old each group of numbers is: the time its source was read.
    as_of: dict[str, datetime | None] = field(default_factory=dict)
    window_hours: float = 24.0

    def as_dict(self) -> dict[str, Any]:
        """The JSON document of ``/cognito-streams/api/health``."""
        now = self.generated_at
        last_load_at = self.last_load.get("loaded_at")
        return {
            "format_version": HEALTH_FORMAT_VERSION,
            "generated_at": iso(now),
            "state": self.assessment.state,
            "stalled": self.assessment.stalled,
            "stall_alert_seconds": self.stall_alert_seconds,
            "problems": [p.as_dict() for p in self.assessment.problems],
            "behind": list(self.assessment.behind),
            "watermark": iso(self.assessment.watermark),
            "last_load_at": iso(last_load_at),
            "last_load_age_seconds": None if last_load_at is None else round((now - last_load_at).total_seconds(), 3),
            "last_load": {k: (iso(v) if isinstance(v, datetime) else v) for k, v in self.last_load.items()},
            "freshness_p50_seconds": self.freshness.get("p50_seconds"),
            "freshness_p95_seconds": self.freshness.get("p95_seconds"),
            "freshness": {k: (iso(v) if isinstance(v, datetime) else v) for k, v in self.freshness.items()},
            "lag_seconds": {s.shard_id: round(s.lag_seconds(now), 3) for s in self.shards},
            "shards": [
                {
                    "shard_id": s.shard_id,
                    "lag_seconds": round(s.lag_seconds(now), 3),
                    "oldest_waiting_at": iso(s.oldest_waiting_at),
                    "landed_through": iso(s.landed_until()),
                    "loaded_through": iso(s.loaded_until()),
                    "last_landed_at": iso(s.last_landed_at),
                    "behind_ms": s.behind_ms,
                    "checked_at": iso(s.peeked_at),
                    "error": s.peek_error or None,
                }
                for s in self.shards
            ],
            "backlog_batches": self.backlog.batches,
            "backlog_oldest_landed_at": iso(self.backlog.oldest_landed_at),
            "backlog_days": list(self.backlog.days),
            "reconciliation": {k: (iso(v) if isinstance(v, datetime) else v) for k, v in self.reconciliation.items()},
            "bulk_publish": [
                {k: (iso(v) if isinstance(v, datetime) else v) for k, v in run.items()} for run in self.bulk_publish
            ],
            "rejects_by_reason": dict(self.rejects_by_reason),
            "snapshot": {k: (iso(v) if isinstance(v, datetime) else v) for k, v in self.snapshot.items()},
            "window_hours": self.window_hours,
            "charts": {name: [s.as_dict() for s in series] for name, series in self.charts.items()},
            "as_of": {k: iso(v) for k, v in self.as_of.items()},
            "errors": dict(self.errors),
        }
