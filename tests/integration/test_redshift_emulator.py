"""The Redshift emulator through the real drivers: redshift-connector (directly and through the Amazon provider's
RedshiftSQLHook) and psycopg. What Redshift refuses is refused with its text; what Redshift does differently
from PostgreSQL (byte widths, keys not enforced, serializable isolation, TRUNCATE's commit) is what the session
sees."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redshift_connector

from local.redshift.server import EmulatorConfig, RedshiftEmulator
from local.stack import Stack
from tests.conftest import RedshiftEndpoint
from tests.support.warehouse import query, redshift_admin, redshift_warehouse, unique_schema

pytestmark = pytest.mark.integration


@pytest.fixture
def schema(redshift_emulator: RedshiftEndpoint) -> Iterator[str]:
    """A fresh schema in the emulator's database with two small tables, dropped afterwards."""
    name = unique_schema("rs")
    with redshift_admin() as admin:
        admin.execute(f"create schema {name}")
    conn = redshift_emulator.connect()
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(f"create table {name}.t (a integer, b varchar(64))")
    cur.execute(f"create table {name}.s (a integer, b varchar(64))")
    cur.execute(f"insert into {name}.s values (1, 'one'), (2, 'two')")
    conn.close()
    try:
        yield name
    finally:
        with redshift_admin() as admin:
            admin.execute(f"drop schema if exists {name} cascade")


def _error(exc: BaseException) -> dict[str, str]:
    """redshift-connector's error fields (it raises with the ErrorResponse's dict as its argument)."""
    arg = exc.args[0] if exc.args else {}
    return arg if isinstance(arg, dict) else {"M": str(arg)}


def _log(stack: Stack) -> str:
    return stack.redshift.log_file.read_text(errors="replace")


# ------------------------------------------------------------------------------------------------- the session


def test_redshift_connector_connects_and_sees_redshift(redshift_emulator: RedshiftEndpoint, stack: Stack) -> None:
    conn = redshift_emulator.connect(application_name="emulator-test")
    try:
        # THEN the driver talked Redshift: server_version 8.0.2, a Redshift version() string
        statuses = dict(conn.parameter_statuses)
        assert statuses[b"server_version"] == b"8.0.2"
        cur = conn.cursor()
        cur.execute("select version(), getdate(), sysdate, %s::integer + 1", (41,))
        version, getdate, sysdate, answer = cur.fetchone()
        assert "Redshift" in version
        assert answer == 42
        # GETDATE() is to the second; SYSDATE is the transaction's start, with microseconds
        assert getdate.microsecond == 0
        time.sleep(0.01)
        cur.execute("select sysdate")
        assert cur.fetchone()[0] == sysdate
        conn.rollback()
    finally:
        conn.close()
    # AND the emulator's log names the client
    assert re.search(r"client Redshift Python Driver [\d.]+.*application_name='emulator-test'", _log(stack))


def test_psycopg_client_works(redshift_emulator: RedshiftEndpoint, schema: str) -> None:
    with psycopg.connect(redshift_emulator.dsn) as conn:
        assert conn.info.parameter_status("server_version") == "8.0.2"
        conn.execute(f"insert into {schema}.t values (%s, %s)", (7, "seven"))
        rows = conn.execute(f"select a, b from {schema}.t where a = %s", (7,)).fetchall()
        assert rows == [(7, "seven")]
        # a refusal in the simple protocol (no parameters) reaches psycopg with Redshift's text and SQLSTATE
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="not supported on Redshift tables"):
            conn.execute(f"create index t_a on {schema}.t (a)")


def test_redshift_sql_hook_with_a_redshift_connection(redshift_emulator: RedshiftEndpoint) -> None:
    from airflow.providers.amazon.aws.hooks.redshift_sql import RedshiftSQLHook

    conn = {
        "conn_type": "redshift",
        "host": redshift_emulator.host,
        "port": redshift_emulator.port,
        "login": redshift_emulator.user,
        "password": redshift_emulator.password,
        "schema": redshift_emulator.database,
        "extra": {"ssl": False},
    }
    os.environ["AIRFLOW_CONN_RS_EMULATOR_TEST"] = json.dumps(conn)
    try:
        hook = RedshiftSQLHook(redshift_conn_id="rs_emulator_test")
        assert [list(row) for row in hook.get_records("select 1 + 1, current_database()")] == [[2, "dev"]]
    finally:
        os.environ.pop("AIRFLOW_CONN_RS_EMULATOR_TEST", None)


def test_wrong_password_and_wrong_database_are_refused(redshift_emulator: RedshiftEndpoint) -> None:
    with pytest.raises(redshift_connector.Error, match="password authentication failed"):
        redshift_connector.connect(
            host=redshift_emulator.host, port=redshift_emulator.port, user=redshift_emulator.user,
            password="wrong", database=redshift_emulator.database, ssl=False,
        )  # fmt: skip
    with pytest.raises(psycopg.OperationalError, match='database "other" does not exist'):
        psycopg.connect(redshift_emulator.dsn.replace("dbname=dev", "dbname=other"))


# ------------------------------------------------------------------------------------------------- the gate

#: (construct, statement on tables t and s of the test schema, parameters, text Redshift's error carries)
REFUSED: list[tuple[str, str, tuple[Any, ...] | None, str]] = [
    ("INSERT ... ON CONFLICT", "insert into t values (1, 'x') on conflict do nothing", None, 'at or near "on"'),
    ("RETURNING", "insert into t values (1, 'x') returning a", None, 'at or near "returning"'),
    ("DISTINCT ON", "select distinct on (a) a, b from s", None, 'at or near "on"'),
    ("aggregate FILTER", "select count(*) filter (where a > 1) from s", None, 'at or near "("'),
    ("FOR UPDATE", "select a from s for update", None, "FOR UPDATE/SHARE"),
    ("FOR SHARE", "select a from s for share", None, "FOR UPDATE/SHARE"),
    ("advisory lock", "select pg_advisory_xact_lock(42)", None, "Specified types or functions"),
    ("SERIAL", "create table u (id serial, b varchar(10))", None, 'has unsupported type "serial"'),
    ("BIGSERIAL", "create table u (id bigserial)", None, 'has unsupported type "bigserial"'),
    ("jsonb column", "create table u (doc jsonb)", None, 'has unsupported type "jsonb"'),
    ("jsonb cast", "select cast(b as jsonb) from s", None, "Specified types or functions"),
    ("jsonb operator", "select b::varchar ->> 'k' from s", None, "Specified types or functions"),
    ("jsonb function", "select jsonb_build_object('a', a) from s", None, "Specified types or functions"),
    ("CHECK constraint", "create table u (a integer check (a > 0))", None, "CHECK constraint is not supported"),
    ("CREATE INDEX", "create index s_a on s (a)", None, "not supported on Redshift tables"),
    ("LATERAL", "select * from s, lateral (select s.a + 1 as n) as x", None, 'at or near "lateral"'),
    ("CREATE SEQUENCE", "create sequence u_seq", None, "not supported on Redshift tables"),
    ("nextval", "select nextval('u_seq')", None, "Specified types or functions"),
    ("array constructor", "select array[a, 2] from s", None, "array constructor"),
    ("array type", "create table u (a integer[])", None, 'has unsupported type "array"'),
    ("row constructor", "select row(a, b) from s", None, "row constructor"),
    ("VALUES as a table", "select * from (values (1, 'x'), (2, 'y')) as v (a, b)", None, "VALUES list"),
    ("generate_series", "select * from generate_series(1, 3)", None, "table function"),
    ("generate_series over a table", "select generate_series(1, a) from s", None, "Specified types or functions"),
    ("uuid", "create table u (id uuid)", None, 'has unsupported type "uuid"'),
    ("bytea", "create table u (raw bytea)", None, "Specified types or functions"),
    ("ON COMMIT", "create temp table u (a integer) on commit drop", None, 'at or near "on"'),
    ("LOCK ... IN MODE", "lock table s in exclusive mode", None, 'at or near "in"'),
    (
        "MERGE target alias",
        "merge into t as x using s on x.a = s.a when matched then update set b = s.b "
        "when not matched then insert values (s.a, s.b)",
        None,
        'at or near "as"',
    ),
    (
        "MERGE non-equality ON",
        "merge into t using s on t.a > s.a when matched then update set b = s.b "
        "when not matched then insert values (s.a, s.b)",
        None,
        "equality predicates",
    ),
    (
        "MERGE qualified SET",
        "merge into t using s on t.a = s.a when matched then update set t.b = s.b "
        "when not matched then insert values (s.a, s.b)",
        None,
        "must not name its table",
    ),
    (
        "MERGE without NOT MATCHED",
        "merge into t using s on t.a = s.a when matched then update set b = s.b",
        None,
        "WHEN NOT MATCHED",
    ),
    (
        "MERGE extra condition",
        "merge into t using s on t.a = s.a when matched and s.a > 1 then update set b = s.b "
        "when not matched then insert values (s.a, s.b)",
        None,
        'at or near "and"',
    ),
    (
        "MERGE subquery source",
        "merge into t using (select a, b from s) as x on t.a = x.a when matched then "
        "update set b = x.b when not matched then insert values (x.a, x.b)",
        None,
        "subquery",
    ),
    ("bound LIMIT", "select a from s order by a limit %s", (1,), "Not implemented"),
    ("bound OFFSET", "select a from s order by a limit 1 offset %s", (1,), "Not implemented"),
    ("COPY FROM STDIN", "copy t from stdin", None, "COPY"),
    ("string_agg", "select string_agg(b, ',') from s", None, "Specified types or functions"),
    ("IS DISTINCT FROM", "select a is distinct from 1 from s", None, "Specified types or functions"),
    ("PostgreSQL-only SET", "set work_mem = '64MB'", None, 'unrecognized configuration parameter "work_mem"'),
    ("SAVEPOINT", "savepoint before_change", None, "not supported"),
]


@pytest.mark.parametrize(("construct", "statement", "params", "text"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_construct_through_redshift_connector(
    redshift_emulator: RedshiftEndpoint, schema: str, stack: Stack, construct: str, statement: str,
    params: tuple[Any, ...] | None, text: str,
) -> None:  # fmt: skip
    conn = redshift_emulator.connect()
    try:
        cur = conn.cursor()
        conn.autocommit = True  # a SET in a transaction block is rolled back with it
        cur.execute(f"set search_path to {schema}")
        conn.autocommit = False
        # WHEN the statement is sent as redshift-connector sends every statement (Parse/Bind/Execute)
        with pytest.raises(redshift_connector.ProgrammingError) as info:
            cur.execute(statement, params)
        # THEN Redshift's error text comes back
        fields = _error(info.value)
        assert text in " ".join(fields.values()), fields
        conn.rollback()
        # AND nothing of it ran: the session still works and the tables are untouched
        cur.execute("select count(*) from t")
        assert cur.fetchone()[0] == 0
        conn.rollback()
    finally:
        conn.close()
    assert "REFUSED" in _log(stack)


def test_bound_limit_fails_as_redshift_answered_aws_python_driver_issue_24(
    redshift_emulator: RedshiftEndpoint, schema: str
) -> None:
    conn = redshift_emulator.connect()
    try:
        cur = conn.cursor()
        with pytest.raises(redshift_connector.ProgrammingError) as info:
            cur.execute(f"select a from {schema}.s limit %s", (1,))
        fields = _error(info.value)
        assert fields["M"] == "Not implemented"
        assert "IsA(cons, Const)" in fields["D"] and "code:      1001" in fields["D"]
        conn.rollback()
        # the constant form runs
        cur.execute(f"select a from {schema}.s order by a limit 1")
        assert cur.fetchall() == ([1],)
    finally:
        conn.close()


def test_redshift_only_syntax_runs(redshift_emulator: RedshiftEndpoint, schema: str) -> None:
    conn = redshift_emulator.connect()
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute(
            f"create table {schema}.attrs (id integer identity(1, 1), k varchar(16) not null encode zstd, "
            "v varchar(64) encode lzo) diststyle key distkey (k) compound sortkey (k, id)"
        )
        cur.execute(f"insert into {schema}.attrs (k, v) values ('a', 'x'), ('b', 'y')")
        cur.execute(f"select id, k from {schema}.attrs order by id")
        assert cur.fetchall() == ([1, "a"], [2, "b"])
        cur.execute(f"merge into {schema}.t using {schema}.s on t.a = s.a when matched then update set b = s.b "
                    "when not matched then insert values (s.a, s.b)")  # fmt: skip
        cur.execute(f"select count(*) from {schema}.t")
        assert cur.fetchone()[0] == 2
        cur.execute(f"lock {schema}.t, {schema}.s")
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------------- what Redshift does


def test_varchar_widths_are_bytes_on_every_write(redshift_emulator: RedshiftEndpoint, schema: str) -> None:
    three_bytes = "\u20ac"  # the euro sign: 3 bytes in UTF-8
    conn = redshift_emulator.connect()
    conn.autocommit = True
    try:
        cur = conn.cursor()
        # 21 x 3 bytes = 63 bytes fit varchar(64)
        cur.execute(f"insert into {schema}.t values (1, %s)", (three_bytes * 21,))
        writes = {
            "INSERT": (f"insert into {schema}.t values (2, %s)", (three_bytes * 40,)),
            "UPDATE": (f"update {schema}.t set b = %s where a = 1", (three_bytes * 40,)),
            "temp table": ("insert into stg_w values (%s)", (three_bytes * 40,)),
            # Redshift binds parameters only in SELECT/INSERT/UPDATE/DELETE (the gate refuses others): a literal
            "CTAS": (f"create table {schema}.w as select cast('{three_bytes * 40}' as varchar(64)) as b", None),
            "MERGE": (
                f"merge into {schema}.t using stg_src on t.a = stg_src.a when matched then update set b = stg_src.b "
                "when not matched then insert values (stg_src.a, stg_src.b)",
                None,
            ),
        }
        cur.execute("create temp table stg_w (b varchar(64))")
        cur.execute("create temp table stg_src (a integer, b varchar(200))")
        cur.execute("insert into stg_src values (1, %s)", (three_bytes * 40,))
        for what, (statement, params) in writes.items():
            # 40 x 3 bytes = 120 bytes: 40 characters, which PostgreSQL's varchar(64) would take
            with pytest.raises(redshift_connector.ProgrammingError) as info:
                cur.execute(statement, params)
            fields = _error(info.value)
            assert fields["M"] == "value too long for type character varying(64)", (what, fields)
            assert fields["C"] == "22001", what
        cur.execute(f"select octet_length(b) from {schema}.t")
        assert cur.fetchall() == ([63],)
    finally:
        conn.close()


def test_primary_and_unique_keys_are_not_enforced(redshift_emulator: RedshiftEndpoint, schema: str) -> None:
    conn = redshift_emulator.connect()
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute(f"create table {schema}.k (id integer not null, code varchar(8), primary key (id), unique (code))")
        cur.execute(f"insert into {schema}.k values (1, 'a'), (1, 'a')")
        cur.execute(f"select count(*) from {schema}.k")
        assert cur.fetchone()[0] == 2
    finally:
        conn.close()


def test_truncate_commits_the_transaction_it_runs_in(redshift_emulator: RedshiftEndpoint, schema: str) -> None:
    # Extended protocol (redshift-connector): insert, truncate another table, roll back: the insert stays.
    conn = redshift_emulator.connect()
    try:
        cur = conn.cursor()
        cur.execute(f"insert into {schema}.t values (10, 'kept')")
        cur.execute(f"truncate {schema}.s")
        conn.rollback()
        cur.execute(f"select count(*) from {schema}.t where a = 10")
        assert cur.fetchone()[0] == 1
        cur.execute(f"select count(*) from {schema}.s")
        assert cur.fetchone()[0] == 0
        conn.rollback()
    finally:
        conn.close()
    # Simple protocol (psycopg, no parameters): the same, and the session is outside a transaction after it.
    with psycopg.connect(redshift_emulator.dsn) as pconn:
        pconn.execute(f"insert into {schema}.t values (11, 'kept')")
        pconn.execute(f"truncate {schema}.s")
        assert pconn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        pconn.rollback()
        assert pconn.execute(f"select count(*) from {schema}.t where a = 11").fetchone() == (1,)


def test_transaction_state_after_a_refusal_is_postgresqls(redshift_emulator: RedshiftEndpoint, schema: str) -> None:
    # Extended protocol, in a transaction block: aborted until ROLLBACK, and what ran before is rolled back.
    conn = redshift_emulator.connect()
    try:
        cur = conn.cursor()
        cur.execute(f"insert into {schema}.t values (20, 'gone')")
        with pytest.raises(redshift_connector.ProgrammingError, match="returning"):
            cur.execute(f"insert into {schema}.t values (21, 'x') returning a")
        with pytest.raises(redshift_connector.ProgrammingError) as info:
            cur.execute("select 1")
        assert (
            _error(info.value)["M"] == "current transaction is aborted, commands ignored until end of transaction block"
        )
        conn.rollback()
        cur.execute(f"select count(*) from {schema}.t")
        assert cur.fetchone()[0] == 0
        conn.rollback()
        # In autocommit the next statement runs at once.
        conn.autocommit = True
        with pytest.raises(redshift_connector.ProgrammingError):
            cur.execute(f"select a from {schema}.s limit %s", (1,))
        cur.execute("select 2")
        assert cur.fetchone()[0] == 2
    finally:
        conn.close()
    # Simple protocol (psycopg without parameters): the same states.
    with psycopg.connect(redshift_emulator.dsn) as pconn:
        pconn.execute(f"insert into {schema}.t values (22, 'gone')")
        with pytest.raises(psycopg.errors.SyntaxError):
            pconn.execute(f"insert into {schema}.t values (23, 'x') on conflict do nothing")
        assert pconn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            pconn.execute("select 1")
        pconn.rollback()
        assert pconn.execute(f"select count(*) from {schema}.t").fetchone() == (0,)


def test_concurrent_writers_fail_with_1023_under_serializable(redshift_emulator: RedshiftEndpoint, schema: str) -> None:
    first, second = redshift_emulator.connect(), redshift_emulator.connect()
    try:
        c1, c2 = first.cursor(), second.cursor()
        # Two transactions each read the table and write a row the other's read would have seen: no serial
        # order gives their results (AWS's example of 1023, knowledge-center/redshift-serializable-isolation).
        c1.execute(f"select count(*) from {schema}.t")
        c2.execute(f"select count(*) from {schema}.t")
        c1.execute(f"insert into {schema}.t values (1, 'first')")
        c2.execute(f"insert into {schema}.t values (2, 'second')")
        first.commit()
        with pytest.raises(redshift_connector.Error) as info:
            second.commit()
        fields = _error(info.value)
        assert fields["M"] == "1023"
        assert fields["D"].startswith("Serializable isolation violation on table")
        second.rollback()
    finally:
        first.close()
        second.close()


@pytest.fixture
def snapshot_emulator(stack: Stack) -> Iterator[RedshiftEndpoint]:
    """A second emulator, in this process, whose database runs SNAPSHOT isolation (``--isolation snapshot``)."""
    from local.procs import free_port

    cfg = EmulatorConfig(port=free_port(), pg_port=stack.cfg.pg_port, database="snapshot_db", isolation="snapshot")
    emulator = RedshiftEmulator(cfg)
    emulator.start_in_thread()
    try:
        yield RedshiftEndpoint(cfg.host, cfg.port, cfg.user, cfg.password, cfg.database)
    finally:
        emulator.stop_thread()


def test_disjoint_concurrent_writers_commit_under_snapshot(snapshot_emulator: RedshiftEndpoint) -> None:
    setup = snapshot_emulator.connect()
    setup.autocommit = True
    setup.cursor().execute("drop table if exists snap_t")
    setup.cursor().execute("create table snap_t (a integer, b varchar(16))")
    setup.close()
    first, second = snapshot_emulator.connect(), snapshot_emulator.connect()
    try:
        c1, c2 = first.cursor(), second.cursor()
        c1.execute("select count(*) from snap_t")
        c2.execute("select count(*) from snap_t")
        c1.execute("insert into snap_t values (1, 'first')")
        c2.execute("insert into snap_t values (2, 'second')")
        first.commit()
        second.commit()  # SNAPSHOT: concurrent writes of different rows both commit
        c1.execute("select count(*) from snap_t")
        assert c1.fetchone()[0] == 2
        first.rollback()
        # ALTER DATABASE ... ISOLATION LEVEL works on a database other than dev, outside a transaction block
        # and with no other session connected: here two are, so it is refused.
        first.autocommit = True
        with pytest.raises(redshift_connector.Error, match="being accessed by other users"):
            c1.execute("alter database snapshot_db isolation level serializable")
    finally:
        first.close()
        second.close()


def test_isolation_of_dev_cannot_be_altered(redshift_emulator: RedshiftEndpoint) -> None:
    conn = redshift_emulator.connect()
    conn.autocommit = True
    try:
        with pytest.raises(redshift_connector.Error, match="dev database"):
            conn.cursor().execute("alter database dev isolation level snapshot")
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------------- the warehouse


def test_redshift_warehouse_migrates_through_the_emulator(redshift_emulator: RedshiftEndpoint) -> None:
    with redshift_warehouse() as wh:
        tables = {
            r[0]
            for r in query(wh, "select table_name from information_schema.tables where table_schema = %s", (wh.schema,))
        }
        assert {"records", "record_changes", "datasets", "loaded_batches", "bulk_publish_runs"} <= tables
        assert wh.ensure_schema() == []


# ------------------------------------------------------------------------------------------------- COPY's session


@pytest.fixture
def copy_emulator(stack: Stack) -> Iterator[RedshiftEndpoint]:
    """An emulator (in this process) whose COPY module is a stand-in with rs-copy's interface."""
    from local.procs import free_port
    from tests.support import copy_standin

    cfg = EmulatorConfig(port=free_port(), pg_port=stack.cfg.pg_port, database="copy_test_db")
    emulator = RedshiftEmulator(cfg, copy_module=copy_standin)  # type: ignore[arg-type]
    emulator.start_in_thread()
    endpoint = RedshiftEndpoint(cfg.host, cfg.port, cfg.user, cfg.password, cfg.database)
    setup = endpoint.connect()
    setup.autocommit = True
    setup.cursor().execute("drop table if exists t")
    setup.cursor().execute("create table t (a integer, b varchar(16))")
    setup.close()
    try:
        yield endpoint
    finally:
        emulator.stop_thread()


def test_copy_runs_in_the_sessions_transaction(
    copy_emulator: RedshiftEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="local.redshift")
    copy = (
        "copy t from 's3://landing/x.manifest' iam_role 'arn:aws:iam::123456789012:role/r' format as parquet manifest"
    )
    conn = copy_emulator.connect()
    try:
        cur = conn.cursor()
        # In a transaction block: the COPY's rows are the transaction's, and go with its rollback.
        cur.execute("insert into t values (0, 'before')")
        cur.execute(copy)
        cur.execute("select count(*) from t")
        assert cur.fetchone()[0] == 3
        conn.rollback()
        cur.execute("select count(*) from t")
        assert cur.fetchone()[0] == 0
        conn.rollback()
        # A failing COPY aborts the block (nothing of it or before it stays) with its error...
        cur.execute("insert into t values (0, 'before')")
        with pytest.raises(redshift_connector.ProgrammingError) as info:
            cur.execute(copy.replace("x.manifest", "fail.manifest"))
        assert _error(info.value)["M"].startswith("Load into table 't' failed")
        with pytest.raises(redshift_connector.ProgrammingError, match="current transaction is aborted"):
            cur.execute("select 1")
        conn.rollback()
        # ...and in autocommit it is one statement: all of it or nothing.
        conn.autocommit = True
        with pytest.raises(redshift_connector.ProgrammingError):
            cur.execute(copy.replace("x.manifest", "fail.manifest"))
        cur.execute(copy)
        cur.execute("select a, b from t order by a")
        assert cur.fetchall() == ([1, "copied"], [2, "copied"])
    finally:
        conn.close()
    # The simple protocol (psycopg without parameters) runs it the same way.
    with psycopg.connect(copy_emulator.dsn, autocommit=True) as pconn:
        cursor = pconn.execute(copy)
        assert cursor.statusmessage == "COPY 2"
        assert pconn.execute("select count(*) from t").fetchone() == (4,)
        with pytest.raises(psycopg.Error, match="Load into table 't' failed"):
            pconn.execute(copy.replace("x.manifest", "fail.manifest"))
        assert pconn.execute("select count(*) from t").fetchone() == (4,)
        # several statements in one Query message, a COPY among them: run in order, one result each
        multi = pconn.execute(f"insert into t values (5, 'five'); {copy}; select count(*) from t")
        while multi.nextset():
            pass
        assert multi.fetchone() == (7,)
        assert pconn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "COPY 2 rows" in messages and "COPY FAILED" in messages


def test_stack_creates_the_copy_role_redshift_assumes(stack: Stack, aws: Any) -> None:
    from tests.support.warehouse import pipeline_settings

    role = aws("iam").get_role(RoleName="cognito-streams-redshift-copy")["Role"]
    assert role["Arn"] == pipeline_settings().copy_iam_role_arn
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "redshift.amazonaws.com"}
    policy = aws("iam").get_role_policy(RoleName="cognito-streams-redshift-copy", PolicyName="landing-read")
    assert stack.cfg.landing_bucket in json.dumps(policy["PolicyDocument"])


def test_redshift_warehouse_merges_and_checks_through_the_emulator(redshift_emulator: RedshiftEndpoint) -> None:
    from tests.support.changes import change, dataset_remove
    from tests.support.warehouse import read_state

    with redshift_warehouse() as wh:
        # The loader's whole merge (temp tables, CTAS, window functions, both MERGEs) runs as Redshift SQL.
        counts = wh.merge_changes(
            [
                change("a", "1", 1, 0),
                change("b", "2", 1, 0, index=1),
                change("a", "3", 2, 5),
                dataset_remove(2, 10, dataset="x"),
            ]
        )
        assert counts.keys_changed >= 2
        state = read_state(wh)
        assert {key[3]: rec.record_value for key, rec in state.records.items()} == {"a": "3", "b": "2"}
        assert wh.merge_changes([change("a", "3", 2, 5)]).keys_changed == 0  # a duplicate changes nothing
        assert all(result.ok for result in wh.check_quality(datetime.now(UTC) - timedelta(minutes=5)))


def test_batches_set_aside_are_recorded_and_settled_through_the_emulator(redshift_emulator: RedshiftEndpoint) -> None:
    from datetime import date

    from cognito_streams.warehouse.models import FailedBatch

    with redshift_warehouse() as wh:
        # GIVEN three batches the loader set aside (failed_batches, through its MERGE)
        urls = [f"s3://b/p/batches/stream=s/dt=2026-03-01/shardId-000000000000/{n}-{n}.json" for n in (1, 2, 3)]
        wh.record_failed_batches([FailedBatch(u, date(2026, 3, 1), None, "LoadError", "COPY failed") for u in urls])
        # WHEN two are settled: one superseded by a replay, one whose descriptor is gone (V007's column, the
        # settle statements: a temp table, a multi-row INSERT, UPDATE ... FROM, as Redshift runs them)
        wh.settle_failed_batches({urls[0]: "superseded", urls[1]: "removed"})
        # THEN they are resolved saying how, the third is still set aside
        rows = query(wh, "select descriptor_url, resolution, resolved_at is not null from {schema}.failed_batches")
        assert sorted(tuple(r) for r in rows) == [
            (urls[0], "superseded", True),
            (urls[1], "removed", True),
            (urls[2], None, False),
        ]
        assert wh.unresolved_failed_batches() == {urls[2]}
        # AND settling a resolved one again changes nothing (a row already resolved stays as it is)
        wh.settle_failed_batches({urls[0]: "removed"})
        again = query(wh, "select resolution from {schema}.failed_batches where descriptor_url = %s", (urls[0],))
        assert [tuple(r) for r in again] == [("superseded",)]


def test_a_cancel_request_reaches_the_backend(redshift_emulator: RedshiftEndpoint, schema: str) -> None:
    import threading

    with psycopg.connect(redshift_emulator.dsn, autocommit=True) as setup:
        setup.execute(f"insert into {schema}.t values (1, 'x')")
        for _ in range(11):  # 2,048 rows: a three-way cross join runs for hours unless cancelled
            setup.execute(f"insert into {schema}.t select a, b from {schema}.t")
    conn = psycopg.connect(redshift_emulator.dsn, autocommit=True)
    outcome: list[BaseException] = []

    def long_query() -> None:
        try:
            conn.execute(f"select count(*) from {schema}.t as x, {schema}.t as y, {schema}.t as z")
        except psycopg.Error as err:
            outcome.append(err)

    worker = threading.Thread(target=long_query)
    worker.start()
    try:
        for _ in range(300):  # cancel until it lands (a cancel that arrives before the query starts is ignored)
            conn.cancel_safe()
            worker.join(0.2)
            if not worker.is_alive():
                break
    finally:
        worker.join(60)
        conn.close()
    assert outcome and isinstance(outcome[0], psycopg.errors.QueryCanceled)


def _injections() -> list[tuple[str, str, str, str]]:
    """(construct, sql/ statement, the statement with the construct injected, Redshift's text): the eleven
    PostgreSQL-only constructs issue 17's reviewer injected into sql/, which the sqlglot parse test let through."""
    from cognito_streams.core.sql_text import ReportingSql

    sql = ReportingSql("cognito_sync", "redshift")
    v001 = sql.migration(sql.library.migrations()[0])[0]  # create table records
    cases = [
        ("ON CONFLICT", sql.insert_reconciliation_result(), lambda s: s + " on conflict do nothing", 'near "on"'),
        ("RETURNING", sql.insert_record_changes(), lambda s: s + " returning identity_id", 'near "returning"'),
        ("DISTINCT ON", sql.create_reset_datasets(),
         lambda s: s.replace("select distinct", "select distinct on (identity_id)"), 'near "on"'),
        ("FILTER", sql.merge_counts(),
         lambda s: s.replace("count(*) as keys_changed", "count(*) filter (where is_deleted) as keys_changed"),
         'near "("'),
        ("FOR UPDATE", sql.loaded_descriptors(), lambda s: s + " for update", "FOR UPDATE/SHARE"),
        ("advisory lock", sql.lock_loader(), lambda s: "select pg_advisory_xact_lock(17)",
         "Specified types or functions"),
        ("SERIAL", v001,
         lambda s: s.replace("identity_pool_id varchar(64) not null,", "row_id serial, identity_pool_id text,", 1),
         'unsupported type "serial"'),
        ("jsonb", v001, lambda s: s.replace("record_value varchar(65535)", "record_value jsonb", 1),
         'unsupported type "jsonb"'),
        ("CHECK", v001,
         lambda s: s.replace("sync_count bigint not null,", "sync_count bigint check (sync_count >= 0),", 1),
         "CHECK constraint is not supported"),
        ("CREATE INDEX", v001, lambda s: "create index records_identity on cognito_sync.records (identity_id)",
         "not supported on Redshift tables"),
        ("LATERAL", sql.records_of_identities(1),
         lambda s: s.replace("from cognito_sync.records", "from cognito_sync.records, lateral (select 1 as one) as l"),
         'near "lateral"'),
    ]  # fmt: skip
    out = []
    for construct, statement, inject, text in cases:
        injected = inject(statement)
        assert injected != statement, construct
        out.append((construct, statement, injected, text))
    return out


INJECTIONS = _injections()


@pytest.mark.parametrize(("construct", "statement", "injected", "text"), INJECTIONS, ids=[i[0] for i in INJECTIONS])
def test_constructs_injected_into_sql_statements_are_refused(
    redshift_emulator: RedshiftEndpoint, construct: str, statement: str, injected: str, text: str
) -> None:
    from local.redshift.gate import inspect

    inspect(statement, parse_copy=lambda t: object())  # the statement as it is passes
    conn = redshift_emulator.connect()
    try:
        with pytest.raises(redshift_connector.ProgrammingError) as info:
            conn.cursor().execute(injected, (None,) * injected.count("%s") if "%s" in injected else None)
        assert text in " ".join(_error(info.value).values())
        conn.rollback()
    finally:
        conn.close()


@pytest.mark.timeout(120)
def test_a_session_whose_backend_dies_ends_with_an_error(redshift_emulator: RedshiftEndpoint) -> None:
    # 20 times: the client's next statement races the backend's exit. When the backend's reset arrives before
    # its last messages were read, the emulator once ended its relay without closing the client's connection
    # and the client waited for ever (13 hangs in 40 tries).
    for _ in range(20):
        conn = psycopg.connect(redshift_emulator.dsn, autocommit=True)
        try:
            pid = conn.execute("select pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            with redshift_admin() as admin:
                admin.execute("select pg_terminate_backend(%s)", (pid,))
            with pytest.raises(psycopg.OperationalError):
                conn.execute("select 1")
        finally:
            conn.close()
    # the emulator still serves new sessions
    with psycopg.connect(redshift_emulator.dsn, autocommit=True) as again:
        assert again.execute("select 1").fetchone() == (1,)


def test_a_refusal_quoting_the_statement_keeps_its_text_exactly(redshift_emulator: RedshiftEndpoint) -> None:
    # Redshift's CREATE INDEX error quotes the statement: quotes, backslashes and dollar tags must survive the
    # round trip through PostgreSQL's RAISE.
    statement = """create index "it's $redshift_emulator$ \\n" on t (a)"""
    with psycopg.connect(redshift_emulator.dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as info:
            conn.execute(statement)
        assert info.value.diag.message_primary == f'SQL command "{statement}" not supported on Redshift tables.'
        assert info.value.diag.context is None  # no PL/pgSQL context leaks from the emulator's RAISE


def test_concurrent_updates_of_a_row_conflict_under_snapshot(snapshot_emulator: RedshiftEndpoint) -> None:
    setup = snapshot_emulator.connect()
    setup.autocommit = True
    setup.cursor().execute("drop table if exists snap_u")
    setup.cursor().execute("create table snap_u (a integer, b varchar(16))")
    setup.cursor().execute("insert into snap_u values (1, 'x')")
    setup.close()
    first, second = snapshot_emulator.connect(), snapshot_emulator.connect()
    try:
        c1, c2 = first.cursor(), second.cursor()
        c1.execute("select count(*) from snap_u")
        c2.execute("select count(*) from snap_u")
        c1.execute("update snap_u set b = 'first' where a = 1")
        first.commit()
        # SNAPSHOT protects against update conflicts: the second writer of the same row fails
        with pytest.raises(redshift_connector.Error) as info:
            c2.execute("update snap_u set b = 'second' where a = 1")
        assert _error(info.value)["M"] == "could not complete because of conflict with concurrent transaction"
        second.rollback()
    finally:
        first.close()
        second.close()
