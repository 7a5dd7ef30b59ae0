"""The retention check for every kind of checkpoint, pure (issue 18, item 1): a checkpoint without a
sequence number (an idle shard caught up with nothing landed, a shard rewound by a replay, a child
never read) is judged like one with a sequence number, and a shard that left the stream before it was
read to its end is not forgotten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cognito_streams.core.landing.checkpoints import (
    Checkpoint,
    departed_message,
    expiry_gap,
    may_have_expired,
    unread_since,
)
from cognito_streams.core.landing.shards import ShardInfo, plan_shards

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
URL = "s3://b/_checkpoints/stream=s/shardId-2.json"


def checkpoint(shard_id: str = "shardId-2", **fields: object) -> Checkpoint:
    return Checkpoint.new("s", shard_id, NOW).model_copy(update=fields)


def hours_ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def test_an_idle_shard_last_seen_caught_up_beyond_the_retention_is_a_gap() -> None:
    # GIVEN a shard that never had a record to land, last seen caught up 30 h ago, on a 24 h stream
    idle = checkpoint(verified_at=hours_ago(30))
    # THEN records that arrived since may have expired unread, whether the shard keeps a record now or not
    for oldest in (None, ("7", hours_ago(2))):
        gap = expiry_gap(idle, 24, NOW, oldest)
        assert gap is not None and gap.checkpoint_sequence is None
        assert gap.since == hours_ago(30) and gap.until == hours_ago(24)
        message = gap.message(URL)
        assert "MAY BE LOST" in message and "last seen caught up" in message and URL in message
    # AND one seen caught up within the retention is not
    assert not may_have_expired(checkpoint(verified_at=hours_ago(23)), 24, NOW)


def test_a_rewound_shard_not_read_before_its_replay_start_expired_is_a_gap() -> None:
    # GIVEN a shard landed up to 2 h ago, rewound for a replay from 20 h ago, and not read for 10 h more
    landed = checkpoint(sequence_number="900", last_arrived_at=hours_ago(2), verified_at=hours_ago(1))
    rewound = landed.rewound(hours_ago(20), "manual__1", hours_ago(1))
    # THEN what was landed before the rewind still counts: nothing unread may have expired yet
    assert rewound.verified_at == hours_ago(1) and unread_since(rewound) == hours_ago(1)
    assert not may_have_expired(rewound, 24, NOW)
    # WHEN it is a repair of a stale checkpoint (landed 40 h ago) from a replay start that has since expired
    stale = checkpoint(sequence_number="5", last_arrived_at=hours_ago(40)).rewound(hours_ago(26), "m2", hours_ago(3))
    gap = expiry_gap(stale, 24, NOW, ("50", hours_ago(23)))
    # THEN the window starts at the replay start, and the message says the shard was rewound
    assert gap is not None and gap.since == hours_ago(26) and "rewound by a replay" in gap.message(URL)
    # AND a replay start still kept (an older record is still there) is no gap
    assert expiry_gap(stale, 24, NOW, ("40", hours_ago(27))) is None


def test_a_child_never_read_takes_the_window_from_its_parents() -> None:
    child = checkpoint("shardId-3")
    # GIVEN parents last read up to 30 h and 2 h ago (a split during an outage longer than the retention)
    parents = [
        checkpoint("shardId-1", sequence_number="10", last_arrived_at=hours_ago(30), finished=True),
        checkpoint("shardId-2", sequence_number="20", last_arrived_at=hours_ago(2), finished=True),
    ]
    # THEN the child's records since the earliest of them may have expired: only a replay repairs it
    gap = expiry_gap(child, 24, NOW, ("77", hours_ago(10)), parents)
    assert gap is not None and gap.since == hours_ago(30) and gap.until == hours_ago(24) and gap.replay_only
    message = gap.message(URL)
    assert "parent" in message and "replay_from" in message and "deleting its checkpoint does not help" in message
    # AND parents read recently leave nothing to fear; a shard whose parents were never read predates us
    assert expiry_gap(child, 24, NOW, None, [parents[1]]) is None
    assert expiry_gap(child, 24, NOW, None, []) is None


def test_shards_that_left_the_stream_unfinished_are_departed_not_forgotten() -> None:
    # GIVEN a child whose parent is no longer listed, with an unfinished checkpoint, and one finished that left
    listed = [ShardInfo("shardId-7", parent_shard_id="shardId-1"), ShardInfo("shardId-8")]
    plan = plan_shards(listed, finished=["shardId-0"], unfinished=["shardId-1", "shardId-7"])
    # THEN the child is read (nothing is left to wait for), and the parent is departed: its task fails loudly
    assert [s.shard_id for s in plan.readable] == ["shardId-7", "shardId-8"]
    assert plan.departed == ["shardId-1"]
    tasks = plan.tasks()
    assert [(t.shard_id, t.departed) for t in tasks] == [
        ("shardId-7", False),
        ("shardId-8", False),
        ("shardId-1", True),
    ]
    assert tasks[-1].as_dict()["departed"] is True
    assert "MAY BE LOST" in plan.summary()
    # AND a manual run limited to other shards leaves it out
    assert plan_shards(listed, finished=[], only=["shardId-8"], unfinished=["shardId-1"]).departed == []
    message = departed_message(checkpoint("shardId-1", sequence_number="10", last_arrived_at=hours_ago(30)), URL)
    assert "MAY BE LOST" in message and "delete" in message and URL in message and hours_ago(30).isoformat() in message
