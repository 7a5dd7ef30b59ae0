"""``cognito_bulk_publish`` with ``dag.test()`` against moto, the emulator and PostgreSQL: it publishes
once (deferring while it waits), a second run the same day skips with the next eligible time, a run
during an in-progress publish waits for it, and a failed publish fails the task with its message;
Cognito's DuplicateRequestException (wait) and AlreadyStreamedException (skip, with the next eligible
time) when the status read was stale or Cognito's clock differs; the timeout; ``wait_until_eligible``.
Every attempt is a row of ``bulk_publish_runs``, on both warehouses (the PostgreSQL stand-in and the Redshift
emulator)."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.dag_results import return_values
from tests.support.dag_params import load_dag, snapshot_params
from tests.support.warehouse import connect

pytestmark = [pytest.mark.dag, pytest.mark.integration]


@pytest.fixture(scope="module")
def dag(airflow_db: None) -> Any:
    return load_dag("cognito_bulk_publish")


@pytest.fixture(autouse=True)
def default_params(dag: Any) -> Iterator[None]:
    """Each test starts from the DAG's default Params (see ``tests.support.dag_params``)."""
    restore = snapshot_params(dag)
    yield
    restore()


@pytest.fixture
def ctl(emulator: str) -> Iterator[Any]:
    from local.emulator.control import EmulatorControl

    control = EmulatorControl(emulator)
    before = control.settings()
    clock_offset = control.clock()["offset_ms"]
    control.update_settings(bulk_publish_min_seconds=1.5)
    yield control
    control.update_settings(bulk_publish_min_seconds=before["bulk_publish_min_seconds"])
    control.clear_faults()
    control.set_clock_offset(clock_offset)


@pytest.fixture
def pool(warehouse_engine: str, emulator: str, aws: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh pool streaming to a fresh stream, with a little data; the Variable points at it."""
    from local.simulator import SimulationConfig, ensure_streaming, simulate

    suffix = uuid.uuid4().hex[:8]
    pool_id = aws("cognito-identity").create_identity_pool(
        IdentityPoolName=f"bulk_{suffix}", AllowUnauthenticatedIdentities=True
    )["IdentityPoolId"]
    stream = f"bulk-{suffix}"
    ensure_streaming([pool_id], stream_name=stream, role_name=f"publish-{suffix}")
    simulate(SimulationConfig(identity_pool_ids=(pool_id,), identities_per_pool=3, changes=20, large_share=0))
    variable = {
        **json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"]),
        "identity_pool_ids": [pool_id],
        "stream_name": stream,
        "publish_role_arn": f"arn:aws:iam::123456789012:role/publish-{suffix}",
        "bulk_publish_poll_seconds": 0.5,
    }
    monkeypatch.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(variable))
    return pool_id


def runs_table(pool_id: str) -> list[dict[str, Any]]:
    with connect() as conn:
        cur = conn.execute(
            "select status, decision, reason, started_at, completed_at, failure_message, next_eligible_at "
            "from cognito_sync.bulk_publish_runs where identity_pool_id = %s order by requested_at",
            (pool_id,),
        )
        names = [c.name for c in cur.description or ()]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    # The table keeps UTC timestamps without a zone.
    return [{k: v.replace(tzinfo=UTC) if isinstance(v, datetime) else v for k, v in r.items()} for r in rows]


def task_state(run: Any) -> str:
    (ti,) = [ti for ti in run.get_task_instances() if ti.task_id == "bulk_publish"]
    return str(ti.state)


def test_publishes_once_deferring_then_skips_the_same_day(
    dag: Any, pool: str, ctl: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.utils.state import DagRunState

    # WHEN the DAG runs for a pool never published
    with caplog.at_level(logging.INFO):
        first = dag.test()
    # THEN it starts a bulk publish, waits for it in the triggerer (deferred: no worker slot held), succeeds
    assert first.state == DagRunState.SUCCESS
    (result,) = return_values(first).get("bulk_publish", [])
    assert result["action"] == "published"
    assert "[DAG TEST] running trigger in line" in caplog.text  # the task deferred
    details = ctl.pool(pool)["bulk_publish"]
    assert details["status"] == "SUCCEEDED"
    rows = runs_table(pool)
    assert [r["status"] for r in rows] == ["SUCCEEDED"]
    assert rows[0]["started_at"] is not None and rows[0]["completed_at"] is not None

    # WHEN it runs again the same day THEN it skips, saying when the pool is next eligible
    second = dag.test()
    assert second.state == DagRunState.SUCCESS
    (skipped,) = return_values(second).get("bulk_publish", [])
    assert skipped["action"] == "skipped"
    assert skipped["next_eligible_at"]
    assert "24 hours" in skipped["reason"]
    rows = runs_table(pool)
    assert [r["status"] for r in rows] == ["SUCCEEDED", "SKIPPED"]
    assert rows[1]["next_eligible_at"] is not None


def test_a_run_during_an_in_progress_publish_waits_for_it(dag: Any, pool: str, ctl: Any, aws: Any) -> None:
    from airflow.utils.state import DagRunState

    # GIVEN a bulk publish started by someone else (the console), still running
    ctl.update_settings(bulk_publish_min_seconds=4)
    aws("cognito-sync").bulk_publish(IdentityPoolId=pool)
    # WHEN the DAG runs
    run = dag.test()
    # THEN it does not start another one: it waits for that one and reports its outcome
    assert run.state == DagRunState.SUCCESS
    (result,) = return_values(run).get("bulk_publish", [])
    assert result["action"] == "published"
    (row,) = runs_table(pool)
    assert row["decision"] == "wait"
    assert row["status"] == "SUCCEEDED"
    assert "in progress" in row["reason"]


def test_a_failed_publish_fails_the_task_with_its_message(dag: Any, pool: str, ctl: Any) -> None:
    from airflow.utils.state import DagRunState

    # GIVEN Cognito will fail the next bulk publish
    ctl.fail_next_bulk_publish("Kinesis throttled the publish role for too long")
    # WHEN the DAG runs
    run = dag.test()
    # THEN the task fails, and bulk_publish_runs keeps Cognito's FailureMessage
    assert run.state == DagRunState.FAILED
    assert task_state(run) == "failed"
    (row,) = runs_table(pool)
    assert row["status"] == "FAILED"
    assert row["failure_message"] == "Kinesis throttled the publish role for too long"


def test_an_unknown_pool_in_the_params_is_refused_by_name(dag: Any, pool: str) -> None:
    from airflow.utils.state import DagRunState

    run = dag.test(run_conf={"identity_pool_ids": ["us-east-1:00000000-0000-0000-0000-000000000000"]})
    assert run.state == DagRunState.FAILED
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["pools_to_publish"] == "failed"


DAY_MS = 86_400_000


def set_pipeline(monkeypatch: pytest.MonkeyPatch, **changes: Any) -> None:
    """Change fields of the ``cognito_pipeline`` Variable the ``pool`` fixture set."""
    variable = {**json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"]), **changes}
    monkeypatch.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(variable))


def publish_outside_airflow(aws: Any, ctl: Any, pool: str, *, wait: bool = True) -> dict[str, Any]:
    """Someone else (the console, a script) requests a bulk publish; with ``wait``, until it SUCCEEDED."""
    import time

    aws("cognito-sync").bulk_publish(IdentityPoolId=pool)
    state = ctl.pool(pool)["bulk_publish"]
    deadline = time.monotonic() + 30
    while wait and state["status"] == "IN_PROGRESS" and time.monotonic() < deadline:
        time.sleep(0.1)
        state = ctl.pool(pool)["bulk_publish"]
    assert state["status"] == ("SUCCEEDED" if wait else "IN_PROGRESS"), state
    return dict(state)


def emulator_count(ctl: Any, counter: str) -> int:
    """One of the emulator's counters (shared by the whole session: compare before and after)."""
    return int(ctl.stats()["counters"].get(counter, 0))


def emulator_errors(ctl: Any, error_type: str) -> int:
    return emulator_count(ctl, f"errors.BulkPublish.{error_type}")


def details_read_then(monkeypatch: pytest.MonkeyPatch, interloper: Any) -> list[str]:
    """Make ``interloper()`` happen right after the task's first ``GetBulkPublishDetails``, before its
    ``BulkPublish``; the task still acts on what it read. Returns the statuses the task was shown."""
    from cognito_streams.hooks.cognito_sync import CognitoSyncHook

    real = CognitoSyncHook.get_bulk_publish_details
    shown: list[str] = []

    def read(self: Any, identity_pool_id: str) -> dict[str, Any]:
        details = real(self, identity_pool_id)
        shown.append(details["BulkPublishStatus"])
        if len(shown) == 1:
            interloper()
        return details

    monkeypatch.setattr(CognitoSyncHook, "get_bulk_publish_details", read)
    return shown


def test_a_publish_started_between_our_read_and_our_request_is_waited_for(
    dag: Any, pool: str, ctl: Any, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of the issue: the status read says idle, ``BulkPublish`` answers
    ``DuplicateRequestException`` because someone started one in between.

    The window between two API calls cannot be hit on purpose from outside the task, so one call is
    wrapped: the real ``GetBulkPublishDetails`` answer is returned after a real ``BulkPublish`` from
    another client. Everything else is real: the emulator raises the exception, and the task waits
    (deferred) for that other publish."""
    from airflow.utils.state import DagRunState

    # GIVEN another client starts a bulk publish (4 s long) right after the task read NOT_STARTED
    ctl.update_settings(bulk_publish_min_seconds=4)
    shown = details_read_then(monkeypatch, lambda: publish_outside_airflow(aws, ctl, pool, wait=False))
    duplicates = emulator_errors(ctl, "DuplicateRequestException")
    # WHEN the DAG runs
    run = dag.test()
    # THEN Cognito refused the task's request as a duplicate, and the task waited for the other one
    assert shown[0] == "NOT_STARTED"
    assert emulator_errors(ctl, "DuplicateRequestException") == duplicates + 1
    assert run.state == DagRunState.SUCCESS
    (result,) = return_values(run).get("bulk_publish", [])
    assert result["action"] == "published"
    assert shown[-1] == "SUCCEEDED"  # the trigger polled until the outcome
    (row,) = runs_table(pool)
    assert (row["decision"], row["status"]) == ("wait", "SUCCEEDED")
    assert "DuplicateRequestException" in row["reason"]
    assert row["started_at"] is not None and row["completed_at"] is not None


def test_a_publish_that_succeeded_between_our_read_and_our_request_skips_with_the_next_eligible_time(
    dag: Any, pool: str, ctl: Any, aws: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``AlreadyStreamedException`` from a stale read: a whole bulk publish by another client starts
    and succeeds between the task's ``GetBulkPublishDetails`` (NOT_STARTED) and its ``BulkPublish``.
    As above, one call is wrapped to put the other client's publish into that window; the exception
    comes from the emulator's 24-hour rule."""
    from airflow.utils.state import DagRunState

    # GIVEN another client's publish succeeds right after the task read NOT_STARTED
    other: dict[str, Any] = {}
    details_read_then(monkeypatch, lambda: other.update(publish_outside_airflow(aws, ctl, pool)))
    refused = emulator_errors(ctl, "AlreadyStreamedException")
    # WHEN the DAG runs
    with caplog.at_level(logging.INFO):
        run = dag.test()
    # THEN the task's request was refused, and it skips with the time the other publish allows the next
    assert emulator_errors(ctl, "AlreadyStreamedException") == refused + 1
    assert run.state == DagRunState.SUCCESS
    (result,) = return_values(run).get("bulk_publish", [])
    expected = datetime.fromtimestamp((other["complete_ms"] + DAY_MS) / 1000, tz=UTC)
    assert result["action"] == "skipped"
    assert abs(datetime.fromisoformat(result["next_eligible_at"]) - expected) < timedelta(seconds=1)
    assert f"skipped; next eligible at {result['next_eligible_at']}" in caplog.text
    (row,) = runs_table(pool)
    assert row["status"] == "SKIPPED"
    assert abs(row["next_eligible_at"] - expected) < timedelta(seconds=1)
    assert ctl.pool(pool)["bulk_publish"]["start_ms"] == other["start_ms"]  # nothing else started


def test_cognitos_clock_behind_ours_skips_with_the_next_eligible_time_by_cognitos_timestamps(
    dag: Any, pool: str, ctl: Any, aws: Any
) -> None:
    """``AlreadyStreamedException`` when even fresh details say eligible: Cognito's clock is behind the
    worker's. Made for real with the emulator's clock control: no stub."""
    from airflow.utils.state import DagRunState

    # GIVEN a success 24 h + 10 s ago by the worker's clock, while Cognito's clock runs 2 min behind it
    ctl.set_clock_offset(-(DAY_MS + 10_000))
    other = publish_outside_airflow(aws, ctl, pool)
    ctl.set_clock_offset(-120_000)
    refused = emulator_errors(ctl, "AlreadyStreamedException")
    # WHEN the DAG runs
    run = dag.test()
    # THEN Cognito refused; the task skips, naming Cognito's message and the clock difference
    assert emulator_errors(ctl, "AlreadyStreamedException") == refused + 1
    assert run.state == DagRunState.SUCCESS
    (result,) = return_values(run).get("bulk_publish", [])
    assert result["action"] == "skipped"
    expected = datetime.fromtimestamp((other["complete_ms"] + DAY_MS) / 1000, tz=UTC)
    assert abs(datetime.fromisoformat(result["next_eligible_at"]) - expected) < timedelta(seconds=1)
    assert "AlreadyStreamedException" in result["reason"]
    assert "clock" in result["reason"]
    (row,) = runs_table(pool)
    assert row["status"] == "SKIPPED" and row["next_eligible_at"] is not None


def test_a_publish_that_outlasts_the_timeout_fails_and_a_rerun_keeps_waiting_for_it(
    dag: Any, pool: str, ctl: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow.utils.state import DagRunState

    # GIVEN publishes take 10 s (time for the rerun below to find it running) and the settings allow 1 s
    ctl.update_settings(bulk_publish_min_seconds=10)
    set_pipeline(monkeypatch, bulk_publish_timeout_seconds=1)
    calls = emulator_count(ctl, "calls.BulkPublish")
    # WHEN the DAG runs
    run = dag.test()
    # THEN the task fails saying which pool, which timeout and what to do; the attempt is TIMED_OUT
    assert run.state == DagRunState.FAILED
    assert task_state(run) == "failed"
    # The task's failure (with its exception) is logged by the task runner to the captured output.
    out = capsys.readouterr().out
    message = next(line for line in out.splitlines() if line.startswith("airflow.sdk.exceptions.AirflowFailException"))
    assert f"bulk publish of {pool} is still IN_PROGRESS after 1 s" in message
    assert "run cognito_bulk_publish again" in message and "raise bulk_publish_timeout_seconds" in message
    (row,) = runs_table(pool)
    assert row["status"] == "TIMED_OUT"
    assert "bulk_publish_timeout_seconds" in row["reason"]
    assert row["started_at"] is not None and row["completed_at"] is None
    assert ctl.pool(pool)["bulk_publish"]["status"] == "IN_PROGRESS"  # it goes on in Cognito

    # WHEN, as the message says, the DAG runs again (with time enough)
    set_pipeline(monkeypatch, bulk_publish_timeout_seconds=60)
    rerun = dag.test()
    # THEN it waits for that same publish instead of starting another
    assert rerun.state == DagRunState.SUCCESS
    assert emulator_count(ctl, "calls.BulkPublish") == calls + 1
    assert [(r["decision"], r["status"]) for r in runs_table(pool)] == [("wait", "TIMED_OUT"), ("wait", "SUCCEEDED")]


def test_wait_until_eligible_defers_until_the_24_hours_are_over_then_publishes(
    dag: Any, pool: str, ctl: Any, aws: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.utils.state import DagRunState

    # GIVEN a success that completed 24 h minus 5 s ago (the emulator's clock moved back for it)
    ctl.set_clock_offset(-(DAY_MS - 5_000))
    other = publish_outside_airflow(aws, ctl, pool)
    ctl.set_clock_offset(0)
    eligible = datetime.fromtimestamp((other["complete_ms"] + DAY_MS) / 1000, tz=UTC)
    assert datetime.now(UTC) < eligible
    # WHEN a manual run asks to wait until the pool is eligible
    with caplog.at_level(logging.INFO):
        run = dag.test(run_conf={"wait_until_eligible": True, "reason": "backfill after an outage"})
    # THEN the task defers until then (no worker held), starts a new publish and reports it
    assert run.state == DagRunState.SUCCESS
    assert f"pool {pool}: waiting (deferred) until {eligible:%Y-%m-%dT%H:%M:%S}" in caplog.text
    assert "[DAG TEST] running trigger in line" in caplog.text
    (result,) = return_values(run).get("bulk_publish", [])
    assert result["action"] == "published"
    state = ctl.pool(pool)["bulk_publish"]
    assert state["status"] == "SUCCEEDED"
    assert state["start_ms"] >= other["complete_ms"] + DAY_MS
    (row,) = runs_table(pool)
    assert (row["status"], row["decision"]) == ("SUCCEEDED", "wait")
    assert abs(row["next_eligible_at"] - eligible) < timedelta(seconds=1)


# -- a stale status is not this attempt's outcome (issue 18, item 12) --------------------------------


def failed_publish_outside_airflow(aws: Any, ctl: Any, pool: str) -> dict[str, Any]:
    """Someone else's bulk publish of the pool, FAILED (so that the next one may start at once)."""
    ctl.fail_next_bulk_publish("an earlier failure")
    aws("cognito-sync").bulk_publish(IdentityPoolId=pool)
    import time

    deadline = time.monotonic() + 30
    while ctl.pool(pool)["bulk_publish"]["status"] == "IN_PROGRESS" and time.monotonic() < deadline:
        time.sleep(0.1)
    state = ctl.pool(pool)["bulk_publish"]
    assert state["status"] == "FAILED", state
    return dict(state)


def test_a_stale_failed_status_is_not_taken_for_this_attempts_outcome(dag: Any, pool: str, ctl: Any, aws: Any) -> None:
    """GetBulkPublishDetails shows the pool's earlier FAILED publish for a while after the task's own
    request (the emulator's stale_bulk_publish_details fault): the task used to report that failure
    as its own and fail. It must wait for its own publish, whose start time is after its request."""
    from airflow.utils.state import DagRunState

    # GIVEN an earlier publish that FAILED, and the next request unseen by the next 3 status reads
    earlier = failed_publish_outside_airflow(aws, ctl, pool)
    ctl.stale_bulk_publish_details(3)
    reads = emulator_count(ctl, "calls.GetBulkPublishDetails")
    # WHEN the DAG runs (it reads FAILED, starts a publish, then waits for its outcome)
    run = dag.test()
    # THEN it waited past the stale FAILED (the 3 stale reads, then at least one of its own publish)
    # and reports its own publish's success
    assert run.state == DagRunState.SUCCESS, task_state(run)
    (result,) = return_values(run).get("bulk_publish", [])
    assert result["action"] == "published"
    assert emulator_count(ctl, "calls.GetBulkPublishDetails") >= reads + 1 + 3 + 1
    state = ctl.pool(pool)["bulk_publish"]
    assert state["status"] == "SUCCEEDED" and state["start_ms"] > earlier["start_ms"]
    (row,) = runs_table(pool)
    assert row["status"] == "SUCCEEDED" and row["failure_message"] is None
    assert abs(row["started_at"] - datetime.fromtimestamp(state["start_ms"] / 1000, tz=UTC)) < timedelta(seconds=1)


def test_a_status_that_stays_stale_fails_at_the_timeout_saying_so(
    dag: Any, pool: str, ctl: Any, aws: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow.utils.state import DagRunState

    # GIVEN an earlier FAILED publish that every status read keeps showing, and a 2 s timeout
    failed_publish_outside_airflow(aws, ctl, pool)
    ctl.stale_bulk_publish_details(1_000_000)
    set_pipeline(monkeypatch, bulk_publish_timeout_seconds=2)
    # WHEN the DAG runs
    run = dag.test()
    # THEN it fails at the timeout naming the stale publish, and does not record the earlier failure as its own
    assert run.state == DagRunState.FAILED
    out = capsys.readouterr().out
    message = next(line for line in out.splitlines() if line.startswith("airflow.sdk.exceptions.AirflowFailException"))
    assert "GetBulkPublishDetails still shows an earlier bulk publish (FAILED, started at" in message
    assert "Its earlier outcome is not reported as this attempt's" in message
    (row,) = runs_table(pool)
    assert row["status"] == "TIMED_OUT" and row["failure_message"] is None
