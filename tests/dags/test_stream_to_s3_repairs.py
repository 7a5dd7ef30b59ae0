"""The repairs docs/operations.md gives that re-land part of the stream, performed as it says, with the
two DAGs run by ``dag.test()`` against the local stack (issue 18, item 2):

- "re-read part of the stream (after a bug fix in decoding)": ``cognito_stream_to_s3`` with
  ``replay_from`` (and ``shards``); the loader (run as its Asset would trigger it) then merges what the
  fixed decoder landed;
- a batch whose file the loader cannot load: "re-land the batch (run ``cognito_stream_to_s3`` with
  ``replay_from``), clear the task": the loader then loads the replay, even though the replay cut the
  records into other batches than the broken one.

Before, a replay that cut batches at the same records wrote the same object names: the loader, which
skips descriptors it has loaded, merged nothing; and a replay with other cuts left the broken batch's
descriptor in place, so the loader kept failing on it.

Both repairs run as on real AWS, where the worker's policy grants no ``s3:DeleteObject``
(``tests/support/no_deletes.py``): the replay supersedes the older batches by writing markers, deleting
nothing. And a batch the loader set aside that the replay supersedes is resolved, not left unresolved forever.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cognito_streams.core.decode import DecodeOptions, KinesisRecords, decode_records
from cognito_streams.core.landing_format import LandedBatch, LandingLayout
from cognito_streams.core.state import Change, WarehouseState, expected_state
from cognito_streams.landing import runner
from cognito_streams.landing_zone.descriptors import list_batches
from cognito_streams.warehouse.connect import open_warehouse
from tests.landing_records import put_records, seed_records, with_records_pool
from tests.support.dag_params import load_dag
from tests.support.no_deletes import refusing_s3_deletes
from tests.support.warehouse import drop_schema, pipeline_settings, query, read_state, unique_schema

pytestmark = [pytest.mark.dag, pytest.mark.integration]


@pytest.fixture
def variable(stack: Any, aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    name = f"repair-{uuid.uuid4().hex[:8]}"
    aws("kinesis").create_stream(StreamName=name, ShardCount=1)
    base = json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"])
    value = {
        **base,
        "identity_pool_ids": with_records_pool(base["identity_pool_ids"]),
        "stream_name": name,
        "landing_prefix": f"repairs/{name}",
        "warehouse_schema": unique_schema("rep"),
        "batch_max_records": 100,
    }
    monkeypatch.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(value))
    yield value
    drop_schema(value["warehouse_schema"])


def states(run: Any) -> dict[str, str | None]:
    return {
        ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": ti.state for ti in run.get_task_instances()
    }


def reference(put: list[dict[str, Any]], data: list[bytes]) -> WarehouseState:
    """The state docs/semantics.md defines for these records, decoded by the (fixed) decoder alone."""
    records = KinesisRecords(
        data=data,
        sequence_numbers=[p["SequenceNumber"] for p in put],
        arrived_at_ms=[1_700_000_000_000 + i for i in range(len(data))],
    )
    options = DecodeOptions(
        stream_name="s", shard_id="shardId-000000000000", landed_file="s3://x/y", value_ref=lambda *_: "s3://x/v"
    )
    decoded = decode_records(records, options)
    assert decoded.records_rejected == 0
    return expected_state(Change.from_row(row) for row in decoded.changes.to_pylist())


def warehouse_state(variable: dict[str, Any]) -> WarehouseState:
    with open_warehouse(pipeline_settings(**variable)) as wh:
        return read_state(wh)  # type: ignore[arg-type]


def layout_of(variable: dict[str, Any]) -> LandingLayout:
    return LandingLayout(variable["landing_bucket"], variable["landing_prefix"], variable["stream_name"])


def keys_under(aws: Any, variable: dict[str, Any], prefix: str) -> set[str]:
    pages = aws("s3").get_paginator("list_objects_v2").paginate(Bucket=variable["landing_bucket"], Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents") or []}


def descriptors(aws: Any, variable: dict[str, Any]) -> list[tuple[str, LandedBatch]]:
    """The descriptors the loader lists (those a replay superseded left out)."""
    s3, layout = aws("s3"), layout_of(variable)
    keys = [o.key for o in list_batches(s3, layout, [layout.batches_prefix()]).live]
    return [
        (key, LandedBatch.model_validate_json(s3.get_object(Bucket=variable["landing_bucket"], Key=key)["Body"].read()))
        for key in keys
    ]


def test_re_reading_after_a_decoding_fix_merges_what_the_fix_lands(
    airflow_db: None, variable: dict[str, Any], aws: Any
) -> None:
    from airflow.utils.state import DagRunState

    landing_dag, loader_dag = load_dag("cognito_stream_to_s3"), load_dag("cognito_s3_to_redshift")
    data = seed_records(150, seed=41)
    put = put_records(aws("kinesis"), variable["stream_name"], data)
    # GIVEN a decoder with a bug that quarantines every record of the dataset "dataset_3"
    real_decode = runner.decode_records

    def buggy_decode(records: KinesisRecords, options: DecodeOptions, **kwargs: Any) -> Any:
        broken = [b"{bug" if b'"dataset_3"' in d else d for d in records.data]
        return real_decode(KinesisRecords(broken, records.sequence_numbers, records.arrived_at_ms), options, **kwargs)

    started = datetime.now(UTC)
    with pytest.MonkeyPatch.context() as bug:
        bug.setattr(runner, "decode_records", buggy_decode)
        assert landing_dag.test(logical_date=started).state == DagRunState.SUCCESS
    assert loader_dag.test(logical_date=started).state == DagRunState.SUCCESS
    with open_warehouse(pipeline_settings(**variable)) as wh:
        (rejected,) = query(wh, "select count(*) from {schema}.rejected_records")[0]  # type: ignore[arg-type]
    assert rejected > 0 and warehouse_state(variable) != reference(put, data)
    first_landing = keys_under(aws, variable, layout_of(variable).batches_prefix())
    # WHEN the decoder is fixed and the operator re-reads the stream as docs/operations.md says:
    # cognito_stream_to_s3 with replay_from (and shards); the loader runs on the landing's Asset. With S3 as
    # the worker's IAM policy makes it: no deletes
    with refusing_s3_deletes() as refused:
        replay = landing_dag.test(
            logical_date=started + timedelta(minutes=1),
            run_conf={"replay_from": (started - timedelta(minutes=30)).isoformat(), "shards": ["shardId-000000000000"]},
        )
        assert replay.state == DagRunState.SUCCESS, states(replay)
        load = loader_dag.test(logical_date=started + timedelta(minutes=1))
        assert load.state == DagRunState.SUCCESS, states(load)
    assert refused == []
    # THEN the warehouse holds every record, as the fixed decoder reads them
    assert warehouse_state(variable) == reference(put, data)
    # AND the landing zone lists only the replay's batches: the earlier ones are superseded by markers
    # under _superseded/, and still there (nothing was deleted)
    assert all(batch.replay for _, batch in descriptors(aws, variable))
    assert first_landing <= keys_under(aws, variable, layout_of(variable).batches_prefix())
    assert keys_under(aws, variable, layout_of(variable).superseded_prefix()) == {
        layout_of(variable).superseded_key(k) for k in first_landing
    }


def test_a_batch_the_loader_cannot_load_is_repaired_by_a_replay_with_other_cuts(
    airflow_db: None, variable: dict[str, Any], aws: Any
) -> None:
    from airflow.utils.state import DagRunState

    landing_dag, loader_dag = load_dag("cognito_stream_to_s3"), load_dag("cognito_s3_to_redshift")
    kinesis, s3 = aws("kinesis"), aws("s3")
    data = seed_records(150, seed=42)
    put = put_records(kinesis, variable["stream_name"], data)
    started = datetime.now(UTC)
    assert landing_dag.test(logical_date=started).state == DagRunState.SUCCESS
    # GIVEN the second batch's changes file broken in the landing zone (an upload cut short)
    (key, broken), *_ = [
        (k, b) for k, b in descriptors(aws, variable) if b.first_sequence_number != put[0]["SequenceNumber"]
    ]
    assert broken.changes is not None
    changes_key = broken.changes.url.split(f"s3://{variable['landing_bucket']}/", 1)[1]
    body = s3.get_object(Bucket=variable["landing_bucket"], Key=changes_key)["Body"].read()
    s3.put_object(Bucket=variable["landing_bucket"], Key=changes_key, Body=body[: len(body) // 2])
    # WHEN the loader runs  THEN it sets that batch aside (the others load) and the run is red naming it
    failed = loader_dag.test(logical_date=started)
    assert failed.state == DagRunState.FAILED and states(failed)["check_failed_batches"] == "failed", states(failed)
    assert states(failed)["load_batches"] == "success"
    with open_warehouse(pipeline_settings(**variable)) as wh:
        unresolved = "select descriptor_url from {schema}.failed_batches where resolved_at is null"
        assert query(wh, unresolved) == [(f"s3://{variable['landing_bucket']}/{key}",)]  # type: ignore[arg-type]
    # AND by the time of the repair more records arrived: the replay cuts the records into other batches
    more = seed_records(30, seed=43, start=len(data))
    put += put_records(kinesis, variable["stream_name"], more)
    data += more
    # WHEN the operator re-lands as docs/operations.md says (cognito_stream_to_s3 with replay_from), then the
    # loader runs (on the landing's Asset), with S3 as the worker's IAM policy makes it: no deletes
    with refusing_s3_deletes() as refused:
        replay = landing_dag.test(
            logical_date=started + timedelta(minutes=1),
            run_conf={"replay_from": (started - timedelta(minutes=30)).isoformat()},
        )
        assert replay.state == DagRunState.SUCCESS, states(replay)
        load = loader_dag.test(logical_date=started + timedelta(minutes=2))
    assert refused == []
    # THEN the load succeeds and the warehouse holds every record
    assert load.state == DagRunState.SUCCESS, states(load)
    assert warehouse_state(variable) == reference(put, data)
    # AND the batch set aside is resolved as superseded: no unresolved row is left to warn about at every run
    with open_warehouse(pipeline_settings(**variable)) as wh:
        rows = query(wh, "select resolution, resolved_at is not null from {schema}.failed_batches")  # type: ignore[arg-type]
    assert rows == [("superseded", True)]
    # AND the replay cut other batches than the broken one
    relanded = [b for _, b in descriptors(aws, variable)]
    assert (broken.first_sequence_number, broken.last_sequence_number) not in {
        (b.first_sequence_number, b.last_sequence_number) for b in relanded
    }
    # AND the broken batch's descriptor is still there (nothing deleted), superseded by its marker
    layout = layout_of(variable)
    assert key in keys_under(aws, variable, layout.batches_prefix())
    assert keys_under(aws, variable, layout.superseded_key(key)) == {layout.superseded_key(key)}
