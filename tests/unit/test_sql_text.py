"""The SQL the warehouse runs, checked without a database: identifiers are validated before they reach
the text, the Redshift-only statements parse as Redshift SQL (sqlglot), the COPY is exactly what Redshift
is sent, and the files follow the conventions the code relies on."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from cognito_streams.core.landing_format import CHANGES_SCHEMA, REJECTS_SCHEMA
from cognito_streams.core.sql_text import (
    ENGINES,
    SqlLibrary,
    SqlTextError,
    WarehouseSql,
    parse_named,
    parse_table_attributes,
    split_statements,
    validate_identifier,
)
from tests.support.sql_statements import every_statement

ROLE = "arn:aws:iam::123456789012:role/cognito-streams-redshift-copy"
MANIFEST = "s3://cognito-streams-landing/cognito-streams/manifests/stream=s/dt=2026-03-01/shardId-000000000000/1-9.changes.manifest"


@pytest.fixture(scope="module")
def redshift() -> WarehouseSql:
    return WarehouseSql("cognito_sync", "redshift")


@pytest.fixture(scope="module")
def postgres() -> WarehouseSql:
    return WarehouseSql("cognito_sync", "postgres")


def all_statements(sql: WarehouseSql) -> dict[str, str]:
    """Every statement of sql/ (all files, bootstrap and migrations) rendered for the engine."""
    return every_statement(sql.engine)


def test_copy_from_manifest_is_exactly_the_redshift_copy(redshift: WarehouseSql) -> None:
    # GIVEN a changes manifest and the COPY role WHEN the COPY is built THEN it is exactly this
    assert redshift.copy_from_manifest("stg_changes", MANIFEST, ROLE) == (
        f"copy stg_changes from '{MANIFEST}' iam_role '{ROLE}' format as parquet manifest"
    )


@pytest.mark.parametrize(
    ("manifest", "role"),
    [
        ("s3://bucket/key' credentials 'aws_access_key_id=x", ROLE),  # quote injection in the URL
        ("https://bucket/key.manifest", ROLE),
        (MANIFEST, "arn:aws:iam::123456789012:role/x' access_key_id 'y"),
        (MANIFEST, None),
    ],
)
def test_copy_refuses_what_cannot_be_placed_in_its_text(
    redshift: WarehouseSql, manifest: str, role: str | None
) -> None:
    with pytest.raises(SqlTextError):
        redshift.copy_from_manifest("stg_changes", manifest, role)


def test_copy_parses_as_redshift_sql(redshift: WarehouseSql) -> None:
    parsed = sqlglot.parse_one(redshift.copy_from_manifest("stg_changes", MANIFEST, ROLE), read="redshift")
    assert isinstance(parsed, exp.Copy)
    assert parsed.this.name == "stg_changes"


def test_every_statement_parses_as_redshift_sql(redshift: WarehouseSql) -> None:
    # LOCK is not in sqlglot's grammar; its text is checked exactly instead (Redshift: LOCK [TABLE] t [, ...],
    # no lock mode).
    for name, statement in all_statements(redshift).items():
        if re.search(r"(?m)^lock ", statement):
            assert re.fullmatch(
                r"(?s)(--[^\n]*\n)*lock table cognito_sync\.[a-z_]+(, cognito_sync\.[a-z_]+)*", statement
            ), name
            continue
        parsed = sqlglot.parse_one(statement.replace("%s", "NULL"), read="redshift")
        # sqlglot falls back to a bare Command when it does not understand a statement: that is not a parse.
        assert not isinstance(parsed, exp.Command), f"{name} did not parse as Redshift SQL"


def test_redshift_ddl_carries_distribution_sort_keys_and_encodings(redshift: WarehouseSql) -> None:
    # GIVEN the schema's DDL rendered for Redshift
    statements = [*redshift.bootstrap(), *redshift.migration(redshift.library.migrations()[0])]
    parsed = [sqlglot.parse_one(st, read="redshift") for st in statements]
    # THEN every statement is a CREATE that sqlglot understood, and records has its attributes
    assert all(isinstance(p, exp.Create) for p in parsed)
    records = next(p for p, st in zip(parsed, statements, strict=True) if ".records (" in st).sql(dialect="redshift")
    assert "DISTKEY(identity_id)" in records
    assert "COMPOUND SORTKEY(identity_pool_id, identity_id, dataset_name, record_key)" in records
    assert "record_value VARCHAR(65535) ENCODE zstd" in records


def test_postgres_ddl_has_no_redshift_attributes(postgres: WarehouseSql) -> None:
    text = "\n".join(postgres.migration(postgres.library.migrations()[0]) + postgres.bootstrap())
    for word in ("distkey", "sortkey", "diststyle", "encode"):
        assert word not in text.lower()


def test_both_engines_run_the_same_text_after_the_copy(redshift: WarehouseSql, postgres: WarehouseSql) -> None:
    # Only ${attributes_*} differ: with them removed, every load statement is identical on both engines.
    strip = re.compile(r"\s+(diststyle \w+( distkey \(\w+\))?)(?=\s|$)")
    on_redshift, on_postgres = every_statement(redshift.engine), every_statement(postgres.engine)
    for name in redshift.library.named("load.sql"):
        key = f"load.sql:{name}"
        assert strip.sub("", on_redshift[key]) == on_postgres[key], name


def test_every_table_attributes_placeholder_has_a_block() -> None:
    library = SqlLibrary()
    blocks = library.table_attributes()
    texts = [library.read("schema/bootstrap.sql"), *(m.text for m in library.migrations())]
    texts += [library.read(f) for f in ("load.sql", "bulk_publish.sql")]
    used = {t for text in texts for t in re.findall(r"\$\{attributes_([a-z0-9_]+)\}", text)}
    assert used <= set(blocks), f"no Redshift attributes for {sorted(used - set(blocks))}"


def test_stage_tables_follow_the_contract_column_order(postgres: WarehouseSql) -> None:
    # Redshift COPY maps Parquet columns to the stage by position.
    for statement, schema in (
        (postgres.create_stage_changes(), CHANGES_SCHEMA),
        (postgres.create_stage_rejects(), REJECTS_SCHEMA),
    ):
        columns = re.findall(r"^\s{4}([a-z_]+) [a-z]", statement, flags=re.MULTILINE)
        assert columns == schema.names


def test_values_are_bound_never_formatted() -> None:
    # The only '%' in any SQL file is a bind placeholder (%s); psycopg would choke on any other.
    for path in Path(SqlLibrary().root).rglob("*.sql"):
        text = path.read_text()
        assert re.sub(r"%s", "", text).count("%") == 0, path


def test_schema_name_is_validated() -> None:
    for bad in ("Cognito", "cognito-sync", "x; drop table records", "select", "", "a" * 64):
        with pytest.raises(SqlTextError, match="not a safe SQL identifier"):
            WarehouseSql(bad, "postgres")
    assert validate_identifier("cognito_sync", "schema") == "cognito_sync"


def test_schema_is_substituted_everywhere(postgres: WarehouseSql) -> None:
    for name, statement in all_statements(postgres).items():
        assert "${" not in statement, name
    other = WarehouseSql("analytics_2", "redshift")
    assert "merge into analytics_2.records" in other.merge_records(datetime(2026, 1, 1))


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(SqlTextError, match="unknown warehouse engine"):
        WarehouseSql("cognito_sync", "snowflake")  # type: ignore[arg-type]


def test_named_statement_files_are_strict() -> None:
    with pytest.raises(SqlTextError, match="does not end with ';'"):
        parse_named("-- name: a\nselect 1\n", "x.sql")
    with pytest.raises(SqlTextError, match="more than one statement"):
        parse_named("-- name: a\nselect 1; select 2;\n", "x.sql")
    with pytest.raises(SqlTextError, match="defined twice"):
        parse_named("-- name: a\nselect 1;\n-- name: a\nselect 2;\n", "x.sql")
    assert parse_named("-- header\n-- name: a\n-- why; with a semicolon\nselect 1;\n", "x.sql") == {
        "a": "-- why; with a semicolon\nselect 1"
    }


def test_ddl_files_split_on_line_final_semicolons() -> None:
    text = "-- header; not a statement\ncreate table a (x int);\n\n-- comment only;\ncreate view v as select 1;\n"
    assert split_statements(text) == ["-- header; not a statement\ncreate table a (x int)", "create view v as select 1"]


def test_table_attributes_file_is_strict() -> None:
    with pytest.raises(SqlTextError, match="before any"):
        parse_table_attributes("diststyle all\n")
    with pytest.raises(SqlTextError, match="two blocks"):
        parse_table_attributes("-- table: a\ndiststyle all\n-- table: a\ndiststyle even\n")
    parsed = parse_table_attributes("-- table: a\n-- why\ndiststyle key distkey (x)\n-- encode zstd: v, w\n")
    assert parsed["a"].clause == "diststyle key distkey (x)"
    assert parsed["a"].encodings == {"v": "zstd", "w": "zstd"}


def test_an_encoded_column_must_exist(tmp_path: Path) -> None:
    # GIVEN an attributes block naming a column the table does not have
    root = tmp_path / "sql"
    (root / "schema").mkdir(parents=True)
    (root / "load.sql").write_text("-- name: x\nselect 1;\n")
    (root / "schema" / "redshift_table_attributes.sql").write_text("-- table: t\ndiststyle all\n-- encode zstd: nope\n")
    (root / "schema" / "V001__t.sql").write_text("create table ${schema}.t (\n    a int\n) ${attributes_t};\n")
    sql = WarehouseSql("s", "redshift", SqlLibrary(root))
    # WHEN rendered THEN the error names the column and the table
    with pytest.raises(SqlTextError, match="column 'nope' of 't'"):
        sql.migration(sql.library.migrations()[0])


def test_migrations_are_numbered_and_checksummed(tmp_path: Path) -> None:
    library = SqlLibrary()
    versions = [m.version for m in library.migrations()]
    assert versions == sorted(set(versions)) and versions[0] == 1
    assert len(library.migrations()[0].checksum) == 64
    root = tmp_path / "sql"
    (root / "schema").mkdir(parents=True)
    (root / "load.sql").write_text("-- name: x\nselect 1;\n")
    (root / "schema" / "V1__bad_name.sql").write_text("select 1;\n")
    with pytest.raises(SqlTextError, match=r"V<3 digits>__<lower_snake>\.sql"):
        SqlLibrary(root).migrations()


def test_missing_sql_folder_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(SqlTextError, match="COGNITO_STREAMS_SQL_DIR"):
        SqlLibrary(tmp_path)


@pytest.mark.parametrize("engine", ENGINES)
def test_quality_checks_are_listed(engine: str) -> None:
    checks = WarehouseSql("cognito_sync", engine).quality_checks()  # type: ignore[arg-type]
    assert set(checks) == {
        "records_keys_unique",
        "records_keys_not_null",
        "datasets_keys_unique",
        "record_changes_versions_unique",
        "dataset_deletes_unique",
        "rejected_records_unique",
        "loaded_batches_unique",
        "loaded_files_unique",
        "failed_batches_unique",
        "bulk_publish_runs_unique",
        "reconciliation_runs_unique",
        "schema_migrations_unique",
        "staged_rows_match_manifests",
        "live_record_counts",
    }
