"""Which shards to read now: Kinesis shard lineage, pure.

After a reshard (split or merge) the parent shards close and their children start receiving the
new records. To keep each key's changes in order, a child is read only after every parent has been
*drained*: closed, and read and checkpointed to its end (the checkpoint says ``finished``). A parent
that no longer appears in ListShards has aged out of the stream's retention: it cannot be read any
more, so it does not hold its children back. If it had a checkpoint that was not finished, its
unread tail has expired: the shard is *departed*, planned anyway so that its task fails loudly
(``MAY BE LOST``) until the loss is acknowledged (its checkpoint deleted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


def sequence_key(sequence_number: str) -> int:
    """Kinesis sequence numbers are decimal integers of up to 128 bits: compare them as numbers."""
    return int(sequence_number)


@dataclass(frozen=True)
class ShardInfo:
    """One shard as ListShards describes it."""

    shard_id: str
    parent_shard_id: str | None = None
    adjacent_parent_shard_id: str | None = None
    starting_sequence_number: str | None = None
    ending_sequence_number: str | None = None
    #: No longer listed, though its checkpoint was not read to the end (see the module docstring).
    departed: bool = False

    @property
    def is_closed(self) -> bool:
        """A closed shard takes no new records (it was split or merged)."""
        return self.ending_sequence_number is not None

    @property
    def parents(self) -> tuple[str, ...]:
        """The shard's parents: none, one (a split) or two (a merge)."""
        return tuple(p for p in (self.parent_shard_id, self.adjacent_parent_shard_id) if p)

    @classmethod
    def from_api(cls, shard: Mapping[str, Any]) -> ShardInfo:
        """From one element of ListShards' ``Shards``."""
        seq_range = shard.get("SequenceNumberRange") or {}
        return cls(
            shard_id=shard["ShardId"],
            parent_shard_id=shard.get("ParentShardId"),
            adjacent_parent_shard_id=shard.get("AdjacentParentShardId"),
            starting_sequence_number=seq_range.get("StartingSequenceNumber"),
            ending_sequence_number=seq_range.get("EndingSequenceNumber"),
        )

    def as_dict(self) -> dict[str, str | bool | None]:
        """JSON-friendly (XCom)."""
        return {
            "shard_id": self.shard_id,
            "parent_shard_id": self.parent_shard_id,
            "adjacent_parent_shard_id": self.adjacent_parent_shard_id,
            "starting_sequence_number": self.starting_sequence_number,
            "ending_sequence_number": self.ending_sequence_number,
            "departed": self.departed,
        }


@dataclass
class ShardPlan:
    """The outcome of planning one run."""

    readable: list[ShardInfo] = field(default_factory=list)
    #: shard id -> the parents it waits for (not drained yet)
    waiting: dict[str, list[str]] = field(default_factory=dict)
    finished: list[str] = field(default_factory=list)
    #: shards left out by the run's shard filter
    filtered_out: list[str] = field(default_factory=list)
    #: shards no longer listed whose checkpoint was not read to the end: their tail expired unread
    departed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the logs."""
        waiting = ", ".join(f"{child} (after {' and '.join(parents)})" for child, parents in self.waiting.items())
        departed = (
            f"; {len(self.departed)} left the stream before being read to their end (MAY BE LOST): "
            f"{', '.join(self.departed)}"
            if self.departed
            else ""
        )
        return (
            f"{len(self.readable)} shard(s) to read: {', '.join(s.shard_id for s in self.readable) or '-'}; "
            f"{len(self.waiting)} waiting for their parents: {waiting or '-'}; "
            f"{len(self.finished)} finished; {len(self.filtered_out)} left out by the shard filter{departed}"
        )

    def tasks(self) -> list[ShardInfo]:
        """What the run's landing tasks are mapped over: the readable shards, then the departed ones (whose
        tasks fail loudly, see :func:`plan_shards`)."""
        return [*self.readable, *(ShardInfo(shard_id, departed=True) for shard_id in self.departed)]

    def unreadable_selection(self, only: Iterable[str], *, replaying: bool = False) -> list[str]:
        """Why shards a manual run named (``only``) would not be read by it nor by a run it enables:
        one sentence each, empty when every named shard is read now or waits only for named parents.
        ``replaying``: the run rewinds the named shards first, so a finished one is read again.

        A run limited to shards it cannot read would end green having read nothing of them."""
        named = set(only)
        problems = []
        for shard_id in sorted(named & set(self.finished) if not replaying else set(), key=_shard_order):
            problems.append(
                f"{shard_id} was read to its end (closed and drained): nothing is left to read; give replay_from "
                "to read it again, or leave it out"
            )
        for shard_id, parents in self.waiting.items():
            missing = [p for p in parents if p not in named]
            if shard_id in named and missing:
                problems.append(
                    f"{shard_id} waits for its parent(s) {', '.join(missing)}, not drained yet (a child is read after "
                    "its parents, to keep each key's order): add them to 'shards' (the child is read in a later "
                    "run), or leave 'shards' empty"
                )
        return problems


def plan_shards(
    shards: Iterable[ShardInfo],
    finished: Iterable[str],
    only: Iterable[str] | None = None,
    unfinished: Iterable[str] = (),
) -> ShardPlan:
    """Split the stream's shards into readable, waiting and finished ones.

    ``finished``: shards whose checkpoint says they were read to their end. ``only``: a shard filter
    (manual runs); lineage still applies to the shards it keeps. ``unfinished``: shards with a checkpoint
    not read to the end; those no longer listed are ``departed`` (their unread tail expired): a parent
    gone from the stream no longer holds its children back, but it is not forgotten either.
    """
    listed = {s.shard_id: s for s in shards}
    done = set(finished)
    keep = set(only) if only is not None else None
    plan = ShardPlan()
    plan.departed = sorted(
        (s for s in set(unfinished) - set(listed) - done if keep is None or s in keep), key=_shard_order
    )
    for shard_id in sorted(listed, key=_shard_order):
        shard = listed[shard_id]
        if shard_id in done:
            plan.finished.append(shard_id)
            continue
        if keep is not None and shard_id not in keep:
            plan.filtered_out.append(shard_id)
            continue
        blocking = [p for p in shard.parents if p in listed and p not in done]
        if blocking:
            plan.waiting[shard_id] = blocking
        else:
            plan.readable.append(shard)
    return plan


def _shard_order(shard_id: str) -> tuple[int, str]:
    # "shardId-000000000012": order by the number, then by the text for anything else.
    tail = shard_id.rsplit("-", 1)[-1]
    return (int(tail), shard_id) if tail.isdigit() else (2**63, shard_id)
