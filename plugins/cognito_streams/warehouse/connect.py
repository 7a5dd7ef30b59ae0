"""Opening the warehouse from the Airflow connection named in the settings.

The only switch between Redshift and the PostgreSQL stand-in is the conn_type of the warehouse
connection (settings.warehouse_conn_id, ``redshift_default``): nothing else branches on the target.
"""

from __future__ import annotations

from cognito_streams.settings import PipelineSettings
from cognito_streams.warehouse.base import Warehouse
from cognito_streams.warehouse.models import WarehouseError, WriteManifest
from cognito_streams.warehouse.postgres import Fetch

SUPPORTED_CONN_TYPES = ("redshift", "postgres")


def open_warehouse(
    settings: PipelineSettings, *, fetch: Fetch | None = None, write_manifest: WriteManifest | None = None
) -> Warehouse:
    """The warehouse of settings.warehouse_conn_id: Redshift (redshift-connector via RedshiftSQLHook) or
    PostgreSQL (psycopg 3 with the connection's host, port, login, password and schema = database).
    To load files, the loader gives both ways to the landing zone (``landing_zone.reader.LandingReader``);
    each engine takes the one it needs: ``fetch`` reads landed files (the PostgreSQL stand-in streams them),
    ``write_manifest`` writes the load's combined COPY manifest (Redshift reads the files itself)."""
    from airflow.sdk.bases.hook import BaseHook

    conn_id = settings.warehouse_conn_id
    conn = BaseHook.get_connection(conn_id)
    if conn.conn_type == "redshift":
        from airflow.providers.amazon.aws.hooks.redshift_sql import RedshiftSQLHook

        from cognito_streams.warehouse.redshift import RedshiftWarehouse

        if not settings.copy_iam_role_arn:
            raise WarehouseError(
                f"connection {conn_id} is Redshift but cognito_pipeline.copy_iam_role_arn is not set; set it to the "
                "IAM role Redshift assumes to read the landing bucket (see docs/warehouse.md)"
            )
        return RedshiftWarehouse(
            RedshiftSQLHook(redshift_conn_id=conn_id).get_conn(),
            settings.warehouse_schema,
            copy_iam_role_arn=settings.copy_iam_role_arn,
            write_manifest=write_manifest,
        )
    if conn.conn_type == "postgres":
        import psycopg

        from cognito_streams.warehouse.postgres import PostgresWarehouse

        extra = conn.extra_dejson
        pg = psycopg.connect(
            host=conn.host,
            port=conn.port or 5432,
            user=conn.login,
            password=conn.password,
            dbname=conn.schema or None,
            sslmode=extra.get("sslmode", "prefer"),
            application_name="cognito_s3_to_redshift",
            connect_timeout=int(extra.get("connect_timeout", 30)),
        )
        return PostgresWarehouse(pg, settings.warehouse_schema, fetch=fetch)
    raise WarehouseError(
        f"connection {conn_id} has conn_type {conn.conn_type!r}; the warehouse connection must be one of "
        f"{SUPPORTED_CONN_TYPES} ('redshift' for Amazon Redshift, 'postgres' for the local stand-in)"
    )
