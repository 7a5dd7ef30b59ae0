"""The bulk-publish decision over every status and time case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cognito_streams.core.bulk_publish import (
    SUCCESS_COOLDOWN,
    Action,
    BulkPublishState,
    decide,
    next_eligible_at,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def state(
    status: str, completed_ago: timedelta | None = None, streaming: str | None = "ENABLED", **kw
) -> BulkPublishState:  # type: ignore[no-untyped-def]
    completed = NOW - completed_ago if completed_ago is not None else None
    started = completed - timedelta(minutes=5) if completed else None
    return BulkPublishState(status=status, started_at=started, completed_at=completed, streaming_status=streaming, **kw)


def test_never_run_starts() -> None:
    assert decide(state("NOT_STARTED"), NOW).action is Action.START


def test_in_progress_waits() -> None:
    plan = decide(
        BulkPublishState("IN_PROGRESS", started_at=NOW - timedelta(minutes=3), streaming_status="ENABLED"), NOW
    )
    assert plan.action is Action.WAIT
    assert "in progress" in plan.reason


def test_recent_success_skips_with_the_next_eligible_time() -> None:
    plan = decide(state("SUCCEEDED", completed_ago=timedelta(hours=3)), NOW)
    assert plan.action is Action.SKIP
    assert plan.next_eligible_at == NOW + timedelta(hours=21)
    assert "2026-11-27 09:00:00 UTC" in plan.reason


def test_recent_success_waits_when_a_backfill_asks_to() -> None:
    plan = decide(state("SUCCEEDED", completed_ago=timedelta(hours=23)), NOW, wait_until_eligible=True)
    assert plan.action is Action.WAIT_UNTIL_ELIGIBLE
    assert plan.next_eligible_at == NOW + timedelta(hours=1)


def test_success_exactly_24_hours_ago_is_eligible() -> None:
    assert decide(state("SUCCEEDED", completed_ago=SUCCESS_COOLDOWN), NOW).action is Action.START


def test_failed_is_retried_at_once_whatever_its_age() -> None:
    plan = decide(state("FAILED", completed_ago=timedelta(minutes=1), failure_message="stream gone"), NOW)
    assert plan.action is Action.START
    assert "stream gone" in plan.reason


@pytest.mark.parametrize("status", ["NOT_STARTED", "IN_PROGRESS", "FAILED", "SUCCEEDED"])
def test_disabled_streaming_fails_with_the_reason_whatever_the_status(status: str) -> None:
    plan = decide(
        state(status, completed_ago=timedelta(hours=1), streaming="DISABLED", disabled_reason="role cannot be assumed"),
        NOW,
    )
    assert plan.action is Action.FAIL
    assert "role cannot be assumed" in plan.reason


def test_unconfigured_pool_fails_pointing_at_the_configure_dag() -> None:
    plan = decide(state("NOT_STARTED", streaming=None), NOW)
    assert plan.action is Action.FAIL
    assert "cognito_streams_configure" in plan.reason


def test_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(state("NOT_STARTED"), datetime(2026, 1, 1))


def test_from_api_reads_boto3_shapes() -> None:
    details = {
        "IdentityPoolId": "us-east-1:abc",
        "BulkPublishStartTime": datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
        "BulkPublishCompleteTime": datetime(2026, 11, 25, 10, 5, tzinfo=UTC),
        "BulkPublishStatus": "SUCCEEDED",
    }
    config = {"CognitoStreams": {"StreamName": "s", "RoleArn": "r", "StreamingStatus": "ENABLED"}}
    parsed = BulkPublishState.from_api(details, config)
    assert parsed.status == "SUCCEEDED"
    assert next_eligible_at(parsed) == datetime(2026, 11, 26, 10, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="unknown BulkPublishStatus"):
        BulkPublishState.from_api({"BulkPublishStatus": "EXPLODED"}, config)


statuses = st.sampled_from(["NOT_STARTED", "IN_PROGRESS", "FAILED", "SUCCEEDED"])
ages = st.one_of(st.none(), st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)))


@given(status=statuses, age=ages, streaming=st.sampled_from(["ENABLED", "DISABLED", None]), wait=st.booleans())
def test_decision_invariants(status: str, age: timedelta | None, streaming: str | None, wait: bool) -> None:
    s = state(status, completed_ago=age, streaming=streaming)
    plan = decide(s, NOW, wait_until_eligible=wait)
    # Never start while one is in progress, nor without streaming, nor within 24 h of a success.
    if plan.action is Action.START:
        assert streaming == "ENABLED"
        assert status != "IN_PROGRESS"
        assert not (status == "SUCCEEDED" and age is not None and age < SUCCESS_COOLDOWN)
    # Every "not yet" carries the time it becomes possible, which is in the future.
    if plan.action in (Action.SKIP, Action.WAIT_UNTIL_ELIGIBLE):
        assert plan.next_eligible_at is not None and plan.next_eligible_at > NOW
        assert (plan.action is Action.WAIT_UNTIL_ELIGIBLE) == wait
    # Streaming disabled always fails; otherwise the decision never fails.
    assert (plan.action is Action.FAIL) == (streaming != "ENABLED")
