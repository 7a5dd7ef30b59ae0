"""The loader end to end on the local stack: batches landed in moto S3 by the contract, found, COPYed and merged
by ``load_landing_zone``, the code the DAG runs, on both warehouses: the PostgreSQL stand-in (``COPY ... FROM
STDIN`` fed by the worker) and the Redshift emulator (redshift-connector through RedshiftSQLHook, the server-side
``COPY ... FROM 's3://...' IAM_ROLE ... FORMAT AS PARQUET MANIFEST``). Each scenario of the acceptance list,
checked against the reference model (core/state.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

import pytest

from cognito_streams.core.sql_text import WarehouseSql
from cognito_streams.core.state import Change, expected_state
from cognito_streams.loading.connect import open_warehouse
from cognito_streams.loading.run import load_landing_zone, raise_for_failed, rebuild_current_state
from cognito_streams.settings import PipelineSettings
from cognito_streams.warehouse.base import Warehouse
from cognito_streams.warehouse.models import BatchesFailedError
from tests.conftest import warehouse_env
from tests.support.changes import IDENTITY, POOL, change, dataset_remove, resent
from tests.support.landing import LandingWriter, cut_value, reject_row
from tests.support.warehouse import (
    drop_schema,
    drop_unique_keys,
    landing_prefix,
    pipeline_settings,
    query,
    read_state,
    table_counts,
    unique_schema,
)

pytestmark = pytest.mark.integration

KEY = (POOL, IDENTITY, "game_state")


@dataclass
class Landing:
    settings: PipelineSettings
    writer: LandingWriter

    engine: str

    def warehouse(self) -> Warehouse:
        wh = open_warehouse(self.settings)
        assert wh.engine == self.engine
        return wh

    def load(self, **kwargs: object) -> dict[str, int]:
        """One loader run; fails as the DAG run does when it set batches aside (check_failed_batches)."""
        report = load_landing_zone(self.settings, **kwargs)  # type: ignore[arg-type]
        raise_for_failed(report, self.settings.warehouse_schema)
        return report.as_dict()

    def state(self):  # type: ignore[no-untyped-def]
        with self.warehouse() as wh:
            return read_state(wh)

    def query(self, sql: str, params: object = None) -> list[tuple[object, ...]]:
        with self.warehouse() as wh:
            return query(wh, sql, params)

    def counts(self) -> dict[str, int]:
        with self.warehouse() as wh:
            return table_counts(wh)


#: (warehouse, drop the keys after migrating): see test_merge_property.WAREHOUSE_VARIANTS.
WAREHOUSE_VARIANTS = [
    pytest.param(("postgres", False), id="postgres"),
    pytest.param(("postgres", True), id="postgres-no-keys"),
    pytest.param(("redshift", False), id="redshift"),
]


@pytest.fixture(params=WAREHOUSE_VARIANTS)
def landing(request: pytest.FixtureRequest, stack, aws) -> Iterator[Landing]:  # type: ignore[no-untyped-def]
    """A fresh schema and landing prefix on each warehouse; on PostgreSQL with the schema's primary keys and unique
    indexes, and without them (as Redshift, which does not enforce them). After each scenario every data-quality
    check must hold: without keys, they are the only guard of each table's grain."""
    engine, drop_keys = request.param
    with warehouse_env(stack, engine):
        yield from _landing(engine, drop_keys, aws)


def _landing(engine: str, drop_keys: bool, aws) -> Iterator[Landing]:  # type: ignore[no-untyped-def]
    settings = pipeline_settings(
        warehouse_schema=unique_schema(), landing_prefix=landing_prefix(f"t-{uuid.uuid4().hex[:10]}")
    )
    with open_warehouse(settings) as wh:
        wh.ensure_schema()
    if drop_keys:
        drop_unique_keys(settings.warehouse_schema)
    try:
        writer = LandingWriter(aws("s3"), settings.landing_bucket, settings.landing_prefix)
        yield Landing(settings, writer, engine)
        with open_warehouse(settings) as wh:
            failed = [r for r in wh.quality_checks(datetime(1970, 1, 1)) if not r.ok]
        assert failed == [], "a scenario broke a table's grain"
    finally:
        drop_schema(settings.warehouse_schema)


def test_duplicates_within_and_across_batches(landing: Landing) -> None:
    # GIVEN a change landed three times: twice in one batch, once more in a later batch (a bulk publish)
    coins = change("coins", "4500", 7, 0)
    level = change("level", "12", 7, 0, index=1)
    landing.writer.land([coins, resent(coins), level])
    landing.writer.land([resent(coins), resent(level), change("coins", "4600", 8, 100)])
    # WHEN the loader runs
    report = landing.load()
    # THEN each version is kept once in the history, the newest is current, and it is the reference state
    assert report["batches"] == 2 and report["rows_staged"] == 6
    assert landing.query("select count(*) from {schema}.record_changes") == [(3,)]
    state = landing.state()
    assert state.records[(*KEY, "coins")].record_value == "4600"
    assert state == expected_state([coins, level, change("coins", "4600", 8, 100)])
    assert landing.query("select count(*) from {schema}.records") == [(2,)]


def test_older_version_after_newer_never_overwrites(landing: Landing) -> None:
    # GIVEN sync 8 loaded first, then sync 7 arriving late (another shard, a replay)
    newer, older = change("coins", "new", 8, 500), change("coins", "old", 7, 100)
    landing.writer.land([newer])
    landing.load()
    landing.writer.land([older])
    # WHEN the late batch is loaded
    report = landing.load()
    # THEN the older version enters the history only; the current row does not move
    assert report["versions_inserted"] == 1 and report["keys_changed"] == 0
    assert landing.state().records[(*KEY, "coins")].record_value == "new"
    assert landing.query("select count(*) from {schema}.record_changes") == [(2,)]


def test_remove_then_late_older_replace_stays_deleted(landing: Landing) -> None:
    # GIVEN a key removed at sync 9, then an older replace (sync 8) arriving after the remove
    landing.writer.land([change("coins", "1", 7, 0)])
    landing.writer.land([change("coins", None, 9, 900)])
    landing.load()
    landing.writer.land([change("coins", "late", 8, 800)])
    # WHEN the late replace is loaded
    landing.load()
    # THEN the key stays a tombstone and is not in the analysts' view
    row = landing.state().records[(*KEY, "coins")]
    assert row.is_deleted and row.op == "remove" and row.sync_count == 9
    assert landing.query("select count(*) from {schema}.live_records") == [(0,)]
    assert landing.query("select live_record_count from {schema}.datasets") == [(0,)]


def test_dataset_delete_then_recreation_with_restarted_sync_counts(landing: Landing) -> None:
    # GIVEN keys written at syncs 5-6, the dataset deleted (sync 7), then re-created: counts restart at 1
    before = [change("coins", "100", 5, 0), change("level", "9", 6, 100)]
    delete = dataset_remove(7, 200)
    after = [change("coins", "5", 1, 300)]
    landing.writer.land(before)
    landing.writer.land([delete])
    landing.writer.land(after)
    # WHEN all is loaded
    landing.load()
    # THEN the re-created key wins despite its lower sync count, the others are tombstones
    state = landing.state()
    assert state == expected_state([*before, delete, *after])
    assert state.records[(*KEY, "coins")].record_value == "5" and not state.records[(*KEY, "coins")].is_deleted
    assert state.records[(*KEY, "level")].is_deleted
    ds = state.datasets[KEY]
    assert (ds.last_sync_count, ds.is_deleted, ds.live_record_count) == (1, False, 1)


def test_late_dataset_delete_re_decides_stored_versions(landing: Landing) -> None:
    # GIVEN versions from before and after a delete are loaded, the old one with the higher sync count
    old, recreated = change("coins", "old", 6, 0), change("coins", "recreated", 1, 300)
    landing.writer.land([old, recreated])
    landing.load()
    assert landing.state().records[(*KEY, "coins")].record_value == "old"
    # WHEN the delete between them arrives last (another shard, a replay)
    delete = dataset_remove(7, 200)
    landing.writer.land([delete])
    landing.load()
    # THEN the version made after the delete wins: generations come before sync counts
    state = landing.state()
    assert state.records[(*KEY, "coins")].record_value == "recreated"
    assert state == expected_state([old, recreated, delete])


def test_dataset_deleted_for_good(landing: Landing) -> None:
    # GIVEN keys then a dataset delete, and a stale resend of a key from before it
    first = change("coins", "1", 3, 0)
    delete = dataset_remove(4, 100)
    landing.writer.land([first, change("level", "2", 3, 0, index=1), delete, resent(first)])
    # WHEN loaded
    landing.load()
    # THEN the dataset is deleted with no live record, and the delete's sync count is its last
    ds = landing.state().datasets[KEY]
    assert (ds.is_deleted, ds.live_record_count, ds.last_sync_count) == (True, 0, 4)


def test_same_batch_loaded_twice_changes_nothing(landing: Landing) -> None:
    # GIVEN a loaded batch
    landing.writer.land([change("coins", "1", 1, 0), change("level", "2", 1, 0, index=1)])
    assert landing.load()["batches"] == 1
    before = landing.query("select record_key, updated_at from {schema}.records order by 1")
    counts = landing.counts()
    # WHEN the loader runs again, and again with force (a backfill of the same day)
    again = landing.load()
    forced = landing.load(force=True, day_from=date(2015, 2, 24), day_to=date(2015, 2, 24))
    # THEN the first finds nothing to do; the forced reload merges again and changes no row
    assert again["batches"] == 0
    assert forced["batches"] == 1 and forced["keys_changed"] == 0 and forced["versions_inserted"] == 0
    assert landing.query("select record_key, updated_at from {schema}.records order by 1") == before
    assert landing.counts() == counts


def test_failure_in_the_middle_of_a_merge_leaves_nothing(landing: Landing, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN one batch loaded, and a second whose merge fails after records were already merged
    landing.writer.land([change("coins", "1", 1, 0)])
    landing.load()
    before_state, before_counts = landing.state(), landing.counts()
    landing.writer.land([change("coins", "2", 2, 100), dataset_remove(3, 200, dataset="other")])
    # The datasets MERGE (after records, history and deletes were written) is replaced by a statement that
    # fails in the database (the MERGE binds nothing: its time is in its text).
    failing = "select 1 / 0 as x"
    monkeypatch.setattr(WarehouseSql, "merge_datasets", lambda self, at: failing)
    # WHEN the loader runs
    with pytest.raises(Exception, match="division by zero"):
        landing.load()
    # THEN nothing of the failed batch remains: not in records, history, deletes, nor as loaded
    assert landing.state() == before_state
    assert landing.counts() == before_counts
    # AND once the fault is gone the same batch loads whole
    monkeypatch.undo()
    assert landing.load()["batches"] == 1
    assert landing.state().records[(*KEY, "coins")].record_value == "2"


def test_value_over_65535_bytes_keeps_flag_and_reference(landing: Landing, aws) -> None:  # type: ignore[no-untyped-def]
    # GIVEN a 100,000-byte value (multi-byte characters) cut by the landing DAG to 65,535 bytes
    full = "é" * 50_000
    cut, full_bytes, was_cut = cut_value(full, landing.settings.value_max_bytes)
    c = change("layout", cut, 3, 0, value_bytes=full_bytes, is_value_cut=was_cut)
    ref = landing.writer.put_value(c.shard_id, c.sequence_number, 0, full)
    landing.writer.land([replace(c, value_ref=ref)])
    # WHEN loaded
    landing.load()
    # THEN the row holds the cut value, flagged, with the full length and where the full text is
    value, value_bytes, is_cut, value_ref = landing.query(
        "select record_value, value_bytes, is_value_cut, value_ref from {schema}.live_records"
    )[0]
    assert is_cut and value_bytes == 100_000 and value_ref == ref
    assert isinstance(value, str) and len(value.encode()) <= 65_535 and full.startswith(value)
    bucket, key = ref[5:].split("/", 1)
    assert aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode() == full


def test_rejects_are_recorded_once_with_reason_and_raw_reference(landing: Landing) -> None:
    # GIVEN a batch with two quarantined records, landed twice (the same range re-landed by a replay)
    rejects = [reject_row(10, "invalid_json"), reject_row(11, "s3url_expired")]
    landing.writer.land([change("coins", "1", 1, 0, seq=12)], rejects=rejects)
    landing.writer.land([], rejects=rejects[:1], first=10, last=10)
    # WHEN loaded
    report = landing.load()
    # THEN each quarantined record is one row, with its reason, coordinates and raw bytes' location
    assert report["rejects_staged"] == 3 and report["rejects_inserted"] == 2
    rows = landing.query("select reason, shard_id, sequence_number, raw_ref from {schema}.rejected_records order by 1")
    assert [r[0] for r in rows] == ["invalid_json", "s3url_expired"]
    assert all(str(r[3]).startswith("s3://") and "#line=" in str(r[3]) for r in rows)
    assert landing.query("select sum(kinesis_records_rejected) from {schema}.loaded_batches") == [(3,)]


def test_manifest_count_mismatch_fails_with_the_numbers(landing: Landing) -> None:
    # GIVEN a batch whose manifest promises 5 rows for a file of 2
    landing.writer.land([change("coins", "1", 1, 0), change("level", "1", 1, 0, index=1)], tamper_manifest_count=5)
    # WHEN loaded THEN the load fails naming the file and both counts, and nothing is merged
    with pytest.raises(BatchesFailedError, match=r"says 5 rows, stg_changes holds 2"):
        landing.load()
    assert landing.counts()["records"] == 0 and landing.counts()["loaded_batches"] == 0


def test_contract_violation_fails_before_merging(landing: Landing) -> None:
    # GIVEN a changes file with an op the contract does not know
    bad = {**change("coins", "1", 1, 0).as_row(), "op": "upsert"}
    landing.writer.land([], raw_rows=[bad])
    # WHEN loaded THEN the load fails with the problem, the count and the file
    with pytest.raises(BatchesFailedError, match=r"unknown op: 1 row\(s\), e\.g\. in s3://"):
        landing.load()
    assert landing.counts()["records"] == 0


#: What the loader's COPY error says of a key too long for its column, by engine: PostgreSQL's COPY FROM STDIN
#: error mapped back to the file's row; Redshift's (the emulator's) from sys_load_error_detail.
TOO_LONG = {
    "postgres": r"COPY of s3://.+\.parquet .+ too long .+line 2",
    "redshift": r"(?s)COPY from s3://.+\.manifest failed: .+File name: https://\S+\.parquet.+, line 2, column "
    r"record_key: .*The length of the data column record_key is longer than the length defined in the table",
}


#: The reason in those errors: PostgreSQL's, and Redshift's (Spectrum's) for a Parquet string over the width.
TOO_LONG_REASON = {"postgres": "too long", "redshift": "longer than the length defined in the table"}


def test_copy_error_names_the_file_and_line(landing: Landing) -> None:
    # GIVEN a file whose second row has a key longer than the column allows
    landing.writer.land([change("ok", "1", 1, 0), change("k" * 5000, "1", 1, 0, index=1)])
    # WHEN loaded THEN the COPY error names the file, the line and the reason
    with pytest.raises(BatchesFailedError, match=TOO_LONG[landing.engine]):
        landing.load()
    assert landing.counts()["records"] == 0


def test_bounded_files_per_transaction_and_day_ranges(landing: Landing) -> None:
    # GIVEN three batches on two landing days, and at most two files per transaction
    landing.settings = landing.settings.model_copy(update={"load_max_files_per_batch": 2})
    day1, day2 = datetime(2015, 2, 24, 10, tzinfo=UTC), datetime(2015, 2, 25, 10, tzinfo=UTC)
    landing.writer.land([change("a", "1", 1, 0)], arrived_at=day1)
    landing.writer.land([change("b", "1", 1, 0)], arrived_at=day1, rejects=[reject_row(900)])
    landing.writer.land([change("c", "1", 1, 0)], arrived_at=day2)
    # WHEN only the second day is loaded, then everything
    assert landing.load(day_from=date(2015, 2, 25), day_to=date(2015, 2, 25))["batches"] == 1
    report = landing.load()
    # THEN the rest is loaded, and every file is recorded with its counts
    assert report["batches"] == 2
    files = landing.query("select file_kind, rows_expected, rows_staged from {schema}.loaded_files order by 1, 2")
    assert files == [("changes", 1, 1), ("changes", 1, 1), ("changes", 1, 1), ("rejects", 1, 1)]
    assert {k for (*_, k) in landing.state().records} == {"a", "b", "c"}


def test_rebuild_from_history_restores_a_damaged_current_state(landing: Landing) -> None:
    # GIVEN a loaded warehouse whose current state was damaged by hand
    changes: list[Change] = [change("coins", "1", 1, 0), change("coins", None, 2, 10), dataset_remove(3, 20)]
    changes.append(change("level", "x", 1, 30))
    landing.writer.land(changes)
    landing.load()
    landing.query("update {schema}.records set record_value = 'tampered', is_deleted = false")
    landing.query("delete from {schema}.datasets")
    # WHEN records and datasets are rebuilt from the history
    rebuild_current_state(landing.settings)
    # THEN they are the reference state again
    assert landing.state() == expected_state(changes)


def test_a_bad_batch_never_stalls_loading(landing: Landing) -> None:
    # GIVEN three landed batches, the middle one broken (a key longer than the column: its COPY fails)
    first = change("a", "1", 1, 0, seq=100)
    bad = change("k" * 5000, "1", 1, 0, seq=200)
    last = change("c", "3", 1, 0, seq=300)
    landing.writer.land([first])
    bad_descriptor = landing.writer.land([bad])
    landing.writer.land([last])
    # WHEN the loader runs (all three would fit one transaction)
    with pytest.raises(BatchesFailedError) as err:
        landing.load()
    # THEN the good batches were loaded in this run, the broken one named with its error and set aside
    assert {k for (*_, k) in landing.state().records} == {"a", "c"}
    assert landing.query("select count(*) from {schema}.loaded_batches") == [(2,)]
    assert "1 landed batch(es) could not be loaded and were set aside" in str(err.value)
    assert bad_descriptor in str(err.value) and TOO_LONG_REASON[landing.engine] in str(err.value)
    assert landing.query("select descriptor_url, failures, resolved_at from {schema}.failed_batches") == [
        (bad_descriptor, 1, None)
    ]
    # AND nothing of the broken batch is anywhere
    assert landing.query("select count(*) from {schema}.record_changes where record_key like 'kkk%%'") == [(0,)]

    # WHEN a later run finds it still broken, and a new good batch landed meanwhile
    landing.writer.land([change("d", "4", 1, 0, seq=400)])
    with pytest.raises(BatchesFailedError, match="set aside"):
        landing.load()
    # THEN the new batch loads and the broken one counts a second failure
    assert {k for (*_, k) in landing.state().records} == {"a", "c", "d"}
    assert landing.query("select failures from {schema}.failed_batches") == [(2,)]

    # WHEN the batch is re-landed fixed (the same descriptor, as a replay rewrites it) and the loader runs
    landing.writer.land([change("b", "2", 1, 0, seq=200)])
    report = landing.load()
    # THEN it loads, and its failure is resolved
    assert report["batches"] == 1 and report["batches_failed"] == 0
    assert {k for (*_, k) in landing.state().records} == {"a", "b", "c", "d"}
    resolved = landing.query("select resolved_at from {schema}.failed_batches")
    assert len(resolved) == 1 and resolved[0][0] is not None


def test_an_unreadable_descriptor_is_set_aside_too(landing: Landing, aws) -> None:  # type: ignore[no-untyped-def]
    # GIVEN a good batch and a descriptor that is not JSON (a writer bug, a truncated upload)
    landing.writer.land([change("a", "1", 1, 0, seq=100)])
    broken = landing.writer.land([change("b", "2", 1, 0, seq=200)])
    bucket, key = broken[5:].split("/", 1)
    aws("s3").put_object(Bucket=bucket, Key=key, Body=b"{not json")
    # WHEN loaded THEN the good batch loads and the broken descriptor is named and recorded
    with pytest.raises(BatchesFailedError, match="does not follow the landing contract"):
        landing.load()
    assert {k for (*_, k) in landing.state().records} == {"a"}
    assert landing.query("select descriptor_url, batch_id from {schema}.failed_batches") == [(broken, None)]


def test_an_error_naming_no_file_is_pinned_down_by_halving(landing: Landing, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN four batches and a stage check that fails, naming no file, whenever the third batch is in the load
    from cognito_streams.warehouse import base
    from cognito_streams.warehouse.models import LoadCheckError

    descriptors = [landing.writer.land([change(k, "1", 1, 0, seq=100 * (i + 1))]) for i, k in enumerate("abcd")]
    real = base.Warehouse._verify_stage

    def verify(self, cur, batches):  # type: ignore[no-untyped-def]
        if any(b.descriptor_url == descriptors[2] for b in batches):
            raise LoadCheckError("something about this load is wrong")
        return real(self, cur, batches)

    monkeypatch.setattr(base.Warehouse, "_verify_stage", verify)
    # WHEN loaded THEN the three others load and only the third is set aside
    with pytest.raises(BatchesFailedError, match="something about this load is wrong"):
        landing.load()
    assert {k for (*_, k) in landing.state().records} == {"a", "b", "d"}
    assert landing.query("select descriptor_url from {schema}.failed_batches") == [(descriptors[2],)]
