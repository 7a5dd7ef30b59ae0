"""``COPY <table> FROM 's3://...' IAM_ROLE '<arn>' FORMAT AS PARQUET [MANIFEST]`` for the Redshift emulator.

PostgreSQL cannot read S3, so the emulator does what Redshift does for a columnar COPY: it checks the
statement against what Redshift allows with Parquet, assumes the IAM role (it must exist in the stack's IAM
and trust ``redshift.amazonaws.com``; its policies must let it read the objects), reads the manifest
(``meta.content_length`` required for Parquet) or lists the prefix, then reads each file from the stack's S3
with pyarrow, one batch of rows at a time, maps its columns to the table's by position, checks types, byte
widths and NOT NULL as Redshift would, and streams the rows into the table with ``COPY ... FROM STDIN`` in the
session's transaction.

Errors carry Redshift's text where it is known (docs/redshift-emulator.md, "COPY from S3", lists each one
and its source). Redshift logs only some columnar COPY errors in its system views; the emulator logs the same
kinds (errors found reading a file's data or schema) through :class:`LoadErrorLog`'s own autocommit
connection, so that a row survives the rollback of the failed load, as in Redshift.
"""

from __future__ import annotations

import codecs
import fnmatch
import io
import json
import logging
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import unquote

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql

from local.redshift.errors import RedshiftError
from local.redshift.parquet_types import (
    ParquetColumn,
    TargetColumn,
    describe_columns,
    incompatibility,
)

log = logging.getLogger(__name__)

#: The service principal a role must trust for Redshift to assume it.
REDSHIFT_PRINCIPAL = "redshift.amazonaws.com"
#: Schema of the emulator's system tables (the wire server puts it on every session's search_path).
SYSTEM_SCHEMA = "redshift_sys"
#: Rows per batch read from a Parquet file and sent to PostgreSQL: memory is bounded by one batch per COPY.
BATCH_ROWS = 16_384
#: Besides FROM and the format, AWS lists these COPY parameters as supported with columnar formats (COPY from
#: columnar data formats): ACCEPTINVCHARS, FILLRECORD, IAM_ROLE, CREDENTIALS, STATUPDATE, MANIFEST, EXPLICIT_IDS,
#: ACCESS_KEY_ID/SECRET_ACCESS_KEY/SESSION_TOKEN (key credentials: valid Redshift, refused here by policy).
_KEY_PARAMETERS = frozenset({"ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN"})
#: Every other COPY parameter of Redshift's reference (and its argument shape): valid COPY, refused with
#: Parquet as "<NAME> argument is not supported for PARQUET based COPY".
_OTHER_PARAMETERS = frozenset(
    {
        "REGION", "MAXERROR", "ACCEPTANYDATE", "BLANKSASNULL", "DATEFORMAT", "EMPTYASNULL", "ENCODING", "ESCAPE",
        "IGNOREBLANKLINES", "IGNOREHEADER", "NULL", "REMOVEQUOTES", "ROUNDEC", "TIMEFORMAT", "TRIMBLANKS",
        "TRUNCATECOLUMNS", "COMPROWS", "COMPUPDATE", "NOLOAD", "IGNOREALLERRORS", "GZIP", "BZIP2", "LZOP", "ZSTD",
        "ENCRYPTED", "MASTER_SYMMETRIC_KEY", "DELIMITER", "READRATIO", "SSH", "QUOTE", "JSONPATHS",
    }
)  # fmt: skip
_FORMATS = frozenset({"PARQUET", "ORC", "CSV", "JSON", "AVRO", "FIXEDWIDTH", "SHAPEFILE"})
_WORD_ARGUMENTS = frozenset({"ON", "OFF", "TRUE", "FALSE", "PRESET", "AUTO", "UTF8", "UTF16", "UTF16LE", "UTF16BE"})
_ROLE_ARN = re.compile(r"^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):role/(?P<path_and_name>[\w+=,.@/-]+)$")
_LOAD_FAILED = "Load into table '{table}' failed.  Check 'sys_load_error_detail' system table for details."


# --------------------------------------------------------------------------------------------- the statement


@dataclass(frozen=True)
class CopyCommand:
    """A COPY from S3 that the emulator runs: always FORMAT AS PARQUET with an IAM role (parse_copy refuses
    every other form). Names are as PostgreSQL resolves them (unquoted ones folded to lower case)."""

    table: str
    schema: str | None
    columns: tuple[str, ...] | None
    source: str  # s3://bucket/key: the manifest (manifest=True) or a key prefix
    iam_role: str
    manifest: bool
    format: str = "PARQUET"
    acceptinvchars: str | None = None  # the replacement character when ACCEPTINVCHARS is given
    fillrecord: bool = False
    explicit_ids: bool = False
    statupdate: bool | None = None  # accepted and ignored: the emulator keeps no table statistics

    @property
    def qualified_name(self) -> str:
        """``schema.table`` (or ``table``), for messages."""
        return f"{self.schema}.{self.table}" if self.schema else self.table

    def target(self) -> sql.Composable:
        """The table as a quoted SQL identifier."""
        return sql.Identifier(self.schema, self.table) if self.schema else sql.Identifier(self.table)


@dataclass(frozen=True)
class _Token:
    kind: str  # word, ident (double-quoted), string, number, punct
    text: str

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


_TOKEN = re.compile(
    r"""\s+|--[^\n]*|/\*.*?\*/
    |(?P<string>'(?:[^']|'')*')
    |(?P<ident>"(?:[^"]|"")*")
    |(?P<number>\d+(?:\.\d+)?)
    |(?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    |(?P<punct>[(),.;=])""",
    re.VERBOSE | re.DOTALL,
)


def _tokens(text: str) -> list[_Token] | None:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            return None  # something COPY's grammar has no place for: not ours to parse
        pos = match.end()
        kind = match.lastgroup
        if kind is None:
            continue
        value = match.group(kind)
        if kind == "string":
            value = value[1:-1].replace("''", "'")
        elif kind == "ident":
            value = value[1:-1].replace('""', '"')
        tokens.append(_Token(kind, value))
    return tokens


def _syntax_error(near: _Token | None) -> RedshiftError:
    where = f'at or near "{near.text}"' if near else "at end of input"
    return RedshiftError(f"syntax error {where}", sqlstate="42601")


def _emulator_refuses(what: str, *, hint: str | None = None) -> RedshiftError:
    return RedshiftError(f"the Redshift emulator does not run {what}", sqlstate="0A000", hint=hint)


class _Cursor:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> _Token | None:
        token = self.peek()
        self.pos += token is not None
        return token

    def take_word(self, *words: str) -> bool:
        token = self.peek()
        if token is not None and token.upper in words:
            self.pos += 1
            return True
        return False

    def take_punct(self, char: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "punct" and token.text == char:
            self.pos += 1
            return True
        return False

    def name(self) -> str:
        token = self.take()
        if token is None or token.kind not in ("word", "ident"):
            raise _syntax_error(token)
        return token.text.lower() if token.kind == "word" else token.text

    def string(self) -> str:
        token = self.take()
        if token is None or token.kind != "string":
            raise _syntax_error(token)
        return token.text


def parse_copy(text: str) -> CopyCommand | None:
    """The COPY that ``text`` is, if it is a ``COPY ... FROM 's3://...'``; None for any other statement
    (``COPY ... FROM STDIN`` included). Raises :class:`RedshiftError` for a COPY from S3 that Redshift refuses
    (a parameter Redshift does not allow with Parquet) or that the emulator does not run (another format, key
    credentials, SUPER columns)."""
    tokens = _tokens(text)
    if not tokens or tokens[0].upper != "COPY":
        return None
    cur = _Cursor(tokens[1:])
    try:
        parts = [cur.name()]
        while cur.take_punct("."):
            parts.append(cur.name())
    except RedshiftError:
        return None
    if len(parts) > 2:
        raise _emulator_refuses("COPY into a table named with its database (use schema.table)")
    columns: list[str] | None = None
    if cur.take_punct("("):
        columns = [cur.name()]
        while cur.take_punct(","):
            columns.append(cur.name())
        if not cur.take_punct(")"):
            raise _syntax_error(cur.peek())
    if not cur.take_word("FROM"):
        return None
    source_token = cur.peek()
    if source_token is None or source_token.kind != "string" or not source_token.text.lower().startswith("s3://"):
        return None  # FROM STDIN, DynamoDB, EMR, SSH: not a COPY from S3
    cur.take()
    options = _parse_options(cur)
    return _build_command(parts, columns, source_token.text, options)


@dataclass
class _Options:
    iam_role: str | None = None
    credentials: str | None = None
    key_parameters: list[str] = field(default_factory=list)
    format: str | None = None
    manifest: bool = False
    acceptinvchars: str | None = None
    fillrecord: bool = False
    explicit_ids: bool = False
    statupdate: bool | None = None
    serializetojson: bool = False
    unsupported: list[str] = field(default_factory=list)  # Redshift parameters not allowed with Parquet


def _parse_options(cur: _Cursor) -> _Options:
    opts = _Options()
    while True:
        while cur.take_punct(","):
            pass
        token = cur.take()
        if token is None or (token.kind == "punct" and token.text == ";"):
            if token is not None and cur.peek() is not None:
                raise _syntax_error(cur.peek())  # a second statement after the COPY
            return opts
        word = token.upper
        if word == "IAM_ROLE":
            nxt = cur.peek()
            if nxt is not None and nxt.upper == "DEFAULT":
                cur.take()
                opts.iam_role = "default"
            else:
                opts.iam_role = cur.string()
        elif (word == "WITH" and cur.take_word("CREDENTIALS")) or word == "CREDENTIALS":
            cur.take_word("AS")
            opts.credentials = cur.string()
        elif word in _KEY_PARAMETERS:
            cur.string()
            opts.key_parameters.append(word)
        elif word == "FORMAT":
            cur.take_word("AS")
            opts.format = _format(cur)
        elif word in _FORMATS or (word == "AS" and _next_upper(cur) in _FORMATS):
            if word != "AS":
                cur.pos -= 1
            opts.format = _format(cur)
        elif word == "MANIFEST":
            opts.manifest = True
        elif word == "ACCEPTINVCHARS":
            cur.take_word("AS")
            nxt = cur.peek()
            opts.acceptinvchars = cur.string() if nxt is not None and nxt.kind == "string" else "?"
        elif word == "FILLRECORD":
            opts.fillrecord = True
        elif word == "EXPLICIT_IDS":
            opts.explicit_ids = True
        elif word == "SERIALIZETOJSON":
            opts.serializetojson = True
        elif word == "STATUPDATE":
            opts.statupdate = not cur.take_word("OFF", "FALSE")
            cur.take_word("ON", "TRUE")
        elif word in _OTHER_PARAMETERS:
            opts.unsupported.append(word)
            cur.take_word("AS")
            nxt = cur.peek()
            if nxt is not None and (nxt.kind in ("string", "number") or nxt.upper in _WORD_ARGUMENTS):
                cur.take()
        else:
            raise _syntax_error(token)


def _next_upper(cur: _Cursor) -> str:
    token = cur.peek()
    return token.upper if token is not None else ""


def _format(cur: _Cursor) -> str:
    token = cur.take()
    if token is None or token.upper not in _FORMATS:
        raise _syntax_error(token)
    fmt = token.upper
    if fmt == "CSV" and cur.take_word("QUOTE"):
        cur.take_word("AS")
        cur.string()
    elif fmt in ("JSON", "AVRO"):
        cur.take_word("AS")
        nxt = cur.peek()
        if nxt is not None and nxt.kind == "string":
            cur.take()
    elif fmt == "FIXEDWIDTH":
        cur.string()
    return fmt


def _build_command(parts: list[str], columns: list[str] | None, source: str, opts: _Options) -> CopyCommand:
    fmt = opts.format or "TEXT"
    if fmt != "PARQUET":
        raise _emulator_refuses(
            f"COPY ... FORMAT AS {fmt} (only FORMAT AS PARQUET)",
            hint="The emulator runs the pipeline's loads: Parquet files named by a manifest or a key prefix.",
        )
    if opts.unsupported:
        raise RedshiftError(f"{opts.unsupported[0]} argument is not supported for PARQUET based COPY")
    if opts.serializetojson:
        raise _emulator_refuses("COPY ... SERIALIZETOJSON: it has no SUPER type")
    role = _authorization(opts)
    bucket, _, key = source[len("s3://") :].partition("/")
    if not bucket or (opts.manifest and not key):
        raise RedshiftError("COPY with MANIFEST parameter requires full path of an S3 object.", code=8001)
    if columns is not None and len(set(columns)) != len(columns):
        duplicate = next(c for c in columns if columns.count(c) > 1)
        raise RedshiftError(f'column "{duplicate}" specified more than once', sqlstate="42701")
    return CopyCommand(
        table=parts[-1],
        schema=parts[0] if len(parts) == 2 else None,
        columns=tuple(columns) if columns is not None else None,
        source=source,
        iam_role=role,
        manifest=opts.manifest,
        acceptinvchars=opts.acceptinvchars,
        fillrecord=opts.fillrecord,
        explicit_ids=opts.explicit_ids,
        statupdate=opts.statupdate,
    )


def _authorization(opts: _Options) -> str:
    key_hint = (
        "The pipeline authorizes COPY with IAM_ROLE '<arn>' only, so that no key is ever written into a SQL "
        "statement (or a log of one): use IAM_ROLE."
    )
    credentials = opts.credentials
    if opts.key_parameters or (credentials is not None and "aws_iam_role=" not in credentials.lower()):
        raise _emulator_refuses("COPY with credentials given as access keys", hint=key_hint)
    if credentials is not None and opts.iam_role is not None:
        raise RedshiftError("conflicting or redundant options: IAM_ROLE and CREDENTIALS", sqlstate="42601")
    role = opts.iam_role
    if credentials is not None:
        role = credentials.split("=", 1)[1].strip()
    if role is None:
        raise RedshiftError(
            "COPY from S3 needs authorization: IAM_ROLE 'arn:aws:iam::<account>:role/<name>'", sqlstate="42601"
        )
    if role == "default":
        raise _emulator_refuses("COPY ... IAM_ROLE default: it has no cluster with a default role; name the role")
    if "," in role:
        raise _emulator_refuses("COPY with chained IAM roles; name one role")
    return role


# --------------------------------------------------------------------------------------------- error shapes


def _detail(error: str, code: int | None, context: str, query_id: int) -> str:
    """The DETAIL block Redshift sends with its internal errors."""
    lines = ["", "  -----------------------------------------------", f"  error:  {error}"]
    if code is not None:
        lines.append(f"  code:      {code}")
    lines += [
        f"  context:   {context}",
        f"  query:     {query_id}",
        "  -----------------------------------------------",
    ]
    return "\n".join(lines)


def _https(bucket: str, key: str, region: str) -> str:
    """A file as Spectrum names it in its messages."""
    return f"https://s3.{region}.amazonaws.com/{bucket}/{key}"


def _s3_exception(code: str, status: int, message: str) -> str:
    """An S3 error as Redshift quotes it (``S3ServiceException:... ,Status 404,Error NoSuchKey,...``)."""
    rid = secrets.token_hex(8).upper()
    return f"S3ServiceException:{message},Status {status},Error {code},Rid {rid},ExtRid {rid},CanRetry 1"


@dataclass(frozen=True)
class LoadErrorRow:
    """One row of SYS_LOAD_ERROR_DETAIL / STL_LOAD_ERRORS."""

    file_name: str
    line_number: int
    column_name: str
    column_type: str
    column_length: str
    error_code: int
    error_message: str
    raw_field_value: str = ""


class _RecordedLoadError(Exception):
    """A failure Redshift records in its load-error views; run_copy logs ``row`` and raises ``error``."""

    def __init__(self, error: RedshiftError, row: LoadErrorRow) -> None:
        super().__init__(error.message)
        self.error = error
        self.row = row


# --------------------------------------------------------------------------------------------- the system tables

_BASE_TABLE = "load_errors"


class LoadErrorLog:
    """SYS_LOAD_ERROR_DETAIL and STL_LOAD_ERRORS, written through an autocommit connection of their own so
    that a failed load's rows survive its rollback (Redshift writes them outside the user's transaction).

    One base table (``redshift_sys.load_errors``) holds every column of both; the two are views over it with
    Redshift's column names and types, so ``trim(file_name)`` and friends behave as on Redshift (fixed-width
    character columns, padded). Thread-safe: the wire server's sessions share one instance."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self._dsn, autocommit=True)
        return self._conn

    def ensure_tables(self) -> None:
        """Create schema ``redshift_sys`` with the base table and the views ``sys_load_error_detail`` and
        ``stl_load_errors`` (idempotent; concurrent callers serialize), and drop rows older than seven days,
        as Redshift keeps its log views."""
        schema = sql.Identifier(SYSTEM_SCHEMA)
        base = sql.Identifier(SYSTEM_SCHEMA, _BASE_TABLE)
        with self._lock, self._connection().transaction() as tx:
            cur = tx.connection.cursor()
            cur.execute("select pg_advisory_xact_lock(hashtext('redshift_sys.load_errors'))")
            cur.execute(sql.SQL("create schema if not exists {}").format(schema))
            cur.execute(
                sql.SQL(
                    """create table if not exists {} (
                        user_id integer, query_id bigint, transaction_id bigint, session_id integer,
                        database_name character(64), table_id integer, start_time timestamp,
                        file_name character(256), line_number bigint, column_name character(127),
                        column_type character(10), column_length character(10), position integer,
                        error_code integer, error_message character(512), slice integer,
                        raw_line character(1024), raw_field_value character(1024), err_reason character(100),
                        is_partial integer, start_offset bigint, copy_job_id bigint
                    )"""
                ).format(base)
            )
            cur.execute(
                sql.SQL(
                    """create or replace view {} as select user_id, query_id, transaction_id, session_id,
                        database_name, table_id, start_time, file_name, line_number, column_name, column_type,
                        column_length, position, error_code, error_message from {}"""
                ).format(sql.Identifier(SYSTEM_SCHEMA, "sys_load_error_detail"), base)
            )
            cur.execute(
                sql.SQL(
                    """create or replace view {} as select user_id as userid, slice, table_id as tbl,
                        start_time as starttime, session_id as session, query_id::integer as query,
                        file_name as filename, line_number, column_name as colname, column_type as type,
                        column_length as col_length, position, raw_line, raw_field_value, error_code as err_code,
                        err_reason, is_partial, start_offset, copy_job_id from {}"""
                ).format(sql.Identifier(SYSTEM_SCHEMA, "stl_load_errors"), base)
            )
            cur.execute(sql.SQL("delete from {} where start_time < now() - interval '7 days'").format(base))

    def record(self, rows: Sequence[LoadErrorRow], *, context: _SessionContext) -> None:
        """Append ``rows`` (committed at once, whatever the session's transaction does next)."""
        base = sql.Identifier(SYSTEM_SCHEMA, _BASE_TABLE)
        statement = sql.SQL(
            """insert into {} (user_id, query_id, transaction_id, session_id, database_name, table_id, start_time,
                file_name, line_number, column_name, column_type, column_length, position, error_code,
                error_message, slice, raw_line, raw_field_value, err_reason, is_partial, start_offset)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0, %s, %s, 0, '', %s, %s, 0, 0)"""
        ).format(base)
        values = [
            (
                context.user_id,
                context.query_id,
                context.transaction_id,
                context.session_id,
                _fit(context.database, 64),
                context.table_id,
                context.start_time,
                _fit(row.file_name, 256),
                row.line_number,
                _fit(row.column_name, 127),
                _fit(row.column_type, 10),
                _fit(row.column_length, 10),
                row.error_code,
                _fit(row.error_message, 512),
                _fit(row.raw_field_value, 1024),
                _fit(row.error_message, 100),
            )
            for row in rows
        ]
        with self._lock:
            try:
                self._connection().cursor().executemany(statement, values)
            except psycopg.OperationalError:
                # One retry on a fresh connection (PostgreSQL restarted, idle connection dropped).
                self._conn = None
                self._connection().cursor().executemany(statement, values)

    def close(self) -> None:
        """Close the log's connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _fit(text: str, max_bytes: int) -> str:
    """``text`` cut to ``max_bytes`` UTF-8 bytes at a character boundary (the views' widths are in bytes on
    Redshift), without NUL characters (PostgreSQL text cannot hold them)."""
    raw = text.replace("\x00", "").encode()
    return raw[:max_bytes].decode("utf-8", errors="ignore") if len(raw) > max_bytes else text.replace("\x00", "")


# --------------------------------------------------------------------------------------------- running a COPY


@dataclass(frozen=True)
class _SessionContext:
    session_id: int
    query_id: int
    start_time: datetime  # UTC, naive: Redshift's timestamps are UTC without a zone
    database: str
    user_id: int
    transaction_id: int | None
    table_id: int


@dataclass(frozen=True)
class _DataFile:
    bucket: str
    key: str
    content_length: int | None  # from the manifest; None for a file found under a prefix
    size: int

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def run_copy(
    cmd: CopyCommand,
    *,
    conn: psycopg.Connection[Any],
    s3: Any,
    iam: Any,
    errors: LoadErrorLog,
    session_id: int,
    query_id: int,
) -> int:
    """Run the COPY in ``conn``'s current transaction (the session's backend connection, psycopg 3); returns
    the rows loaded. Raises :class:`RedshiftError` on failure, after logging a row in ``errors`` for the
    failures Redshift logs. What the COPY wrote before it failed is rolled back (to a savepoint when ``conn``
    is in a transaction, so the caller's transaction stays usable; the caller fails it, as Redshift does for any
    error). ``s3`` and ``iam`` are boto3 clients of the stack's moto."""
    started = time.monotonic()
    try:
        target, table_id = _resolve_table(conn, cmd)
        context = _session_context(conn, session_id, query_id, table_id)
        columns = _load_columns(conn, cmd, table_id)
    except psycopg.Error as err:
        raise _pg_error(err) from None
    policies = _assume_role(iam, cmd.iam_role, query_id)
    region = str(getattr(getattr(s3, "meta", None), "region_name", None) or "us-east-1")
    files = _resolve_files(cmd, s3, policies, query_id, region)
    loader = _FileLoader(cmd, conn, s3, columns, target, query_id, region)
    rows = 0
    try:
        with _atomic(conn):
            for data_file in files:
                rows += loader.load(data_file)
    except _RecordedLoadError as failure:
        errors.record([failure.row], context=context)
        raise failure.error from None
    log.info(
        "COPY %s from %s: %d row(s) from %d file(s) in %.2f s",
        cmd.qualified_name,
        cmd.source,
        rows,
        len(files),
        time.monotonic() - started,
    )
    return rows


@contextmanager
def _atomic(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """The COPY as one unit: a transaction of its own under autocommit, else a savepoint in the caller's."""
    if conn.autocommit:
        with conn.transaction():
            yield
        return
    conn.execute("savepoint redshift_emulator_copy")
    try:
        yield
    except BaseException:
        conn.execute("rollback to savepoint redshift_emulator_copy")
        conn.execute("release savepoint redshift_emulator_copy")
        raise
    conn.execute("release savepoint redshift_emulator_copy")


def _pg_error(err: psycopg.Error) -> RedshiftError:
    diag = err.diag
    return RedshiftError(
        (diag.message_primary or str(err)).strip(),
        sqlstate=diag.sqlstate or "XX000",
        detail=diag.message_detail,
        hint=diag.message_hint,
    )


def _resolve_table(conn: psycopg.Connection[Any], cmd: CopyCommand) -> tuple[sql.Composable, int]:
    """The target table (temporary tables of the session included) and its oid."""
    name = cmd.target().as_string(conn)
    row = conn.execute("select to_regclass(%s)::oid", (name,)).fetchone()
    if row is None or row[0] is None:
        raise RedshiftError(f'relation "{cmd.qualified_name}" does not exist', sqlstate="42P01")
    return cmd.target(), int(row[0])


def _session_context(conn: psycopg.Connection[Any], session_id: int, query_id: int, table_id: int) -> _SessionContext:
    row = conn.execute(
        "select current_database(), coalesce((select usesysid from pg_user where usename = current_user), 0)::int,"
        " txid_current_if_assigned()"
    ).fetchone()
    assert row is not None  # noqa: S101 - a select without FROM returns one row
    return _SessionContext(
        session_id=session_id,
        query_id=query_id,
        start_time=datetime.now(UTC).replace(tzinfo=None),
        database=str(row[0]),
        user_id=int(row[1]),
        transaction_id=int(row[2]) if row[2] is not None else None,
        table_id=table_id,
    )


@dataclass(frozen=True)
class _LoadColumns:
    loaded: list[TargetColumn]  # the columns the file's columns load into, in order
    omitted_not_null: list[TargetColumn]  # NOT NULL columns outside the column list without a default


def _load_columns(conn: psycopg.Connection[Any], cmd: CopyCommand, table_id: int) -> _LoadColumns:
    rows = conn.execute(
        """select a.attname, t.typname, a.atttypmod, a.attnotnull, a.atthasdef or a.attidentity <> '', a.attidentity,
                  a.attgenerated
           from pg_attribute a join pg_type t on t.oid = a.atttypid
           where a.attrelid = %s and a.attnum > 0 and not a.attisdropped
           order by a.attnum""",
        (table_id,),
    ).fetchall()
    columns = {
        name: TargetColumn.from_catalog(name, typname, typmod, not_null, has_default)
        for name, typname, typmod, not_null, has_default, _, _ in rows
    }
    generated = {name for name, *_, identity, gen in rows if gen}
    identity = {name for name, *_, ident, _ in rows if ident}
    if cmd.columns is None:
        # Redshift leaves IDENTITY columns out of the implicit column list unless EXPLICIT_IDS is given.
        names = [n for n in columns if n not in generated and (cmd.explicit_ids or n not in identity)]
    else:
        for name in cmd.columns:
            if name not in columns:
                raise RedshiftError(f'column "{name}" of relation "{cmd.table}" does not exist', sqlstate="42703")
        names = list(cmd.columns)
    omitted = [c for n, c in columns.items() if n not in names and c.not_null and not c.has_default]
    return _LoadColumns([columns[n] for n in names], omitted)


# --------------------------------------------------------------------------------------------- IAM


@dataclass(frozen=True)
class _RolePolicies:
    partition: str
    documents: list[dict[str, Any]]

    def allows(self, action: str, resource: str) -> bool:
        """An Allow for ``action`` on ``resource`` and no Deny (wildcards as IAM; conditions not evaluated)."""

        def matches(stmt: dict[str, Any]) -> bool:
            actions = [a for a in _as_list(stmt.get("Action")) if isinstance(a, str)]
            resources = [r for r in _as_list(stmt.get("Resource")) if isinstance(r, str)]
            return any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions) and any(
                fnmatch.fnmatchcase(resource, r) for r in resources
            )

        statements = [s for doc in self.documents for s in _statements(doc)]
        if any(s.get("Effect") == "Deny" and matches(s) for s in statements):
            return False
        return any(s.get("Effect") == "Allow" and matches(s) for s in statements)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _document(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(unquote(value))
    return dict(value) if isinstance(value, dict) else {}


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in _as_list(document.get("Statement")) if isinstance(s, dict)]


def _trusts_redshift(document: dict[str, Any]) -> bool:
    def lets_redshift_assume(stmt: dict[str, Any]) -> bool:
        actions = [a for a in _as_list(stmt.get("Action")) if isinstance(a, str)]
        if not any(fnmatch.fnmatchcase("sts:assumerole", a.lower()) for a in actions):
            return False
        principal = stmt.get("Principal")
        if principal == "*":
            return True
        return isinstance(principal, dict) and REDSHIFT_PRINCIPAL in _as_list(principal.get("Service"))

    statements = _statements(document)
    if any(s.get("Effect") == "Deny" and lets_redshift_assume(s) for s in statements):
        return False
    return any(s.get("Effect") == "Allow" and lets_redshift_assume(s) for s in statements)


def _not_authorized(arn: str, query_id: int, why: str) -> RedshiftError:
    message = (
        f"exception name : UnauthorizedException, error type : 135, message: Not authorized to get credentials of "
        f"role {arn}, should retry : 0"
    )
    return RedshiftError(message, detail=_detail(message, None, "", query_id), hint=why)


def _assume_role(iam: Any, arn: str, query_id: int) -> _RolePolicies:
    """What Redshift checks before it reads anything: the role exists and trusts Redshift. Returns the role's
    permission policies (inline and attached), which decide what the COPY may read."""
    match = _ROLE_ARN.match(arn)
    if match is None:
        raise _not_authorized(arn, query_id, f"{arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    name = match["path_and_name"].rsplit("/", 1)[-1]
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "NoSuchEntity":
            raise _not_authorized(arn, query_id, f"no IAM role {name!r} exists in the stack's IAM") from None
        raise RedshiftError(f"could not read IAM role {arn} from the stack's IAM: {err}") from None
    except BotoCoreError as err:
        raise RedshiftError(f"could not reach the stack's IAM to read role {arn}: {err}") from None
    if role.get("Arn") != arn:
        raise _not_authorized(arn, query_id, f"the role named {name!r} in IAM is {role.get('Arn')}, not {arn}")
    if not _trusts_redshift(_document(role.get("AssumeRolePolicyDocument"))):
        raise _not_authorized(
            arn,
            query_id,
            f"the role's trust policy does not allow {REDSHIFT_PRINCIPAL} to sts:AssumeRole "
            "(plugins/cognito_streams/iam/redshift-copy-role.trust.json is one that does)",
        )
    try:
        documents = [
            _document(iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"])
            for p in iam.list_role_policies(RoleName=name)["PolicyNames"]
        ]
        for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
            version = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=policy["DefaultVersionId"])
            documents.append(_document(version["PolicyVersion"]["Document"]))
    except (ClientError, BotoCoreError) as err:
        raise RedshiftError(f"could not read the policies of IAM role {arn} from the stack's IAM: {err}") from None
    return _RolePolicies(match["partition"], documents)


# --------------------------------------------------------------------------------------------- S3: manifest, prefix


def _manifest_error(message: str, query_id: int, code: int = 8001, context: str = "") -> RedshiftError:
    return RedshiftError(message, detail=_detail(message, code, context, query_id), code=code)


def _access_denied(
    policies: _RolePolicies, action: str, resource: str, url: str, query_id: int, prefix: str = ""
) -> RedshiftError | None:
    if policies.allows(action, resource):
        return None
    message = prefix + _s3_exception("AccessDenied", 403, "Access Denied")
    return RedshiftError(
        message,
        detail=_detail(message, 8001, f"S3 key being read : {url}", query_id),
        code=8001,
        hint=f"the role's policies do not allow {action} on {resource}",
    )


def _resolve_files(cmd: CopyCommand, s3: Any, policies: _RolePolicies, query_id: int, region: str) -> list[_DataFile]:
    bucket, _, key = cmd.source[len("s3://") :].partition("/")
    if cmd.manifest:
        return _manifest_files(cmd, s3, policies, query_id, bucket, key)
    return _prefix_files(s3, policies, query_id, bucket, key)


def _manifest_files(
    cmd: CopyCommand, s3: Any, policies: _RolePolicies, query_id: int, bucket: str, key: str
) -> list[_DataFile]:
    problem = "Problem reading manifest file - "
    denied = _access_denied(
        policies, "s3:GetObject", f"arn:{policies.partition}:s3:::{bucket}/{key}", cmd.source, query_id, problem
    )
    if denied:
        raise denied
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        raise _manifest_error(
            problem + _s3_error_text(err), query_id, context=f"S3 key being read : {cmd.source}"
        ) from None
    except BotoCoreError as err:
        raise RedshiftError(f"could not reach the stack's S3 to read {cmd.source}: {err}") from None
    try:
        manifest = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _manifest_error("Manifest file is not in correct json format", query_id) from None
    if not isinstance(manifest, dict):
        raise _manifest_error("Root must be a json object in the manifest file", query_id)
    entries = manifest.get("entries")
    if not isinstance(entries, list):
        raise _manifest_error(_manifest_format("entries"), query_id)
    listed: list[tuple[str, str, int, bool]] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise _manifest_error(_manifest_format("url"), query_id)
        url = entry["url"]
        file_bucket, _, file_key = url[len("s3://") :].partition("/") if url.startswith("s3://") else ("", "", "")
        if not file_bucket or not file_key or file_key.endswith("/"):
            raise _manifest_error("COPY with MANIFEST parameter requires full path of an S3 object.", query_id)
        # Columnar COPY reads each file by byte ranges from its end, so it needs the size up front.
        meta = entry.get("meta")
        if not isinstance(meta, dict):
            raise _manifest_error("File entry does not have 'meta' key.", query_id, code=15003)
        length = meta.get("content_length")
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise _manifest_error("File entry does not have 'content_length' key.", query_id, code=15003)
        listed.append((file_bucket, file_key, length, entry.get("mandatory") is True))
    files = []
    for file_bucket, file_key, length, mandatory in listed:
        url = f"s3://{file_bucket}/{file_key}"
        resource = f"arn:{policies.partition}:s3:::{file_bucket}/{file_key}"
        denied = _access_denied(policies, "s3:GetObject", resource, url, query_id)
        if denied:
            raise denied
        try:
            size = int(s3.head_object(Bucket=file_bucket, Key=file_key)["ContentLength"])
        except ClientError as err:
            if not mandatory and _s3_status(err) == 404:
                continue  # optional files may be missing (Using a manifest to specify data files)
            message = _s3_error_text(err)
            raise RedshiftError(
                message, detail=_detail(message, 8001, f"S3 key being read : {url}", query_id), code=8001
            ) from None
        except BotoCoreError as err:
            raise RedshiftError(f"could not reach the stack's S3 to read {url}: {err}") from None
        files.append(_DataFile(file_bucket, file_key, length, size))
    if not files:
        raise _manifest_error(
            f"No files to load: the manifest {cmd.source} lists none that exists", query_id, context=cmd.source
        )
    return files


def _manifest_format(field_name: str) -> str:
    return (
        f"Manifest file is not in expected format - '{field_name}' field missing. Please check the user "
        "documentation for the correct format of manifest file during copy command."
    )


def _s3_status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _s3_error_text(err: ClientError) -> str:
    code = str(err.response.get("Error", {}).get("Code", "Unknown"))
    status = _s3_status(err)
    if code in ("NoSuchKey", "404", "NotFound"):
        return _s3_exception("NoSuchKey", 404, "The specified key does not exist.")
    if code == "NoSuchBucket":
        return _s3_exception("NoSuchBucket", 404, "The specified bucket does not exist")
    if code in ("AccessDenied", "403"):
        return _s3_exception("AccessDenied", 403, "Access Denied")
    return _s3_exception(code, status, str(err.response.get("Error", {}).get("Message", code)))


def _prefix_files(s3: Any, policies: _RolePolicies, query_id: int, bucket: str, prefix: str) -> list[_DataFile]:
    url = f"s3://{bucket}/{prefix}"
    denied = _access_denied(policies, "s3:ListBucket", f"arn:{policies.partition}:s3:::{bucket}", url, query_id)
    if denied:
        raise denied
    files = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"].rsplit("/", 1)[-1]
                # Folder markers and Hadoop/Spark side files (_SUCCESS, .crc) are not data.
                if not name or name.startswith(("_", ".")):
                    continue
                files.append(_DataFile(bucket, obj["Key"], None, int(obj["Size"])))
    except ClientError as err:
        message = _s3_error_text(err)
        raise RedshiftError(message, detail=_detail(message, 8001, f"S3 prefix: {url}", query_id), code=8001) from None
    except BotoCoreError as err:
        raise RedshiftError(f"could not reach the stack's S3 to list {url}: {err}") from None
    if not files:
        message = f"The specified S3 prefix '{prefix}' does not exist"
        raise RedshiftError(message, detail=_detail(message, 8001, url, query_id), code=8001)
    for data_file in files:
        resource = f"arn:{policies.partition}:s3:::{bucket}/{data_file.key}"
        denied = _access_denied(policies, "s3:GetObject", resource, data_file.url, query_id)
        if denied:
            raise denied
    return files


# --------------------------------------------------------------------------------------------- reading a file


def _spectrum_error(code: int, context: str, query_id: int, hint: str | None = None) -> RedshiftError:
    return RedshiftError(
        "Spectrum Scan Error", detail=_detail("Spectrum Scan Error", code, context, query_id), code=code, hint=hint
    )


_CSV = pa_csv.WriteOptions(include_header=False)


def _replacing_handler(replacement: str) -> str:
    """A codecs error handler that puts ``replacement`` in place of each invalid byte (ACCEPTINVCHARS)."""
    name = f"redshift_emulator_acceptinvchars_{ord(replacement)}"

    def handler(err: UnicodeError) -> tuple[str, int]:
        assert isinstance(err, UnicodeDecodeError)  # noqa: S101 - registered for decoding only
        return replacement * (err.end - err.start), err.end

    try:
        codecs.lookup_error(name)
    except LookupError:
        codecs.register_error(name, handler)
    return name


class _FileLoader:
    """Loads one data file after another into the target table, in the caller's transaction."""

    def __init__(
        self,
        cmd: CopyCommand,
        conn: psycopg.Connection[Any],
        s3: Any,
        columns: _LoadColumns,
        target: sql.Composable,
        query_id: int,
        region: str,
    ) -> None:
        self.cmd = cmd
        self.conn = conn
        self.s3 = s3
        self.columns = columns
        self.query_id = query_id
        self.region = region
        self.copy_sql = sql.SQL("copy {} ({}) from stdin with (format csv)").format(
            target, sql.SQL(", ").join(sql.Identifier(c.name) for c in columns.loaded)
        )

    def load(self, data_file: _DataFile) -> int:
        """Load one file; returns its row count. Raises _RecordedLoadError or RedshiftError."""
        with tempfile.TemporaryFile(prefix="redshift-copy-") as spool:
            self._download(data_file, spool)
            spool.seek(0)
            try:
                parquet = pq.ParquetFile(spool)
            except (pa.ArrowInvalid, OSError):
                raise self._invalid_file(data_file) from None
            parquet_columns = describe_columns(parquet)
            self._check_schema(data_file, parquet_columns)
            if parquet.metadata.num_rows and self.columns.omitted_not_null:
                column = self.columns.omitted_not_null[0]
                raise self._load_failure(data_file, 1, column, 1213, "Missing data for not-null field")
            return self._stream(data_file, parquet, parquet_columns)

    def _download(self, data_file: _DataFile, spool: IO[bytes]) -> None:
        https = _https(data_file.bucket, data_file.key, self.region)
        if data_file.content_length is not None and data_file.content_length > data_file.size:
            # Spectrum asks for the footer at the manifest's length: past the end of the object.
            raise _spectrum_error(
                15001,
                "Error: HTTP response error code: 416 Message: InvalidRange The requested range is not satisfiable, "
                f"File name: {https}",
                self.query_id,
                hint=f"{data_file.url} is {data_file.size} bytes; the manifest says content_length "
                f"{data_file.content_length}",
            )
        try:
            self.s3.download_fileobj(data_file.bucket, data_file.key, spool)
        except ClientError as err:
            message = _s3_error_text(err)
            raise RedshiftError(
                message, detail=_detail(message, 8001, f"S3 key being read : {data_file.url}", self.query_id), code=8001
            ) from None
        except BotoCoreError as err:
            raise RedshiftError(f"could not reach the stack's S3 to read {data_file.url}: {err}") from None
        if data_file.content_length is not None and data_file.content_length < data_file.size:
            # Spectrum reads only content_length bytes: the footer it finds there is not a Parquet footer.
            spool.truncate(data_file.content_length)

    def _invalid_file(self, data_file: _DataFile) -> RedshiftError:
        https = _https(data_file.bucket, data_file.key, self.region)
        hint = f"{data_file.url} is not a readable Parquet file"
        if data_file.content_length is not None and data_file.content_length != data_file.size:
            hint += f" in its first {data_file.content_length} bytes (the manifest's content_length; it is "
            hint += f"{data_file.size} bytes)"
        return _spectrum_error(15001, f"File '{https} has an invalid version number", self.query_id, hint=hint)

    def _check_schema(self, data_file: _DataFile, parquet_columns: list[ParquetColumn]) -> None:
        loaded = self.columns.loaded
        n_file, n_table = len(parquet_columns), len(loaded)
        if n_file > n_table or (n_file < n_table and not self.cmd.fillrecord):
            context = (
                f"Unmatched number of columns between table and file. Table columns: {n_table}, Data columns: "
                f"{n_file}, File name: {_https(data_file.bucket, data_file.key, self.region)}"
            )
            row = LoadErrorRow(data_file.url, 0, "", "", "", 15007, f"Spectrum Scan Error. {context}")
            raise _RecordedLoadError(_spectrum_error(15007, context, self.query_id), row)
        if n_file < n_table:
            # FILLRECORD: the missing trailing columns load as NULL.
            for column in loaded[n_file:]:
                if column.not_null:
                    raise self._load_failure(data_file, 1, column, 1213, "Missing data for not-null field")
        for pcol, column in zip(parquet_columns, loaded, strict=False):
            why = incompatibility(pcol, column)
            if why is None:
                continue
            context = (
                f"File '{_https(data_file.bucket, data_file.key, self.region)}' has an incompatible Parquet schema "
                f"for column '{data_file.url}.{column.name}'. Column type: {column.redshift_type}, Parquet schema:\n"
                f"{pcol.schema_text}"
            )
            row = LoadErrorRow(
                data_file.url,
                0,
                column.name,
                column.column_type,
                column.column_length,
                15007,
                f"Spectrum Scan Error. {context}",
            )
            raise _RecordedLoadError(_spectrum_error(15007, context, self.query_id, hint=why), row)

    def _load_failure(
        self, data_file: _DataFile, line: int, column: TargetColumn, code: int, reason: str, value: str = ""
    ) -> _RecordedLoadError:
        message = _LOAD_FAILED.format(table=self.cmd.table)
        context = f"{reason}. File: {data_file.url}, line {line}, column {column.name}"
        error = RedshiftError(message, detail=_detail(message, code, context, self.query_id), code=code)
        row = LoadErrorRow(
            data_file.url, line, column.name, column.column_type, column.column_length, code, reason, value
        )
        return _RecordedLoadError(error, row)

    def _stream(self, data_file: _DataFile, parquet: pq.ParquetFile, parquet_columns: list[ParquetColumn]) -> int:
        loaded = self.columns.loaded
        names = [c.name for c in loaded]
        offset = 0
        try:
            with self.conn.cursor() as cur, cur.copy(self.copy_sql) as copy:
                for batch in parquet.iter_batches(batch_size=BATCH_ROWS, use_threads=False):
                    arrays = [
                        self._prepare(data_file, batch.column(i), parquet_columns[i], loaded[i], offset)
                        for i in range(batch.num_columns)
                    ]
                    arrays += [pa.nulls(batch.num_rows) for _ in loaded[batch.num_columns :]]
                    self._raise_first_problem(data_file, batch, arrays, offset)
                    buffer = io.BytesIO()
                    pa_csv.write_csv(pa.Table.from_arrays(arrays, names=names), buffer, _CSV)
                    copy.write(buffer.getvalue())
                    offset += batch.num_rows
        except psycopg.Error as err:
            # Everything Redshift checks was checked above: what PostgreSQL still refuses is a difference
            # between the two (a constraint Redshift does not enforce, a value PostgreSQL cannot hold).
            error = _pg_error(err)
            error.hint = f"PostgreSQL (under the emulator) refused a row of {data_file.url}: {error.hint or ''}"
            raise error from None
        return offset

    def _prepare(
        self, data_file: _DataFile, array: pa.Array, pcol: ParquetColumn, column: TargetColumn, offset: int
    ) -> pa.Array:
        """The column as the CSV writer and PostgreSQL want it; value checks happen in _raise_first_problem."""
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        if pcol.kind in ("timestamp_micros", "int96"):
            unit_type = pa.timestamp("us", tz="UTC") if column.pg_type == "timestamptz" else pa.timestamp("us")
            # INT96 is read as nanoseconds: Redshift keeps microseconds (truncated).
            array = array.cast(pa.timestamp(array.type.unit), safe=False).cast(unit_type, safe=False)
        elif pcol.kind == "string":
            if pa.types.is_large_string(array.type):
                array = array.cast(pa.string())
            try:
                array.validate(full=True)
            except pa.ArrowInvalid:
                array = self._invalid_utf8(data_file, array, column, offset)
        return array

    def _invalid_utf8(self, data_file: _DataFile, array: pa.Array, column: TargetColumn, offset: int) -> pa.Array:
        values = array.view(pa.binary()).to_pylist()
        if self.cmd.acceptinvchars is None:
            for i, value in enumerate(values):
                if value is None:
                    continue
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError as err:
                    bad = value[err.start : err.end].hex(" ")
                    raise self._load_failure(
                        data_file,
                        offset + i + 1,
                        column,
                        1220,
                        f"String contains invalid or unsupported UTF8 codepoints. Bad UTF8 hex sequence: {bad}",
                    ) from None
        handler = _replacing_handler(self.cmd.acceptinvchars or "?")
        return pa.array([v.decode("utf-8", errors=handler) if v is not None else None for v in values], pa.string())

    def _raise_first_problem(
        self, data_file: _DataFile, batch: pa.RecordBatch, arrays: list[pa.Array], offset: int
    ) -> None:
        """Raise the failure of the first row (then the first column) that Redshift would refuse."""
        first: tuple[int, int, _RecordedLoadError] | None = None
        for position, (array, column) in enumerate(zip(arrays, self.columns.loaded, strict=True)):
            found = self._first_problem(data_file, array, column, offset)
            if found is not None and (first is None or (found[0], position) < (first[0], first[1])):
                first = (found[0], position, found[1])
        if first is not None:
            raise first[2]

    def _first_problem(
        self, data_file: _DataFile, array: pa.Array, column: TargetColumn, offset: int
    ) -> tuple[int, _RecordedLoadError] | None:
        problems: list[tuple[int, _RecordedLoadError]] = []
        if column.not_null and array.null_count:
            i = _first_true(pc.is_null(array))
            problems.append(
                (i, self._load_failure(data_file, offset + i + 1, column, 1213, "Missing data for not-null field"))
            )
        if pa.types.is_string(array.type) and len(array) > array.null_count:
            nul = _first_true(pc.fill_null(pc.match_substring(array, "\x00"), False))
            if nul >= 0:
                problems.append(
                    (
                        nul,
                        self._load_failure(
                            data_file,
                            offset + nul + 1,
                            column,
                            1220,
                            "String contains a NUL character (U+0000), which the emulator's PostgreSQL cannot store",
                        ),
                    )
                )
            byte_lengths = pc.binary_length(array)
            if column.max_bytes is not None:
                over = _first_true(pc.fill_null(pc.greater(byte_lengths, column.max_bytes), False))
                if over >= 0:
                    problems.append((over, self._too_long(data_file, array, column, offset, over)))
            if column.pg_type == "bpchar":
                multibyte = _first_true(pc.fill_null(pc.not_equal(byte_lengths, pc.utf8_length(array)), False))
                if multibyte >= 0:
                    problems.append(
                        (
                            multibyte,
                            self._load_failure(
                                data_file,
                                offset + multibyte + 1,
                                column,
                                1215,
                                "Multibyte character not supported for CHAR (Hint: try using VARCHAR)",
                                str(array[multibyte].as_py()),
                            ),
                        )
                    )
        return min(problems, key=lambda p: p[0]) if problems else None

    def _too_long(
        self, data_file: _DataFile, array: pa.Array, column: TargetColumn, offset: int, i: int
    ) -> _RecordedLoadError:
        value = str(array[i].as_py())
        length = len(value.encode())
        context = (
            f"The length of the data column {column.name} is longer than the length defined in the table. Table: "
            f"{column.max_bytes}, Data: {length}, File name: {_https(data_file.bucket, data_file.key, self.region)}"
        )
        row = LoadErrorRow(
            data_file.url,
            offset + i + 1,
            column.name,
            column.column_type,
            column.column_length,
            15007,
            f"Spectrum Scan Error. {context}",
            value,
        )
        hint = f"row {offset + i + 1} of {data_file.url}: {length} bytes (UTF-8) into {column.redshift_type}"
        hint += f"({column.max_bytes})"
        return _RecordedLoadError(_spectrum_error(15001, context, self.query_id, hint=hint), row)


def _first_true(mask: pa.Array) -> int:
    """Index of the first true value of a boolean array, -1 if none."""
    return int(pc.index(mask, True).as_py())
