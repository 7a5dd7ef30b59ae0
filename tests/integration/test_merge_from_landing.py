"""The contract between the two DAGs, end to end: records put on a moto Kinesis stream are landed by the
landing DAG's own code (cognito_streams.landing), then loaded by the loader, into each warehouse (the PostgreSQL
stand-in; the Redshift emulator, whose COPY reads the landed Parquet as Redshift's does). The warehouse must hold
the reference state of exactly what was landed, and account for every record read (landed or rejected)."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from cognito_streams.core.state import Change, expected_state
from cognito_streams.landing import tasks as landing_tasks
from cognito_streams.landing_zone.load import check_quality, load_landing_zone
from cognito_streams.settings import PipelineSettings
from cognito_streams.warehouse.connect import open_warehouse
from cognito_streams.warehouse.models import MERGE_STEPS
from tests.landing_records import SAMPLES, bad_records, put_records, seed_records, with_records_pool
from tests.support.warehouse import drop_schema, landing_prefix, pipeline_settings, query, read_state, unique_schema

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(warehouse_engine: str, aws: Any) -> Iterator[PipelineSettings]:
    name = f"contract-{uuid.uuid4().hex[:8]}"
    aws("kinesis").create_stream(StreamName=name, ShardCount=2)
    pools = with_records_pool(orjson.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"])["identity_pool_ids"])
    s = pipeline_settings(
        identity_pool_ids=pools,
        stream_name=name,
        landing_prefix=landing_prefix(f"contract/{name}"),
        warehouse_schema=unique_schema(),
    )
    with open_warehouse(s) as wh:
        wh.ensure_schema()
    yield s
    drop_schema(s.warehouse_schema)


def land_all(settings: PipelineSettings, run_id: str) -> None:
    for shard in landing_tasks.plan({}, "cognito_stream_to_s3", run_id, settings=settings):
        landing_tasks.land(shard, "cognito_stream_to_s3", run_id, settings=settings)


def landed_changes(aws: Any, settings: PipelineSettings) -> list[Change]:
    s3 = aws("s3")
    prefix = f"{settings.landing_prefix}/data/"
    keys = [
        o["Key"]
        for p in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.landing_bucket, Prefix=prefix)
        for o in p.get("Contents", [])
    ]
    rows: list[Change] = []
    for key in keys:
        table = pq.read_table(io.BytesIO(s3.get_object(Bucket=settings.landing_bucket, Key=key)["Body"].read()))
        rows.extend(Change.from_row(r) for r in table.to_pylist())
    return rows


def test_what_the_landing_dag_writes_the_loader_loads(settings: PipelineSettings, aws: Any) -> None:
    kinesis = aws("kinesis")
    # GIVEN valid records, the shared samples but the S3Url one, and one bad record of each kind
    good = seed_records(200, seed=7) + [v for k, v in SAMPLES.items() if not k.startswith("s3url")]
    bad = [raw for _, raw in bad_records()]
    put_records(kinesis, settings.stream_name, good + bad)
    land_all(settings, "run-1")
    # AND a resend of some of them later (a bulk publish), landed by another run
    put_records(kinesis, settings.stream_name, good[:50], partition_keys=[f"again-{i}" for i in range(50)])
    land_all(settings, "run-2")
    # WHEN the loader runs
    report = load_landing_zone(settings)
    # THEN every batch was loaded, every record read is landed or rejected, nothing is lost
    read = len(good) + len(bad) + 50
    with open_warehouse(settings) as wh:
        assert query(
            wh, "select sum(kinesis_records_read), sum(kinesis_records_rejected) from {schema}.loaded_batches"
        )[0] == (read, len(bad))
        assert query(wh, "select count(*) from {schema}.rejected_records") == [(len(bad),)]
        # AND the warehouse holds the reference state of what was landed
        assert read_state(wh) == expected_state(landed_changes(aws, settings))
    assert report.batches >= 2 and report.merge.versions_inserted > 0
    # AND the report times every step after the COPY (the task log and the benchmark read them), within the
    # time the merge took
    assert list(report.step_seconds) == list(MERGE_STEPS)
    assert all(s >= 0 for s in report.step_seconds.values())
    assert sum(report.step_seconds.values()) <= report.merge_seconds
    assert all(r.ok for r in check_quality(settings, since=datetime(2000, 1, 1)))
