"""The ``cognito_s3_to_redshift`` DAG run with ``dag.test()`` on the local stack (moto S3), on both warehouses
(``redshift_default`` of type ``postgres``: the stand-in; of type ``redshift``: the Redshift emulator): it creates
the schema, loads landed batches, checks them and announces the load; a second run finds nothing and announces
nothing; a rebuild run gives the same state; bad params fail before any write; a day range with no landed batch
fails naming the params; a cleared quality check still judges its run's load."""

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
from cognito_streams.landing_zone.descriptors import mark_superseded
from cognito_streams.landing_zone.reader import split_s3_url
from cognito_streams.warehouse.base import Warehouse
from cognito_streams.warehouse.connect import open_warehouse
from tests.support.changes import SHARD, change, dataset_remove, resent, sequence_number
from tests.support.dag_params import load_dag
from tests.support.landing import LandingWriter, reject_row
from tests.support.warehouse import drop_schema, landing_prefix, pipeline_settings, query, read_state, unique_schema

pytestmark = [pytest.mark.dag, pytest.mark.integration]


@pytest.fixture
def dag() -> Any:
    return load_dag("cognito_s3_to_redshift")


@pytest.fixture
def variable(warehouse_engine: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    value = {
        **json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"]),
        "warehouse_schema": unique_schema("dag"),
        "landing_prefix": landing_prefix(f"dagtests/{uuid.uuid4().hex[:8]}"),
    }
    monkeypatch.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(value))
    yield value
    drop_schema(value["warehouse_schema"])


def warehouse(variable: dict[str, Any]) -> Warehouse:
    wh = open_warehouse(pipeline_settings(**variable))
    assert wh.engine == os.environ["CS_WAREHOUSE"]  # the warehouse the DAG's connection points at
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
        "load_batches": "success",
        "rebuild_state": "skipped",
        "quality_checks": "success",
        "announce_loaded": "success",
        "check_failed_batches": "success",
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
    assert states(run)["check_failed_batches"] == "skipped"
    with warehouse(variable) as wh:
        assert read_state(wh) == expected_state(changes)


def test_a_bad_batch_is_set_aside_and_the_run_is_red_naming_it(
    airflow_db: None, dag: Any, variable: dict[str, Any], aws: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow.utils.state import DagRunState

    # GIVEN a broken batch (its key does not fit the column) landed between two good ones
    writer = LandingWriter(aws("s3"), variable["landing_bucket"], variable["landing_prefix"])
    writer.land([change("a", "1", 1, 0, seq=100)])
    bad = writer.land([change("k" * 5000, "1", 1, 0, seq=200)])
    writer.land([change("c", "3", 1, 0, seq=300)])
    started = datetime.now(UTC)
    # WHEN the DAG runs
    run = dag.test(logical_date=started)
    # THEN the good batches are loaded, checked and announced, and the run is red at check_failed_batches
    assert run.state == DagRunState.FAILED, states(run)
    assert {k: v for k, v in states(run).items() if k != "rebuild_state"} == {
        "check_params": "success",
        "load_batches": "success",
        "quality_checks": "success",
        "announce_loaded": "success",
        "check_failed_batches": "failed",
    }
    with warehouse(variable) as wh:
        assert {k for (*_, k) in read_state(wh).records} == {"a", "c"}
    events = warehouse_events(started - timedelta(seconds=1))
    assert any(e.extra.get("mode") == "load" and e.extra.get("batches") == 2 for e in events)
    # AND its error names the batch, the reason and the repair
    out = capsys.readouterr().out
    assert "1 landed batch(es) could not be loaded and were set aside" in out
    reason = {"postgres": "too long", "redshift": "longer than the length defined in the table"}
    assert bad in out and reason[os.environ["CS_WAREHOUSE"]] in out and "A batch the loader set aside" in out

    # WHEN the batch is re-landed fixed and the DAG runs again THEN it loads and the run is green
    writer.land([change("b", "2", 1, 0, seq=200)])
    again = dag.test(logical_date=started + timedelta(minutes=1))
    assert again.state == DagRunState.SUCCESS, states(again)
    with warehouse(variable) as wh:
        assert {k for (*_, k) in read_state(wh).records} == {"a", "b", "c"}
        assert query(wh, "select count(*) from {schema}.failed_batches where resolved_at is null") == [(0,)]
        assert query(wh, "select resolution from {schema}.failed_batches") == [("loaded",)]


def test_a_batch_set_aside_that_a_replay_supersedes_is_resolved_and_the_next_run_is_green(
    airflow_db: None, dag: Any, variable: dict[str, Any], aws: Any
) -> None:
    from airflow.utils.state import DagRunState

    s3 = aws("s3")
    # GIVEN two broken batches (their keys do not fit the column) set aside by a run, beside a good one
    writer = LandingWriter(s3, variable["landing_bucket"], variable["landing_prefix"])
    writer.land([change("a", "1", 1, 0, seq=100)])
    bad = writer.land([change("k" * 5000, "1", 1, 0, seq=200)])
    removed = writer.land([change("m" * 5000, "1", 1, 0, seq=300)])
    started = datetime.now(UTC)
    first = dag.test(logical_date=started)
    assert first.state == DagRunState.FAILED and states(first)["check_failed_batches"] == "failed", states(first)
    with warehouse(variable) as wh:
        assert query(wh, "select count(*) from {schema}.failed_batches where resolved_at is null") == [(2,)]
    # WHEN a replay re-lands the first one's records fixed, with other cuts (a batch of its own, in the replay's
    # folder), and supersedes it as the landing does (a marker; nothing deleted) ...
    replay_folder = f"{SHARD}~replay-20261206T000000Z"
    writer.land(
        [change("b", "2", 1, 0, seq=200)],
        folder=replay_folder,
        first=int(sequence_number(150)),
        last=int(sequence_number(250)),
    )
    mark_superseded(s3, writer.layout, split_s3_url(bad)[1])
    # ... and the other's descriptor was removed from the landing zone (by hand: the pipeline deletes nothing)
    s3.delete_object(Bucket=variable["landing_bucket"], Key=split_s3_url(removed)[1])
    again = dag.test(logical_date=started + timedelta(minutes=1))
    # THEN the next run loads the replay's batch and is green: the superseded batch is not tried again
    assert again.state == DagRunState.SUCCESS, states(again)
    with warehouse(variable) as wh:
        assert {k for (*_, k) in read_state(wh).records} == {"a", "b"}
        # AND failed_batches keeps both rows, resolved, saying how
        rows = query(wh, "select descriptor_url, resolution from {schema}.failed_batches where resolved_at is not null")
        assert sorted(rows) == sorted([(bad, "superseded"), (removed, "removed")])
        assert query(wh, "select count(*) from {schema}.failed_batches where resolved_at is null") == [(0,)]


def test_inconsistent_params_fail_before_writing(airflow_db: None, dag: Any, variable: dict[str, Any]) -> None:
    from airflow.utils.state import DagRunState

    # WHEN a run asks for a rebuild of a day range
    run = dag.test(
        logical_date=datetime.now(UTC), run_conf={"mode": "rebuild", "from_day": "2026-01-01", "force": False}
    )
    # THEN it fails at its first task, check_params, before the schema, loading or rebuilding anything
    assert run.state == DagRunState.FAILED
    assert states(run)["check_params"] == "failed"
    assert states(run)["load_batches"] == "upstream_failed" and states(run)["rebuild_state"] == "upstream_failed"


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
