"""Services dying under the pipeline: PostgreSQL restarted (crash-style) in the middle of a load, the
Cognito Sync emulator SIGKILLed in the middle of a bulk publish. Each is followed by the reruns
Airflow would make and a reconciliation that must be exact."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cognito_streams.core.sql_text import WarehouseSql
from local.dag_results import return_values
from local.emulator.control import EmulatorControl, EmulatorControlError
from local.stack import Stack
from tests.support.faults import kill_emulator, restart_postgres, scenario, start_emulator
from tests.support.warehouse import connect

pytestmark = pytest.mark.integration


def count(schema: str, table: str) -> int:
    with connect() as conn:
        row = conn.execute(f"select count(*) from {schema}.{table}").fetchone()
    assert row is not None
    return int(row[0])


def test_postgres_restarted_in_the_middle_of_a_load(
    stack: Stack, emulator: str, aws: Any, fault_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with scenario("pg-restart", "PostgreSQL restarted mid-load", stack, aws, fault_tmp, seed=6) as sc:
        # GIVEN landed batches and a loader that reaches its MERGE
        sc.activity.run(20, delete_share=0.1)
        sc.flush()
        sc.land()
        sc.ensure_schema()
        schema = sc.settings.warehouse_schema
        merge_records = WarehouseSql.merge_records

        def restart_then_merge(self: WarehouseSql) -> str:
            restart_postgres(stack)  # every session is cut, as in a crash; recovery runs on start
            sc.figures.service_restarts += 1
            return merge_records(self)

        monkeypatch.setattr(WarehouseSql, "merge_records", restart_then_merge)
        # WHEN PostgreSQL goes down and comes back while the load's transaction is open
        assert sc.attempt(sc.load) is None, "the load should fail: its connection was cut"
        monkeypatch.setattr(WarehouseSql, "merge_records", merge_records)
        # THEN the failed load left nothing behind (its transaction died with the server)
        assert count(schema, "loaded_batches") == count(schema, "records") == 0
        # WHEN the task is retried THEN everything is loaded once
        sc.load()
        sc.activity.run(6)
        sc.flush()
        sc.catch_up()
        sc.verify()


def test_emulator_killed_in_the_middle_of_a_bulk_publish(
    stack: Stack, emulator: str, aws: Any, fault_tmp: Path, pipeline_dags: dict[str, Any]
) -> None:
    from airflow.utils.state import DagRunState

    ctl = EmulatorControl(emulator)
    with scenario("emulator-restart", "Cognito Sync emulator SIGKILLed mid bulk publish", stack, aws, fault_tmp,
                  identities=5, seed=7) as sc:  # fmt: skip
        # GIVEN a pool with about 15 datasets, all landed and loaded, and a slow bulk publish (5 datasets/s)
        sc.activity.run(30, delete_share=0.05)
        sc.flush()
        sc.catch_up()
        before = ctl.settings()["bulk_publish_datasets_per_second"]
        ctl.update_settings(bulk_publish_datasets_per_second=5)
        killed = threading.Event()
        published_before = ctl.stats()["counters"].get("bulk_publish_records", 0)

        def kill_mid_publish() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with contextlib.suppress(EmulatorControlError):
                    if ctl.stats()["counters"].get("bulk_publish_records", 0) >= published_before + 3:
                        break
                time.sleep(0.05)
            else:
                return  # never reached: the test fails on `killed`
            kill_emulator(stack)
            killed.set()
            time.sleep(1.0)  # down for a while: the bulk publish trigger's polls fail meanwhile
            start_emulator(stack)

        killer = threading.Thread(target=kill_mid_publish, daemon=True)
        try:
            # WHEN the bulk publish DAG runs and the emulator is SIGKILLed after 3 datasets, then restarted
            killer.start()
            run = pipeline_dags["cognito_bulk_publish"].test()
            killer.join(timeout=90)
            assert killed.is_set(), "the emulator was not killed while the bulk publish was running"
            sc.figures.service_restarts += 1
            # THEN the publish resumes in Cognito after the restart; a failed wait is retried and ends SUCCEEDED
            for _ in range(3):
                if run.state == DagRunState.SUCCESS:
                    break
                sc.figures.failed_task_runs += 1
                run = pipeline_dags["cognito_bulk_publish"].test()
            assert run.state == DagRunState.SUCCESS
            assert return_values(run)["bulk_publish"][0]["action"] == "published"
        finally:
            ctl.update_settings(bulk_publish_datasets_per_second=before)
        details = aws("cognito-sync").get_bulk_publish_details(IdentityPoolId=sc.pool_id)
        assert details["BulkPublishStatus"] == "SUCCEEDED"
        # AND the pipeline lands the resent datasets (duplicates, absorbed) and stays exact
        sc.flush()
        read_before = sc.landing_read
        sc.catch_up()
        assert sc.landing_read - read_before >= len(sc.activity.live_datasets)
        sc.verify()
