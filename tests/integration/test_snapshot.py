"""``cognito_snapshot`` against the local stack: a pool whose streaming was never enabled is loaded by
the snapshot alone and reconciles with 0 mismatches; what Cognito Sync no longer has (a deleted dataset,
a re-created one) is deleted by the next snapshot; throttling is backed off; the export holds every live
key, values whole, in Parquet and DynamoDB's import format; with streaming on and apps syncing during the
walk, stream and snapshot merge to the true state with no version stored twice."""

from __future__ import annotations

import gzip
import io
import json
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from cognito_streams.core.landing_format import PAYLOAD_SNAPSHOT
from cognito_streams.settings import PipelineSettings, parse_settings
from local.dag_results import return_values
from local.emulator.control import EmulatorControl
from tests.support.dag_params import load_dag
from tests.support.faults import Activity, scenario
from tests.support.warehouse import connect, drop_schema

pytestmark = [pytest.mark.integration, pytest.mark.dag]

IDENTITIES = 9
LARGE = 500_000  # bytes: cut in the warehouse (value_max_bytes 1024), and too large for a DynamoDB item


class Pool:
    """A pool of its own (streaming never enabled), its Variable exported, its warehouse schema dropped after."""

    def __init__(self, aws: Any, **overrides: Any) -> None:
        suffix = uuid.uuid4().hex[:8]
        identity = aws("cognito-identity")
        self.pool_id = identity.create_identity_pool(
            IdentityPoolName=f"snapshot_{suffix}", AllowUnauthenticatedIdentities=True
        )["IdentityPoolId"]
        self.identities = [identity.get_id(IdentityPoolId=self.pool_id)["IdentityId"] for _ in range(IDENTITIES)]
        self.variable: dict[str, Any] = {
            **json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"]),
            "identity_pool_ids": [self.pool_id],
            "stream_name": f"snapshot-{suffix}",
            "landing_prefix": f"snapshot-tests/{suffix}",
            "warehouse_schema": f"snap_{suffix}",
            "value_max_bytes": 1024,
            "snapshot_chunk_identities": 4,
            "snapshot_batch_identities": 3,
            "snapshot_concurrency": 4,
            **overrides,
        }
        self.settings: PipelineSettings = parse_settings(self.variable)
        self.sync = aws("cognito-sync")
        self.activity = Activity(self.sync, self.pool_id, self.identities, seed=11)
        self.activity.streaming = False

    def write(self, identity: str, dataset: str, values: dict[str, str | None]) -> None:
        """One sync: ``None`` removes the key."""
        listed = self.sync.list_records(
            IdentityPoolId=self.pool_id, IdentityId=identity, DatasetName=dataset, LastSyncCount=0
        )
        current = {r["Key"]: int(r["SyncCount"]) for r in listed.get("Records", [])}
        patches = [
            {"Op": "remove", "Key": k, "SyncCount": current.get(k, 0)}
            if v is None
            else {"Op": "replace", "Key": k, "Value": v, "SyncCount": current.get(k, 0)}
            for k, v in values.items()
        ]
        self.sync.update_records(
            IdentityPoolId=self.pool_id,
            IdentityId=identity,
            DatasetName=dataset,
            SyncSessionToken=listed["SyncSessionToken"],
            RecordPatches=patches,
        )

    def delete(self, identity: str, dataset: str) -> None:
        self.sync.delete_dataset(IdentityPoolId=self.pool_id, IdentityId=identity, DatasetName=dataset)


@pytest.fixture
def pool(stack: Any, emulator: str, aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pool]:
    p = Pool(aws)
    monkeypatch.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(p.variable))
    try:
        yield p
    finally:
        drop_schema(p.settings.warehouse_schema)


@pytest.fixture(scope="module")
def dag(airflow_db: None) -> Any:
    return load_dag("cognito_snapshot")


def run_snapshot(dag: Any, conf: dict[str, Any] | None = None) -> dict[str, Any]:
    from airflow.utils.state import DagRunState

    from tests.support.dag_params import snapshot_params

    restore = snapshot_params(dag)
    try:
        run = dag.test(logical_date=datetime.now(UTC), run_conf=conf or {})
    finally:
        restore()
    states = {f"{ti.task_id}[{ti.map_index}]": ti.state for ti in run.get_task_instances()}
    assert run.state == DagRunState.SUCCESS, states
    out = return_values(run)
    out["labels"] = sorted(ti.rendered_map_index for ti in run.get_task_instances() if ti.task_id == "walk")
    return out


def reconcile(p: Pool) -> dict[str, Any]:
    """``cognito_reconcile``'s comparison over every identity, nothing left to settle."""
    from cognito_streams.reconcile.reconciler import Reconciler
    from cognito_streams.warehouse.postgres import PostgresWarehouse

    now = datetime.now(UTC) + timedelta(days=2)  # after any change, on either clock (the emulator's may be moved)
    with PostgresWarehouse(connect(), p.settings.warehouse_schema) as wh:
        return (
            Reconciler(p.settings, wh)
            .run(
                f"snapshot-test-{uuid.uuid4().hex[:6]}",
                pool_ids=[p.pool_id],
                sample_size=None,
                settle_seconds=0,
                max_mismatches=0,
                now=now,
            )
            .as_dict()
        )


def rows(schema: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with connect() as conn:
        return [tuple(r) for r in conn.execute(sql.replace("{schema}", schema), params).fetchall()]


def live_keys(ctl: EmulatorControl, pool_id: str) -> dict[tuple[str, str, str], str]:
    """Cognito Sync's live keys, by (identity, dataset, key), with their values."""
    out = {}
    for dataset in ctl.export(pool_id)["datasets"]:
        for record in dataset["records"]:
            if record["value"] is not None:
                out[(dataset["identityId"], dataset["dataSetName"], record["key"])] = record["value"]
    return out


def test_a_pool_never_streamed_is_loaded_by_the_snapshot_alone_and_exported(
    pool: Pool, dag: Any, aws: Any, emulator: str
) -> None:
    # GIVEN app activity on a pool whose streaming was never enabled (Cognito sends nothing to Kinesis):
    # updates, removes, dataset deletes, a value too long for the warehouse, a dataset deleted and re-created
    pool.activity.run(40, remove_share=0.2, delete_share=0.1)
    big = "é" * (LARGE // 2)
    pool.write(pool.identities[0], "big", {"long": big, "short": "s"})
    pool.write(pool.identities[1], "phoenix", {"old": "1", "kept": "1"})
    pool.delete(pool.identities[1], "phoenix")
    pool.write(pool.identities[1], "phoenix", {"kept": "2"})
    pool.write(pool.identities[2], "nul", {"k\x00ey": "a\x00b\\0"})  # no warehouse text holds U+0000
    # WHEN cognito_snapshot runs with the export
    out = run_snapshot(dag, {"export": True})
    # THEN every identity was walked, in chunks, and its batches loaded
    walked = out["walk"]
    assert sum(w["identities"] for w in walked) == IDENTITIES == out["load_snapshot"]["snapshot"]["identities_done"]
    assert len(walked) == 3  # 9 identities in chunks of 4
    assert out["labels"] == ["000-000000", "000-000001", "000-000002"]  # the mapped tasks are named by chunk
    # AND each walk task loaded what it landed (the warehouse fills while the walk goes on): nothing left
    assert sum(w["batches_loaded"] for w in walked) == sum(w["batches"] for w in walked) > 0
    assert out["load_snapshot"]["load"]["batches"] == 0
    schema = pool.settings.warehouse_schema
    # AND the warehouse matches Cognito Sync exactly
    result = reconcile(pool)
    assert result["mismatches"] == 0, result
    assert result["keys_checked"] > 0
    # AND the rows say where they come from: payload type snapshot, the snapshot's "shard", NOT NULL lineage
    snapshot_id = out["check_params"]["snapshot_id"]
    (payloads,) = rows(schema, "select array_agg(distinct payload_type) from {schema}.record_changes")
    assert payloads[0] == [PAYLOAD_SNAPSHOT]
    batches = rows(schema, "select distinct shard_id, stream_name, is_replay from {schema}.loaded_batches")
    assert batches == [(f"snapshot={snapshot_id}", pool.settings.stream_name, False)]
    # AND the long value is cut in the warehouse, whole at its value_ref
    ((cut, size, ref),) = rows(
        schema, "select is_value_cut, value_bytes, value_ref from {schema}.records where record_key = 'long'"
    )
    assert cut and size == len(big.encode()) and ref.startswith("s3://")
    # AND the export holds every live key of Cognito Sync, values whole, in both forms
    s3 = aws("s3")
    bucket, prefix = pool.settings.landing_bucket, pool.settings.landing_prefix
    manifest = json.loads(
        s3.get_object(Bucket=bucket, Key=f"{prefix}/exports/{snapshot_id}/export.json")["Body"].read()
    )
    truth = live_keys(EmulatorControl(emulator), pool.pool_id)
    assert manifest["keys"] == len(truth) == out["finish_export"]["keys"]
    parquet = {}
    for f in manifest["files"]["parquet"]:
        body = s3.get_object(Bucket=bucket, Key=f["url"].split("/", 3)[3])["Body"].read()
        for r in pq.read_table(io.BytesIO(body)).to_pylist():
            parquet[(r["identity_id"], r["dataset_name"], r["record_key"])] = r["record_value"]
    assert parquet == truth
    items = {}
    for f in manifest["files"]["dynamodb"]:
        body = gzip.decompress(s3.get_object(Bucket=bucket, Key=f["url"].split("/", 3)[3])["Body"].read())
        for line in body.splitlines():
            item = orjson.loads(line)["Item"]
            identity, dataset = item["pk"]["S"].split("#")
            if "value" in item:
                items[(identity, dataset, item["sk"]["S"])] = item["value"]["S"]
            else:  # too large for an item: kept under the export, the item points at it
                uri = item["value_s3_uri"]["S"]
                assert uri.startswith(f"s3://{bucket}/{prefix}/exports/{snapshot_id}/values/")
                text = s3.get_object(Bucket=bucket, Key=uri.split("/", 3)[3])["Body"].read().decode()
                items[(identity, dataset, item["sk"]["S"])] = text
                assert int(item["value_bytes"]["N"]) == len(text.encode())
    assert items == truth
    assert parquet[(pool.identities[2], "nul", "k\x00ey")] == "a\x00b\\0"  # exact, from value_ref
    assert manifest["values_in_s3"] == 1
    assert manifest["dynamodb_import"]["InputFormat"] == "DYNAMODB_JSON"
    assert manifest["loaded_through"] is not None
    # AND the pipeline-health report shows the snapshot's progress (read from its cursor in S3)
    from cognito_streams.hooks.kinesis_reader import KinesisReaderHook
    from cognito_streams.report.gather import gather
    from cognito_streams.warehouse.postgres import PostgresWarehouse

    with PostgresWarehouse(connect(), schema) as wh:
        health = gather(pool.settings, wh, s3, KinesisReaderHook(aws_conn_id="aws_default")).as_dict()
    progress = health["snapshot"]
    assert (progress["snapshot_id"], progress["identities"], progress["identities_done"]) == (snapshot_id, 9, 9)
    assert progress["finished"] and progress["chunks_finished"] == 3 and "snapshot" in health["as_of"]


def test_the_next_snapshot_deletes_what_cognito_no_longer_has(pool: Pool, dag: Any) -> None:
    # GIVEN a warehouse loaded by a first snapshot
    a, b, c = pool.identities[:3]
    pool.write(a, "gone", {"x": "1", "y": "2"})
    pool.write(b, "phoenix", {"old": "1", "kept": "1"})
    pool.write(b, "phoenix", {"old": "2"})
    pool.write(c, "prefs", {"k": "v"})
    run_snapshot(dag)
    assert reconcile(pool)["mismatches"] == 0
    # WHEN, with no stream to say so, a dataset is deleted and another deleted and re-created with fewer keys
    # (its sync counts start over), so that the warehouse is wrong ...
    pool.delete(a, "gone")
    pool.delete(b, "phoenix")
    pool.write(b, "phoenix", {"kept": "new"})
    stale = reconcile(pool)
    assert stale["by_kind"]["extra"] > 0 and stale["mismatches"] > 0
    # ... and a second snapshot runs
    run_snapshot(dag)
    # THEN the warehouse matches Cognito Sync again: the deleted dataset is deleted, the re-created one holds
    # only its new generation
    result = reconcile(pool)
    assert result["mismatches"] == 0, result
    schema = pool.settings.warehouse_schema
    deletes = dict(rows(schema, "select dataset_name, count(*) from {schema}.dataset_deletes group by dataset_name"))
    assert deletes == {"gone": 1, "phoenix": 1}
    state = dict(rows(schema, "select record_key, is_deleted from {schema}.records where dataset_name = 'phoenix'"))
    assert state == {"old": True, "kept": False}


def test_throttling_is_backed_off_and_no_identity_is_missed(pool: Pool, dag: Any, emulator: str) -> None:
    ctl = EmulatorControl(emulator)
    pool.activity.run(30)
    before = ctl.stats()["counters"]
    # GIVEN Cognito Sync answering TooManyRequestsException above 15 calls/s
    ctl.update_settings(rate_limit_calls_per_second=15, rate_limit_burst=3)
    try:
        # WHEN the snapshot walks every identity, four at once
        out = run_snapshot(dag)
    finally:
        ctl.update_settings(rate_limit_calls_per_second=0)
    # THEN it was throttled, backed off, and finished: every identity walked, the warehouse exact
    after = ctl.stats()["counters"]
    throttled = sum(v - before.get(k, 0) for k, v in after.items() if k.endswith(".TooManyRequestsException"))
    assert throttled > 0
    assert sum(w["throttled"] for w in out["walk"]) == throttled
    assert out["load_snapshot"]["snapshot"]["identities_done"] == IDENTITIES
    assert reconcile(pool)["mismatches"] == 0


def test_with_streaming_on_and_apps_syncing_during_the_walk_both_merge_to_the_true_state(
    stack: Any, emulator: str, aws: Any, tmp_path: Path
) -> None:
    with scenario("snapshot-live", "snapshot while apps sync, stream on", stack, aws, tmp_path,
                  identities=8, seed=5, snapshot_chunk_identities=3, snapshot_batch_identities=2) as sc:  # fmt: skip
        # GIVEN streaming on, data already in Cognito and partly on the stream
        sc.activity.run(30, delete_share=0.1)
        sc.flush()
        sc.land()
        sc.load()
        # WHEN apps keep syncing (another client, another thread) while the snapshot walks
        apps = Activity(aws("cognito-sync"), sc.pool_id, sc.identities, seed=6)
        stop = threading.Event()

        def sync() -> None:
            while not stop.is_set():
                apps.run(1, delete_share=0.08)

        thread = threading.Thread(target=sync)
        thread.start()
        try:
            out = sc.snapshot()
        finally:
            stop.set()
            thread.join()
        sc.activity.made += apps.made
        assert out["loaded"]["snapshot"]["identities_done"] == 8
        # THEN after the stream catches up, nothing is lost or wrong ...
        sc.flush()
        sc.catch_up()
        sc.verify()
        # ... and no version is stored twice (the stream's copy and the snapshot's are one version)
        duplicated = rows(
            sc.settings.warehouse_schema,
            "select count(*) from (select 1 from {schema}.record_changes group by identity_pool_id, identity_id, "
            "dataset_name, record_key, sync_count, last_modified_at having count(*) > 1) as d",
        )
        assert duplicated == [(0,)]
        both = rows(
            sc.settings.warehouse_schema,
            "select count(distinct payload_type) from {schema}.record_changes",
        )
        assert both[0][0] >= 2  # versions first seen on the stream and versions first seen by the snapshot
