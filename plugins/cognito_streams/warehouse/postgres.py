"""The PostgreSQL stand-in (conn_type ``postgres``): psycopg 3, the stage fed by the worker.

Redshift reads the landed Parquet files itself; PostgreSQL cannot, so this reads the same objects (the
manifest's entries, through the ``fetch`` callable: S3 via the Amazon provider in production code, anything
in tests), checks them against the manifest and the contract's schema, converts them to CSV with pyarrow
and streams them with ``COPY ... FROM STDIN``. Everything after the COPY is the shared SQL.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from cognito_streams.core.landing_format import CHANGES_SCHEMA, REJECTS_SCHEMA
from cognito_streams.core.sql_text import SqlLibrary
from cognito_streams.warehouse.base import STAGE_CHANGES, Cursor, Warehouse
from cognito_streams.warehouse.models import LoadCheckError, LoadError, Manifest, WarehouseError

log = logging.getLogger(__name__)

Fetch = Callable[[str], bytes]

_SCHEMAS = {STAGE_CHANGES: CHANGES_SCHEMA}
_CSV_OPTIONS = pa_csv.WriteOptions(include_header=False)
#: Work tables the planner needs statistics on, with which keys (analyze_<keys>_keys in sql/postgres.sql): the big ones
#: that drive joins. The others are empty or tiny in a normal batch (deletes, candidates of datasets with
#: deletes), where the planner's default guess does no harm.
ANALYZED_WORK_TABLES: dict[str, str] = {
    "stg_changes": "record",
    "stg_versions": "version",
    "stg_datasets": "dataset",
    "stg_winners": "record",
    "stg_dataset_updates": "dataset",
}
#: Files read ahead of the one being copied: S3 latency overlaps the COPY, memory stays bounded.
PREFETCH = 2
#: Rows per CSV chunk sent to COPY, and chunks converted ahead (by as many threads) while COPY parses one:
#: converting and parsing overlap on two cores, and a file's CSV is never all in memory at once.
CSV_CHUNK_ROWS = 16_384
CSV_CHUNKS_AHEAD = 2


def _utc_wall_clock(schema: pa.Schema) -> pa.Schema:
    """``schema`` with time-zone-less timestamps: the same UTC instants, written without a zone (the columns
    are TIMESTAMP, UTC by convention), which makes pyarrow's CSV writer about 8x faster on them."""
    return pa.schema(
        [pa.field(f.name, pa.timestamp(f.type.unit)) if pa.types.is_timestamp(f.type) else f for f in schema]
    )


def read_landed(data: bytes, schema: pa.Schema, url: str) -> pa.Table:
    """A landed Parquet file as a table in ``schema``'s column order and types, timestamps as UTC wall clock.

    Column names and order must be the contract's (Redshift maps them by position)."""
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as err:
        raise LoadError(f"{url} is not a readable Parquet file ({err}); re-land its batch", files=(url,)) from None
    if table.schema.names != schema.names:
        raise LoadCheckError(
            f"{url} has columns {table.schema.names}, the contract (core/landing_format.py) has {schema.names} in "
            "that order; the writer and the loader disagree on the format: fix the writer and re-land the batch",
            files=(url,),
        )
    try:
        return table.cast(schema).cast(_utc_wall_clock(schema))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise LoadCheckError(
            f"{url} has column types the contract does not allow ({err}); re-land its batch", files=(url,)
        ) from None


def _to_csv(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pa_csv.write_csv(table, buf, _CSV_OPTIONS)
    return buf.getvalue()


def csv_chunks(table: pa.Table, rows_per_chunk: int = CSV_CHUNK_ROWS) -> Iterator[bytes]:
    """``table`` as CSV rows for ``COPY ... (format csv)``, in chunks of ``rows_per_chunk`` rows converted by
    worker threads up to CSV_CHUNKS_AHEAD chunks ahead of the consumer, so that PostgreSQL parses one chunk
    while the next ones are written (pyarrow's writer releases the GIL). Nulls become unquoted empty fields
    and strings are always quoted, so NULL and '' stay distinct."""
    starts = range(0, table.num_rows, rows_per_chunk)
    with ThreadPoolExecutor(max_workers=CSV_CHUNKS_AHEAD, thread_name_prefix="landing-csv") as pool:
        pending: list[Future[bytes]] = []
        for start in starts:
            pending.append(pool.submit(_to_csv, table.slice(start, rows_per_chunk)))
            if len(pending) > CSV_CHUNKS_AHEAD:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def parquet_to_csv(data: bytes, schema: pa.Schema, url: str) -> tuple[bytes, int]:
    """A landed Parquet file as one block of CSV rows (see :func:`csv_chunks`) and its row count."""
    table = read_landed(data, schema, url)
    return b"".join(csv_chunks(table)), table.num_rows


def copy_landed(
    cur: Any, copy_sql: str, data: bytes, schema: pa.Schema, url: str, rows_per_chunk: int = CSV_CHUNK_ROWS
) -> int:
    """Stream a landed Parquet file into ``COPY ... FROM STDIN`` (``copy_sql``), converting ahead of the
    server; returns its row count. One COPY for the whole file, so an error's "line N" is a line of the file's
    CSV (see :func:`row_of_csv_line`). psycopg errors propagate (the caller names the file)."""
    table = read_landed(data, schema, url)
    with cur.copy(copy_sql) as copy:
        for chunk in csv_chunks(table, rows_per_chunk):
            copy.write(chunk)
    return int(table.num_rows)


def row_of_csv_line(data: bytes, schema: pa.Schema, url: str, line: int) -> int | None:
    """The row (from 1) of a landed file that COPY's "line ``line``" is in. COPY counts the lines of the CSV
    it was sent, and a value holding a newline spans several, so the two differ; for error messages only."""
    text = b"".join(csv_chunks(read_landed(data, schema, url))).decode()
    reader = csv.reader(io.StringIO(text, newline=""))
    for row, _ in enumerate(reader, start=1):
        if reader.line_num >= line:
            return row
    return None


class PostgresWarehouse(Warehouse):
    """The warehouse on PostgreSQL 16 (the local stack's stand-in for Redshift)."""

    engine = "postgres"

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        schema: str,
        *,
        fetch: Fetch | None = None,
        library: SqlLibrary | None = None,
    ) -> None:
        super().__init__(conn, schema, library=library)
        self._fetch = fetch
        with self.transaction() as cur:
            cur.execute(self.sql.tune_session())

    def _after_migrations(self, cur: Cursor) -> None:
        for statement in self.sql.tune_tables():
            cur.execute(statement)

    def _begin(self, cur: Cursor) -> None:
        cur.execute(self.sql.tune_transaction())
        cur.execute(self.sql.tune_planner())
        cur.execute(self.sql.tune_memoize())
        cur.execute(self.sql.tune_statistics())
        cur.execute(self.sql.tune_commit())

    @contextmanager
    def _probing_by_key(self, cur: Cursor) -> Iterator[None]:
        cur.execute(self.sql.probe_by_key())
        yield
        cur.execute(self.sql.probe_by_key(done=True))

    @contextmanager
    def _joining_back(self, cur: Cursor) -> Iterator[None]:
        cur.execute(self.sql.join_back_by_hash())
        yield
        cur.execute(self.sql.join_back_by_hash(done=True))

    def _after_work_table(self, cur: Cursor, table: str) -> None:
        # Temporary tables are never auto-analyzed. Without statistics, a join of two of them on three or four
        # columns is estimated at one row, and the planner nests loops over tens of thousands of rows.
        if table in ANALYZED_WORK_TABLES:
            cur.execute(self.sql.analyze_keys(table, ANALYZED_WORK_TABLES[table]))

    def _stage(self, cur: Cursor, table: str, manifests: Sequence[Manifest]) -> None:
        entries = [(m, e) for m in manifests for e in m.entries]
        if entries and self._fetch is None:
            raise WarehouseError(
                "this PostgresWarehouse was opened without a way to read S3 (fetch); it cannot load files"
            )
        schema = _SCHEMAS.get(table, REJECTS_SCHEMA)
        copy_sql = self.sql.copy_from_stdin(table)
        for (manifest, entry), data in zip(entries, self._prefetched([e.url for _, e in entries]), strict=True):
            if len(data) != entry.content_length:
                raise LoadError(
                    f"{entry.url} is {len(data)} bytes but {manifest.url} says content_length {entry.content_length}; "
                    "Redshift would refuse it too: re-land the batch",
                    files=(entry.url,),
                )
            try:
                count = copy_landed(cur, copy_sql, data, schema, entry.url)
            except psycopg.Error as err:
                reason = (err.diag.message_primary or str(err)).strip()
                context = (err.diag.context or "").strip().replace("\n", "; ")
                line = re.search(r"\bline (\d+)", context)
                row = row_of_csv_line(data, schema, entry.url, int(line.group(1))) if line else None
                raise LoadError(
                    f"COPY of {entry.url} (listed in {manifest.url}) into {table} failed: {reason}"
                    + (f" [{context}]" if context else "")
                    + (f" at row {row} of the file" if row else "")
                    + ". Fix the file (re-land its batch) and rerun",
                    files=(entry.url,),
                ) from err
            log.debug("Staged %d rows of %s into %s", count, entry.url, table)
        if entries:
            self._after_work_table(cur, table)

    def _prefetched(self, urls: list[str]) -> Iterator[bytes]:
        if not urls:
            return
        fetch = self._fetch
        assert fetch is not None  # noqa: S101 - checked by _stage
        with ThreadPoolExecutor(max_workers=PREFETCH, thread_name_prefix="landing-fetch") as pool:
            futures: dict[int, Future[bytes]] = {i: pool.submit(fetch, u) for i, u in enumerate(urls[:PREFETCH])}
            for i in range(len(urls)):
                if i + PREFETCH < len(urls):
                    futures[i + PREFETCH] = pool.submit(fetch, urls[i + PREFETCH])
                yield futures.pop(i).result()
