"""The rules of the event mode's watcher, pure: when records are waiting in a shard, when to fire,
and how often the watcher may call Kinesis (the I/O is ``cognito_streams.landing.trigger``).

The watcher runs in Airflow's triggerer and starts a landing run (through an asset event) when a
shard holds records after its checkpoint. Its rules:

- **Probe from the checkpoint.** A shard's position is its S3 checkpoint (what ``land_shard`` reads
  from): a record after it is a record waiting to be landed. The watcher keeps its own shard
  iterator and goes on along it while the shard is idle (one ``GetRecords`` per probe); it gets a new
  iterator only when the checkpoint moved or the iterator is about to expire.
- **Leave a leased shard alone.** While a landing task holds the shard's lease it is reading the
  shard: the watcher makes no Kinesis call on it (so the two never share the shard's 5 calls/s)
  and does not fire for it. When the lease is given back, records that arrived meanwhile fire
  the next run.
- **Fire once per wait.** After firing for a shard, the watcher does not fire for it again until
  its checkpoint changed (a landing run took it), or ``refire_seconds`` passed without that (the
  run failed before reaching the shard, or never started): one landing run per burst.
- **A pending run covers every shard.** A landing run reads every readable shard to its tip. Records
  found on another shard after a fire, while that shard's checkpoint is still as it was at the fire
  (its ``land_shard`` has not started), are left to the pending run instead of firing a second one.
- **A budget per shard.** At most one ``GetRecords`` and one ``GetShardIterator`` per shard per
  ``min_interval`` (1 s by default: a fifth of Kinesis' 5 calls/s per shard); throttling pushes the
  next call further.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cognito_streams.core.landing.checkpoints import Checkpoint

#: Kinesis: GetRecords and GetShardIterator each allow 5 calls per second per shard, shared by every
#: reader of the shard. The watcher's share: one call of each per shard per second.
KINESIS_CALLS_PER_SECOND_PER_SHARD = 5
WATCHER_MIN_CALL_INTERVAL_SECONDS = 1.0
#: Shard iterators expire 5 minutes after GetShardIterator; the watcher renews its own before that.
ITERATOR_MAX_AGE_SECONDS = 240.0


class CallBudget:
    """At most one call per ``(shard, api)`` per ``min_interval`` seconds (monotonic clock)."""

    def __init__(self, min_interval: float = WATCHER_MIN_CALL_INTERVAL_SECONDS) -> None:
        if min_interval < WATCHER_MIN_CALL_INTERVAL_SECONDS:
            raise ValueError(
                f"the watcher's poll interval ({min_interval:g} s) is below {WATCHER_MIN_CALL_INTERVAL_SECONDS:g} s: "
                "it would take more than a fifth of the shard's Kinesis read limit from land_shard"
            )
        self.min_interval = min_interval
        self._next: dict[tuple[str, str], float] = {}

    def wait(self, shard_id: str, api: str, now: float) -> float:
        """Seconds to wait before this call is within the budget (0: now)."""
        return max(0.0, self._next.get((shard_id, api), now) - now)

    def spend(self, shard_id: str, api: str, now: float, penalty: float = 0.0) -> None:
        """Record a call made at ``now``; ``penalty`` pushes the next one further (throttling)."""
        self._next[(shard_id, api)] = now + self.min_interval + penalty


@dataclass
class ShardWatch:
    """What the watcher knows of one shard between probes."""

    shard_id: str
    #: ETag of the checkpoint object last read (None: no checkpoint object yet).
    version: str | None = None
    checkpoint: Checkpoint | None = None
    #: The position ``iterator`` was taken from (see :func:`position_of`).
    position: tuple[object, ...] | None = None
    iterator: str | None = None
    iterator_at: float = 0.0
    #: Records are waiting after the checkpoint (sticky until the checkpoint changes).
    waiting: bool = False
    #: The checkpoint version when the watcher last fired for this shard (None: no fire outstanding).
    fired_version: str | None = None
    fired_at: float | None = None
    notes: list[str] = field(default_factory=list)

    def saw_checkpoint(self, version: str | None, checkpoint: Checkpoint) -> None:
        """The checkpoint as read now. A new version ends the outstanding fire and what was known."""
        if version != self.version or self.checkpoint is None:
            self.version = version
            self.checkpoint = checkpoint
            self.waiting = False
            self.fired_version = self.fired_at = None
        if position_of(checkpoint) != self.position:
            self.iterator = None

    def needs_iterator(self, now: float) -> bool:
        """A new shard iterator is needed before the next probe."""
        return self.iterator is None or now - self.iterator_at >= ITERATOR_MAX_AGE_SECONDS

    def took_iterator(self, iterator: str, now: float) -> None:
        """GetShardIterator answered for the current checkpoint's position."""
        self.iterator, self.iterator_at = iterator, now
        self.position = position_of(self.checkpoint) if self.checkpoint is not None else None

    def probed(self, *, records: int, next_iterator: str | None, behind_ms: int | None, closed: bool) -> None:
        """A GetRecords answer (``Limit`` 1) along the watcher's iterator."""
        if records:
            self.waiting = True
            return
        self.iterator = next_iterator
        if next_iterator is None or (closed and behind_ms == 0):
            # The closed shard's end is reached: a landing run must mark it finished so that its
            # children become readable. That is work waiting too.
            self.waiting = True


def position_of(checkpoint: Checkpoint) -> tuple[object, ...]:
    """Where a landing run would start reading (the parts of the checkpoint that decide it)."""
    return (checkpoint.sequence_number, checkpoint.replay_from, checkpoint.stream_created_at, checkpoint.finished)


def is_leased(checkpoint: Checkpoint | None, now: datetime) -> bool:
    """A landing task holds the shard now (a live lease, whoever owns it)."""
    return checkpoint is not None and checkpoint.lease is not None and checkpoint.lease.is_live(now)


def should_fire(watch: ShardWatch, *, leased: bool, now: float, refire_seconds: float) -> bool:
    """Fire a landing run for this shard now?"""
    if leased or not watch.waiting:
        return False
    if watch.fired_version == watch.version and watch.fired_at is not None:
        return now - watch.fired_at >= refire_seconds
    return True


def fired(watch: ShardWatch, now: float) -> None:
    """The watcher fired for this shard at ``now``."""
    watch.fired_version, watch.fired_at = watch.version, now


@dataclass(frozen=True)
class PendingRun:
    """The landing run the last fire started: when, and every shard's checkpoint version then."""

    at: float
    versions: dict[str, str | None]

    def covers(self, watch: ShardWatch, now: float, refire_seconds: float) -> bool:
        """That run will still read this shard: its checkpoint is as it was at the fire (its ``land_shard``
        has not started yet), and the run is not overdue."""
        return (
            now - self.at < refire_seconds
            and watch.shard_id in self.versions
            and self.versions[watch.shard_id] == watch.version
        )


def to_fire(
    watches: dict[str, ShardWatch],
    readable: list[str],
    leased: set[str],
    pending: PendingRun | None,
    now: float,
    refire_seconds: float,
) -> tuple[list[str], PendingRun | None]:
    """The shards to fire for now, and the pending run after this round. Shards a pending run covers are
    marked as fired without an event."""
    fire: list[str] = []
    for shard_id in readable:
        w = watches[shard_id]
        if not should_fire(w, leased=shard_id in leased, now=now, refire_seconds=refire_seconds):
            continue
        if pending is None or not pending.covers(w, now, refire_seconds):
            fire.append(shard_id)
        fired(w, now)
    if fire:
        pending = PendingRun(now, {shard_id: w.version for shard_id, w in watches.items()})
    return fire, pending
