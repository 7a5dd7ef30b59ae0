"""The snapshot killed for real (SIGKILL) midway, twice, then run again as Airflow reruns it: it goes on
from its cursor in S3, misses no identity, and together with the stream leaves no version stored twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.stack import Stack
from tests.support.faults import scenario
from tests.support.warehouse import connect

pytestmark = pytest.mark.integration


def keyless_history(schema: str) -> None:
    """``record_changes`` without its unique index, as on Redshift (which enforces no key): a version the
    merge stored twice would show as two rows instead of failing the load."""
    with connect() as conn:
        conn.execute(f"drop index if exists {schema}.record_changes_version_idx")
        # The same name, not unique: the schema's tuning ('create unique index if not exists') leaves it be.
        conn.execute(
            f"create index record_changes_version_idx on {schema}.record_changes "
            "(last_modified_at, identity_pool_id, identity_id, dataset_name, record_key, sync_count)"
        )


def duplicated_versions(schema: str) -> int:
    with connect() as conn:
        row = conn.execute(
            f"select count(*) from (select 1 from {schema}.record_changes group by identity_pool_id, identity_id, "
            "dataset_name, record_key, sync_count, last_modified_at having count(*) > 1) as d"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_snapshot_killed_midway_resumes_from_its_cursor(stack: Stack, emulator: str, aws: Any, fault_tmp: Path) -> None:
    with scenario("snapshot-kill", "SIGKILL snapshot walk twice: batch landed before its cursor; mid-read", stack,
                  aws, fault_tmp, identities=10, seed=8, snapshot_chunk_identities=4,
                  snapshot_batch_identities=2) as sc:  # fmt: skip
        sc.ensure_schema()
        schema = sc.settings.warehouse_schema
        keyless_history(schema)
        # GIVEN app activity, part of it already landed and loaded from the stream, part still on it
        sc.activity.run(40, delete_share=0.1)
        sc.flush()
        sc.land()
        sc.load()
        sc.activity.run(12, delete_share=0.1)
        sc.flush()
        run_id = sc.run_id()
        # WHEN the snapshot dies right after its 3rd batch is in S3, before that chunk's cursor moved ...
        sc.kill_in_child("snapshot", "snapshot_batch_written", nth=3, run_id=run_id)
        # ... and its retry dies again while reading Cognito Sync
        sc.kill_in_child("snapshot", "snapshot_read", nth=4, run_id=run_id)
        from cognito_streams.snapshot import tasks

        run = tasks.parse_params({}, run_id, sc.settings)
        status_before = _status(sc, run["snapshot_id"])
        assert 0 < status_before["identities_done"] < 10, status_before
        # THEN the next try of the same run goes on from the cursor and finishes ...
        out = sc.snapshot(run_id)
        walked_now = sum(w["walked_now"] for w in out["walked"])
        assert walked_now == 10 - status_before["identities_done"]
        # ... with no identity missed: every identity ListIdentities lists is walked, once in the cursor
        listed = {
            i["IdentityId"]
            for i in aws("cognito-identity").list_identities(IdentityPoolId=sc.pool_id, MaxResults=60)["Identities"]
        }
        assert out["loaded"]["snapshot"]["identities_done"] == len(listed) == 10
        assert out["loaded"]["snapshot"]["finished"]
        # AND after the stream catches up, nothing is lost or wrong, and no version is stored twice
        sc.catch_up()
        sc.verify()
        assert duplicated_versions(schema) == 0


def _status(sc: Any, snapshot_id: str) -> dict[str, Any]:
    from cognito_streams.landing_zone.snapshots import snapshot_status
    from cognito_streams.snapshot.walker import SnapshotContext

    return snapshot_status(SnapshotContext.from_settings(sc.settings).store, snapshot_id)
