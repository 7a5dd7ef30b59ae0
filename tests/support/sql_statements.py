"""Every statement of ``sql/``, rendered for one engine as the code renders it: for rules that must hold for
all of them (no bound LIMIT, MERGE in AWS's form...). A statement file or placeholder added later is covered
without touching this module; one whose placeholder it cannot fill fails loudly here."""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path

import sqlglot
from sqlglot import exp

from cognito_streams.core.sql_text import Engine, ReportingSql, SqlTextError

ROLE = "arn:aws:iam::123456789012:role/cognito-streams-redshift-copy"
MANIFEST = "s3://cognito-streams-landing/cognito-streams/load-manifests/stg_changes/0123abcd.manifest"

#: The time placed in the statements that take it as a literal (``${at}``), and those statements.
AT = datetime(2026, 3, 1, 12, 30, 5, 123456)
AT_TIME = (
    ("load.sql", "merge_records"),
    ("load.sql", "merge_datasets"),
    ("load.sql", "merge_loaded_files"),
    ("load.sql", "merge_loaded_batches"),
    ("load.sql", "merge_failed_batches"),
    ("bulk_publish.sql", "merge_bulk_publish"),
)


def _at_time(file: str, name: str, sql: ReportingSql) -> str:
    return sql.at_time(file, name, AT)


#: Statements whose text the code builds from arguments: rendered through their own method, as the code does.
BUILT = {
    "bulk_publish.sql:bulk_publish_attempts": lambda sql: sql.bulk_publish_attempts(20),
    "reconcile.sql:records_of_identities": lambda sql: sql.records_of_identities(3),
    "reconcile.sql:datasets_of_identities": lambda sql: sql.datasets_of_identities(3),
    "snapshot.sql:held_datasets_of_identities": lambda sql: sql.held_datasets_of_identities(3),
    "snapshot.sql:export_rows_of_identities": lambda sql: sql.export_rows_of_identities(3),
    "redshift.sql:copy_from_manifest": lambda sql: sql.copy_from_manifest("stg_changes", MANIFEST, ROLE),
    **{f"{file}:{name}": functools.partial(_at_time, file, name) for file, name in AT_TIME},
}
#: Identifier placeholders other than ${schema}, with a value the code could pass.
IDENTIFIERS = {"table": "stg_changes"}


def every_statement(engine: Engine) -> dict[str, str]:
    """``{"<file>:<name>" or "<file>:<n>": rendered text}`` for every named statement of every ``sql/*.sql``
    file and every statement of ``sql/schema/*.sql`` (bootstrap and migrations)."""
    sql = ReportingSql("cognito_sync", engine)
    root = Path(sql.library.root)
    out: dict[str, str] = {}
    for path in sorted(root.glob("*.sql")):
        for name, template in sql.library.named(path.name).items():
            key = f"{path.name}:{name}"
            if key in BUILT:
                out[key] = BUILT[key](sql)
                continue
            used = {k: v for k, v in IDENTIFIERS.items() if "${" + k + "}" in template}
            try:
                out[key] = sql.render(template, key, **used)
            except SqlTextError as err:
                raise AssertionError(f"{key}: add it to tests/support/sql_statements.BUILT ({err})") from None
    for i, statement in enumerate(sql.bootstrap()):
        out[f"schema/bootstrap.sql:{i}"] = statement
    for migration in sql.library.migrations():
        for i, statement in enumerate(sql.migration(migration)):
            out[f"schema/V{migration.version:03d}__{migration.name}.sql:{i}"] = statement
    return out


def parse(statement: str, engine: Engine) -> exp.Expr:
    """The statement's AST in the engine's dialect (sqlglot falls back to ``exp.Command`` for what it does not
    know: callers decide what that means)."""
    return sqlglot.parse_one(statement, read=engine)
