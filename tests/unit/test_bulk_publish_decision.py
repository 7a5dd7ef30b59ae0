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
    OutcomeFilter,
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


# -- whose outcome is a terminal status (issue 18, item 12) ------------------------------------------

SKEW = timedelta(seconds=900)
EARLIER = NOW - timedelta(hours=30)  # the start of the publish shown before this task's request


def test_a_terminal_status_of_an_earlier_publish_is_stale() -> None:
    wanted = OutcomeFilter.after_request(NOW, SKEW, EARLIER)
    # The publish shown before the request, ended: not this attempt's outcome, whatever its status.
    assert wanted.classify("FAILED", EARLIER) == "stale"
    assert wanted.classify("SUCCEEDED", EARLIER) == "stale"
    # Not ended: pending, never an outcome.
    assert wanted.classify("IN_PROGRESS", NOW) == "pending"
    assert wanted.classify("NOT_STARTED", None) == "pending"
    # Started after the request (by Cognito's clock a little behind ours, within the tolerance): ours.
    assert wanted.classify("SUCCEEDED", NOW - timedelta(seconds=120)) == "outcome"
    assert wanted.classify("FAILED", NOW + timedelta(seconds=3)) == "outcome"
    # Another one that started long before the request (beyond any clock difference AWS accepts): stale.
    assert wanted.classify("SUCCEEDED", NOW - timedelta(hours=2)) == "stale"
    # A terminal status with no start time cannot be told apart.
    assert wanted.classify("SUCCEEDED", None) == "stale"


def test_within_the_tolerance_only_the_earlier_start_time_tells_and_it_is_exact() -> None:
    # GIVEN a publish that failed 2 minutes before this task's request (inside the clock tolerance)
    just_before = NOW - timedelta(minutes=2)
    wanted = OutcomeFilter.after_request(NOW, SKEW, just_before)
    # THEN that one is stale (same start time as read before the request), a newer one is the outcome
    assert wanted.classify("FAILED", just_before) == "stale"
    assert wanted.classify("FAILED", just_before + timedelta(milliseconds=1)) == "outcome"


def test_waiting_for_a_running_publish_takes_its_end_only() -> None:
    wanted = OutcomeFilter.for_running(EARLIER)
    assert wanted.classify("SUCCEEDED", EARLIER) == "outcome"
    assert wanted.classify("SUCCEEDED", EARLIER - timedelta(days=1)) == "stale"
    assert OutcomeFilter.for_running(None).classify("FAILED", None) == "outcome"  # nothing to tell by


def test_the_trigger_polls_past_a_stale_status_to_the_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trigger with the details stubbed (the DAG test drives the emulator's stale reads)."""
    import asyncio

    from cognito_streams.bulk_publish.trigger import BulkPublishTrigger

    old = {"BulkPublishStatus": "FAILED", "BulkPublishStartTime": EARLIER.isoformat(), "FailureMessage": "old"}
    running = {"BulkPublishStatus": "IN_PROGRESS", "BulkPublishStartTime": NOW.isoformat()}
    done = {**running, "BulkPublishStatus": "SUCCEEDED", "BulkPublishCompleteTime": NOW.isoformat()}
    answers = iter([old, old, running, done])
    trigger = BulkPublishTrigger(
        "us-east-1:x", "aws_default", 0.0, timeout_at=4e9, not_before=(NOW - SKEW).timestamp(),
        superseded_start=EARLIER.timestamp(),
    )  # fmt: skip
    monkeypatch.setattr(trigger, "_details", lambda: next(answers))

    async def first_event() -> dict:  # type: ignore[type-arg]
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    event = asyncio.run(first_event())
    assert (event["status"], event["timed_out"], event["stale"]) == ("SUCCEEDED", False, False)
    # It survives the triggerer's serialization with the filter.
    _, kwargs = trigger.serialize()
    assert kwargs["superseded_start"] == EARLIER.timestamp() and kwargs["not_before"] == (NOW - SKEW).timestamp()
