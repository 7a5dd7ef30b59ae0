"""Every statement the warehouse runs, read from ``sql/`` and rendered for one schema and one engine.

Pure: no database, no Airflow, no AWS. The SQL lives in files (``sql/*.sql``, ``sql/schema/``); this
module finds them, validates the identifiers that are substituted into them (a schema name cannot be
bound), and gives each statement one small named method, so a test can compare its exact text.

Statement files hold named statements::

    -- name: create_versions
    -- comment lines...
    create temp table stg_versions ... ;

``${schema}`` and the other ``${...}`` placeholders are filled by :class:`string.Template`; values are
always bound (``%s``), never placed in the text. PostgreSQL and Redshift run the same text except for
``${attributes_<table>}`` (empty on PostgreSQL; DISTKEY/SORTKEY on Redshift, from
``sql/schema/redshift_table_attributes.sql``) and the COPY into the stage.
"""

from __future__ import annotations

import hashlib
import os
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Literal

from cognito_streams.core.reserved_words import (
    POSTGRES_RESERVED,
    REDSHIFT_RESERVED,
    RESERVED,  # noqa: F401 - re-exported: the one set validate_identifier refuses
    STATEMENT_WORDS,
)

Engine = Literal["postgres", "redshift"]
ENGINES: tuple[Engine, ...] = ("postgres", "redshift")

#: Where the SQL files are: ``<repo>/sql`` next to ``plugins/``; ``COGNITO_STREAMS_SQL_DIR`` overrides it
#: for deployments that ship the files elsewhere.
SQL_DIR_ENV = "COGNITO_STREAMS_SQL_DIR"
DEFAULT_SQL_DIR = Path(__file__).resolve().parents[3] / "sql"

IDENTIFIER_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
S3_URL_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9!_.*()/=:,+@-]{1,1024}$")
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
MIGRATION_RE = re.compile(r"^V(\d{3})__([a-z0-9_]+)\.sql$")
_NAME_RE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_STATEMENT_END_RE = re.compile(r";[ \t]*$", re.MULTILINE)


class SqlTextError(ValueError):
    """A SQL file, placeholder or identifier is wrong; the message names which and what to do."""


def identifier_problem(value: object) -> str | None:
    """Why ``value`` cannot be placed bare (unquoted) into our SQL text, or None when it can."""
    if not isinstance(value, str) or not IDENTIFIER_RE.fullmatch(value):
        return "use a lower-case letter or _, then letters, digits or _, at most 63 characters"
    if value in REDSHIFT_RESERVED:
        return "it is a reserved word of Amazon Redshift (https://docs.aws.amazon.com/redshift/latest/dg/r_pg_keywords.html)"
    if value in POSTGRES_RESERVED:
        return "it is a reserved word of PostgreSQL, the local stand-in"
    if value in STATEMENT_WORDS:
        return "it is a word of the warehouse's own statements"
    return None


def validate_identifier(value: str, what: str) -> str:
    """Return ``value`` if it is a safe bare SQL identifier (lower case, no quoting needed, not reserved by
    Redshift or PostgreSQL: ``core/reserved_words.py``)."""
    problem = identifier_problem(value)
    if problem is not None:
        raise SqlTextError(f"{what} {value!r} is not a safe SQL identifier: {problem}; choose another name")
    return value


#: The largest LIMIT any statement takes (a row count we read into memory).
MAX_LIMIT = 10_000


def validate_limit(value: int) -> int:
    """Return ``value`` if it is an int from 1 to MAX_LIMIT: a LIMIT placed as a literal, never bound."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise SqlTextError(f"limit {value!r} must be a whole number from 1 to {MAX_LIMIT}")
    return value


def timestamp_literal(value: datetime) -> str:
    """``value`` as a SQL string literal ``'YYYY-MM-DD HH:MM:SS.ffffff'`` (UTC; an aware value is converted, a
    naive one is taken as UTC), for ``cast(${at} as timestamp)`` in the statements that take no bound parameter:
    Redshift prepares only SELECT, INSERT, UPDATE and DELETE (its PREPARE page), so a MERGE gets its time in its
    text. Only a ``datetime`` is accepted; its text has no quote or anything but digits and separators."""
    if not isinstance(value, datetime):
        raise SqlTextError(f"a timestamp literal needs a datetime, not {type(value).__name__}")
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return f"'{value:%Y-%m-%d %H:%M:%S.%f}'"


def validate_s3_url(value: str, what: str) -> str:
    """Return ``value`` if it is an ``s3://bucket/key`` safe to place between single quotes."""
    if not S3_URL_RE.fullmatch(value):
        raise SqlTextError(
            f"{what} {value!r} is not an s3://bucket/key URL made of safe characters "
            "(letters, digits and !_.*()/=:,+@-); it cannot be placed in a COPY statement"
        )
    return value


def validate_role_arn(value: str | None) -> str:
    """Return ``value`` if it is an IAM role ARN (the only credential COPY ever names)."""
    if not value or not ROLE_ARN_RE.fullmatch(value):
        raise SqlTextError(
            f"copy_iam_role_arn {value!r} is not an IAM role ARN; set cognito_pipeline.copy_iam_role_arn to "
            "the role Redshift assumes to read the landing bucket (arn:aws:iam::<account>:role/<name>)"
        )
    return value


def substitute(template: str, values: Mapping[str, str], where: str) -> str:
    """Fill ``${name}`` placeholders; a placeholder without a value is an error naming it."""
    try:
        return string.Template(template).substitute(values)
    except KeyError as err:
        raise SqlTextError(f"{where}: placeholder ${{{err.args[0]}}} has no value") from None
    except ValueError as err:
        raise SqlTextError(f"{where}: malformed placeholder ({err})") from None


#: Bounds of one multi-row INSERT: redshift-connector refuses more than 32,767 bound parameters in a statement,
#: and Redshift's largest statement is 16 MB; rows are cut well below both.
MAX_PARAMS_PER_STATEMENT = 30_000
MAX_ROWS_PER_STATEMENT = 1_000
MAX_BYTES_PER_STATEMENT = 4 * 1024 * 1024
_VALUES_ROW_RE = re.compile(r"\bvalues\s*(\((?:[^()]|\([^()]*\))*\))\s*$", re.IGNORECASE)


def multi_row_insert(statement: str, rows: int) -> str:
    """``insert ... values (<row>)`` with its one row of placeholders repeated ``rows`` times: one statement for
    many rows. (redshift-connector's ``executemany`` runs one prepared INSERT per row: one round trip, and on
    Redshift one tiny commit-size write, per row.)"""
    match = _VALUES_ROW_RE.search(statement)
    if match is None or not statement.lstrip().lower().startswith(("insert", "--")):
        raise SqlTextError("multi_row_insert needs an 'insert ... values (...)' statement ending with its row")
    if rows < 1:
        raise SqlTextError(f"multi_row_insert needs at least one row, got {rows}")
    return statement[: match.start(1)] + ", ".join([match.group(1)] * rows)


def _param_bytes(value: object) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, bytes):
        return len(value)
    return 16


def row_chunks(rows: Sequence[Sequence[object]]) -> Iterator[Sequence[Sequence[object]]]:
    """``rows`` cut into consecutive chunks that each fit one multi-row INSERT (MAX_ROWS_PER_STATEMENT rows,
    MAX_PARAMS_PER_STATEMENT parameters, about MAX_BYTES_PER_STATEMENT bytes of values)."""
    if not rows:
        return
    per_row = max(1, len(rows[0]))
    max_rows = max(1, min(MAX_ROWS_PER_STATEMENT, MAX_PARAMS_PER_STATEMENT // per_row))
    start = size = 0
    for i, row in enumerate(rows):
        row_bytes = sum(_param_bytes(v) for v in row)
        if i > start and (i - start >= max_rows or size + row_bytes > MAX_BYTES_PER_STATEMENT):
            yield rows[start:i]
            start, size = i, 0
        size += row_bytes
    yield rows[start:]


def split_statements(text: str) -> list[str]:
    """Split a DDL file into statements: each ends with ``;`` at the end of a line. Comment-only parts
    are dropped; comments inside a statement are kept."""
    statements = []
    for chunk in _STATEMENT_END_RE.split(text):
        body = "\n".join(line for line in chunk.strip().splitlines()).strip()
        if any(line.strip() and not line.strip().startswith("--") for line in body.splitlines()):
            statements.append(body)
    return statements


def parse_named(text: str, where: str) -> dict[str, str]:
    """``-- name: x`` blocks of a statement file -> ``{x: statement text without the final ';'}``."""
    names = _NAME_RE.findall(text)
    bodies = _NAME_RE.split(text)[2::2]
    out: dict[str, str] = {}
    for name, body in zip(names, bodies, strict=True):
        if name in out:
            raise SqlTextError(f"{where}: statement {name!r} is defined twice")
        statement = body.strip()
        if not statement.endswith(";"):
            raise SqlTextError(f"{where}: statement {name!r} does not end with ';'")
        statement = statement[:-1].rstrip()
        code = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
        if ";" in code:
            raise SqlTextError(f"{where}: statement {name!r} holds more than one statement")
        out[name] = statement
    return out


@dataclass(frozen=True)
class TableAttributes:
    """Redshift's attributes of one table: the clause after the column list and column encodings."""

    clause: str
    encodings: dict[str, str] = field(default_factory=dict)


def parse_table_attributes(text: str) -> dict[str, TableAttributes]:
    """Parse ``redshift_table_attributes.sql`` (format described at its top)."""
    tables: dict[str, TableAttributes] = {}
    current: str | None = None
    clause: list[str] = []
    encodings: dict[str, str] = {}

    def close() -> None:
        if current is not None:
            tables[current] = TableAttributes(" ".join(clause).strip(), dict(encodings))

    for raw in text.splitlines():
        line = raw.strip()
        if match := re.match(r"^--\s*table:\s*([a-z_][a-z0-9_]*)\s*$", line):
            close()
            current = match.group(1)
            if current in tables:
                raise SqlTextError(f"redshift_table_attributes.sql: table {current!r} has two blocks")
            clause, encodings = [], {}
        elif match := re.match(r"^--\s*encode\s+([a-z0-9_]+)\s*:\s*(.+)$", line):
            if current is None:
                raise SqlTextError("redshift_table_attributes.sql: an encode line comes before any '-- table:'")
            for column in match.group(2).split(","):
                encodings[validate_identifier(column.strip(), "encoded column")] = match.group(1)
        elif line.startswith("--") or not line:
            continue
        else:
            if current is None:
                raise SqlTextError(f"redshift_table_attributes.sql: {line!r} comes before any '-- table:'")
            clause.append(line)
    close()
    return tables


def _encode_columns(statement: str, table: str, encodings: Mapping[str, str]) -> str:
    """Add ``encode <x>`` to the definitions of the listed columns (one column per line in our DDL)."""
    for column, encoding in encodings.items():
        pattern = re.compile(rf"^(\s+{re.escape(column)}\s+[a-z][^,\n]*?)(,?)[ \t]*$", re.MULTILINE)
        statement, count = pattern.subn(rf"\1 encode {encoding}\2", statement)
        if count != 1:
            raise SqlTextError(
                f"redshift_table_attributes.sql: column {column!r} of {table!r} is defined {count} times in its "
                "CREATE TABLE (expected once, one column per line)"
            )
    return statement


@dataclass(frozen=True)
class Migration:
    """One versioned DDL file ``sql/schema/V<NNN>__<name>.sql``."""

    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file: a migration applied once must never change (add a new version)."""
        return hashlib.sha256(self.text.encode()).hexdigest()


class SqlLibrary:
    """The ``sql/`` folder: named statements, DDL files, migrations and Redshift's table attributes."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(os.environ.get(SQL_DIR_ENV) or DEFAULT_SQL_DIR)
        if not (self.root / "load.sql").is_file():
            raise SqlTextError(
                f"the SQL files are not in {self.root} (no load.sql); deploy the repository's sql/ folder beside "
                f"plugins/, or point {SQL_DIR_ENV} at it"
            )

    def read(self, relative: str) -> str:
        """The text of one file under the SQL folder."""
        path = self.root / relative
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SqlTextError(f"SQL file {path} is missing") from None

    def named(self, relative: str) -> dict[str, str]:
        """The named statements of one file."""
        return parse_named(self.read(relative), relative)

    def migrations(self) -> list[Migration]:
        """Every ``schema/V<NNN>__<name>.sql``, by version; versions are unique."""
        found: dict[int, Migration] = {}
        for path in sorted((self.root / "schema").glob("V*.sql")):
            match = MIGRATION_RE.match(path.name)
            if not match:
                raise SqlTextError(f"{path.name}: migration files are named V<3 digits>__<lower_snake>.sql")
            version = int(match.group(1))
            if version in found:
                raise SqlTextError(f"{path.name}: version {version} is used twice")
            found[version] = Migration(version, match.group(2), path.read_text(encoding="utf-8"))
        return [found[v] for v in sorted(found)]

    def table_attributes(self) -> dict[str, TableAttributes]:
        """Redshift's attributes per table."""
        return parse_table_attributes(self.read("schema/redshift_table_attributes.sql"))


@cache
def default_library() -> SqlLibrary:
    """The library at the default location (read once per process)."""
    return SqlLibrary()


class WarehouseSql:
    """Every statement, rendered for one schema and one engine; one method per statement."""

    def __init__(self, schema: str, engine: Engine, library: SqlLibrary | None = None) -> None:
        if engine not in ENGINES:
            raise SqlTextError(f"unknown warehouse engine {engine!r}; expected one of {ENGINES}")
        self.schema = validate_identifier(schema, "warehouse_schema")
        self.engine: Engine = engine
        self.library = library or default_library()
        self._attributes = self.library.table_attributes() if engine == "redshift" else {}
        self._files: dict[str, dict[str, str]] = {}

    # Rendering ---------------------------------------------------------------------------------
    def render(self, template: str, where: str, **identifiers: str) -> str:
        """Fill ``${schema}``, ``${attributes_*}`` (with column encodings on Redshift) and the given
        identifiers (each validated) into ``template``."""
        values = {"schema": self.schema}
        values.update({k: validate_identifier(v, k) for k, v in identifiers.items()})
        for table in re.findall(r"\$\{attributes_([a-z0-9_]+)\}", template):
            if self.engine == "postgres":
                values[f"attributes_{table}"] = ""
                continue
            if table not in self._attributes:
                raise SqlTextError(
                    f"{where}: no Redshift attributes for table {table!r}; add a '-- table: {table}' block to "
                    "sql/schema/redshift_table_attributes.sql"
                )
            attrs = self._attributes[table]
            values[f"attributes_{table}"] = attrs.clause
            if attrs.encodings:
                template = _encode_columns(template, table, attrs.encodings)
        text = substitute(template, values, where)
        # An empty placeholder leaves a double or trailing space; indentation (at line start) is kept.
        text = re.sub(r"(?<=\S)[ \t]{2,}(?=\S)", " ", text)
        return re.sub(r"[ \t]+$", "", text, flags=re.MULTILINE)

    def at_time(self, file: str, name: str, at: datetime) -> str:
        """Named statement ``name`` of ``file`` with ``${at}`` filled with :func:`timestamp_literal` of ``at``."""
        template = self.library.named(file)[name]
        return self.render(template.replace("${at}", timestamp_literal(at)), f"{file}:{name}")

    def statement(self, file: str, name: str, **identifiers: str) -> str:
        """Named statement ``name`` of ``file``, rendered."""
        if file not in self._files:
            self._files[file] = self.library.named(file)
        try:
            template = self._files[file][name]
        except KeyError:
            raise SqlTextError(f"{file} has no statement named {name!r}") from None
        return self.render(template, f"{file}:{name}", **identifiers)

    # Schema ------------------------------------------------------------------------------------
    def bootstrap(self) -> list[str]:
        """The schema and the migration ledger (idempotent; run before every migration check)."""
        return [
            self.render(s, "schema/bootstrap.sql") for s in split_statements(self.library.read("schema/bootstrap.sql"))
        ]

    def migration(self, migration: Migration) -> list[str]:
        """One migration's statements, rendered."""
        where = f"schema/V{migration.version:03d}__{migration.name}.sql"
        return [self.render(s, where) for s in split_statements(migration.text)]

    def lock_migrations(self) -> str:
        return self.statement("migrations.sql", "lock_migrations")

    def applied_migrations(self) -> str:
        return self.statement("migrations.sql", "applied_migrations")

    def record_migration(self) -> str:
        return self.statement("migrations.sql", "record_migration")

    # Staging -----------------------------------------------------------------------------------
    def lock_loader(self) -> str:
        return self.statement("load.sql", "lock_loader")

    def create_stage_changes(self) -> str:
        return self.statement("load.sql", "create_stage_changes")

    def create_stage_rejects(self) -> str:
        return self.statement("load.sql", "create_stage_rejects")

    def insert_stage_change(self) -> str:
        return self.statement("load.sql", "insert_stage_change")

    def copy_from_manifest(self, table: str, manifest_url: str, iam_role_arn: str | None) -> str:
        """Redshift's server-side COPY of one manifest's Parquet files into a stage table."""
        template = self.library.named("redshift.sql")["copy_from_manifest"]
        values = {
            "table": validate_identifier(table, "stage table"),
            "manifest_url": validate_s3_url(manifest_url, "manifest"),
            "iam_role_arn": validate_role_arn(iam_role_arn),
        }
        return substitute(template, values, "redshift.sql:copy_from_manifest")

    def load_error_detail(self) -> str:
        return self.statement("redshift.sql", "load_error_detail")

    def copy_from_stdin(self, table: str) -> str:
        """PostgreSQL's COPY of CSV rows sent by the worker into a stage table."""
        return self.statement("postgres.sql", "copy_from_stdin", table=table)

    def analyze_table(self, table: str) -> str:
        return self.statement("postgres.sql", "analyze_table", table=table)

    def analyze_keys(self, table: str, keys: str) -> str:
        """PostgreSQL: statistics of a work table's join keys: ``keys`` is ``dataset``, ``record`` or
        ``version`` (record keys and the flags stg_versions is filtered on)."""
        return self.statement("postgres.sql", f"analyze_{keys}_keys", table=table)

    def tune_transaction(self) -> str:
        return self.statement("postgres.sql", "tune_transaction")

    def tune_planner(self) -> str:
        return self.statement("postgres.sql", "tune_planner")

    def tune_memoize(self) -> str:
        return self.statement("postgres.sql", "tune_memoize")

    def tune_statistics(self) -> str:
        return self.statement("postgres.sql", "tune_statistics")

    def tune_session(self) -> str:
        return self.statement("postgres.sql", "tune_session")

    def tune_commit(self) -> str:
        return self.statement("postgres.sql", "tune_commit")

    def probe_by_key(self, done: bool = False) -> str:
        """PostgreSQL: steer the planner to primary-key probes around a MERGE (``done``: back to normal)."""
        return self.statement("postgres.sql", "probe_by_key_done" if done else "probe_by_key")

    def join_back_by_hash(self, done: bool = False) -> str:
        """PostgreSQL: hash joins (no merge joins) around the statements that join values back from the stage."""
        return self.statement("postgres.sql", "join_back_by_hash_done" if done else "join_back_by_hash")

    def tune_tables(self) -> list[str]:
        """PostgreSQL: table settings and the history's indexes, each idempotent, in this order."""
        names = (
            "tune_records_table", "tune_datasets_table", "tune_history_version_index",
            "tune_history_drop_key_ordered_pkey", "tune_history_dataset_index",
        )  # fmt: skip
        return [self.statement("postgres.sql", n) for n in names]

    def staged_changes_per_file(self) -> str:
        return self.statement("load.sql", "staged_changes_per_file")

    def staged_rejects_per_file(self) -> str:
        return self.statement("load.sql", "staged_rejects_per_file")

    # Merge -------------------------------------------------------------------------------------
    def create_versions(self) -> str:
        return self.statement("load.sql", "create_versions")

    def create_new_deletes(self) -> str:
        return self.statement("load.sql", "create_new_deletes")

    def insert_dataset_deletes(self) -> str:
        return self.statement("load.sql", "insert_dataset_deletes")

    def insert_record_changes(self) -> str:
        return self.statement("load.sql", "insert_record_changes")

    def create_touched_datasets(self) -> str:
        return self.statement("load.sql", "create_touched_datasets")

    def create_latest_deletes(self) -> str:
        return self.statement("load.sql", "create_latest_deletes")

    def create_reset_datasets(self) -> str:
        return self.statement("load.sql", "create_reset_datasets")

    def count_latest_deletes(self) -> str:
        return self.statement("load.sql", "count_latest_deletes")

    def create_candidates(self) -> str:
        return self.statement("load.sql", "create_candidates")

    def create_generations(self) -> str:
        return self.statement("load.sql", "create_generations")

    def create_winners(self) -> str:
        return self.statement("load.sql", "create_winners")

    def insert_winners_with_deletes(self) -> str:
        return self.statement("load.sql", "insert_winners_with_deletes")

    def merge_records(self, at: datetime) -> str:
        return self.at_time("load.sql", "merge_records", at)

    def create_dataset_updates(self) -> str:
        return self.statement("load.sql", "create_dataset_updates")

    def merge_datasets(self, at: datetime) -> str:
        return self.at_time("load.sql", "merge_datasets", at)

    def merge_counts(self) -> str:
        return self.statement("load.sql", "merge_counts")

    def insert_rejected_records(self) -> str:
        return self.statement("load.sql", "insert_rejected_records")

    # Bookkeeping -------------------------------------------------------------------------------
    def create_stage_files(self) -> str:
        return self.statement("load.sql", "create_stage_files")

    def insert_stage_file(self) -> str:
        return self.statement("load.sql", "insert_stage_file")

    def merge_loaded_files(self, at: datetime) -> str:
        return self.at_time("load.sql", "merge_loaded_files", at)

    def create_stage_batches(self) -> str:
        return self.statement("load.sql", "create_stage_batches")

    def insert_stage_batch(self) -> str:
        return self.statement("load.sql", "insert_stage_batch")

    def merge_loaded_batches(self, at: datetime) -> str:
        return self.at_time("load.sql", "merge_loaded_batches", at)

    def resolve_failed_batches(self) -> str:
        return self.statement("load.sql", "resolve_failed_batches")

    def create_stage_failed(self) -> str:
        return self.statement("load.sql", "create_stage_failed")

    def insert_stage_failed(self) -> str:
        return self.statement("load.sql", "insert_stage_failed")

    def merge_failed_batches(self, at: datetime) -> str:
        return self.at_time("load.sql", "merge_failed_batches", at)

    def drop_stage_failed(self) -> str:
        return self.statement("load.sql", "drop_stage_failed")

    def create_stage_settled(self) -> str:
        return self.statement("load.sql", "create_stage_settled")

    def insert_stage_settled(self) -> str:
        return self.statement("load.sql", "insert_stage_settled")

    def settle_failed_batches(self) -> str:
        return self.statement("load.sql", "settle_failed_batches")

    def drop_stage_settled(self) -> str:
        return self.statement("load.sql", "drop_stage_settled")

    def unresolved_failed_batches(self) -> str:
        return self.statement("load.sql", "unresolved_failed_batches")

    def loaded_descriptors(self) -> str:
        return self.statement("load.sql", "loaded_descriptors")

    def drop_work_tables(self) -> str:
        return self.statement("load.sql", "drop_work_tables")

    # Maintenance -------------------------------------------------------------------------------
    def clear_records(self) -> str:
        return self.statement("maintenance.sql", "clear_records")

    def clear_datasets(self) -> str:
        return self.statement("maintenance.sql", "clear_datasets")

    def stage_history(self) -> str:
        return self.statement("maintenance.sql", "stage_history")

    # Checks ------------------------------------------------------------------------------------
    def quality_checks(self) -> dict[str, str]:
        """``{check name: statement}``; names are the ``check_*`` statements of checks.sql."""
        names = [n for n in self.library.named("checks.sql") if n.startswith("check_")]
        return {name.removeprefix("check_"): self.statement("checks.sql", name) for name in names}

    # Bulk publish ------------------------------------------------------------------------------
    def lock_bulk_publish_runs(self) -> str:
        return self.statement("bulk_publish.sql", "lock_bulk_publish_runs")

    def create_stage_bulk_publish(self) -> str:
        return self.statement("bulk_publish.sql", "create_stage_bulk_publish")

    def insert_stage_bulk_publish(self) -> str:
        return self.statement("bulk_publish.sql", "insert_stage_bulk_publish")

    def merge_bulk_publish(self, at: datetime) -> str:
        return self.at_time("bulk_publish.sql", "merge_bulk_publish", at)

    def drop_stage_bulk_publish(self) -> str:
        return self.statement("bulk_publish.sql", "drop_stage_bulk_publish")

    def bulk_publish_attempts(self, limit: int) -> str:
        """A pool's latest ``limit`` attempts. The limit is placed in the text as a validated literal: Redshift
        refuses a bound LIMIT."""
        template = self.library.named("bulk_publish.sql")["bulk_publish_attempts"]
        template = template.replace("${limit}", str(validate_limit(limit)))
        return self.render(template, "bulk_publish.sql:bulk_publish_attempts")


class ReportingSql(WarehouseSql):
    """The statements of reconciliation (``sql/reconcile.sql``), the snapshot (``sql/snapshot.sql``) and the
    health report (``sql/report.sql``)."""

    def identities_in_warehouse(self) -> str:
        return self.statement("reconcile.sql", "identities_in_warehouse")

    def records_of_identities(self, count: int) -> str:
        """Rows of ``count`` identities: the IN list is ``count`` bound placeholders, never values."""
        return self._of_identities("records_of_identities", count)

    def datasets_of_identities(self, count: int) -> str:
        """``datasets`` rows of ``count`` identities, bound like :meth:`records_of_identities`."""
        return self._of_identities("datasets_of_identities", count)

    def _of_identities(self, name: str, count: int, file: str = "reconcile.sql") -> str:
        if not 1 <= count <= 1000:
            raise SqlTextError(f"{name} takes 1 to 1000 identities per query, got {count}")
        template = self.library.named(file)[name]
        template = template.replace("${identity_list}", ", ".join(["%s"] * count))
        return self.render(template, f"{file}:{name}")

    def held_datasets_of_identities(self, count: int) -> str:
        """The snapshot's view of ``count`` identities' datasets; bound as (pool, *ids, pool, *ids)."""
        return self._of_identities("held_datasets_of_identities", count, "snapshot.sql")

    def export_rows_of_identities(self, count: int) -> str:
        """The live keys of ``count`` identities for the export, bound like :meth:`records_of_identities`."""
        return self._of_identities("export_rows_of_identities", count, "snapshot.sql")

    def loaded_through(self) -> str:
        return self.statement("snapshot.sql", "loaded_through")

    def lock_reconciliation(self) -> str:
        return self.statement("reconcile.sql", "lock_reconciliation")

    def insert_reconciliation_result(self) -> str:
        return self.statement("reconcile.sql", "insert_reconciliation_result")

    def delete_reconciliation_run(self) -> list[str]:
        return [
            self.statement("reconcile.sql", "delete_reconciliation_run"),
            self.statement("reconcile.sql", "delete_reconciliation_summary"),
        ]

    def insert_reconciliation_run(self) -> str:
        return self.statement("reconcile.sql", "insert_reconciliation_run")

    def report(self, name: str) -> str:
        """One statement of ``sql/report.sql``."""
        return self.statement("report.sql", name)
