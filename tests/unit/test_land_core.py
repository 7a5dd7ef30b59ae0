"""Pure pieces of the landing DAG: shard lineage, checkpoints and leases, retention gaps, S3Url rules,
value cutting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cognito_streams.core.landing import s3url
from cognito_streams.core.landing.checkpoints import Checkpoint, expiry_gap, lease_holder, may_have_expired
from cognito_streams.core.landing.shards import ShardInfo, plan_shards, sequence_key
from cognito_streams.core.values import cut_utf8
from tests.landing_records import SAMPLES

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


# -- lineage ---------------------------------------------------------------------------------------


def shard(shard_id: str, *parents: str, closed: bool = False) -> ShardInfo:
    return ShardInfo(
        shard_id=shard_id,
        parent_shard_id=parents[0] if parents else None,
        adjacent_parent_shard_id=parents[1] if len(parents) > 1 else None,
        starting_sequence_number="1",
        ending_sequence_number="99" if closed else None,
    )


def ids(shards: list[ShardInfo]) -> list[str]:
    return [s.shard_id for s in shards]


def test_children_of_a_split_wait_until_the_parent_is_drained() -> None:
    # GIVEN shard 0 split into 2 and 3
    shards = [shard("shardId-0", closed=True), shard("shardId-2", "shardId-0"), shard("shardId-3", "shardId-0")]
    # WHEN the parent is not finished  THEN only the parent is read, the children wait for it
    plan = plan_shards(shards, finished=[])
    assert ids(plan.readable) == ["shardId-0"]
    assert plan.waiting == {"shardId-2": ["shardId-0"], "shardId-3": ["shardId-0"]}
    # WHEN the parent is drained  THEN the children are read and the parent is no longer scheduled
    plan = plan_shards(shards, finished=["shardId-0"])
    assert ids(plan.readable) == ["shardId-2", "shardId-3"] and plan.finished == ["shardId-0"]


def test_a_merge_waits_for_both_parents() -> None:
    shards = [
        shard("shardId-2", closed=True),
        shard("shardId-3", closed=True),
        shard("shardId-4", "shardId-2", "shardId-3"),
    ]
    assert plan_shards(shards, finished=["shardId-2"]).waiting == {"shardId-4": ["shardId-3"]}
    assert ids(plan_shards(shards, finished=["shardId-2", "shardId-3"]).readable) == ["shardId-4"]


def test_a_parent_gone_from_the_stream_does_not_block_its_child() -> None:
    # GIVEN a child whose parent aged out of the retention (no longer listed)
    plan = plan_shards([shard("shardId-7", "shardId-1")], finished=[])
    assert ids(plan.readable) == ["shardId-7"]


def test_shard_filter_keeps_lineage() -> None:
    shards = [shard("shardId-0", closed=True), shard("shardId-2", "shardId-0"), shard("shardId-1")]
    plan = plan_shards(shards, finished=[], only=["shardId-2", "shardId-1"])
    assert ids(plan.readable) == ["shardId-1"] and plan.waiting == {"shardId-2": ["shardId-0"]}
    assert plan.filtered_out == ["shardId-0"]


def test_a_shard_filter_naming_shards_the_run_cannot_read_says_why_each() -> None:
    # GIVEN shard 0 split into 2 and 3 (0 not drained), and shard 1 read to its end
    shards = [
        shard("shardId-0", closed=True),
        shard("shardId-1", closed=True),
        shard("shardId-2", "shardId-0"),
        shard("shardId-3", "shardId-0"),
    ]
    # WHEN a manual run names child 2 and the finished shard 1, without the parent
    plan = plan_shards(shards, finished=["shardId-1"], only=["shardId-2", "shardId-1"])
    problems = plan.unreadable_selection(["shardId-2", "shardId-1"])
    # THEN each is refused with its reason and what to do
    assert len(problems) == 2
    assert problems[0].startswith("shardId-1 was read to its end") and "replay_from" in problems[0]
    assert problems[1].startswith("shardId-2 waits for its parent(s) shardId-0") and "add them" in problems[1]
    # WHEN the run replays them  THEN the finished shard is read again (rewound): only the child is refused
    assert [p[:10] for p in plan.unreadable_selection(["shardId-2", "shardId-1"], replaying=True)] == ["shardId-2 "]
    # WHEN the parent is named too  THEN nothing is refused: the parent is read now, its children later
    both = ["shardId-0", "shardId-2"]
    assert plan_shards(shards, finished=[], only=both).unreadable_selection(both) == []


def test_shards_are_ordered_by_number_and_from_api_reads_lineage() -> None:
    info = ShardInfo.from_api(
        {
            "ShardId": "shardId-000000000004",
            "ParentShardId": "shardId-000000000002",
            "AdjacentParentShardId": "shardId-000000000003",
            "SequenceNumberRange": {"StartingSequenceNumber": "5", "EndingSequenceNumber": "9"},
        }
    )
    assert info.parents == ("shardId-000000000002", "shardId-000000000003") and info.is_closed
    plan = plan_shards([shard("shardId-10"), shard("shardId-9")], finished=[])
    assert ids(plan.readable) == ["shardId-9", "shardId-10"]


def test_sequence_numbers_compare_as_numbers() -> None:
    assert sequence_key("49590338271490256608559692538361571095921575989136588898") > sequence_key("9")


# -- checkpoints, leases, retention ------------------------------------------------------------------


def checkpoint(**kw: object) -> Checkpoint:
    return Checkpoint.new("s", "shardId-0", NOW).model_copy(update=kw)


def test_a_live_lease_of_someone_else_keeps_others_out_until_it_expires() -> None:
    leased = checkpoint().leased_to("run-a", NOW, 900)
    assert lease_holder(leased, "run-b", NOW + timedelta(seconds=10)) is not None
    assert lease_holder(leased, "run-a", NOW + timedelta(seconds=10)) is None  # the owner itself
    assert lease_holder(leased, "run-b", NOW + timedelta(seconds=901)) is None  # expired
    assert lease_holder(leased.released(NOW), "run-b", NOW) is None


def test_renewing_a_lease_keeps_its_acquisition_time() -> None:
    first = checkpoint().leased_to("run-a", NOW, 60)
    renewed = first.leased_to("run-a", NOW + timedelta(seconds=30), 60)
    assert renewed.lease is not None and first.lease is not None
    assert renewed.lease.acquired_at == first.lease.acquired_at
    assert renewed.lease.expires_at == NOW + timedelta(seconds=90)


def test_rewinding_for_a_replay_remembers_where_the_shard_was() -> None:
    at = checkpoint(sequence_number="500", finished=True)
    rewound = at.rewound(NOW - timedelta(hours=2), "manual__1", NOW)
    assert rewound.sequence_number is None and not rewound.finished
    assert rewound.replay_until == "500" and rewound.replay_run_id == "manual__1"
    # a second replay before the first caught up keeps the original position
    again = rewound.rewound(NOW - timedelta(hours=3), "manual__2", NOW)
    assert again.replay_until == "500"


def test_no_gap_while_the_checkpoint_is_within_the_retention() -> None:
    ckpt = checkpoint(sequence_number="10", last_arrived_at=NOW - timedelta(hours=23))
    assert not may_have_expired(ckpt, 24, NOW)
    assert expiry_gap(ckpt, 24, NOW, ("5", NOW - timedelta(hours=23))) is None


def test_an_idle_shard_read_recently_has_no_gap() -> None:
    # GIVEN the last record arrived 30 h ago, but a run saw the shard caught up 1 h ago
    ckpt = checkpoint(
        sequence_number="10", last_arrived_at=NOW - timedelta(hours=30), verified_at=NOW - timedelta(hours=1)
    )
    assert not may_have_expired(ckpt, 24, NOW)


def test_a_checkpoint_older_than_the_retention_is_a_gap_with_its_window() -> None:
    # GIVEN a checkpoint last verified 40 h ago on a 24 h stream whose oldest record is newer than it
    ckpt = checkpoint(sequence_number="10", last_arrived_at=NOW - timedelta(hours=40))
    oldest = ("25", NOW - timedelta(hours=20))
    gap = expiry_gap(ckpt, 24, NOW, oldest)
    # THEN records that arrived from 40 h to 24 h ago may be lost, and the message says how to repair
    assert gap is not None
    assert gap.since == NOW - timedelta(hours=40) and gap.until == NOW - timedelta(hours=24)
    assert round(gap.hours) == 16
    message = gap.message("s3://b/_checkpoints/x.json")
    assert "MAY BE LOST" in message and "cognito_bulk_publish" in message and "replay_from" in message


def test_an_old_checkpoint_whose_record_is_still_kept_is_not_a_gap() -> None:
    ckpt = checkpoint(sequence_number="10", last_arrived_at=NOW - timedelta(hours=40))
    assert expiry_gap(ckpt, 24, NOW, ("9", NOW - timedelta(hours=40))) is None


def test_never_landed_or_rewound_shards_have_no_gap() -> None:
    assert expiry_gap(checkpoint(), 24, NOW, ("9", NOW)) is None


# -- S3Url -----------------------------------------------------------------------------------------

PRESIGNED = "https://bucket.s3.us-east-1.amazonaws.com/key?X-Amz-Signature=abc&X-Amz-Credential=AKIA"


def test_a_redacted_url_has_no_query_string() -> None:
    assert s3url.redacted(PRESIGNED) == "https://bucket.s3.us-east-1.amazonaws.com/key"
    assert "Signature" not in s3url.redacted("http://user:pw@127.0.0.1:9/a?X-Amz-Signature=1")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        (PRESIGNED, True),
        ("http://bucket.s3.amazonaws.com/key", False),  # S3 URLs from Cognito are https
        ("http://127.0.0.1:4566/bucket/key?sig", False),
        ("https://169.254.169.254/latest/meta-data", False),
        ("file:///etc/passwd", False),
        ("not a url", False),
    ],
)
def test_only_s3_urls_are_fetched(url: str, allowed: bool) -> None:
    assert (s3url.url_problem(url, frozenset()) is None) is allowed


def test_the_deployments_own_s3_endpoint_is_allowed() -> None:
    assert s3url.url_problem("http://127.0.0.1:4566/bucket/key?sig", frozenset({"127.0.0.1:4566"})) is None


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (200, b"[]", None),
        (403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", "s3url_expired"),
        (400, b"<Error><Code>ExpiredToken</Code><Message>The token has expired</Message></Error>", "s3url_expired"),
        (403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>", "s3url_forbidden"),
        (404, b"<Error><Code>NoSuchKey</Code></Error>", "s3url_not_found"),
        (503, b"<Error><Code>SlowDown</Code></Error>", "s3url_unreachable"),
    ],
)
def test_responses_are_judged_by_status_and_s3_error_code(status: int, body: bytes, reason: str | None) -> None:
    verdict = s3url.judge_response(status, body)
    assert verdict.reason == reason
    assert verdict.retryable is (status == 503)


def test_payload_bodies_may_be_an_array_or_an_object_with_the_records() -> None:
    records, problem = s3url.payload_records(SAMPLES["s3url-body"])
    assert problem is None and records is not None and len(records) == 2
    wrapped, problem = s3url.payload_records(b'{"kinesisSyncRecords": ' + SAMPLES["s3url-body"] + b"}")
    assert problem is None and wrapped == records


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"records": []}', b'"text"', b"\xff\xfe", b"[1, 2"])
def test_a_body_that_is_not_the_records_is_refused(body: bytes) -> None:
    records, problem = s3url.payload_records(body)
    assert records is None and problem is not None and problem.startswith("the body is not the records")


def test_resolving_checks_the_fetched_records_exactly() -> None:
    records, _ = s3url.payload_records(
        b'[{"key": "a", "key": "b", "syncCount": 1, "lastModifiedDate": 1, "op": "replace"}]'
    )
    assert records is not None
    resolved, error = s3url.resolve(SAMPLES["s3url"], records)
    assert resolved is None and error is not None and error.reason == "duplicate_keys"
    good, _ = s3url.payload_records(SAMPLES["s3url-body"])
    assert good is not None
    resolved, error = s3url.resolve(SAMPLES["s3url"], good)
    assert error is None and resolved is not None and b'"payloadType":"S3Url"' in resolved


# -- cutting values --------------------------------------------------------------------------------


@given(st.text(st.characters(blacklist_categories=("Cs",))), st.integers(min_value=0, max_value=64))
def test_a_cut_is_the_longest_whole_character_prefix_within_the_limit(text: str, limit: int) -> None:
    data = text.encode()
    cut = cut_utf8(data, limit)
    assert len(cut) <= limit and data.startswith(cut)
    kept = cut.decode("utf-8")  # whole characters only
    if len(cut) < len(data):
        next_char = text[len(kept)].encode()
        assert len(cut) + len(next_char) > limit  # the next character would not have fitted


# -- the run's asset event --------------------------------------------------------------------------


def test_the_runs_asset_event_lists_a_bounded_sample_of_descriptors_with_the_full_counts() -> None:
    """The event's extra is also publish_landed's XCom: it must not grow with the shards x batches of a
    busy run (hundreds of shards, several batches each); the loader lists the landing zone itself."""
    from cognito_streams.landing.tasks import DESCRIPTORS_IN_EVENT, publish

    # GIVEN a run of 300 shards that landed 4 batches each
    outcomes = [
        {
            "shard_id": f"shardId-{n:012d}",
            "status": "read",
            "records_read": 40,
            "records_landed": 38,
            "records_rejected": 2,
            "batches": [f"s3://bucket/batches/stream=s/dt=2026-11-25/shardId-{n:012d}/{b}.json" for b in range(4)],
            "lag_ms": n,
        }
        for n in range(300)
    ]
    # WHEN the run is summed up
    extra = publish(outcomes)
    # THEN the counts are whole, the descriptors a sample of the first ones, with how many were left out
    assert extra is not None
    assert (extra["batches"], extra["records_read"], extra["records_landed"]) == (1200, 12000, 11400)
    assert extra["descriptors"] == [u for o in outcomes for u in o["batches"]][:DESCRIPTORS_IN_EVENT]
    assert extra["descriptors_omitted"] == 1200 - DESCRIPTORS_IN_EVENT
    assert len(orjson.dumps(extra)) < 20_000
    # WHEN a run lands few batches  THEN they are all listed
    small = publish(outcomes[:2])
    assert small is not None and len(small["descriptors"]) == small["batches"] == 8
    assert small["descriptors_omitted"] == 0
