"""``cognito_bulk_publish`` with ``dag.test()`` against moto, the emulator and PostgreSQL: it publishes
once (deferring while it waits), a second run the same day skips with the next eligible time, a run
during an in-progress publish waits for it, and a failed publish fails the task with its message.
Every attempt is a row of ``bulk_publish_runs``."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.dag, pytest.mark.integration]


@pytest.fixture(scope="module")
def dag(airflow_db: None) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "cognito_bulk_publish.py"))
    assert bag.import_errors == {}
    dag = bag.get_dag("cognito_bulk_publish")
    for task in dag.tasks:
        task.retries = 0
    return dag


@pytest.fixture
def ctl(emulator: str) -> Iterator[Any]:
    from local.emulator.control import EmulatorControl

    control = EmulatorControl(emulator)
    before = control.settings()
    control.update_settings(bulk_publish_min_seconds=1.5)
    yield control
    control.update_settings(bulk_publish_min_seconds=before["bulk_publish_min_seconds"])
    control.clear_faults()


@pytest.fixture
def pool(stack: Any, emulator: str, aws: Any, monkeypatch: pytest.MonkeyPatch) -> str:
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


def mapped_results(run: Any) -> list[Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        values = session.scalars(
            select(XComModel.value).where(
                XComModel.dag_id == run.dag_id,
                XComModel.run_id == run.run_id,
                XComModel.task_id == "bulk_publish",
                XComModel.key == "return_value",
            )
        ).all()
    return [json.loads(v) if isinstance(v, str) else v for v in values]


def runs_table(pool_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(os.environ["CS_WAREHOUSE_DSN"]) as conn:
        cur = conn.execute(
            "select status, decision, reason, started_at, completed_at, failure_message, next_eligible_at "
            "from cognito_sync.bulk_publish_runs where identity_pool_id = %s order by requested_at",
            (pool_id,),
        )
        names = [c.name for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


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
    (result,) = mapped_results(first)
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
    (skipped,) = mapped_results(second)
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
    (result,) = mapped_results(run)
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
