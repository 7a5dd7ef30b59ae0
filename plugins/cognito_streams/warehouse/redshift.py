"""Amazon Redshift (conn_type ``redshift``): redshift-connector through the Amazon provider's
RedshiftSQLHook, and a server-side COPY per manifest.

``COPY <stage> FROM 's3://.../x.changes.manifest' IAM_ROLE '<arn>' FORMAT AS PARQUET MANIFEST``: Redshift
reads the files itself, so no data passes through the worker, and the statement names a role, never keys.
When a COPY fails, the transaction is rolled back and the failing file, line and reason are read from
``sys_load_error_detail`` into the error the task shows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import redshift_connector

from cognito_streams.core.sql_text import SqlLibrary
from cognito_streams.warehouse.base import Connection, Cursor, Warehouse, utcnow
from cognito_streams.warehouse.models import LoadError, Manifest

log = logging.getLogger(__name__)

#: How far back (worker clock) this session's load errors are looked for; covers clock skew.
LOAD_ERROR_LOOKBACK = timedelta(minutes=15)


class RedshiftWarehouse(Warehouse):
    """The warehouse on Amazon Redshift."""

    engine = "redshift"

    def __init__(
        self,
        conn: Connection,
        schema: str,
        *,
        copy_iam_role_arn: str | None,
        library: SqlLibrary | None = None,
    ) -> None:
        super().__init__(conn, schema, library=library)
        self.copy_iam_role_arn = copy_iam_role_arn

    def _after_migrations(self, cur: Cursor) -> None:
        """Nothing: Redshift's table attributes are part of the DDL (redshift_table_attributes.sql)."""

    def _begin(self, cur: Cursor) -> None:
        """Nothing to tune: Redshift sizes query memory through workload management, not per session."""

    def _after_work_table(self, cur: Cursor, table: str) -> None:
        """Nothing to do: Redshift computes statistics itself when CREATE TABLE AS or COPY fills an empty table."""

    def _stage(self, cur: Cursor, table: str, manifests: Sequence[Manifest]) -> None:
        for manifest in manifests:
            statement = self.sql.copy_from_manifest(table, manifest.url, self.copy_iam_role_arn)
            started = utcnow() - LOAD_ERROR_LOOKBACK
            try:
                cur.execute(statement)
            except redshift_connector.Error as err:
                raise LoadError(self._describe_copy_error(manifest, err, started)) from err
            log.debug("Staged %s into %s (%d file(s))", manifest.url, table, len(manifest.entries))

    def _describe_copy_error(self, manifest: Manifest, err: Exception, since: Any) -> str:
        """The COPY's error, with the failing file, line and reason from sys_load_error_detail."""
        # The failed COPY aborted the transaction: end it before reading the system view.
        self._conn.rollback()
        details: list[str] = []
        cur = self._conn.cursor()
        try:
            cur.execute(self.sql.load_error_detail(), (since,))
            for file_name, line_number, column_name, error_code, error_message in cur.fetchall():
                details.append(
                    f"{file_name}, line {line_number}, column {column_name or '-'}: {error_message} (code {error_code})"
                )
            self._conn.rollback()
        except redshift_connector.Error as lookup_err:
            # The COPY error still goes up; only say why its details are missing.
            self._conn.rollback()
            details.append(f"(sys_load_error_detail could not be read: {lookup_err})")
        finally:
            cur.close()
        where = "\n  ".join(details) if details else "(sys_load_error_detail has no row for this session)"
        return (
            f"COPY from {manifest.url} failed: {err}\n  {where}\n"
            "Nothing of this batch was merged. Fix or re-land the file named above, then clear the task to retry"
        )
