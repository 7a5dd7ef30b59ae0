"""The Redshift warehouse's COPY path without a cluster: the DB-API connection is the boundary, faked.
A failing COPY becomes an error naming the manifest, the file, the line and the reason read from
sys_load_error_detail, after the aborted transaction was rolled back; nothing else runs."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
import redshift_connector

from cognito_streams.core.landing_format import FileRef, LandedBatch
from cognito_streams.warehouse.models import BatchToLoad, LoadError, Manifest, ManifestEntry
from cognito_streams.warehouse.redshift import RedshiftWarehouse

ROLE = "arn:aws:iam::123456789012:role/copy"
FILE = "s3://landing/p/data/stream=s/dt=2026-03-01/hour=10/shardId-000000000000/1-2.parquet"
MANIFEST = "s3://landing/p/manifests/stream=s/dt=2026-03-01/shardId-000000000000/1-2.changes.manifest"


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn
        self.rowcount = 0
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str, params: Any = None) -> None:
        self.conn.log.append(sql)
        if sql.startswith("copy "):
            raise redshift_connector.ProgrammingError(
                {"M": "Load into table 'stg_changes' failed. Check 'sys_load_error_detail'"}
            )
        if "sys_load_error_detail" in sql:
            self._rows = [(FILE, 2, "record_key", 1204, "String length exceeds DDL length")]
        elif "from cognito_sync.loaded_batches" in sql:
            self._rows = []

    def executemany(self, sql: str, rows: Any) -> None:
        self.conn.log.append(sql)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def close(self) -> None:
        pass


class FakeConnection:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.rollbacks = 0
        self.commits = 0

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        self.commits += 1

    def rollback(self) -> None:
        self.rollbacks += 1

    def close(self) -> None:
        pass


def batch() -> BatchToLoad:
    from datetime import UTC, datetime

    now = datetime(2026, 3, 1, 10, tzinfo=UTC)
    landed = LandedBatch(
        batch_id="s/shardId-000000000000/1-2", stream_name="s", shard_id="shardId-000000000000",
        first_sequence_number="1", last_sequence_number="2", first_arrived_at=now, last_arrived_at=now,
        landed_at=now, kinesis_records_read=2, kinesis_records_landed=2, kinesis_records_rejected=0,
        changes=FileRef(url=FILE, rows=2, bytes=1000), changes_manifest=MANIFEST, rejects=None,
        rejects_raw=None, rejects_manifest=None,
    )  # fmt: skip
    manifest = Manifest(MANIFEST, (ManifestEntry(FILE, 1000, 2),))
    return BatchToLoad("s3://landing/p/batches/x.json", date(2026, 3, 1), landed, manifest, None)


def test_a_failed_copy_names_file_line_and_reason_and_merges_nothing() -> None:
    # GIVEN a Redshift warehouse whose COPY fails
    conn = FakeConnection()
    wh = RedshiftWarehouse(conn, "cognito_sync", copy_iam_role_arn=ROLE)
    # WHEN a batch is loaded
    with pytest.raises(LoadError) as err:
        wh.load([batch()])
    # THEN the error names the manifest, the file, the line, the column and Redshift's reason
    message = str(err.value)
    assert f"COPY from {MANIFEST} failed" in message
    assert f"{FILE}, line 2, column record_key: String length exceeds DDL length (code 1204)" in message
    # AND the COPY was the server-side one (the role, never keys), and nothing ran after it but the lookup
    copy = next(s for s in conn.log if s.startswith("copy "))
    assert copy == f"copy stg_changes from '{MANIFEST}' iam_role '{ROLE}' format as parquet manifest"
    after = conn.log[conn.log.index(copy) + 1 :]
    assert len(after) == 1 and "sys_load_error_detail" in after[0]
    assert conn.rollbacks >= 2 and conn.commits == 0
