"""Per-shard checkpoints and their lease, pure (the S3 store is ``cognito_streams.landing_zone.checkpoints``).

A checkpoint says how far a shard has been landed: the Kinesis sequence number of the last record
whose batch is complete in the landing zone. It lives in S3, outside Airflow's metadata DB, and is
only ever moved forward after the batch's descriptor is written.

The lease makes one run at a time the owner of a shard: the owner writes its name and an expiry into
the checkpoint object by compare-and-swap on the object's ETag, and every later write is a
compare-and-swap too. Another run that finds a live lease held by someone else leaves the shard
alone; a lease whose owner died expires after ``checkpoint_lease_seconds``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CHECKPOINT_FORMAT_VERSION = 1


class Lease(BaseModel):
    """Who owns the shard now, and until when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    owner: str
    acquired_at: datetime
    expires_at: datetime

    def is_live(self, now: datetime) -> bool:
        """Not expired at ``now``."""
        return now < self.expires_at


class Checkpoint(BaseModel):
    """The content of ``_checkpoints/stream=<s>/<shard>.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = 1
    stream_name: str
    shard_id: str
    #: Last Kinesis sequence number landed (read AFTER_SEQUENCE_NUMBER it); None = nothing landed yet.
    sequence_number: str | None = None
    #: Arrival time of that record.
    last_arrived_at: datetime | None = None
    #: Every record that arrived in the shard before this time has been landed: the last time a run read
    #: the shard up to its tip while it was open (or, if it stopped earlier, last_arrived_at). It never
    #: moves back (a replay re-reads what was landed before it) and is kept without a sequence number
    #: (an idle shard caught up with nothing landed; a rewound one). Records that may have expired
    #: unread are those that arrived after it.
    verified_at: datetime | None = None
    #: The shard is closed and was read to its end: it is never read again (children may be read).
    finished: bool = False
    #: A manual replay rewound the shard: read AT_TIMESTAMP from here while sequence_number is None.
    replay_from: datetime | None = None
    #: Batches up to this sequence number (the position before the replay) are marked ``replay``.
    replay_until: str | None = None
    #: The run that rewound the shard (a retry of that run must not rewind it again).
    replay_run_id: str | None = None
    #: Names this replay's batches (``<shard>~<token>`` folders): a replay's batches must be new to the
    #: loader, which skips descriptors it loaded (same cuts would otherwise give the same names). Set at
    #: each rewind, so a retry of the replay writes the same names; cleared with ``replay_until``.
    replay_token: str | None = None
    #: First record the replay landed, and its arrival: older batches wholly between it and the replay's
    #: last batch are superseded (their descriptors moved aside) so the loader loads the replay's instead.
    replay_first_sequence: str | None = None
    replay_first_arrived_at: datetime | None = None
    lease: Lease | None = None
    last_batch_id: str | None = None
    records_landed: int = Field(default=0, ge=0)
    records_rejected: int = Field(default=0, ge=0)
    #: MillisBehindLatest at the last read (the health report's lag per shard); None before any read.
    lag_ms: int | None = None
    updated_at: datetime
    #: ``StreamCreationTimestamp`` of the stream this checkpoint was written for. A stream deleted and
    #: created again under the same name has the same shard ids but other sequence numbers: a
    #: checkpoint of the deleted stream must not be used on the new one. None: written before this
    #: field existed (adopted at the next write).
    stream_created_at: datetime | None = None
    #: Appended to the shard's folder in the landing zone's object keys for a re-created stream
    #: (``@<creation time>``), so that its objects never overwrite the deleted stream's when sequence
    #: numbers repeat (they do in moto; Kinesis' own never repeat). None for a stream's first life.
    key_suffix: str | None = None

    @classmethod
    def new(cls, stream_name: str, shard_id: str, now: datetime) -> Checkpoint:
        """A checkpoint for a shard never landed: read it from TRIM_HORIZON."""
        return cls(stream_name=stream_name, shard_id=shard_id, updated_at=now)

    def leased_to(self, owner: str, now: datetime, seconds: float) -> Checkpoint:
        """This checkpoint with a fresh lease for ``owner``."""
        acquired = self.lease.acquired_at if self.lease and self.lease.owner == owner else now
        lease = Lease(owner=owner, acquired_at=acquired, expires_at=now + timedelta(seconds=seconds))
        return self.model_copy(update={"lease": lease, "updated_at": now})

    def released(self, now: datetime) -> Checkpoint:
        """This checkpoint without a lease."""
        return self.model_copy(update={"lease": None, "updated_at": now})

    def for_new_stream(self, created_at: datetime, now: datetime) -> Checkpoint:
        """A fresh checkpoint (read from the trim horizon) for the stream created at ``created_at``;
        the lease is kept."""
        fresh = Checkpoint.new(self.stream_name, self.shard_id, now)
        suffix = f"@{created_at.astimezone(UTC):%Y%m%dT%H%M%S%fZ}"
        return fresh.model_copy(update={"stream_created_at": created_at, "lease": self.lease, "key_suffix": suffix})

    def rewound(self, replay_from: datetime, run_id: str, now: datetime) -> Checkpoint:
        """Rewound for a manual replay from ``replay_from`` (AT_TIMESTAMP)."""
        return self.model_copy(
            update={
                "sequence_number": None,
                "last_arrived_at": None,
                # What was landed before the rewind stays landed: the retention check still starts from it.
                "verified_at": _seen_until(self),
                "finished": False,
                "replay_from": replay_from,
                "replay_until": self.sequence_number if self.replay_until is None else self.replay_until,
                "replay_run_id": run_id,
                "replay_token": f"replay-{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}",
                "replay_first_sequence": None,
                "replay_first_arrived_at": None,
                "updated_at": now,
            }
        )


#: Two creation timestamps closer than this are the same stream (they survive JSON round trips as
#: microseconds; a stream is never deleted and created again within a millisecond).
SAME_STREAM_TOLERANCE = timedelta(milliseconds=1)


def from_other_stream(checkpoint: Checkpoint, stream_created_at: datetime) -> bool:
    """The checkpoint was written for an earlier stream of the same name (deleted since, then created
    again): its sequence numbers and ``finished`` flag mean nothing for the current stream."""
    if checkpoint.stream_created_at is None:
        return False
    return abs(checkpoint.stream_created_at - stream_created_at) > SAME_STREAM_TOLERANCE


def lease_holder(checkpoint: Checkpoint | None, owner: str, now: datetime) -> Lease | None:
    """The live lease of someone other than ``owner`` that keeps ``owner`` out, or None."""
    if checkpoint is None or checkpoint.lease is None:
        return None
    lease = checkpoint.lease
    if lease.owner == owner or not lease.is_live(now):
        return None
    return lease


@dataclass(frozen=True)
class ExpiryGap:
    """Records that may have expired from the stream before they were landed."""

    shard_id: str
    checkpoint_sequence: str | None
    since: datetime  # records that arrived after this ...
    until: datetime  # ... and before this may be lost
    retention_hours: int
    #: What the window starts from, for the message (the checkpoint's position, or why it has none).
    basis: str = ""
    #: The shard has no position of its own to go on from (a child never read): only a replay repairs.
    replay_only: bool = False

    @property
    def hours(self) -> float:
        """Length of the window, in hours."""
        return max(0.0, (self.until - self.since).total_seconds() / 3600)

    def message(self, checkpoint_url: str) -> str:
        """What happened, how much may be lost, and how to repair it."""
        basis = self.basis or f"its checkpoint (sequence number {self.checkpoint_sequence})"
        replay = (
            "a manual run of cognito_stream_to_s3 with replay_from set to a time within the retention (and shards "
            "set to this shard)"
        )
        go_on = (
            f"with {replay} (deleting its checkpoint does not help here: the window comes from its parents)"
            if self.replay_only
            else f"either with {replay}, or by deleting {checkpoint_url} (the shard is then read from its trim "
            "horizon; duplicates are absorbed by the loader)"
        )
        return (
            f"shard {self.shard_id}: {basis} is older than the stream's retention ({self.retention_hours} h). Records "
            f"that arrived between {self.since.isoformat()} and {self.until.isoformat()} (about {self.hours:.1f} h of "
            "this shard's data) have expired from Kinesis before they were landed and MAY BE LOST. Nothing was "
            "skipped: this shard stops here. To repair: 1) run the cognito_bulk_publish DAG for the identity pools "
            f"(it republishes every dataset); 2) then let this shard go on from the oldest record still kept, {go_on}. "
            "Step by step: docs/operations.md, 'Recovering lost data'."
        )


def departed_message(checkpoint: Checkpoint, checkpoint_url: str) -> str:
    """A shard that left the stream (no longer in ListShards: its records aged out) before it was read to
    its end: what may be lost and how to acknowledge it."""
    since = _seen_until(checkpoint)
    position = f"sequence number {checkpoint.sequence_number}" if checkpoint.sequence_number else "no record landed"
    window = f"after {since.isoformat()}" if since is not None else "since the shard was created"
    return (
        f"shard {checkpoint.shard_id} left the stream (it is no longer listed by ListShards: a closed shard does "
        f"that once its records have aged out of the retention) before it was read to its end: its checkpoint is at "
        f"{position}, and the records that arrived in it {window} MAY BE LOST. Its children are read anyway "
        "(nothing is left in it to wait for). To repair: 1) run the cognito_bulk_publish DAG for the identity pools "
        f"(it republishes every dataset); 2) then delete {checkpoint_url} to acknowledge: this task fails at every "
        "run until then. Step by step: docs/operations.md, 'Recovering lost data'."
    )


def _seen_until(checkpoint: Checkpoint) -> datetime | None:
    known = [t for t in (checkpoint.verified_at, checkpoint.last_arrived_at) if t is not None]
    return max(known) if known else None


def unread_since(checkpoint: Checkpoint, parents: Sequence[Checkpoint] = ()) -> datetime | None:
    """Every record that arrived in the shard before this time has been landed (or was never the
    pipeline's to land); a record that arrived after it and is not landed yet can expire unread.

    - a checkpoint with a position: when it was last seen caught up there, or its last record's arrival;
    - an idle shard, caught up with nothing landed: when it was last seen caught up;
    - a shard rewound by a replay: the replay's start, or what was landed before the rewind if later;
    - a shard never read: a child's records began when its parents closed, after the parents were last
      seen open, so the earliest of its ``parents``' own times (None when no parent was ever read: the
      shard predates the pipeline, everything it keeps is read from its trim horizon).
    """
    if checkpoint.sequence_number is not None:
        return _seen_until(checkpoint)
    known = [t for t in (checkpoint.verified_at, checkpoint.replay_from) if t is not None]
    if known:
        return max(known)
    bounds = [t for t in (_seen_until(p) for p in parents) if t is not None]
    return min(bounds) if bounds else None


def may_have_expired(
    checkpoint: Checkpoint, retention_hours: int, now: datetime, parents: Sequence[Checkpoint] = ()
) -> bool:
    """Cheap test: could records after the checkpoint have aged out of the stream unread? (Only
    then is the shard probed for its oldest record.)"""
    since = unread_since(checkpoint, parents)
    if since is None:
        # A position with no time at all cannot be judged: probe. A shard never read: nothing to go by.
        return checkpoint.sequence_number is not None
    # Everything unread arrived after `since`; within the retention it is still kept.
    return since < now - timedelta(hours=retention_hours)


def expiry_gap(
    checkpoint: Checkpoint,
    retention_hours: int,
    now: datetime,
    oldest_kept: tuple[str, datetime] | None,
    parents: Sequence[Checkpoint] = (),
) -> ExpiryGap | None:
    """Whether records after the checkpoint may have expired unread.

    ``oldest_kept`` is the shard's oldest record still in the stream (TRIM_HORIZON), as
    ``(sequence number, arrival time)``, or None when the shard keeps no record at all. ``parents``: the
    checkpoints of the shard's parents (used for a shard never read, see :func:`unread_since`).
    """
    if not may_have_expired(checkpoint, retention_hours, now, parents):
        return None
    since = unread_since(checkpoint, parents)
    horizon = now - timedelta(hours=retention_hours)
    sequence = checkpoint.sequence_number
    if sequence is not None:
        if oldest_kept is not None and int(oldest_kept[0]) <= int(sequence):
            return None  # the checkpoint's record itself is still kept: nothing after it expired
        basis = f"its checkpoint (sequence number {sequence})"
    else:
        if oldest_kept is not None and since is not None and oldest_kept[1] <= since:
            return None  # a record from before `since` is still kept: nothing after it was trimmed
        basis = _seqless_basis(checkpoint)
    until = min(oldest_kept[1], horizon) if oldest_kept is not None else horizon
    start = since if since is not None else until
    replay_only = sequence is None and checkpoint.verified_at is None and checkpoint.replay_from is None
    return ExpiryGap(checkpoint.shard_id, sequence, start, until, retention_hours, basis, replay_only)


def _seqless_basis(checkpoint: Checkpoint) -> str:
    if checkpoint.replay_from is not None:
        return f"its checkpoint (rewound by a replay to read from {checkpoint.replay_from.isoformat()}, not read since)"
    if checkpoint.verified_at is not None:
        return (
            "its checkpoint (no record landed yet; the shard was last seen caught up at "
            f"{checkpoint.verified_at.isoformat()})"
        )
    return "the shard was never read, and the position its parent shard(s) were last read to"


def utcnow() -> datetime:
    """Now, in UTC (one place, so tests can reason about it)."""
    return datetime.now(UTC)
