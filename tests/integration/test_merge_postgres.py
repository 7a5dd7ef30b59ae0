"""The PostgreSQL stand-in's physical choices under the merge: the chunked COPY of landed files, the
history's indexes, and the records MERGE probing by key. None of them may change a result; these tests show
they keep the contract (rows, NULL vs '', uniqueness of versions) and hold their shape."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cognito_streams.core.landing_format import CHANGES_SCHEMA
from cognito_streams.warehouse.base import Cursor
from cognito_streams.warehouse.postgres import (
    PostgresWarehouse,
    copy_landed,
    csv_chunks,
    read_landed,
    row_of_csv_line,
)
from tests.support.changes import change, dataset_remove
from tests.support.warehouse import connect, postgres_warehouse, query, read_state

pytestmark = pytest.mark.integration

#: Values a CSV round trip could confuse: NULL vs empty, quotes, separators, newlines, non-ASCII.
AWKWARD = [None, "", '"quoted", with comma', "line\nbreak", "tab\there", "ünïcødé ✓", "\\N", "NULL"]


def _landed_file(rows: int) -> bytes:
    changes = [
        change(f"k{i}", AWKWARD[i % len(AWKWARD)], i + 1, i, op="replace", seq=i + 1).as_row() for i in range(rows)
    ]
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(changes, schema=CHANGES_SCHEMA), buf)
    return buf.getvalue()


def test_csv_chunks_are_the_whole_file_cut_at_row_boundaries() -> None:
    # GIVEN a landed file of 50 rows with awkward values
    table = read_landed(_landed_file(50), CHANGES_SCHEMA, "s3://b/f.parquet")
    whole = b"".join(csv_chunks(table, rows_per_chunk=table.num_rows))
    for size in (1, 7, 16, 49, 50, 1000):
        # WHEN it is converted in chunks of that many rows
        chunks = list(csv_chunks(table, rows_per_chunk=size))
        # THEN the chunks, in order, are exactly the one-piece CSV, each of whole rows
        assert b"".join(chunks) == whole
        assert len(chunks) == -(-50 // size)


def test_a_file_copied_in_chunks_keeps_every_row_and_null_apart_from_empty(stack) -> None:  # type: ignore[no-untyped-def]
    data = _landed_file(40)
    with connect() as conn, conn.cursor() as cur:
        # GIVEN a temporary table shaped like the stage
        with postgres_warehouse() as wh:
            create_stage = wh.sql.create_stage_changes()
        cur.execute(create_stage)
        # WHEN the file is copied in chunks of 16 rows (three chunks)
        rows = copy_landed(cur, "copy stg_changes from stdin with (format csv)", data, CHANGES_SCHEMA, "f", 16)
        # THEN every row arrived once, with NULL and '' still distinct and the other values intact
        assert rows == 40
        cur.execute("select record_key, record_value from stg_changes order by sync_count")
        got = cur.fetchall()
        assert got == [(f"k{i}", AWKWARD[i % len(AWKWARD)]) for i in range(40)]


def test_a_copy_error_in_a_later_chunk_names_the_row_of_the_file(stack) -> None:  # type: ignore[no-untyped-def]
    data = _landed_file(40)
    with connect() as conn, conn.cursor() as cur:
        # GIVEN a stage that refuses the 35th row of the file
        with postgres_warehouse() as wh:
            cur.execute(wh.sql.create_stage_changes())
        cur.execute("alter table stg_changes add constraint short_keys check (record_key <> 'k34')")
        # WHEN it is copied in chunks of 16 rows
        with pytest.raises(psycopg.errors.CheckViolation) as err:
            copy_landed(cur, "copy stg_changes from stdin with (format csv)", data, CHANGES_SCHEMA, "f", 16)
        # THEN COPY's line counts the CSV lines of the whole file (four values before it hold a newline) and
        # maps back to the 35th row
        assert "line 39:" in (err.value.diag.context or "")
        assert row_of_csv_line(data, CHANGES_SCHEMA, "f", 39) == 35


def test_history_versions_stay_unique_under_the_time_ordered_index(stack) -> None:  # type: ignore[no-untyped-def]
    with postgres_warehouse() as wh:
        # GIVEN a migrated schema on PostgreSQL
        listing = "select indexname, indexdef from pg_indexes where schemaname = %s and tablename = 'record_changes'"
        indexes = dict(query(wh, listing, (wh.schema,)))
        # THEN the history is indexed by version (time first) and by dataset, not twice by key
        assert set(indexes) == {"record_changes_version_idx", "record_changes_dataset_idx"}
        assert "UNIQUE" in indexes["record_changes_version_idx"]
        assert (
            "(last_modified_at, identity_pool_id, identity_id, dataset_name, record_key, sync_count)"
            in (indexes["record_changes_version_idx"])
        )
        # AND ensure_schema keeps it that way when run again
        assert wh.ensure_schema() == []
        assert dict(query(wh, listing, (wh.schema,))) == indexes
        # WHEN a version is merged, then written again directly (what a broken loader would do)
        wh.merge_changes([change("coins", "1", 1, 0)])
        # THEN the database refuses the second copy: the contract's grain is still enforced
        with pytest.raises(psycopg.errors.UniqueViolation):
            query(wh, "insert into {schema}.record_changes select * from {schema}.record_changes")


def test_a_dataset_delete_reads_the_history_through_the_dataset_index(stack) -> None:  # type: ignore[no-untyped-def]
    with postgres_warehouse() as wh:
        # GIVEN keys written before a dataset delete that arrives late, in a later batch
        wh.merge_changes(
            [change("coins", "1", 1, 0), change("level", "2", 1, 10), change("theme", "x", 1, 0, dataset="app_prefs")]
        )
        # WHEN the delete is merged
        counts = wh.merge_changes([dataset_remove(2, 20)])
        # THEN the dataset's keys are tombstoned and the other dataset is untouched
        state = read_state(wh)
        assert counts.deletes_inserted == 1
        assert sorted(k[3] for k, r in state.records.items() if r.is_deleted) == ["coins", "level"]
        assert not next(r for k, r in state.records.items() if k[3] == "theme").is_deleted


class ExplainingWarehouse(PostgresWarehouse):
    """Records the plan of the records MERGE as the loader is about to run it."""

    plans: list[str]

    @contextmanager
    def _probing_by_key(self, cur: Cursor) -> Iterator[None]:
        with super()._probing_by_key(cur):
            now = datetime(2026, 1, 1)
            cur.execute("explain " + self.sql.merge_records(now))
            self.plans.append("\n".join(row[0] for row in cur.fetchall()))
            yield


def test_the_records_merge_probes_by_key_instead_of_reading_the_table(stack) -> None:  # type: ignore[no-untyped-def]
    with postgres_warehouse() as base:
        # GIVEN records holding 20,000 keys with statistics, and a batch changing 2,000 of them
        query(
            base,
            "insert into {schema}.records select 'p', 'i' || (n / 10), 'd', 'k' || (n % 10), 'replace', 'v', 1, "
            "false, null, 1, timestamp '2020-01-01', null, false, now() from generate_series(0, 19999) as n",
        )
        query(base, "analyze {schema}.records")
        wh = ExplainingWarehouse(connect(), base.schema)
        wh.plans = []
        batch: list[Any] = [
            change(f"k{n % 10}", "w", 2, 0, pool="p", identity=f"i{n // 10}", dataset="d") for n in range(0, 20000, 10)
        ]
        # WHEN it is merged
        with wh:
            counts = wh.merge_changes(batch)
        # THEN the MERGE looks each key up in the primary key: its cost follows the batch, not the table
        assert counts.keys_changed == 2000
        (plan,) = wh.plans
        assert "records_pkey" in plan and "Nested Loop" in plan, plan
        assert "Seq Scan on records" not in plan, plan
