"""The ``cognito_s3_to_redshift`` DAG run with ``dag.test()`` on the local stack (moto S3, PostgreSQL):
it creates the schema, loads landed batches, checks them and announces the load; a second run finds
nothing and announces nothing; a rebuild run gives the same state; bad params fail before any write; a
day range with no landed batch fails naming the params; a cleared quality check still judges its run's
load."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cognito_streams.assets import WAREHOUSE_LOADED
from cognito_streams.core.state import expected_state
from cognito_streams.loading.connect import open_warehouse
from cognito_streams.warehouse.postgres import PostgresWarehouse
from tests.support.changes import change, dataset_remove, resent
from tests.support.dag_params import load_dag
from tests.support.landing import LandingWriter, reject_row
from tests.support.warehouse import drop_schema, pipeline_settings, query, read_state, unique_schema

pytestmark = [pytest.mark.dag, pytest.mark.integration]


@pytest.fixture
def dag() -> Any:
    return load_dag("cognito_s3_to_redshift")


@pytest.fixture
def variable(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    value = {
        **json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"]),
        "warehouse_schema": unique_schema("dag"),
        "landing_prefix": f"dagtests/{uuid.uuid4().hex[:8]}",
    }
    monkeypatch.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(value))
    yield value
    drop_schema(value["warehouse_schema"])


def warehouse(variable: dict[str, Any]) -> PostgresWarehouse:
    wh = open_warehouse(pipeline_settings(**variable))
    assert isinstance(wh, PostgresWarehouse)
    return wh


def states(run: Any) -> dict[str, str | None]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def warehouse_events(after: datetime) -> list[Any]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(
            session.scalars(
                select(AssetEvent)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetModel.uri == WAREHOUSE_LOADED.uri, AssetEvent.timestamp > after)
            )
        )


def test_the_dag_loads_checks_and_announces_then_idles(
    airflow_db: None, dag: Any, variable: dict[str, Any], aws: Any
) -> None:
    from airflow.utils.state import DagRunState

    # GIVEN two landed batches with duplicates, a late older version, a dataset delete and a reject
    writer = LandingWriter(aws("s3"), variable["landing_bucket"], variable["landing_prefix"])
    first = [change("coins", "4500", 7, 0), change("level", "12", 7, 0, index=1), dataset_remove(2, 50, dataset="old")]
    second = [resent(first[0]), change("coins", "4400", 6, -100), change("coins", "4600", 8, 100)]
    writer.land(first, rejects=[reject_row(900)])
    writer.land(second)
    started = datetime.now(UTC)
    # WHEN the DAG runs
    run = dag.test(logical_date=started)
    # THEN every task succeeds but the rebuild branch, the warehouse holds the reference state,
    assert run.state == DagRunState.SUCCESS, states(run)
    assert states(run) == {
        "check_params": "success",
        "ensure_schema": "success",
        "choose_mode": "success",
        "load_batches": "success",
        "rebuild_state": "skipped",
        "quality_checks": "success",
        "announce_loaded": "success",
    }
    with warehouse(variable) as wh:
        assert read_state(wh) == expected_state(first + second)
        assert query(wh, "select count(*) from {schema}.rejected_records") == [(1,)]
    # AND the warehouse asset event carries the counts
    events = warehouse_events(started - timedelta(seconds=1))
    assert len(events) == 1
    assert events[0].extra["batches"] == 2 and events[0].extra["rejects_inserted"] == 1

    # WHEN it runs again with nothing new
    again = dag.test(logical_date=started + timedelta(minutes=1))
    # THEN it succeeds, loads nothing and announces nothing
    assert again.state == DagRunState.SUCCESS, states(again)
    assert states(again)["announce_loaded"] == "skipped"
    assert len(warehouse_events(started - timedelta(seconds=1))) == 1


def test_a_rebuild_run_gives_the_same_state(airflow_db: None, dag: Any, variable: dict[str, Any], aws: Any) -> None:
    from airflow.utils.state import DagRunState

    # GIVEN a loaded warehouse
    writer = LandingWriter(aws("s3"), variable["landing_bucket"], variable["landing_prefix"])
    changes = [change("coins", "1", 1, 0), dataset_remove(2, 10), change("coins", "2", 1, 20)]
    writer.land(changes)
    started = datetime.now(UTC)
    assert dag.test(logical_date=started).state == DagRunState.SUCCESS
    # WHEN a manual run rebuilds records and datasets from the history
    run = dag.test(logical_date=started + timedelta(minutes=1), run_conf={"mode": "rebuild"})
    # THEN the load branch is skipped and the state is unchanged
    assert run.state == DagRunState.SUCCESS, states(run)
    assert states(run)["load_batches"] == "skipped" and states(run)["rebuild_state"] == "success"
    with warehouse(variable) as wh:
        assert read_state(wh) == expected_state(changes)


def test_inconsistent_params_fail_before_writing(airflow_db: None, dag: Any, variable: dict[str, Any]) -> None:
    from airflow.utils.state import DagRunState

    # WHEN a run asks for a rebuild of a day range
    run = dag.test(
        logical_date=datetime.now(UTC), run_conf={"mode": "rebuild", "from_day": "2026-01-01", "force": False}
    )
    # THEN it fails at its first task, check_params, before the schema, loading or rebuilding anything
    assert run.state == DagRunState.FAILED
    assert states(run)["check_params"] == "failed" and states(run)["ensure_schema"] == "upstream_failed"
    assert states(run)["load_batches"] != "success" and states(run)["rebuild_state"] != "success"


def test_a_day_range_with_no_landed_batch_fails_naming_the_params(
    airflow_db: None, dag: Any, variable: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """A backfill of days the landing zone has nothing for (a typo in the year, change days taken for
    landing days) used to end green having loaded nothing."""
    from airflow.utils.state import DagRunState

    # GIVEN a landing zone with no batch on 2001-02-03
    # WHEN a manual run reloads that day
    run = dag.test(
        logical_date=datetime.now(UTC), run_conf={"from_day": "2001-02-03", "to_day": "2001-02-03", "force": True}
    )
    # THEN it is red at load_batches, naming the params, where it looked and what the days mean
    assert run.state == DagRunState.FAILED, states(run)
    assert states(run)["load_batches"] == "failed"
    out = capsys.readouterr().out
    assert "no landed batch for from_day 2001-02-03 .. to_day 2001-02-03" in out
    assert f"s3://{variable['landing_bucket']}/{variable['landing_prefix']}" in out
    assert "the UTC day a batch was landed" in out


def test_a_cleared_quality_check_still_checks_what_its_run_loaded(
    airflow_db: None, dag: Any, variable: dict[str, Any], aws: Any
) -> None:
    """Clearing a task of a finished run restarts the run (a new start_date). The checks judged only what
    was loaded since the run's start, so a cleared red quality_checks judged nothing of its run's load
    (load_batches does not load it again) and turned green."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import clear_task_instances
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from sqlalchemy import select

    from cognito_streams.warehouse.models import DataQualityError

    # GIVEN a run that loaded a batch, and a dataset row of that load whose live count is wrong
    writer = LandingWriter(aws("s3"), variable["landing_bucket"], variable["landing_prefix"])
    writer.land([change("coins", "1", 1, 0), change("level", "2", 1, 0, index=1)])
    run = dag.test(logical_date=datetime.now(UTC))
    assert run.state == DagRunState.SUCCESS, states(run)
    with warehouse(variable) as wh:
        query(wh, "update {schema}.datasets set live_record_count = live_record_count + 5")
    # WHEN its quality_checks is cleared (the UI's Clear) and runs again
    with create_session() as session:
        tis = [ti for ti in run.get_task_instances(session=session) if ti.task_id == "quality_checks"]
        clear_task_instances(tis, session, dag_run_state=DagRunState.RUNNING)
    with create_session() as session:
        cleared = session.scalar(select(DagRun).where(DagRun.dag_id == run.dag_id, DagRun.run_id == run.run_id))
        assert cleared is not None
        session.expunge(cleared)
    assert cleared.start_date > run.start_date  # the clear restarted the run
    # THEN it still judges the run's load: red, naming the check
    with pytest.raises(DataQualityError, match="live_record_counts: 1 failing row"):
        dag.get_task("quality_checks").python_callable(dag_run=cleared)
