"""The snapshot's pure parts: the shared walk of one identity, the rows it becomes, the deletes it infers
(and the ones it must never infer), the Params, the cursor's chunks and work units, sampling, progress,
and the export's DynamoDB items."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cognito_streams.core.landing_format import CHANGES_SCHEMA, PAYLOAD_SNAPSHOT, snapshot_position
from cognito_streams.core.reconcile import sample_identities
from cognito_streams.core.snapshot import (
    ITEM_MAX_BYTES,
    SORT_KEY_MAX_BYTES,
    ExportRow,
    HeldDataset,
    SnapshotParams,
    SnapshotParamsError,
    absent_delete_time,
    changes_table,
    dynamodb_item,
    dynamodb_json_line,
    epoch_ms,
    export_table,
    identity_rows,
    item_size,
    needs_s3,
    progress_line,
    sample,
    snapshot_id_for,
    sort_key,
    summarize,
    work_units,
)
from cognito_streams.core.walk import Answer, DatasetRead, IdentityRead, ListedRecords, walk_identity

POOL = "us-east-1:00000000-0000-0000-0000-000000000001"
IDENTITY = "us-east-1:00000000-0000-0000-0000-0000000000aa"
T0 = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
ANSWER = T0 + timedelta(minutes=5)  # a Date: whole seconds


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class FakeReader:
    """Cognito Sync for one identity: listed datasets, datasets found only by DescribeDataset, records."""

    def __init__(
        self,
        listed: list[str] | None,
        records: Mapping[str, list[dict[str, Any]] | None] | None = None,
        described: tuple[str, ...] = (),
    ) -> None:
        self.listed = listed
        self.records = dict(records or {})
        self.described = described
        self.calls: list[tuple[str, str]] = []

    def fetch_datasets(self, pool: str, identity: str) -> Answer[list[Mapping[str, Any]]]:
        self.calls.append(("ListDatasets", identity))
        if self.listed is None:
            return Answer(None, ANSWER)
        return Answer([{"DatasetName": n, "LastModifiedDate": T0} for n in self.listed], ANSWER)

    def fetch_description(self, pool: str, identity: str, name: str) -> Answer[Mapping[str, Any]]:
        self.calls.append(("DescribeDataset", name))
        if name in self.described:
            return Answer({"DatasetName": name, "LastModifiedDate": T0}, ANSWER)
        return Answer(None, ANSWER)

    def fetch_records(self, pool: str, identity: str, name: str) -> Answer[ListedRecords]:
        self.calls.append(("ListRecords", name))
        found = self.records.get(name, [])
        if found is None:
            return Answer(None, ANSWER)
        return Answer(ListedRecords(found, 7), ANSWER)


def record(key: str, value: str | None, sync: int, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"Key": key, "SyncCount": sync, "LastModifiedDate": at(seconds)}
    if value is not None:
        out["Value"] = value
    return out


def held(name: str, **kw: Any) -> HeldDataset:
    values: dict[str, Any] = {
        "dataset_name": name,
        "is_deleted": False,
        "deleted_at": None,
        "last_sync_count": 3,
        "last_modified_at": at(10),
        "generation_sync_count": 3,
        "oldest_live_at": at(1),
    }
    values.update(kw)
    return HeldDataset(**values)


# -- the walk -----------------------------------------------------------------------------------------


def test_the_walk_lists_confirms_and_reads_every_page_of_what_it_must() -> None:
    # GIVEN Cognito listing "a" and "b"; "late" exists though the listing missed it; "gone" does not exist;
    # "b" is deleted between the listing and its ListRecords
    reader = FakeReader(["a", "b"], {"a": [record("k", "v", 1, 1)], "b": None, "late": []}, described=("late",))
    # WHEN one identity is walked, the warehouse holding "a", "late" and "gone" live
    read = walk_identity(reader, POOL, IDENTITY, expected=["a", "late", "gone"])
    # THEN only the datasets the listing lacks are described, and each existing dataset's records are read
    assert reader.calls == [
        ("ListDatasets", IDENTITY),
        ("DescribeDataset", "gone"),
        ("DescribeDataset", "late"),
        ("ListRecords", "a"),
        ("ListRecords", "b"),
        ("ListRecords", "late"),
    ]
    by_name = {d.name: d for d in read.datasets}
    assert by_name["a"].records == [record("k", "v", 1, 1)] and by_name["a"].dataset_sync_count == 7
    assert by_name["late"].described and by_name["late"].records == []
    assert by_name["b"].vanished and by_name["b"].vanished_at == ANSWER and by_name["b"].records == []
    assert read.absent == {"gone": ANSWER}
    assert read.calls == 6 and read.described == 2 and not read.unknown and read.listed_at == ANSWER


def test_the_walk_reads_records_only_where_asked_and_says_when_an_identity_is_unknown() -> None:
    reader = FakeReader(["a", "b"], {"a": [], "b": []})
    read = walk_identity(reader, POOL, IDENTITY, want_records=lambda d: d["DatasetName"] == "b")
    assert [(d.name, d.records) for d in read.datasets] == [("a", None), ("b", [])]
    unknown = walk_identity(FakeReader(None), POOL, IDENTITY, expected=["a"])
    assert unknown.unknown and unknown.datasets == [] and unknown.calls == 1


# -- rows ---------------------------------------------------------------------------------------------


def rows_of(read: IdentityRead, held_by_name: Mapping[str, HeldDataset]) -> list[tuple[Any, ...]]:
    out = identity_rows(read, held_by_name, position="000000000000000007", started_at=ANSWER)
    return [(c.dataset_name, c.record_key, c.op, c.value, c.sync_count, c.last_modified_ms) for c in out.changes]


def listed(name: str, records: list[dict[str, Any]], count: int = 9, created: datetime = T0) -> DatasetRead:
    return DatasetRead(
        {"DatasetName": name, "CreationDate": created, "LastModifiedDate": at(20)},
        records=records,
        dataset_sync_count=count,
        records_read_at=ANSWER,
    )


def test_every_listed_record_is_one_version_as_the_stream_carries_it() -> None:
    read = IdentityRead(POOL, IDENTITY, listed_at=ANSWER)
    read.datasets = [listed("prefs", [record("a", "1", 2, 1.5), record("b", None, 3, 2)])]
    out = identity_rows(read, {}, position="000000000000000007", started_at=ANSWER)
    assert [(c.record_key, c.op, c.value, c.sync_count, c.last_modified_ms) for c in out.changes] == [
        ("a", "replace", "1", 2, epoch_ms(at(1.5))),
        ("b", "remove", None, 3, epoch_ms(at(2))),
    ]
    a = out.changes[0]
    assert (a.event_sync_count, a.event_last_modified_ms, a.arrived_ms) == (9, epoch_ms(at(20)), epoch_ms(ANSWER))
    assert (a.sequence_number, a.sub_sequence_number, a.record_index) == ("000000000000000007", 0, 0)
    assert out.deletes == {} and out.datasets_read == 1 and out.records_read == 2


def test_a_dataset_cognito_no_longer_has_is_deleted_as_of_the_check() -> None:
    # GIVEN the warehouse holds "gone" live (last change at 10 s), and Cognito says it does not exist
    read = IdentityRead(POOL, IDENTITY, listed_at=ANSWER, absent={"gone": ANSWER})
    rows = rows_of(read, {"gone": held("gone")})
    # THEN one dataset delete, a second before the answer's Date (its precision), with the warehouse's count
    assert rows == [("gone", None, "dataset_remove", None, 3, epoch_ms(ANSWER - timedelta(seconds=1)))]


def test_the_absent_delete_is_never_before_what_the_warehouse_held_nor_after_the_check() -> None:
    h = held("gone", last_modified_at=ANSWER + timedelta(milliseconds=400))  # changed within the Date's second
    assert absent_delete_time(ANSWER, h, T0) == ANSWER + timedelta(milliseconds=400)
    # a warehouse time after the answer's second can only be a clock that disagrees: not trusted
    skewed = held("gone", last_modified_at=ANSWER + timedelta(hours=1))
    assert absent_delete_time(ANSWER, skewed, T0) == ANSWER - timedelta(seconds=1)
    assert absent_delete_time(None, h, T0) == T0  # no Date: the worker's clock stands in


def test_nothing_is_deleted_for_what_the_warehouse_already_holds_deleted_or_never_held() -> None:
    read = IdentityRead(POOL, IDENTITY, listed_at=ANSWER, absent={"x": ANSWER})
    read.unknown = False
    assert rows_of(read, {"x": held("x", is_deleted=True, deleted_at=at(5), oldest_live_at=None)}) == []
    assert rows_of(read, {}) == []


def test_an_unknown_identity_deletes_every_dataset_the_warehouse_holds_live() -> None:
    read = IdentityRead(POOL, IDENTITY, listed_at=ANSWER, unknown=True)
    rows = rows_of(read, {"a": held("a"), "b": held("b", is_deleted=True, deleted_at=at(5), oldest_live_at=None)})
    assert [(r[0], r[2]) for r in rows] == [("a", "dataset_remove")]


def test_a_recreated_dataset_gets_a_delete_just_before_its_oldest_listed_record() -> None:
    # GIVEN Cognito's "phoenix" re-created: its records start at 100 s, sync counts from 1; the warehouse
    # holds a live key of the old generation (changed at 1 s)
    read = IdentityRead(POOL, IDENTITY, listed_at=ANSWER)
    read.datasets = [listed("phoenix", [record("kept", "new", 1, 100), record("x", "y", 2, 101)], count=2)]
    rows = rows_of(read, {"phoenix": held("phoenix", oldest_live_at=at(1))})
    # THEN a dataset delete one millisecond before the new generation, then the new generation's versions
    assert rows[0] == ("phoenix", None, "dataset_remove", None, 3, epoch_ms(at(100)) - 1)
    assert [r[1] for r in rows[1:]] == ["kept", "x"]


def test_a_restarted_sync_count_alone_also_says_recreated() -> None:
    read = IdentityRead(POOL, IDENTITY, listed_at=ANSWER)
    read.datasets = [listed("p", [record("k", "v", 1, 100)], count=1)]
    # no live key older than the new generation, but the warehouse's current generation counted to 5
    rows = rows_of(read, {"p": held("p", oldest_live_at=None, generation_sync_count=5, is_deleted=True)})
    assert rows[0][2] == "dataset_remove"


@pytest.mark.parametrize(
    "warehouse",
    [
        # keys written when the dataset was created, and never again: as old as Cognito's oldest record
        held("p", oldest_live_at=at(50), generation_sync_count=2),
        # the warehouse already knows the delete that ended the old generation
        held("p", oldest_live_at=None, is_deleted=True, deleted_at=at(99), generation_sync_count=None),
        # the warehouse is behind: fewer versions of the same generation
        held("p", oldest_live_at=at(60), generation_sync_count=1),
    ],
)
def test_no_delete_is_inferred_for_a_dataset_of_the_same_generation(warehouse: HeldDataset) -> None:
    read = IdentityRead(POOL, IDENTITY, listed_at=ANSWER)
    read.datasets = [listed("p", [record("a", "1", 1, 50), record("b", "2", 2, 60)], count=2, created=at(50))]
    assert [r[2] for r in rows_of(read, {"p": warehouse})] == ["replace", "replace"]


def test_the_changes_table_follows_the_contract_and_cuts_long_values() -> None:
    read = IdentityRead(POOL, IDENTITY, listed_at=ANSWER)
    long = "é" * 40  # 80 bytes
    read.datasets = [listed("p", [record("long", long, 1, 1), record("gone", None, 2, 2)])]
    out = identity_rows(read, {}, position=snapshot_position(1, 2, 3), started_at=ANSWER)
    refs: list[tuple[str, int, int]] = []
    table, full = changes_table(
        out.changes,
        stream_name="s",
        shard_id="snapshot=x",
        landed_file="s3://b/p/data/f.parquet",
        value_max_bytes=25,
        value_ref=lambda *a: refs.append(a) or f"s3://b/p/values/{a[0]}/{a[1]}-{a[2]}.txt",  # type: ignore[func-returns-value]
    )
    assert table.schema == CHANGES_SCHEMA
    first, second = table.to_pylist()
    assert first["record_value"] == "é" * 12 and first["is_value_cut"] and first["value_bytes"] == 80
    assert first["value_ref"] == "s3://b/p/values/001000000002000003/0-0.txt"
    assert [f.text for f in full] == [long.encode()]
    assert second["record_value"] is None and not second["is_value_cut"] and second["op"] == "remove"
    assert {first["payload_type"], first["shard_id"]} == {PAYLOAD_SNAPSHOT, "snapshot=x"}


# -- params, cursor, progress -------------------------------------------------------------------------


def test_params() -> None:
    pools = ["us-east-1:a1", "us-east-1:b2"]
    assert SnapshotParams.parse({}, pools) == SnapshotParams(tuple(pools), "all")
    assert SnapshotParams.parse({"identities": 5, "export": True}, pools) == SnapshotParams(
        tuple(pools), "sample", sample_size=5, export=True
    )
    one = SnapshotParams.parse({"identity_pool_ids": pools[:1], "identities": [IDENTITY, IDENTITY]}, pools)
    assert (one.selection, one.identities) == ("list", (IDENTITY,))
    for bad, message in [
        ({"identity_pool_ids": ["us-east-1:c3"]}, "not in cognito_pipeline.identity_pool_ids"),
        ({"identities": [IDENTITY]}, "give identity_pool_ids with the one pool"),
        ({"identities": ["nope"], "identity_pool_ids": pools[:1]}, "not identity ids"),
        ({"identities": 0}, "at least 1"),
        ({"identities": "some"}, "a sample size"),
        ({"export": "yes"}, "param export"),
    ]:
        with pytest.raises(SnapshotParamsError, match=message):
            SnapshotParams.parse(bad, pools)


def test_snapshot_ids_are_stable_safe_and_distinct() -> None:
    a = snapshot_id_for("manual__2026-11-27T10:11:12.123456+00:00")
    assert a == snapshot_id_for("manual__2026-11-27T10:11:12.123456+00:00")
    assert a.startswith("manual__2026-11-27T10-11-12.123456-00-00-")
    assert snapshot_id_for("manual__2026-11-27T10:11:12.123456+00:01") != a
    assert all(c.isalnum() or c in "_.-" for c in snapshot_id_for("a/b c'd" * 40))


@given(st.integers(0, 3000), st.integers(1, 1024))
def test_work_units_cover_every_chunk_once_in_order_within_the_bound(n: int, bound: int) -> None:
    chunks = [f"c{i}" for i in range(n)]
    units = work_units(chunks, bound)
    assert [c for u in units for c in u] == chunks
    assert len(units) <= bound and all(units)
    assert not units or max(map(len, units)) - min(map(len, units)) <= 1


@given(st.lists(st.tuples(st.sampled_from(["p1", "p2"]), st.text("abc", min_size=1, max_size=3))), st.integers(1, 9))
def test_the_streamed_sample_is_reconciliations_sample(pairs: list[tuple[str, str]], size: int) -> None:
    assert sample(iter(pairs), size, "seed") == sample_identities(pairs, size, "seed")


def test_progress_lines_and_the_snapshot_summary() -> None:
    assert progress_line("chunk 000-000001", 1200, 2000, 26.5) == (
        "chunk 000-000001: 1,200 / 2,000 identities (60.0 %), 45.3 identities/s, ETA 18 s"
    )
    assert progress_line("x", 0, 10, 0).endswith("0.0 identities/s, ETA -")
    from cognito_streams.core.snapshot import ChunkProgress

    items = [
        ChunkProgress(snapshot_id="s", chunk="a", digest="d", identities=10, done=10, batches=["u"], throttled=2),
        ChunkProgress(snapshot_id="s", chunk="b", digest="d", identities=10, done=5),
    ]
    status = summarize(items, 30, T0, T0 + timedelta(seconds=10))
    assert status["identities_done"] == 15 and status["chunks_finished"] == 1 and status["batches"] == 1
    assert status["identities_per_second"] == 1.5 and status["eta_seconds"] == 10 and not status["finished"]


# -- the export ---------------------------------------------------------------------------------------


def export_row(key: str = "k", value: str = "v") -> ExportRow:
    return ExportRow(POOL, IDENTITY, "game:state", key, value, 4, at(1.25), None, 9, at(2), 3)


def test_a_dynamodb_item_holds_the_key_its_value_and_its_versions() -> None:
    item = dynamodb_item(export_row())
    assert item["pk"] == {"S": f"{IDENTITY}#game:state"} and item["sk"] == {"S": "k"}
    assert item["value"] == {"S": "v"} and item["sync_count"] == {"N": "4"}
    assert item["last_modified_at"] == {"S": "2026-11-27T10:00:01.250Z"}
    line = dynamodb_json_line(item)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and orjson.loads(line) == {"Item": item}


def test_values_too_large_for_an_item_go_to_s3_and_long_keys_are_hashed() -> None:
    small, big = export_row(value="x" * 1000), export_row(value="x" * (ITEM_MAX_BYTES - 500))
    assert not needs_s3(small) and needs_s3(big)
    pointed = dynamodb_item(big, "s3://b/p/exports/s/values/h.txt")
    assert "value" not in pointed and item_size(pointed) < 1024
    assert pointed["value_bytes"] == {"N": str(ITEM_MAX_BYTES - 500)}
    long_key = "ü" * 600  # 1,200 bytes: longer than a sort key may be
    assert len(sort_key(long_key).encode()) <= SORT_KEY_MAX_BYTES and sort_key(long_key).startswith("~sha256:")
    assert dynamodb_item(export_row(key=long_key))["record_key"] == {"S": long_key}
    assert sort_key("~sha256:abc") != "~sha256:abc"  # a key that looks hashed cannot collide with a hashed one


def test_the_export_table_keeps_values_whole() -> None:
    table = export_table([export_row(value="é" * 70_000)])
    (row,) = table.to_pylist()
    assert row["record_value"] == "é" * 70_000 and row["value_bytes"] == 140_000
