"""Redshift does not enforce PRIMARY KEY or UNIQUE: on a schema without them (as Redshift treats it), a row that
breaks a table's grain is caught by the data-quality checks (sql/checks.sql), for every table whose grain the
docs promise."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from cognito_streams.warehouse.models import BulkPublishAttempt, DataQualityError
from cognito_streams.warehouse.postgres import PostgresWarehouse
from tests.support.changes import change, dataset_remove
from tests.support.warehouse import postgres_warehouse, query

pytestmark = pytest.mark.integration

T = "timestamp '2026-03-01 10:00:00'"
#: One valid row per bookkeeping table (the merge fills the others), as literal SQL.
ROWS = {
    "loaded_batches": f"""insert into {{schema}}.loaded_batches values ('s3://b/p/batches/x.json', 's/shard/1-2',
        date '2026-03-01', 's', 'shard', '1', '2', {T}, {T}, {T}, 2, 2, 0, false, {T})""",
    "loaded_files": f"""insert into {{schema}}.loaded_files values ('s3://b/p/data/x.parquet',
        's3://b/p/batches/x.json', 'changes', 's3://b/p/manifests/x.changes.manifest', 2, 2, 1000, {T})""",
    "rejected_records": f"""insert into {{schema}}.rejected_records values ('s', 'shard', '00042', 0, {T},
        'invalid_json', 'bad', null, null, null, 9, 's3://b/p/rejects/x.jsonl#line=1', 's3://b/p/rejects/x.parquet',
        {T})""",
    "failed_batches": f"""insert into {{schema}}.failed_batches values ('s3://b/p/batches/y.json', date '2026-03-01',
        null, 'LoadError', 'COPY failed', {T}, {T}, 1, null)""",
    "reconciliation_runs": f"""insert into {{schema}}.reconciliation_runs values ('run-1', {T}, 1, 1, 1, 0, 0, 0, 0,
        0, 0, 0, null, 0, true)""",
}
#: Table -> the check that guards its grain.
GRAIN_CHECKS = {
    "records": "records_keys_unique",
    "record_changes": "record_changes_versions_unique",
    "dataset_deletes": "dataset_deletes_unique",
    "datasets": "datasets_keys_unique",
    "rejected_records": "rejected_records_unique",
    "loaded_batches": "loaded_batches_unique",
    "loaded_files": "loaded_files_unique",
    "failed_batches": "failed_batches_unique",
    "bulk_publish_runs": "bulk_publish_runs_unique",
    "reconciliation_runs": "reconciliation_runs_unique",
    "schema_migrations": "schema_migrations_unique",
}


@pytest.fixture
def warehouse(stack) -> Iterator[PostgresWarehouse]:  # type: ignore[no-untyped-def]
    # A schema as Redshift treats it: keys declared nowhere enforced; one row in every contract table.
    with postgres_warehouse(unique_keys=False) as wh:
        wh.merge_changes([change("coins", "1", 1, 0), change("level", "2", 1, 0, index=1), dataset_remove(2, 10)])
        wh.record_bulk_publish_attempt(
            BulkPublishAttempt(
                attempt_id="run-1/pool",
                identity_pool_id="us-east-1:aaaaaaaa-0000-4000-8000-000000000001",
                requested_at=datetime(2026, 3, 1, tzinfo=UTC),
                decision="start",
                status="IN_PROGRESS",
            )
        )
        for statement in ROWS.values():
            query(wh, statement)
        yield wh


def test_a_clean_schema_passes_every_check(warehouse: PostgresWarehouse) -> None:
    assert [r for r in warehouse.quality_checks(datetime(1970, 1, 1)) if not r.ok] == []


@pytest.mark.parametrize("table", sorted(GRAIN_CHECKS))
def test_a_duplicate_row_is_caught_by_its_check(warehouse: PostgresWarehouse, table: str) -> None:
    # GIVEN a table whose one row is copied: nothing refuses it (no unique key, as on Redshift)
    since = datetime(1970, 1, 1)
    assert query(warehouse, f"select count(*) from {{schema}}.{table}")[0][0] >= 1
    query(warehouse, f"insert into {{schema}}.{table} select * from {{schema}}.{table}")
    # WHEN the data-quality checks run
    results = {r.name: r for r in warehouse.quality_checks(since)}
    # THEN the table's grain check fails, naming an example, and the run fails loudly with it
    assert not results[GRAIN_CHECKS[table]].ok, results[GRAIN_CHECKS[table]]
    assert results[GRAIN_CHECKS[table]].example
    with pytest.raises(DataQualityError, match=GRAIN_CHECKS[table]):
        warehouse.check_quality(since)


def test_every_promised_grain_has_a_check(warehouse: PostgresWarehouse) -> None:
    # The docs' table list (docs/warehouse.md "Tables") and the checks agree: a table with a grain has its check.
    names = {r.name for r in warehouse.quality_checks(datetime(1970, 1, 1))}
    assert set(GRAIN_CHECKS.values()) <= names
