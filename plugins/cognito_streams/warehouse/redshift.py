"""Amazon Redshift (conn_type ``redshift``): redshift-connector through the Amazon provider's RedshiftSQLHook,
and one server-side COPY per stage table per load.

``COPY <stage> FROM 's3://.../load-manifests/<stage>/<digest>.manifest' IAM_ROLE '<arn>' FORMAT AS PARQUET
MANIFEST``: Redshift reads the files itself, so no data passes through the worker, and the statement names a
role, never keys. The manifest is written for the load: it lists every file of every batch of the transaction
(AWS advises one COPY of many files over many COPYs: Redshift spreads one COPY's files over all slices), under
the landing prefix through the callable the loader gives (``write_manifest``). When the COPY fails, the
transaction is rolled back and the failing file, line and reason are read from ``sys_load_error_detail`` into the
error the task shows; when that view has no row (for columnar files Redshift logs only some errors there), the
error lists the files the manifest holds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import orjson
import redshift_connector

from cognito_streams.core.landing_format import FileRef, copy_manifest
from cognito_streams.core.loading.plan import load_manifest_name
from cognito_streams.core.sql_text import SqlLibrary
from cognito_streams.warehouse.base import Connection, Cursor, Warehouse, utcnow
from cognito_streams.warehouse.models import LoadError, Manifest, ManifestEntry, WarehouseError, WriteManifest

log = logging.getLogger(__name__)

#: How far back (worker clock) this session's load errors are looked for; covers clock skew.
LOAD_ERROR_LOOKBACK = timedelta(minutes=15)
#: Files named in an error that has no detail row (the rest are counted).
FILES_NAMED = 10


class RedshiftWarehouse(Warehouse):
    """The warehouse on Amazon Redshift."""

    engine = "redshift"

    def __init__(
        self,
        conn: Connection,
        schema: str,
        *,
        copy_iam_role_arn: str | None,
        write_manifest: WriteManifest | None = None,
        library: SqlLibrary | None = None,
    ) -> None:
        super().__init__(conn, schema, library=library)
        self.copy_iam_role_arn = copy_iam_role_arn
        self._write_manifest = write_manifest

    def _after_migrations(self, cur: Cursor) -> None:
        """Nothing: Redshift's table attributes are part of the DDL (redshift_table_attributes.sql)."""

    def _begin(self, cur: Cursor) -> None:
        """Nothing to tune: Redshift sizes query memory through workload management, not per session."""

    def _after_work_table(self, cur: Cursor, table: str) -> None:
        """Nothing to do: Redshift computes statistics itself when CREATE TABLE AS or COPY fills an empty table."""

    def _stage(self, cur: Cursor, table: str, manifests: Sequence[Manifest]) -> None:
        entries = [e for m in manifests for e in m.entries]
        if not entries:
            return
        if self._write_manifest is None:
            raise WarehouseError(
                "this RedshiftWarehouse was opened without a way to write the load's COPY manifest "
                "(write_manifest); it cannot load files"
            )
        body = orjson.dumps(
            copy_manifest([FileRef(url=e.url, rows=e.record_count, bytes=e.content_length) for e in entries])
        )
        url = self._write_manifest(load_manifest_name(table, [e.url for e in entries]), body)
        statement = self.sql.copy_from_manifest(table, url, self.copy_iam_role_arn)
        started = utcnow() - LOAD_ERROR_LOOKBACK
        try:
            cur.execute(statement)
        except redshift_connector.Error as err:
            message, files = self._describe_copy_error(url, entries, err, started)
            raise LoadError(message, files=files) from err
        log.debug(
            "Staged %d file(s) of %d manifest(s) into %s with one COPY (%s)", len(entries), len(manifests), table, url
        )

    def _describe_copy_error(
        self, manifest_url: str, entries: Sequence[ManifestEntry], err: Exception, since: datetime
    ) -> tuple[str, set[str]]:
        """The COPY's error, with the failing file, line and reason from sys_load_error_detail, and the files of
        the manifest found at fault (named by that view or by the error text)."""
        # The failed COPY aborted the transaction: end it before reading the system view.
        self._conn.rollback()
        details: list[str] = []
        named: list[str] = []
        cur = self._conn.cursor()
        try:
            cur.execute(self.sql.load_error_detail(), (since,))
            for file_name, line_number, column_name, error_code, error_message in cur.fetchall():
                named.append(str(file_name))
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
        files = _files_named(entries, [*named, str(err)])
        if not named:
            listed = [e.url for e in entries]
            at_fault = sorted(files) or listed
            shown = ", ".join(at_fault[:FILES_NAMED]) + (
                f" and {len(at_fault) - FILES_NAMED} more" if len(at_fault) > FILES_NAMED else ""
            )
            which = "the error names" if files else f"the manifest lists {len(listed)} file(s)"
            details.append(
                "(sys_load_error_detail has no row for this session: for Parquet files Redshift logs only some errors "
                f"there; {which}: {shown})"
            )
        where = "\n  ".join(details)
        return (
            f"COPY from {manifest_url} failed: {err}\n  {where}\n"
            "Nothing of these batches was merged. Fix or re-land the file named above, then clear the task to retry",
            files,
        )


def _files_named(entries: Sequence[ManifestEntry], texts: Sequence[str]) -> set[str]:
    """The manifest's files that appear in any of ``texts``, by their s3:// URL or their key (Redshift's Parquet
    errors name a file as ``https://<bucket>.s3.<region>.amazonaws.com/<key>``)."""
    found = set()
    for entry in entries:
        key = entry.url.split("/", 3)[3] if entry.url.count("/") >= 3 else entry.url
        if any(entry.url in text or key in text for text in texts):
            found.add(entry.url)
    return found
