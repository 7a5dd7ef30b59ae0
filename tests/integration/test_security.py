"""Security: Redshift COPY names an IAM role and never keys; identifiers and prefixes from the settings
are validated and injection attempts refused wherever they reach SQL or S3 keys; ruff's security rules
(bandit, ``S``) are clean. (The IAM documents: tests/unit/test_iam_policies.py. Secrets in logs:
tests/integration/test_security_logs.py.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import sqlglot

from cognito_streams.core.landing_format import LandingLayout
from cognito_streams.core.sql_text import ReportingSql, SqlTextError, WarehouseSql, validate_s3_url
from cognito_streams.settings import SettingsError, parse_settings
from tests.conftest import REPO

ROLE = "arn:aws:iam::123456789012:role/cognito-streams-redshift-copy"
MANIFEST = (
    "s3://cognito-streams-landing/cognito-streams/manifests/stream=s/dt=2026-11-26/shardId-0/1-9.changes.manifest"
)
#: What credentials look like in SQL, Python or config: none of it may appear where COPY is built.
KEY_PATTERNS = [
    r"access_key_id",
    r"secret_access_key",
    r"session_token",
    r"\bcredentials\s+'",
    r"AKIA[0-9A-Z]{16}",
    r"ASIA[0-9A-Z]{16}",
]
INJECTIONS = [
    "cognito_sync; drop table records",
    "cognito_sync--",
    "x' or '1'='1",
    'x" or "1"="1',
    "cognito_sync\n",
    "cognito_sync\x00",
    "Cognito_Sync",
    "select",
    "public.records",
    "ｓｅｌｅｃｔ",
    "",
    "a" * 64,
]


def test_copy_names_the_role_and_nothing_else() -> None:
    # GIVEN the Redshift warehouse's statement builder  WHEN it builds the COPY of a manifest
    sql = WarehouseSql("cognito_sync", "redshift").copy_from_manifest("stg_changes", MANIFEST, ROLE)
    # THEN it is exactly this statement: the manifest, the role, Parquet, MANIFEST; no key of any kind
    assert sql == f"copy stg_changes from '{MANIFEST}' iam_role '{ROLE}' format as parquet manifest"
    assert sqlglot.parse_one(sql, read="redshift") is not None
    for pattern in KEY_PATTERNS:
        assert not re.search(pattern, sql, re.IGNORECASE), pattern


@pytest.mark.parametrize(
    "role",
    [
        None,
        "",
        "aws_access_key_id=AKIAIOSFODNN7EXAMPLE;aws_secret_access_key=wJalrXUtnFEMI/K7MDENG",
        "arn:aws:iam::123456789012:user/someone",
        f"{ROLE}' credentials 'aws_access_key_id=AKIAIOSFODNN7EXAMPLE",
        f"{ROLE}\n",
    ],
)
def test_copy_refuses_anything_but_a_role_arn(role: str | None) -> None:
    with pytest.raises(SqlTextError, match="copy_iam_role_arn"):
        WarehouseSql("cognito_sync", "redshift").copy_from_manifest("stg_changes", MANIFEST, role)


@pytest.mark.parametrize(
    "url",
    [
        MANIFEST + "' iam_role 'arn:aws:iam::1:role/x",
        MANIFEST + "\n",
        "s3://bucket/key with space",
        "s3://bucket/key;drop",
        "https://bucket.s3.amazonaws.com/key",
        "s3://Bucket/key",
        "s3://bucket/ke\\y",
    ],
)
def test_copy_refuses_a_manifest_url_that_could_leave_its_quotes(url: str) -> None:
    with pytest.raises(SqlTextError):
        validate_s3_url(url, "manifest")
    with pytest.raises(SqlTextError):
        WarehouseSql("cognito_sync", "redshift").copy_from_manifest("stg_changes", url, ROLE)


def test_no_sql_file_or_warehouse_module_holds_keys_or_a_credentials_clause() -> None:
    sources = [*sorted((REPO / "sql").rglob("*.sql")), *sorted((REPO / "plugins" / "cognito_streams").rglob("*.py"))]
    assert len(sources) > 20
    offending = [
        f"{path.relative_to(REPO)}: {pattern}"
        for path in sources
        for pattern in KEY_PATTERNS
        if re.search(pattern, path.read_text(), re.IGNORECASE)
    ]
    assert offending == []
    sql_files = [p for p in sources if p.suffix == ".sql"]
    copies = [p for p in sql_files if re.search(r"\bcopy\b.*\bfrom\b\s+'", p.read_text(), re.IGNORECASE)]
    assert [p.name for p in copies] == ["redshift.sql"]
    assert "iam_role '${iam_role_arn}'" in (REPO / "sql" / "redshift.sql").read_text()


def test_redshift_without_a_copy_role_is_refused_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    from cognito_streams.warehouse.connect import open_warehouse
    from cognito_streams.warehouse.models import WarehouseError

    # GIVEN a Redshift connection (nothing listens there) and settings without copy_iam_role_arn
    conn = {"conn_type": "redshift", "host": "127.0.0.1", "port": 1, "login": "u", "password": "p", "schema": "d"}
    monkeypatch.setenv("AIRFLOW_CONN_SECURITY_REDSHIFT", json.dumps(conn))
    raw = {
        "identity_pool_ids": ["us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"],
        "stream_name": "s",
        "publish_role_arn": ROLE,
        "landing_bucket": "cognito-streams-landing",
        "warehouse_conn_id": "security_redshift",
    }
    # WHEN the warehouse is opened  THEN it refuses, naming the setting, without a connection attempt
    with pytest.raises(WarehouseError, match="copy_iam_role_arn is not set"):
        open_warehouse(parse_settings(raw))


@pytest.mark.parametrize("schema", INJECTIONS, ids=[repr(s)[:30] for s in INJECTIONS])
def test_schema_injection_is_refused_by_the_settings_and_by_the_sql_builder(schema: str) -> None:
    raw = {
        "identity_pool_ids": ["us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"],
        "stream_name": "s",
        "publish_role_arn": ROLE,
        "landing_bucket": "cognito-streams-landing",
        "warehouse_schema": schema,
    }
    if schema.strip() == "cognito_sync":
        # Surrounding whitespace is stripped from every setting: what is used is the clean name.
        assert parse_settings(raw).warehouse_schema == "cognito_sync"
    else:
        with pytest.raises(SettingsError, match=r"cognito_pipeline\.warehouse_schema"):
            parse_settings(raw)
    for engine in ("postgres", "redshift"):
        with pytest.raises(SqlTextError, match="not a safe SQL identifier"):
            WarehouseSql(schema, engine)  # type: ignore[arg-type]
        with pytest.raises(SqlTextError):
            ReportingSql(schema, engine)  # type: ignore[arg-type]


def test_a_valid_schema_is_the_only_thing_substituted_into_the_statements() -> None:
    sql = WarehouseSql("cognito_sync", "postgres")
    statements = [
        sql.merge_records(datetime(2026, 1, 1)),
        sql.insert_record_changes(),
        sql.lock_loader(),
        *sql.bootstrap(),
    ]
    for statement in statements:
        # no placeholder left, and every table is qualified by the schema given, bare
        assert "${" not in statement
        qualifiers = set(re.findall(r"\b(\w+)\.(?:records|record_changes|loaded_batches)\b", statement))
        assert qualifiers <= {"cognito_sync"}, qualifiers


@pytest.mark.parametrize(
    "prefix",
    ["x' || 'y", "x;y", "x y", "x\\y", "x%27y", "x?y", "x#y", "../x", "x/../y", "x\ny", "x\x00y", 'x"y', "~x"],
)
def test_prefix_injection_is_refused_by_the_settings(prefix: str) -> None:
    raw = {
        "identity_pool_ids": ["us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"],
        "stream_name": "s",
        "publish_role_arn": ROLE,
        "landing_bucket": "cognito-streams-landing",
        "landing_prefix": prefix,
    }
    with pytest.raises(SettingsError, match=r"cognito_pipeline\.landing_prefix"):
        parse_settings(raw)


def test_every_key_built_from_valid_settings_can_stand_in_a_copy_statement() -> None:
    from datetime import UTC, datetime

    raw = {
        "identity_pool_ids": ["us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"],
        "stream_name": "Cognito_Stream-1.a",
        "publish_role_arn": ROLE,
        "landing_bucket": "cognito.streams-landing",
        "landing_prefix": "/team=a/(x)/cognito+streams@eu/",
    }
    settings = parse_settings(raw)
    layout = LandingLayout(settings.landing_bucket, settings.landing_prefix, settings.stream_name)
    at = datetime(2026, 11, 26, 9, tzinfo=UTC)
    shard, first, last = "shardId-000000000001@20261126T090000000000Z", "4959" + "0" * 52, "4959" + "9" * 52
    keys = [
        layout.changes_key(shard, first, last, at),
        layout.manifest_key(shard, first, last, at, "changes"),
        layout.manifest_key(shard, first, last, at, "rejects"),
        layout.batch_key(shard, first, last, at),
    ]
    for key in keys:
        assert validate_s3_url(layout.url(key), "key") == layout.url(key)


def test_ruff_security_rules_are_clean() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    paths = [p for p in ("plugins", "dags", "local", "bench", "tests") if (REPO / p).exists()]
    result = subprocess.run(
        [str(ruff), "check", "--select", "S", "--output-format", "concise", *paths],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
