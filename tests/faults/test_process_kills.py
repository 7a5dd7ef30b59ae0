"""Real process deaths (SIGKILL) of the landing and loading tasks at their most delicate points, each
followed by the rerun Airflow would make and a reconciliation that must be exact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.emulator.control import EmulatorControl
from local.stack import Stack
from tests.support.faults import scenario
from tests.support.warehouse import connect

pytestmark = pytest.mark.integration


def count(schema: str, table: str, where: str = "true") -> int:
    with connect() as conn:
        row = conn.execute(f"select count(*) from {schema}.{table} where {where}").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def small_s3url_threshold(emulator: str) -> Iterator[int]:
    """Records above 256 bytes go as S3Url payloads (the emulator's lowest threshold), for one test."""
    ctl = EmulatorControl(emulator)
    before = ctl.settings()["s3url_threshold_bytes"]
    ctl.update_settings(s3url_threshold_bytes=256)
    try:
        yield 256
    finally:
        ctl.update_settings(s3url_threshold_bytes=before)


def test_landing_killed_after_writing_a_batch_before_its_checkpoint(
    stack: Stack, emulator: str, aws: Any, fault_tmp: Path
) -> None:
    with scenario("land-kill-before-checkpoint", "SIGKILL landing: batch written, checkpoint not", stack, aws,
                  fault_tmp, batch_max_records=6, seed=1) as sc:  # fmt: skip
        # GIVEN app activity on the stream
        sc.activity.run(24, delete_share=0.1)
        sc.flush()
        # WHEN the landing task dies right after its 2nd batch is in S3, before that batch's checkpoint
        run_id = sc.run_id()
        sc.kill_in_child("land", "after_batch_written", nth=2, run_id=run_id)
        # THEN another run leaves the shard alone while the dead task's lease lives (no double read) ...
        (leased,) = sc.land()
        assert leased["status"] == "leased" and leased["records_read"] == 0
        # ... and Airflow's retry of the killed task (same run: same lease owner) lands from the checkpoint,
        # the batch that was written but not checkpointed included
        retried = sc.land(run_id=run_id)
        assert sum(o["records_read"] for o in retried) > 0
        sc.activity.run(8)
        sc.flush()
        sc.catch_up()
        # THEN nothing is lost and nothing is wrong
        sc.verify()


def test_landing_killed_during_an_s3url_fetch(
    stack: Stack, emulator: str, aws: Any, fault_tmp: Path, small_s3url_threshold: int
) -> None:
    with scenario("land-kill-s3url", "SIGKILL landing during an S3Url fetch", stack, aws, fault_tmp, seed=2) as sc:
        # GIVEN syncs whose records are too large to be inline: Cognito sends presigned URLs
        sc.activity.run(12, large_share=0.6)
        sc.flush()
        # WHEN the landing task dies after fetching its 2nd payload (others not fetched, nothing written)
        run_id = sc.run_id()
        sc.kill_in_child("land", "s3url_fetch", nth=2, run_id=run_id)
        # THEN the retry fetches them again (the URLs still live) and lands everything
        sc.land(run_id=run_id)
        sc.catch_up()
        assert count(sc.settings.warehouse_schema, "record_changes", "payload_type = 'S3Url'") > 0
        assert count(sc.settings.warehouse_schema, "rejected_records") == 0
        sc.verify()


def test_loader_killed_during_copy_leaves_nothing_partial(
    stack: Stack, emulator: str, aws: Any, fault_tmp: Path
) -> None:
    with scenario("load-kill-copy", "SIGKILL loader during COPY", stack, aws, fault_tmp,
                  batch_max_records=5, load_max_files_per_batch=2, seed=3) as sc:  # fmt: skip
        # GIVEN several landed batches (loaded two per transaction)
        sc.activity.run(24, delete_share=0.1)
        sc.flush()
        sc.land()
        sc.ensure_schema()
        schema = sc.settings.warehouse_schema
        # WHEN the loader dies while its 2nd transaction streams rows into the stage (COPY open)
        sc.kill_in_child("load", "copy", nth=3)
        # THEN the 1st transaction is committed whole and the 2nd left nothing behind
        assert count(schema, "loaded_batches") == 2
        loaded_files = count(schema, "loaded_files")
        assert loaded_files == count(schema, "loaded_files", "file_kind = 'changes'") + count(
            schema, "loaded_files", "file_kind = 'rejects'"
        )
        # WHEN the load runs again THEN it loads the rest, once
        sc.load()
        sc.catch_up()
        sc.verify()


def test_loader_killed_during_merge_leaves_nothing_partial(
    warehouse_engine: str, stack: Stack, emulator: str, aws: Any, fault_tmp: Path
) -> None:
    """On both warehouses: on the Redshift emulator the dead client's session ends with its transaction open, and
    the server must roll it back (no COMMIT was sent)."""
    with scenario(f"load-kill-merge-{warehouse_engine}", "SIGKILL loader during MERGE", stack, aws, fault_tmp,
                  seed=4) as sc:  # fmt: skip
        # GIVEN landed batches, and a first load already in the warehouse
        sc.activity.run(12, delete_share=0.1)
        sc.flush()
        sc.land()
        sc.load()
        schema = sc.settings.warehouse_schema
        before = (count(schema, "records"), count(schema, "record_changes"), count(schema, "loaded_batches"))
        sc.activity.run(12, delete_share=0.1)
        sc.flush()
        sc.land()
        # WHEN the loader dies after MERGE INTO records ran in its transaction, before datasets and commit
        sc.kill_in_child("load", "sql:create_dataset_updates")
        # THEN the warehouse is exactly as before that load
        assert (count(schema, "records"), count(schema, "record_changes"), count(schema, "loaded_batches")) == before
        # WHEN the load runs again THEN everything is merged once
        sc.load()
        sc.catch_up()
        sc.verify()
