"""The Redshift emulator's ``COPY ... FORMAT AS PARQUET [MANIFEST]`` (local/redshift/copy.py) against the session
stack's moto (S3, IAM) and PostgreSQL, with no wire server: the statement is parsed and run on a psycopg session
the way the wire server will run it.

Every test goes through a ``runner`` (``copy``, ``query``, ``rollback`` on one session): ``DirectRunner`` here;
a runner over redshift_connector and the wire server can take its place to run the same tests end to end
(its errors turned into ``CopyFailedError`` from the ErrorResponse's M, D, H and C fields).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cognito_streams.core.configure.iam import load_template
from cognito_streams.core.landing_format import CHANGES_SCHEMA, REJECTS_SCHEMA, FileRef, copy_manifest
from cognito_streams.core.sql_text import WarehouseSql
from cognito_streams.landing_zone.writer import DICTIONARY_COLUMNS, parquet_bytes
from local.redshift import copy as rs_copy
from local.redshift.copy import LoadErrorLog, parse_copy, run_copy
from local.redshift.errors import RedshiftError
from local.stack import LOCAL_ACCOUNT_ID, Stack
from tests.support.changes import at, change
from tests.support.landing import reject_row

pytestmark = pytest.mark.integration

PIPELINE_SQL = WarehouseSql("cognito_sync", "redshift")
STAGE_SQL = WarehouseSql("cognito_sync", "postgres")


@dataclass
class CopyFailedError(Exception):
    """A failed COPY as the client sees it (ErrorResponse fields)."""

    message: str
    detail: str
    hint: str
    sqlstate: str

    def __str__(self) -> str:
        return f"{self.message}\n{self.detail}\n{self.hint}"


class DirectRunner:
    """One Redshift session: COPY through the emulator's copy module, everything else on the session's
    PostgreSQL connection, as the wire server does."""

    def __init__(self, conn: psycopg.Connection[Any], s3: Any, iam: Any, errors: LoadErrorLog) -> None:
        self.conn, self.s3, self.iam, self.errors = conn, s3, iam, errors
        self._query_ids = itertools.count(1000)

    def copy(self, statement: str) -> int:
        try:
            cmd = parse_copy(statement)
            assert cmd is not None, statement
            return run_copy(
                cmd,
                conn=self.conn,
                s3=self.s3,
                iam=self.iam,
                errors=self.errors,
                session_id=self.conn.info.backend_pid,
                query_id=next(self._query_ids),
            )
        except RedshiftError as err:
            raise CopyFailedError(err.message, err.detail or "", err.hint or "", err.sqlstate) from err

    def query(self, text: str, params: Any = None) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(text, params)
        return list(cur.fetchall()) if cur.description else []

    def rollback(self) -> None:
        self.conn.rollback()


@dataclass(frozen=True)
class Env:
    s3: Any
    iam: Any
    bucket: str
    prefix: str
    role: str
    schema: str
    errors: LoadErrorLog

    def put(self, name: str, body: bytes) -> str:
        key = f"{self.prefix}/{name}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        return f"s3://{self.bucket}/{key}"

    def manifest(self, name: str, files: list[tuple[str, int]], **entry_overrides: Any) -> str:
        document = copy_manifest([FileRef(url=url, rows=0, bytes=size) for url, size in files])
        for entry in document["entries"]:  # type: ignore[attr-defined]
            entry.update(entry_overrides)
        return self.put(name, json.dumps(document).encode())

    def landed(self, name: str, table: pa.Table, **write_options: Any) -> tuple[str, int]:
        """``table`` as a Parquet file under the test prefix; (its URL, its size)."""
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **write_options)
        body = bytes(sink.getvalue())
        return self.put(name, body), len(body)


def _create_role(iam: Any, name: str, trust: dict[str, Any], policy: dict[str, Any] | None) -> str:
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    if policy is not None:
        iam.put_role_policy(RoleName=name, PolicyName="copy", PolicyDocument=json.dumps(policy))
    return str(arn)


@pytest.fixture(scope="module")
def env(stack: Stack, aws: Any) -> Iterator[Env]:
    s3, iam = aws("s3"), aws("iam")
    bucket, prefix = stack.cfg.landing_bucket, f"rs-copy-{uuid.uuid4().hex[:8]}"
    role_name = f"rs-copy-{uuid.uuid4().hex[:8]}"
    # The role the pipeline's docs ship: trusted by Redshift, reading the landing prefix only.
    role = _create_role(
        iam,
        role_name,
        load_template("redshift-copy-role.trust"),
        load_template("redshift-copy-role.policy", Partition="aws", Bucket=bucket, Prefix=prefix),
    )
    errors = LoadErrorLog(os.environ["CS_WAREHOUSE_DSN"])
    errors.ensure_tables()
    errors.ensure_tables()  # idempotent
    schema = f"rscopy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(os.environ["CS_WAREHOUSE_DSN"], autocommit=True) as admin:
        admin.execute(f"create schema {schema}")
    try:
        yield Env(s3, iam, bucket, prefix, role, schema, errors)
    finally:
        errors.close()
        with psycopg.connect(os.environ["CS_WAREHOUSE_DSN"], autocommit=True) as admin:
            admin.execute(f"drop schema {schema} cascade")
        iam.delete_role_policy(RoleName=role_name, PolicyName="copy")
        iam.delete_role(RoleName=role_name)


@pytest.fixture
def session(env: Env) -> Iterator[DirectRunner]:
    conn = psycopg.connect(os.environ["CS_WAREHOUSE_DSN"])
    conn.execute(f"set search_path = {env.schema}, redshift_sys")
    conn.commit()
    try:
        yield DirectRunner(conn, env.s3, env.iam, env.errors)
    finally:
        conn.close()


# ----------------------------------------------------------------------------------------------- helpers


def _micros(schema: pa.Schema) -> pa.Schema:
    """The contract's schema with INT64 TIMESTAMP(MICROS, UTC) timestamps, the encoding the emulator loads
    (a no-op once the landing contract writes microseconds: issue 17, item 3)."""
    return pa.schema(
        [
            pa.field(f.name, pa.timestamp("us", tz="UTC"), f.nullable) if pa.types.is_timestamp(f.type) else f
            for f in schema
        ]
    )


def _landed_changes(env: Env, name: str, changes: list[Any]) -> tuple[str, int]:
    """A changes file written by the landing writer's own Parquet settings (``parquet_bytes``: no Arrow schema
    stored, the decoder's columns dictionary-encoded), in the contract's column order."""
    url = f"s3://{env.bucket}/{env.prefix}/{name}"
    rows = [replace(c, landed_file=url).as_row() for c in changes]
    table = pa.Table.from_pylist(rows, schema=_micros(CHANGES_SCHEMA))
    for column in DICTIONARY_COLUMNS:
        if column in table.column_names:
            i = table.column_names.index(column)
            table = table.set_column(i, column, table.column(i).dictionary_encode())
    body = parquet_bytes(table, "snappy")
    return env.put(name, body), len(body)


def _stage_changes(runner: DirectRunner) -> None:
    runner.query(STAGE_SQL.create_stage_changes())


def _copy_manifest(runner: DirectRunner, env: Env, manifest_url: str, table: str = "stg_changes") -> int:
    """The pipeline's own COPY statement (sql/redshift.sql, copy_from_manifest)."""
    return runner.copy(PIPELINE_SQL.copy_from_manifest(table, manifest_url, env.role))


def _load_errors(runner: DirectRunner, since: datetime) -> list[tuple[Any, ...]]:
    """What the loader reads after a failed COPY (sql/redshift.sql, load_error_detail), in the same session."""
    return runner.query(PIPELINE_SQL.load_error_detail(), (since,))


def _failed_copy(runner: DirectRunner, statement: str) -> CopyFailedError:
    with pytest.raises(CopyFailedError) as info:
        runner.copy(statement)
    runner.rollback()  # as the loader does before it reads sys_load_error_detail
    return info.value


def _since() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=5)  # naive UTC, as the loader binds it


def _small_table(**columns: pa.Array) -> pa.Table:
    return pa.table(columns)


# ----------------------------------------------------------------------------------------------- loads


def test_pipeline_statement_loads_landed_changes_with_their_values(env: Env, session: DirectRunner) -> None:
    # GIVEN a landed changes file with awkward values (CSV metacharacters, multi-byte text, empty strings,
    # nulls, a dataset delete) and its COPY manifest, written as the landing writer writes them
    changes = [
        change("k,1", 'a "quoted", comma\nnew line\\back', 1, 10),
        change("ключ", "значение ✓", 2, 20, index=1),
        replace(change("empty", "", 3, 30), last_modified_at=datetime(2015, 2, 24, 18, 37, 4, 123456)),
        change("gone", None, 4, 40),
        change("cut", "x" * 100, 5, 50, is_value_cut=True, value_bytes=70_000, value_ref="s3://b/v.txt"),
        replace(change("x", None, 6, 60), op="dataset_remove", record_key=None, device_last_modified_at=None),
    ]
    url, size = _landed_changes(env, "load/1-6.parquet", changes)
    manifest = env.manifest("load/1-6.changes.manifest", [(url, size)])
    _stage_changes(session)

    # WHEN the pipeline's COPY statement runs
    loaded = _copy_manifest(session, env, manifest)

    # THEN every row is there with its values (timestamps as UTC wall clock, microseconds kept)
    assert loaded == len(changes)
    rows = session.query("select * from stg_changes order by sync_count")
    expected = [replace(c, landed_file=url).as_tuple() for c in changes]
    assert rows == expected
    session.rollback()


def test_rejects_file_loads_into_the_rejects_stage(env: Env, session: DirectRunner) -> None:
    url = f"s3://{env.bucket}/{env.prefix}/rejects/1-2.parquet"
    rows = [
        {
            **{k: v for k, v in reject_row(n).items() if k != "_raw"},
            "raw_ref": f"{url}.jsonl#line={n}",
            "landed_file": url,
        }
        for n in (1, 2)
    ]
    table = pa.Table.from_pylist(rows, schema=REJECTS_SCHEMA).cast(_micros(REJECTS_SCHEMA))
    body = parquet_bytes(table, "zstd")
    file_url = env.put("rejects/1-2.parquet", body)
    manifest = env.manifest("rejects/1-2.rejects.manifest", [(file_url, len(body))])
    session.query(STAGE_SQL.create_stage_rejects())

    assert _copy_manifest(session, env, manifest, "stg_rejects") == 2
    assert session.query("select sequence_number, reason, arrived_at from stg_rejects order by 1") == [
        (rows[0]["sequence_number"], "invalid_json", at(1)),
        (rows[1]["sequence_number"], "invalid_json", at(2)),
    ]
    session.rollback()


def test_prefix_copy_with_a_column_list_and_several_row_groups(
    env: Env, session: DirectRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN two files under a prefix (one with three row groups, read in batches smaller than a row group)
    # and a Spark-style _SUCCESS marker, and a table with a column outside the COPY's column list
    monkeypatch.setattr(rs_copy, "BATCH_ROWS", 2)
    env.landed("prefix/part-0.parquet", _small_table(a=pa.array([1, 2, 3, 4, 5], pa.int64())), row_group_size=2)
    env.landed("prefix/part-1.parquet", _small_table(a=pa.array([6], pa.int64())))
    env.put("prefix/_SUCCESS", b"")
    session.query("create table t_prefix (a bigint not null, note varchar(10) default 'dflt')")

    # WHEN a COPY names the prefix (no MANIFEST) and a column list
    n = session.copy(
        f"COPY t_prefix (a) FROM 's3://{env.bucket}/{env.prefix}/prefix/' IAM_ROLE '{env.role}' FORMAT AS PARQUET"
    )

    # THEN all rows load, the other column takes its default
    assert n == 6
    assert session.query("select a, note from t_prefix order by a") == [(i, "dflt") for i in range(1, 7)]
    session.rollback()


def test_types_load_as_redshift_converts_them(env: Env, session: DirectRunner) -> None:
    # GIVEN one Parquet column of each type the emulator maps (dictionary-encoded text and INT96 included)
    table = pa.table(
        {
            "b": pa.array([True, None]),
            "i16": pa.array([-3, 7], pa.int16()),
            "i32": pa.array([2**31 - 1, None], pa.int32()),
            "i64": pa.array([2**63 - 1, -1], pa.int64()),
            "f": pa.array([1.5, float("inf")], pa.float32()),
            "d": pa.array([1.25, float("nan")], pa.float64()),
            "n": pa.array([Decimal("12.34"), None], pa.decimal128(5, 2)),
            "s": pa.array(["a", "b"]).dictionary_encode(),
            "c": pa.array(["ab", None]),
            "dt": pa.array([date(2024, 2, 29), None]),
            "ts": pa.array([datetime(2024, 1, 2, 3, 4, 5, 678901), None], pa.timestamp("us", tz="UTC")),
            "tz": pa.array([datetime(2024, 1, 2, 3, 4, 5, 678901), None], pa.timestamp("us")),
            "legacy": pa.array([1_700_000_000_123_456_789, None], pa.timestamp("ns")),
        }
    )
    url, size = env.landed("types/all.parquet", table, use_deprecated_int96_timestamps=True, store_schema=False)
    manifest = env.manifest("types/all.manifest", [(url, size)])
    session.query(
        "create temp table t_types (b boolean, i16 smallint, i32 integer, i64 bigint, f real, d double precision,"
        " n decimal(7,2), s varchar(5), c char(3), dt date, ts timestamp, tz timestamptz, legacy timestamp)"
    )
    session.query("set time zone 'America/Los_Angeles'")  # UTC is kept whatever the session's zone

    assert session.copy(f"copy t_types from '{manifest}' iam_role '{env.role}' format as parquet manifest") == 2

    first, second = session.query(
        "select b, i16, i32, i64, f, d, n, s, c, dt, ts, tz at time zone 'UTC', legacy from t_types order by i16"
    )
    assert first == (
        True, -3, 2**31 - 1, 2**63 - 1, 1.5, 1.25, Decimal("12.34"), "a", "ab ",
        date(2024, 2, 29), datetime(2024, 1, 2, 3, 4, 5, 678901), datetime(2024, 1, 2, 3, 4, 5, 678901),
        datetime(2023, 11, 14, 22, 13, 20, 123456),  # INT96 nanoseconds truncated to microseconds
    )  # fmt: skip
    assert second[:5] == (None, 7, None, -1, float("inf"))
    assert math.isnan(second[5])
    assert second[6:] == (None, "b", None, None, None, None, None)
    session.rollback()


# ----------------------------------------------------------------------------------------------- refusals (no row)


def test_manifest_without_content_length_is_refused(env: Env, session: DirectRunner) -> None:
    url, size = _landed_changes(env, "nometa/1-1.parquet", [change("k", "v", 1, 1)])
    no_meta = env.put("nometa/a.manifest", json.dumps({"entries": [{"url": url, "mandatory": True}]}).encode())
    no_length = env.manifest("nometa/b.manifest", [(url, size)], meta={"record_count": 1})
    since = _since()
    _stage_changes(session)

    failure = _failed_copy(session, PIPELINE_SQL.copy_from_manifest("stg_changes", no_meta, env.role))
    assert failure.message == "File entry does not have 'meta' key."
    assert "code:      15003" in failure.detail

    _stage_changes(session)
    failure = _failed_copy(session, PIPELINE_SQL.copy_from_manifest("stg_changes", no_length, env.role))
    assert failure.message == "File entry does not have 'content_length' key."
    # Manifest problems stop the COPY before any file is read: Redshift logs no load error for them.
    assert _load_errors(session, since) == []


def test_missing_mandatory_file_fails_and_a_missing_optional_one_is_skipped(env: Env, session: DirectRunner) -> None:
    url, size = _landed_changes(env, "missing/1-1.parquet", [change("k", "v", 1, 1)])
    gone = f"s3://{env.bucket}/{env.prefix}/missing/never-landed.parquet"
    mandatory = env.manifest("missing/a.manifest", [(url, size), (gone, 10)])
    optional = env.put(
        "missing/b.manifest",
        json.dumps(
            {
                "entries": [
                    {"url": url, "mandatory": True, "meta": {"content_length": size}},
                    {"url": gone, "mandatory": False, "meta": {"content_length": 10}},
                ]
            }
        ).encode(),
    )
    since = _since()
    _stage_changes(session)

    failure = _failed_copy(session, PIPELINE_SQL.copy_from_manifest("stg_changes", mandatory, env.role))
    assert failure.message.startswith("S3ServiceException:The specified key does not exist.,Status 404,Error NoSuchKey")
    assert f"S3 key being read : {gone}" in failure.detail
    assert _load_errors(session, since) == []

    _stage_changes(session)
    assert _copy_manifest(session, env, optional) == 1
    session.rollback()


def test_bad_url_and_malformed_manifest(env: Env, session: DirectRunner) -> None:
    folder = env.manifest("bad/a.manifest", [(f"s3://{env.bucket}/{env.prefix}/bad/", 1)])
    not_json = env.put("bad/b.manifest", b"{entries: nope")
    no_url = env.put("bad/c.manifest", json.dumps({"entries": [{"mandatory": True}]}).encode())
    _stage_changes(session)
    assert _failed_copy(session, PIPELINE_SQL.copy_from_manifest("stg_changes", folder, env.role)).message == (
        "COPY with MANIFEST parameter requires full path of an S3 object."
    )
    _stage_changes(session)
    assert _failed_copy(session, PIPELINE_SQL.copy_from_manifest("stg_changes", not_json, env.role)).message == (
        "Manifest file is not in correct json format"
    )
    _stage_changes(session)
    assert (
        "'url' field missing"
        in _failed_copy(session, PIPELINE_SQL.copy_from_manifest("stg_changes", no_url, env.role)).message
    )
    _stage_changes(session)
    missing = f"s3://{env.bucket}/{env.prefix}/bad/none.manifest"
    assert _failed_copy(session, PIPELINE_SQL.copy_from_manifest("stg_changes", missing, env.role)).message.startswith(
        "Problem reading manifest file - S3ServiceException:The specified key does not exist."
    )


def test_role_that_does_not_exist_or_does_not_trust_redshift(env: Env, session: DirectRunner) -> None:
    url, size = _landed_changes(env, "role/1-1.parquet", [change("k", "v", 1, 1)])
    manifest = env.manifest("role/a.manifest", [(url, size)])
    nobody = f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:role/no-such-role-{uuid.uuid4().hex[:6]}"
    cognito_only = _create_role(
        env.iam,
        f"rs-copy-cognito-{uuid.uuid4().hex[:6]}",
        load_template("cognito-publish-role.trust"),
        load_template("redshift-copy-role.policy", Partition="aws", Bucket=env.bucket, Prefix=env.prefix),
    )
    since = _since()
    for role, why in ((nobody, "no IAM role"), (cognito_only, "trust policy does not allow redshift.amazonaws.com")):
        _stage_changes(session)
        failure = _failed_copy(session, PIPELINE_SQL.copy_from_manifest("stg_changes", manifest, role))
        assert f"Not authorized to get credentials of role {role}" in failure.message
        assert why in failure.hint
    assert _load_errors(session, since) == []


def test_role_without_read_permission_on_the_files(env: Env, session: DirectRunner) -> None:
    url, size = _landed_changes(env, "denied/1-1.parquet", [change("k", "v", 1, 1)])
    manifest = env.manifest("denied/a.manifest", [(url, size)])
    elsewhere = _create_role(
        env.iam,
        f"rs-copy-elsewhere-{uuid.uuid4().hex[:6]}",
        load_template("redshift-copy-role.trust"),
        load_template("redshift-copy-role.policy", Partition="aws", Bucket=env.bucket, Prefix="some-other-prefix"),
    )
    _stage_changes(session)
    failure = _failed_copy(session, PIPELINE_SQL.copy_from_manifest("stg_changes", manifest, elsewhere))
    assert failure.message.startswith("Problem reading manifest file - S3ServiceException:Access Denied,Status 403")
    assert "s3:GetObject" in failure.hint


def test_content_length_that_differs_from_the_file(env: Env, session: DirectRunner) -> None:
    url, size = _landed_changes(env, "length/1-1.parquet", [change("k", "v", 1, 1)])
    longer = env.manifest("length/a.manifest", [(url, size + 10)])
    shorter = env.manifest("length/b.manifest", [(url, size - 10)])
    _stage_changes(session)
    failure = _failed_copy(session, PIPELINE_SQL.copy_from_manifest("stg_changes", longer, env.role))
    assert failure.message == "Spectrum Scan Error"
    assert "416 Message: InvalidRange The requested range is not satisfiable" in failure.detail
    _stage_changes(session)
    failure = _failed_copy(session, PIPELINE_SQL.copy_from_manifest("stg_changes", shorter, env.role))
    assert "has an invalid version number" in failure.detail
    assert f"{size - 10} bytes" in failure.hint


def test_missing_table(env: Env, session: DirectRunner) -> None:
    url, size = _landed_changes(env, "notable/1-1.parquet", [change("k", "v", 1, 1)])
    manifest = env.manifest("notable/a.manifest", [(url, size)])
    failure = _failed_copy(session, PIPELINE_SQL.copy_from_manifest("stg_nothing", manifest, env.role))
    assert (failure.message, failure.sqlstate) == ('relation "stg_nothing" does not exist', "42P01")


# ----------------------------------------------------------------------------------------------- failures with a row


def _assert_logged(
    session: DirectRunner, since: datetime, file_url: str, line: int, column: str, code: int, text: str
) -> None:
    rows = _load_errors(session, since)
    assert rows, "no sys_load_error_detail row for this session"
    file_name, line_number, column_name, error_code, error_message = rows[0]
    assert (file_name, line_number, column_name, error_code) == (file_url, line, column, code)
    assert text in error_message
    stl = session.query(
        "select trim(filename), line_number, trim(colname), err_code from stl_load_errors"
        " where session = pg_backend_pid() and starttime >= %s order by starttime desc limit 1",
        (since,),
    )
    assert stl == [(file_url, line, column, code)]


def test_column_count_mismatch(env: Env, session: DirectRunner) -> None:
    # GIVEN a changes file that lacks the contract's last column
    url = f"s3://{env.bucket}/{env.prefix}/count/1-1.parquet"
    row = replace(change("k", "v", 1, 1), landed_file=url).as_row()
    table = (
        pa.Table.from_pylist([row], schema=CHANGES_SCHEMA).cast(_micros(CHANGES_SCHEMA)).drop_columns(["landed_file"])
    )
    url, size = env.landed("count/1-1.parquet", table)
    manifest = env.manifest("count/a.manifest", [(url, size)])
    since = _since()
    _stage_changes(session)

    failure = _failed_copy(session, PIPELINE_SQL.copy_from_manifest("stg_changes", manifest, env.role))

    assert failure.message == "Spectrum Scan Error"
    assert "code:      15007" in failure.detail
    assert "Unmatched number of columns between table and file. Table columns: 22, Data columns: 21" in failure.detail
    assert f"https://s3.us-east-1.amazonaws.com/{env.bucket}/{env.prefix}/count/1-1.parquet" in failure.detail
    # The row was written outside the rolled-back transaction.
    _assert_logged(session, since, url, 0, "", 15007, "Spectrum Scan Error. Unmatched number of columns")


def test_identity_id_of_forty_three_byte_characters_into_varchar_64(env: Env, session: DirectRunner) -> None:
    # GIVEN a changes file whose second row has an identity id of 40 three-byte characters (120 bytes)
    wide = "€" * 40
    url, size = _landed_changes(
        env, "wide/1-2.parquet", [change("a", "1", 1, 1), change("b", "2", 2, 2, identity=wide)]
    )
    manifest = env.manifest("wide/a.manifest", [(url, size)])
    since = _since()
    _stage_changes(session)

    failure = _failed_copy(session, PIPELINE_SQL.copy_from_manifest("stg_changes", manifest, env.role))

    assert failure.message == "Spectrum Scan Error"
    assert (
        "The length of the data column identity_id is longer than the length defined in the table. Table: 64, "
        "Data: 120" in failure.detail
    )
    assert "row 2" in failure.hint
    _assert_logged(session, since, url, 2, "identity_id", 15007, "The length of the data column identity_id")


def test_parquet_types_aws_does_not_map(env: Env, session: DirectRunner) -> None:
    session.query("create table t_unmapped (a bigint, b varchar(10))")
    session.conn.commit()
    since = _since()
    cases = {
        "uint": (pa.array([1], pa.uint32()), "a", "optional int32 a (INTEGER(32,false))"),
        "int32_into_bigint": (pa.array([1], pa.int32()), "a", "optional int32 a"),  # the emulator's strict rule
        "binary": (pa.array([b"x"], pa.binary()), "b", "optional byte_array b"),
        "nested": (pa.array([[1, 2]]), "a", "optional group a"),
    }
    for name, (array, column, schema_text) in cases.items():
        other = "b" if column == "a" else "a"
        filler = pa.array(["x"]) if other == "b" else pa.array([1], pa.int64())
        table = pa.table({column: array, other: filler}).select(["a", "b"])
        url, size = env.landed(f"unmapped/{name}.parquet", table)
        manifest = env.manifest(f"unmapped/{name}.manifest", [(url, size)])
        failure = _failed_copy(
            session, f"copy t_unmapped from '{manifest}' iam_role '{env.role}' format as parquet manifest"
        )
        assert failure.message == "Spectrum Scan Error", name
        assert f"has an incompatible Parquet schema for column '{url}.{column}'" in failure.detail, name
        assert schema_text in failure.detail, name
        _assert_logged(session, since, url, 0, column, 15007, "incompatible Parquet schema")


@pytest.mark.parametrize(("unit", "annotation"), [("ns", "NANOS"), ("ms", "MILLIS")])
def test_timestamps_other_than_micros_are_refused(env: Env, session: DirectRunner, unit: str, annotation: str) -> None:
    # GIVEN the contract's columns with timestamps in another unit (milliseconds: the landing format before
    # issue 17; nanoseconds: pandas' default)
    url = f"s3://{env.bucket}/{env.prefix}/units/{unit}.parquet"
    row = replace(change("k", "v", 1, 1), landed_file=url).as_row()
    contract = pa.schema(
        [
            pa.field(f.name, pa.timestamp(unit, tz="UTC"), f.nullable) if pa.types.is_timestamp(f.type) else f
            for f in CHANGES_SCHEMA
        ]
    )
    url, size = env.landed(f"units/{unit}.parquet", pa.Table.from_pylist([row], schema=contract))
    manifest = env.manifest(f"units/{unit}.manifest", [(url, size)])
    since = _since()
    _stage_changes(session)

    failure = _failed_copy(session, PIPELINE_SQL.copy_from_manifest("stg_changes", manifest, env.role))

    assert failure.message == "Spectrum Scan Error"
    assert f"for column '{url}.last_modified_at'. Column type: TIMESTAMP" in failure.detail
    assert f"TIMESTAMP({annotation},true)" in failure.detail
    assert "TIMESTAMP(MICROS)" in failure.hint
    _assert_logged(session, since, url, 0, "last_modified_at", 15007, "incompatible Parquet schema")


def test_null_in_a_not_null_column(env: Env, session: DirectRunner) -> None:
    session.query("create temp table t_notnull (a bigint not null, b varchar(3))")
    url, size = env.landed(
        "notnull/a.parquet", pa.table({"a": pa.array([1, 2, None], pa.int64()), "b": ["x", "y", "z"]})
    )
    manifest = env.manifest("notnull/a.manifest", [(url, size)])
    since = _since()

    failure = _failed_copy(
        session, f"copy t_notnull from '{manifest}' iam_role '{env.role}' format as parquet manifest"
    )

    assert (
        failure.message
        == "Load into table 't_notnull' failed.  Check 'sys_load_error_detail' system table for details."
    )
    assert "code:      1213" in failure.detail
    _assert_logged(session, since, url, 3, "a", 1213, "Missing data for not-null field")


def test_invalid_utf8_fails_unless_acceptinvchars(env: Env, session: DirectRunner) -> None:
    raw = pa.array([b"ok", b"bad\xff\xfe!"], pa.binary()).view(pa.string())
    url, size = env.landed("utf8/a.parquet", pa.table({"s": raw}))
    manifest = env.manifest("utf8/a.manifest", [(url, size)])
    since = _since()
    session.query("create temp table t_utf8 (s varchar(20))")
    statement = f"copy t_utf8 from '{manifest}' iam_role '{env.role}' format as parquet manifest"

    failure = _failed_copy(session, statement)
    assert "code:      1220" in failure.detail
    _assert_logged(session, since, url, 2, "s", 1220, "Bad UTF8 hex sequence: ff")

    session.query("create temp table t_utf8 (s varchar(20))")
    assert session.copy(statement + " acceptinvchars as '^'") == 2
    assert session.query("select s from t_utf8 order by s") == [("bad^^!",), ("ok",)]
    session.rollback()


def test_a_failed_copy_leaves_nothing_and_the_session_usable(env: Env, session: DirectRunner) -> None:
    # GIVEN a manifest whose second file fails after the first one loaded
    good, good_size = _landed_changes(env, "atomic/1-1.parquet", [change("a", "1", 1, 1)])
    bad, bad_size = _landed_changes(env, "atomic/2-2.parquet", [change("b", "2", 2, 2, identity="x" * 65)])
    manifest = env.manifest("atomic/a.manifest", [(good, good_size), (bad, bad_size)])
    _stage_changes(session)
    session.query("create temp table t_before (a int)")

    with pytest.raises(CopyFailedError):
        _copy_manifest(session, env, manifest)

    # THEN the COPY left no row, and what the transaction did before it is intact
    assert session.query("select count(*) from stg_changes") == [(0,)]
    assert session.query("select count(*) from t_before") == [(0,)]
    session.rollback()


def test_error_in_a_later_batch_names_its_line(
    env: Env, session: DirectRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rs_copy, "BATCH_ROWS", 3)
    values = ["v"] * 7 + ["too long"]
    url, size = env.landed("batches/a.parquet", pa.table({"s": values}), row_group_size=4)
    manifest = env.manifest("batches/a.manifest", [(url, size)])
    session.query("create temp table t_batches (s varchar(3))")
    since = _since()

    _failed_copy(session, f"copy t_batches from '{manifest}' iam_role '{env.role}' format as parquet manifest")

    _assert_logged(session, since, url, 8, "s", 15007, "The length of the data column s")


def test_autocommit_session_commits_a_copy_and_keeps_nothing_of_a_failed_one(env: Env) -> None:
    url, size = env.landed("auto/a.parquet", pa.table({"s": ["ok", "also ok"]}))
    good = env.manifest("auto/good.manifest", [(url, size)])
    bad_url, bad_size = env.landed("auto/b.parquet", pa.table({"s": ["fine", "far too long"]}))
    bad = env.manifest("auto/bad.manifest", [(url, size), (bad_url, bad_size)])
    with psycopg.connect(os.environ["CS_WAREHOUSE_DSN"], autocommit=True) as conn:
        conn.execute(f"create table {env.schema}.t_auto (s varchar(8))")
        runner = DirectRunner(conn, env.s3, env.iam, env.errors)
        assert (
            runner.copy(f"copy {env.schema}.t_auto from '{good}' iam_role '{env.role}' format as parquet manifest") == 2
        )
        with pytest.raises(CopyFailedError):
            runner.copy(f"copy {env.schema}.t_auto from '{bad}' iam_role '{env.role}' format as parquet manifest")
        assert runner.query(f"select s from {env.schema}.t_auto order by s") == [("also ok",), ("ok",)]


def test_what_postgresql_still_refuses_is_reported_as_the_emulators_limit(env: Env, session: DirectRunner) -> None:
    # Redshift enforces no unique constraint; a PostgreSQL index that does is the emulator's difference.
    session.query("create temp table t_unique (a bigint)")
    session.query("create unique index on t_unique (a)")
    url, size = env.landed("unique/a.parquet", pa.table({"a": pa.array([1, 1], pa.int64())}))
    manifest = env.manifest("unique/a.manifest", [(url, size)])

    failure = _failed_copy(session, f"copy t_unique from '{manifest}' iam_role '{env.role}' format as parquet manifest")

    assert failure.sqlstate == "23505"
    assert f"PostgreSQL (under the emulator) refused a row of {url}" in failure.hint


def test_sessions_starting_together_create_the_system_views_once(env: Env) -> None:
    # GIVEN a database without the system views and four wire-server sessions starting at once, each with its
    # own log (without the lock in ensure_tables, two of them collide creating the schema)
    from concurrent.futures import ThreadPoolExecutor

    dsn = os.environ["CS_WAREHOUSE_DSN"]
    database = f"rscopy_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"create database {database}")
    fresh = psycopg.conninfo.make_conninfo(dsn, dbname=database)
    try:
        for _ in range(3):
            with psycopg.connect(fresh, autocommit=True) as conn:
                conn.execute("drop schema if exists redshift_sys cascade")
            logs = [LoadErrorLog(fresh) for _ in range(4)]
            try:
                with ThreadPoolExecutor(4) as pool:
                    list(pool.map(lambda log: log.ensure_tables(), logs))  # THEN none fails
            finally:
                for log in logs:
                    log.close()
        with psycopg.connect(fresh) as conn:
            views = conn.execute(
                "select table_name from information_schema.views where table_schema = 'redshift_sys' order by 1"
            ).fetchall()
        assert views == [("stl_load_errors",), ("sys_load_error_detail",)]
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"drop database {database}")


def test_fillrecord_identity_columns_and_char(env: Env, session: DirectRunner) -> None:
    one_column, size1 = env.landed("fill/one.parquet", pa.table({"a": pa.array([7], pa.int64())}))
    two_columns, size2 = env.landed("fill/two.parquet", pa.table({"id": pa.array([42], pa.int64()), "a": [8]}))
    one, two = (
        env.manifest("fill/one.manifest", [(one_column, size1)]),
        env.manifest("fill/two.manifest", [(two_columns, size2)]),
    )
    session.query("create temp table t_fill (a bigint, b varchar(4), c char(2))")
    copy = "copy {} from '{}' iam_role '" + env.role + "' format as parquet manifest"

    # FILLRECORD: the file's missing trailing columns load as NULL; without it the counts must match.
    assert session.copy(copy.format("t_fill", one) + " fillrecord") == 1
    assert session.query("select a, b, c from t_fill") == [(7, None, None)]
    assert "Table columns: 3, Data columns: 1" in _failed_copy(session, copy.format("t_fill", one)).detail

    # IDENTITY columns are left out of the implicit column list unless EXPLICIT_IDS (the failed COPY above
    # ended the transaction, as the loader does).
    session.query("create temp table t_ident (id bigint generated by default as identity, a bigint)")
    assert session.copy(copy.format("t_ident", one)) == 1
    assert session.copy(copy.format("t_ident", two) + " explicit_ids") == 1
    assert session.query("select id, a from t_ident order by a") == [(1, 7), (42, 8)]

    # CHAR holds single-byte characters only.
    chars, size3 = env.landed("fill/char.parquet", pa.table({"c": ["ab", "é"]}))
    session.query("create temp table t_char (c char(2))")
    failure = _failed_copy(session, copy.format("t_char", env.manifest("fill/char.manifest", [(chars, size3)])))
    assert "code:      1215" in failure.detail and "Multibyte character not supported for CHAR" in failure.detail
