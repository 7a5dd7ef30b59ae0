"""Reading the warehouse's state back, in the reference model's shapes, and isolated schemas for tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg

from cognito_streams.core.state import DatasetState, RecordState, WarehouseState
from cognito_streams.settings import PipelineSettings, parse_settings
from cognito_streams.warehouse.base import Warehouse
from cognito_streams.warehouse.postgres import Fetch, PostgresWarehouse
from cognito_streams.warehouse.redshift import RedshiftWarehouse


def unique_schema(prefix: str = "t") -> str:
    """A schema name no other test uses (tests share one PostgreSQL)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def connect() -> psycopg.Connection[Any]:
    """A psycopg connection straight to the database the pipeline's warehouse lives in, on the session stack's
    PostgreSQL: the stand-in's (``CS_WAREHOUSE_DSN``), or with ``CS_WAREHOUSE=redshift`` (``tests.conftest.
    warehouse_env``) the Redshift emulator's, past its gate. For test set-up, reading back and tampering; the
    pipeline itself goes through its connection."""
    return psycopg.connect(admin_dsn())


def admin_dsn() -> str:
    """The libpq DSN :func:`connect` uses."""
    if os.environ.get("CS_WAREHOUSE") != "redshift":
        return os.environ["CS_WAREHOUSE_DSN"]
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    dsn = conninfo_to_dict(os.environ["CS_WAREHOUSE_DSN"])
    redshift = conninfo_to_dict(os.environ["CS_REDSHIFT_DSN"])
    return make_conninfo(**{**dsn, "dbname": redshift["dbname"]})


def is_redshift() -> bool:
    """Whether the pipeline's warehouse is the Redshift emulator (``tests.conftest.warehouse_env``)."""
    return os.environ.get("CS_WAREHOUSE") == "redshift"


def landing_prefix(name: str) -> str:
    """A landing prefix for one test, under the stack's ``cognito-streams/``: the shipped COPY role that the Redshift
    emulator checks (``redshift-copy-role.policy.json``) lets Redshift read that prefix only."""
    return f"cognito-streams/tests/{name}"


@contextmanager
def postgres_warehouse(
    schema: str | None = None, fetch: Fetch | None = None, *, unique_keys: bool = True
) -> Iterator[PostgresWarehouse]:
    """A PostgresWarehouse on a fresh schema (created and migrated), dropped afterwards. ``unique_keys=False``:
    without its primary keys and unique indexes, as Redshift treats them (:func:`drop_unique_keys`)."""
    schema = schema or unique_schema()
    wh = PostgresWarehouse(connect(), schema, fetch=fetch)
    try:
        wh.ensure_schema()
        if not unique_keys:
            drop_unique_keys(schema)
        yield wh
    finally:
        wh.close()
        drop_schema(schema)


def drop_unique_keys(schema: str) -> list[str]:
    """Drop every primary key, unique constraint and unique index of ``schema``: the schema as Redshift treats it
    (it accepts PRIMARY KEY and UNIQUE but enforces neither), so that only the data-quality checks can see a grain
    violation. Returns what was dropped."""
    dropped: list[str] = []
    with connect() as conn:
        constraints = conn.execute(
            "select c.conrelid::regclass::text, c.conname from pg_constraint c "
            "join pg_namespace n on n.oid = c.connamespace where n.nspname = %s and c.contype in ('p', 'u')",
            (schema,),
        ).fetchall()
        for table, name in constraints:
            conn.execute(f'alter table {table} drop constraint "{name}"')  # test-only; names from the catalog
            dropped.append(f"{table}.{name}")
        indexes = conn.execute(
            "select i.indexrelid::regclass::text from pg_index i join pg_class t on t.oid = i.indrelid "
            "join pg_namespace n on n.oid = t.relnamespace where n.nspname = %s and i.indisunique",
            (schema,),
        ).fetchall()
        for (index,) in indexes:
            conn.execute(f"drop index {index}")  # test-only; names from the catalog
            dropped.append(index)
    return dropped


def drop_schema(schema: str) -> None:
    """Drop a test schema and everything in it."""
    with connect() as conn:
        conn.execute(f"drop schema if exists {schema} cascade")  # test-only; schema from unique_schema()


def redshift_connect() -> Any:
    """A redshift-connector connection to the session stack's Redshift emulator (CS_REDSHIFT_DSN, exported by
    the stack fixture; the ``redshift_emulator`` fixture must have started it)."""
    import redshift_connector
    from psycopg.conninfo import conninfo_to_dict

    dsn = conninfo_to_dict(os.environ["CS_REDSHIFT_DSN"])
    return redshift_connector.connect(
        host=str(dsn["host"]),
        port=int(str(dsn["port"])),
        user=str(dsn["user"]),
        password=str(dsn["password"]),
        database=str(dsn["dbname"]),
        ssl=False,
    )


def redshift_admin() -> psycopg.Connection[Any]:
    """A psycopg connection straight to the emulator's database on PostgreSQL (no gate: test set-up and
    clean-up only)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    dsn = conninfo_to_dict(os.environ["CS_WAREHOUSE_DSN"])
    redshift = conninfo_to_dict(os.environ["CS_REDSHIFT_DSN"])
    return psycopg.connect(make_conninfo(**{**dsn, "dbname": redshift["dbname"]}), autocommit=True)


@contextmanager
def redshift_warehouse(schema: str | None = None) -> Iterator[RedshiftWarehouse]:
    """A RedshiftWarehouse through the Redshift emulator (redshift-connector, as in production) on a fresh
    schema (created and migrated), dropped afterwards; mirrors postgres_warehouse()."""
    schema = schema or unique_schema()
    settings = pipeline_settings()
    wh = RedshiftWarehouse(redshift_connect(), schema, copy_iam_role_arn=settings.copy_iam_role_arn)
    try:
        wh.ensure_schema()
        yield wh
    finally:
        wh.close()
        with redshift_admin() as admin:
            admin.execute(f"drop schema if exists {schema} cascade")  # test-only; schema from unique_schema()


def query(wh: Warehouse, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Rows of a query, as tuples whatever the driver (redshift-connector gives lists; ``{schema}`` in ``sql`` is the
    warehouse's schema)."""
    with wh.transaction() as cur:
        cur.execute(sql.replace("{schema}", wh.schema), params)
        return [tuple(row) for row in cur.fetchall()] if cur.description else []


def read_state(wh: Warehouse) -> WarehouseState:
    """records and datasets as the reference model's WarehouseState."""
    records = {
        (r[0], r[1], r[2], r[3]): RecordState(*r[4:])
        for r in query(
            wh,
            "select identity_pool_id, identity_id, dataset_name, record_key, op, record_value, value_bytes, "
            "is_value_cut, value_ref, sync_count, last_modified_at, device_last_modified_at, is_deleted "
            "from {schema}.records",
        )
    }
    datasets = {
        (r[0], r[1], r[2]): DatasetState(*r[3:])
        for r in query(
            wh,
            "select identity_pool_id, identity_id, dataset_name, last_sync_count, last_modified_at, is_deleted, "
            "deleted_at, live_record_count from {schema}.datasets",
        )
    }
    return WarehouseState(records=records, datasets=datasets)


def table_counts(wh: Warehouse) -> dict[str, int]:
    """Row counts of every contract table (to show that nothing partial remains)."""
    tables = [
        "records", "record_changes", "dataset_deletes", "datasets", "loaded_batches", "loaded_files",
        "rejected_records", "bulk_publish_runs",
    ]  # fmt: skip
    return {t: query(wh, f"select count(*) from {{schema}}.{t}")[0][0] for t in tables}


def pipeline_settings(**overrides: Any) -> PipelineSettings:
    """The stack's cognito_pipeline Variable (exported by the stack fixture), with overrides."""
    raw = orjson.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"])
    raw.update(overrides)
    return parse_settings(raw)
