"""The Redshift warehouse's COPY path without a cluster: the DB-API connection is the boundary, faked.

A load runs ONE COPY per stage table, from one manifest written for the load that lists every file of every
batch of the transaction (AWS: one COPY of many files, not many COPYs). A failing COPY becomes an error naming
the manifest, the file, the line and the reason read from sys_load_error_detail, after the aborted
transaction was rolled back; when that view has no row, the error still names the files."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest
import redshift_connector

from cognito_streams.core.landing_format import FileRef, LandedBatch
from cognito_streams.warehouse.models import BatchToLoad, LoadError, Manifest, ManifestEntry
from cognito_streams.warehouse.redshift import RedshiftWarehouse
from tests.support.fake_redshift import FakeRedshift

ROLE = "arn:aws:iam::123456789012:role/copy"
PREFIX = "s3://landing/p"


def batch(n: int, *, rejects: bool = False) -> BatchToLoad:
    """Batch ``n`` of shard 0: a changes file (and a rejects file), each with its manifest."""
    now = datetime(2026, 3, 1, 10, tzinfo=UTC)
    rng = f"{n}0-{n}9"
    changes = f"{PREFIX}/data/stream=s/dt=2026-03-01/hour=10/shardId-000000000000/{rng}.parquet"
    changes_manifest = f"{PREFIX}/manifests/stream=s/dt=2026-03-01/shardId-000000000000/{rng}.changes.manifest"
    rejects_file = f"{PREFIX}/rejects/stream=s/dt=2026-03-01/hour=10/shardId-000000000000/{rng}.parquet"
    rejects_manifest = f"{PREFIX}/manifests/stream=s/dt=2026-03-01/shardId-000000000000/{rng}.rejects.manifest"
    landed = LandedBatch(
        batch_id=f"s/shardId-000000000000/{rng}", stream_name="s", shard_id="shardId-000000000000",
        first_sequence_number=f"{n}0", last_sequence_number=f"{n}9", first_arrived_at=now, last_arrived_at=now,
        landed_at=now, kinesis_records_read=3, kinesis_records_landed=2, kinesis_records_rejected=1 if rejects else 0,
        changes=FileRef(url=changes, rows=2, bytes=1000 + n), changes_manifest=changes_manifest,
        rejects=FileRef(url=rejects_file, rows=1, bytes=500 + n) if rejects else None,
        rejects_raw=FileRef(url=rejects_file + ".jsonl", rows=1, bytes=9) if rejects else None,
        rejects_manifest=rejects_manifest if rejects else None,
    )  # fmt: skip
    return BatchToLoad(
        f"{PREFIX}/batches/stream=s/dt=2026-03-01/shardId-000000000000/{rng}.json",
        date(2026, 3, 1),
        landed,
        Manifest(changes_manifest, (ManifestEntry(changes, 1000 + n, 2),)),
        Manifest(rejects_manifest, (ManifestEntry(rejects_file, 500 + n, 1),)) if rejects else None,
    )


class Landing:
    """The loader's ``write_manifest``: keeps what was written."""

    def __init__(self) -> None:
        self.written: dict[str, bytes] = {}

    def write(self, name: str, body: bytes) -> str:
        url = f"{PREFIX}/load-manifests/{name}"
        self.written[url] = body
        return url


def failing_copy(detail_rows: list[tuple[Any, ...]], message: str = "Load into table 'stg_changes' failed") -> Any:
    def respond(sql: str, params: Any) -> list[tuple[Any, ...]] | None:
        if sql.startswith("copy stg_changes"):
            raise redshift_connector.ProgrammingError({"S": "ERROR", "C": "XX000", "M": message})
        if "sys_load_error_detail" in sql:
            return detail_rows
        return None

    return respond


def staged_counts(batches: list[BatchToLoad]) -> Any:
    """Answers a successful load: the stage holds what the manifests say."""

    def respond(sql: str, params: Any) -> list[tuple[Any, ...]] | None:
        if sql.startswith("select landed_file, problem"):
            return [(b.batch.changes.url, None, 2) for b in batches if b.batch.changes]
        if sql.startswith("select landed_file, cast(null"):
            return [(b.batch.rejects.url, None, 1) for b in batches if b.batch.rejects]
        if sql.startswith("select count(*)") and "stg_latest_deletes" in sql:
            return [(0,)]
        if sql.startswith("select v.versions_staged"):
            return [(0, 0, 0, 0, 0, 0)]
        return None

    return respond


def test_one_copy_per_stage_table_from_one_manifest_of_the_whole_load() -> None:
    # GIVEN three batches (two with rejects) loaded in one transaction
    batches = [batch(1, rejects=True), batch(2), batch(3, rejects=True)]
    landing = Landing()
    conn = FakeRedshift(respond=staged_counts(batches))
    wh = RedshiftWarehouse(conn, "cognito_sync", copy_iam_role_arn=ROLE, write_manifest=landing.write)
    # WHEN loaded
    report = wh.load(batches)
    # THEN exactly one COPY per stage table ran, each from a manifest written for this load
    copies = conn.statements("copy ")
    assert [c.split(" ")[1] for c in copies] == ["stg_changes", "stg_rejects"]
    for copy in copies:
        url = copy.split("'")[1]
        assert url.startswith(f"{PREFIX}/load-manifests/") and url in landing.written
        assert copy == f"copy {copy.split(' ')[1]} from '{url}' iam_role '{ROLE}' format as parquet manifest"
    # AND each manifest lists every file of the batches, mandatory, with the content_length Parquet COPY needs
    changes = orjson.loads(landing.written[copies[0].split("'")[1]])["entries"]
    assert [e["url"] for e in changes] == [b.batch.changes.url for b in batches if b.batch.changes]
    assert all(e["mandatory"] and e["meta"]["content_length"] > 0 for e in changes)
    rejects = orjson.loads(landing.written[copies[1].split("'")[1]])["entries"]
    assert [e["meta"]["record_count"] for e in rejects] == [1, 1]
    assert report.batches == 3 and conn.commits == 1


def test_the_same_files_give_the_same_manifest_name() -> None:
    # A retried load rewrites its manifest instead of adding one (nothing ever deletes them).
    names = []
    for _ in range(2):
        landing = Landing()
        batches = [batch(1), batch(2)]
        wh = RedshiftWarehouse(
            FakeRedshift(respond=staged_counts(batches)),
            "cognito_sync",
            copy_iam_role_arn=ROLE,
            write_manifest=landing.write,
        )
        wh.load(batches)
        names.append(sorted(landing.written))
    assert names[0] == names[1]


def test_a_failed_copy_names_file_line_and_reason_and_merges_nothing() -> None:
    # GIVEN a load of three batches whose COPY fails on the second batch's file
    batches = [batch(1), batch(2), batch(3)]
    bad = batches[1].batch.changes.url  # type: ignore[union-attr]
    conn = FakeRedshift(respond=failing_copy([(bad, 2, "record_key", 1204, "String length exceeds DDL length")]))
    landing = Landing()
    wh = RedshiftWarehouse(conn, "cognito_sync", copy_iam_role_arn=ROLE, write_manifest=landing.write)
    # WHEN loaded
    with pytest.raises(LoadError) as err:
        wh.load(batches)
    # THEN the error names the load's manifest, the file, the line, the column and Redshift's reason
    message = str(err.value)
    manifest = next(iter(landing.written))
    assert f"COPY from {manifest} failed" in message
    assert f"{bad}, line 2, column record_key: String length exceeds DDL length (code 1204)" in message
    # AND it says which file is at fault, for the loader to set its batch aside
    assert err.value.files == {bad}
    # AND nothing ran after the COPY but the lookup, the transaction rolled back
    log = [e.sql for e in conn.log]
    copy = next(s for s in log if s.startswith("copy "))
    after = [s for s in log[log.index(copy) + 1 :] if s not in ("COMMIT", "ROLLBACK")]
    assert len(after) == 1 and "sys_load_error_detail" in after[0]
    assert conn.rollbacks >= 2 and conn.commits == 0


def test_without_a_detail_row_the_error_still_names_the_files() -> None:
    # GIVEN a COPY of Parquet files that fails without a row in sys_load_error_detail (Redshift logs only some
    # columnar errors there), its message naming the file by its https URL
    batches = [batch(1), batch(2)]
    bad = batches[0].batch.changes.url  # type: ignore[union-attr]
    key = bad.split("/", 3)[3]
    text = (
        f"Spectrum Scan Error. File 'https://landing.s3.eu-west-1.amazonaws.com/{key}' has an incompatible Parquet "
        "schema"
    )
    conn = FakeRedshift(respond=failing_copy([], message=text))
    wh = RedshiftWarehouse(conn, "cognito_sync", copy_iam_role_arn=ROLE, write_manifest=Landing().write)
    with pytest.raises(LoadError) as err:
        wh.load(batches)
    # THEN the error says the view had nothing, and names the file the error text names
    assert "sys_load_error_detail has no row" in str(err.value)
    assert f"the error names: {bad}" in str(err.value)
    assert err.value.files == {bad}


def test_without_any_name_the_error_lists_the_manifest_files() -> None:
    batches = [batch(1), batch(2)]
    conn = FakeRedshift(respond=failing_copy([], message="Load into table 'stg_changes' failed"))
    wh = RedshiftWarehouse(conn, "cognito_sync", copy_iam_role_arn=ROLE, write_manifest=Landing().write)
    with pytest.raises(LoadError) as err:
        wh.load(batches)
    message = str(err.value)
    assert "the manifest lists 2 file(s)" in message
    assert all(b.batch.changes.url in message for b in batches)  # type: ignore[union-attr]
    assert err.value.files == set()  # not attributable: the loader bisects
