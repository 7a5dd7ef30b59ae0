"""The emulator's database on the stack's PostgreSQL: created once, with what models Redshift's storage rules.

Everything lives in a database of the emulator's own (``dev`` by default, Redshift's default database name), so
nothing installed here touches the plain-PostgreSQL stand-in's ``warehouse`` database:

- an event trigger at the end of CREATE TABLE / CREATE TABLE AS / SELECT INTO / ALTER TABLE that
  * drops PRIMARY KEY, UNIQUE and FOREIGN KEY constraints: Redshift accepts them and does not enforce them
    (its planner trusts them; a PostgreSQL unique index would be a hidden assertion Redshift never makes);
  * adds ``octet_length(col) <= n`` checks to every VARCHAR(n)/CHAR(n) column, temporary and CTAS tables
    included, because Redshift counts those widths in bytes and PostgreSQL in characters; a VARCHAR or TEXT
    column declared without a width gets Redshift's 256 bytes (CREATE TABLE only: CTAS columns keep the
    width of what they select);
- the database's isolation level: SERIALIZABLE (Redshift's strict level) or REPEATABLE READ for SNAPSHOT.

The checks are named ``redshift_<varchar|char>_<n>_<attnum>``; the wire server maps their violations to
Redshift's ``value too long for type character varying(n)``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import psycopg
from psycopg import sql

Isolation = Literal["serializable", "snapshot"]
ISOLATIONS: tuple[Isolation, ...] = ("serializable", "snapshot")
POSTGRES_LEVEL = {"serializable": "serializable", "snapshot": "repeatable read"}

#: The check constraints the event trigger adds: redshift_varchar_64_3 = varchar(64), attribute number 3.
BYTE_CHECK_RE = re.compile(r"^redshift_(varchar|char)_(\d+)_\d+$")

SETUP_SQL = r"""
create schema if not exists redshift_sys;

create or replace function redshift_sys.redshift_table_rules() returns event_trigger
language plpgsql as $fn$
declare
    obj record;
    con record;
    col record;
    width integer;
    kind text;
    name text;
begin
    for obj in
        select * from pg_event_trigger_ddl_commands()
        where object_type = 'table' and objid is not null
    loop
        -- Redshift: primary, unique and foreign keys are informational only.
        for con in
            select conname from pg_constraint where conrelid = obj.objid and contype in ('p', 'u', 'f')
        loop
            execute format('alter table %s drop constraint if exists %I', obj.objid::regclass, con.conname);
        end loop;
        -- Redshift: VARCHAR(n) and CHAR(n) hold n bytes.
        for col in
            select a.attnum, a.attname, a.atttypid, a.atttypmod
            from pg_attribute as a
            where a.attrelid = obj.objid and a.attnum > 0 and not a.attisdropped
                and a.atttypid in ('varchar'::regtype, 'bpchar'::regtype, 'text'::regtype)
        loop
            if col.atttypmod > 4 then
                width := col.atttypmod - 4;
            elsif obj.command_tag = 'CREATE TABLE' and col.atttypid <> 'bpchar'::regtype then
                width := 256;
            else
                continue;
            end if;
            kind := case when col.atttypid = 'bpchar'::regtype then 'char' else 'varchar' end;
            name := format('redshift_%s_%s_%s', kind, width, col.attnum);
            if not exists (select 1 from pg_constraint where conrelid = obj.objid and conname = name) then
                execute format(
                    'alter table %s add constraint %I check (octet_length(%I) <= %s)',
                    obj.objid::regclass, name, col.attname, width
                );
            end if;
        end loop;
    end loop;
end
$fn$;

drop event trigger if exists redshift_table_rules;
create event trigger redshift_table_rules on ddl_command_end
    when tag in ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE')
    execute function redshift_sys.redshift_table_rules();
"""


def admin_dsn(host: str, port: int, user: str = "postgres") -> str:
    """libpq DSN of the cluster's maintenance database."""
    return f"host={host} port={port} user={user} dbname=postgres"


def database_dsn(host: str, port: int, database: str, user: str = "postgres") -> str:
    """libpq DSN of the emulator's database."""
    return f"host={host} port={port} user={user} dbname={database}"


def prepare_database(host: str, port: int, database: str, isolation: Isolation) -> None:
    """Create the emulator's database if needed, install its rules (idempotent) and set its isolation level."""
    with psycopg.connect(admin_dsn(host, port), autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (database,)).fetchone():
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
    with psycopg.connect(database_dsn(host, port, database), autocommit=True) as conn:
        conn.execute(SETUP_SQL)
        set_isolation(conn, database, isolation)


def set_isolation(conn: psycopg.Connection[Any], database: str, isolation: Isolation) -> None:
    """New sessions of ``database`` run at ``isolation`` (PostgreSQL SERIALIZABLE or REPEATABLE READ)."""
    conn.execute(
        sql.SQL("alter database {} set default_transaction_isolation = {}").format(
            sql.Identifier(database), sql.Literal(POSTGRES_LEVEL[isolation])
        )
    )


def current_isolation(conn: psycopg.Connection[Any]) -> Isolation:
    """The isolation level new sessions of the connected database get."""
    row = conn.execute("show default_transaction_isolation").fetchone()
    return "snapshot" if row and row[0] == "repeatable read" else "serializable"
