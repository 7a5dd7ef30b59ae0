"""The Redshift emulator's wire server: the PostgreSQL v3 protocol in front of the stack's PostgreSQL.

A message-level proxy (asyncio). Each client session gets one backend session on PostgreSQL (a psycopg
connection in autocommit mode, so that PostgreSQL itself keeps the transaction state the client sees). The
emulator does the startup and authentication itself (PostgreSQL refuses redshift-connector's startup
parameters), reports Redshift's ParameterStatus (``server_version`` 8.0.2), and then forwards the client's
messages, rewriting only the query text of Query and Parse messages after the gate (``gate.py``) has passed it.

What the emulator answers itself, it answers in the order PostgreSQL would: every message forwarded to the
backend gets an entry in a queue of expected answers, and the relay from the backend walks that queue. An error
the *emulator* raises (a gate refusal, a failed COPY) is not made up on the side: the emulator has the backend
raise it (a ``DO`` block that raises the same fields), so that PostgreSQL puts the session in exactly the state
it puts it in after its own errors (an aborted transaction block; in the extended protocol, every message up to
Sync skipped).

COPY from S3 runs in the session's backend connection, inside the session's transaction: the relay is idle
while it runs (no answer is expected), so the psycopg connection can use its socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import secrets
import socket
import struct
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg

from local.redshift import gate, protocol
from local.redshift.backend import (
    BYTE_CHECK_RE,
    Isolation,
    current_isolation,
    database_dsn,
    prepare_database,
    set_isolation,
)
from local.redshift.errors import RedshiftError
from local.redshift.gate import GateError, Statement

log = logging.getLogger("local.redshift")

#: What Redshift reports as its version (redshift-connector and the JDBC driver read it).
SERVER_VERSION = "8.0.2"
#: ParameterStatus values passed on from PostgreSQL (the rest are Redshift's own).
FORWARDED_PARAMETERS = (
    "application_name", "client_encoding", "DateStyle", "integer_datetimes", "IntervalStyle", "is_superuser",
    "server_encoding", "standard_conforming_strings", "TimeZone",
)  # fmt: skip
#: Startup parameters PostgreSQL also understands, passed on to the backend session.
BACKEND_STARTUP_PARAMETERS = ("application_name", "client_encoding", "DateStyle", "TimeZone", "extra_float_digits")
#: Context fields of an error the emulator had PostgreSQL raise (they would show PL/pgSQL, not Redshift).
_INTERNAL_FIELDS = ("W", "F", "L", "R", "P", "p", "q", "s", "t", "c", "d", "n")
_RAISE_TAG = "$redshift_emulator$"
#: Query texts whose gate decision is kept (statements or refusal). Clients send the same texts over and over
#: (redshift-connector parses its cached statements again after every CREATE, ALTER, DROP or ROLLBACK: a loader
#: transaction creates a dozen work tables), and sqlglot takes milliseconds to read one statement.
GATE_CACHE_SIZE = 2048


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulator listens, whom it lets in, and where its PostgreSQL is."""

    host: str = "127.0.0.1"
    port: int = 45663
    pg_host: str = "127.0.0.1"
    pg_port: int = 45662
    database: str = "dev"
    user: str = "awsuser"
    password: str = "Emulator-Passw0rd"  # noqa: S105 - a local emulator's documented default
    auth: str = "md5"  # or "password" (cleartext)
    isolation: Isolation = "serializable"
    aws_endpoint: str | None = None
    region: str = "us-east-1"


def raise_sql(err: RedshiftError) -> str:
    """A PostgreSQL statement that raises ``err``'s fields (and its INFO messages first)."""

    def literal(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    infos = getattr(err, "infos", ())
    body = "".join(f"RAISE INFO '%', {literal(info)}; " for info in infos)
    options = [f"MESSAGE = {literal(err.message)}", f"ERRCODE = {literal(err.sqlstate)}"]
    if err.detail:
        options.append(f"DETAIL = {literal(err.detail)}")
    if err.hint:
        options.append(f"HINT = {literal(err.hint)}")
    body += f"RAISE EXCEPTION USING {', '.join(options)};"
    tag = _RAISE_TAG
    while tag in body:  # the dollar-quoted body must not contain its own tag
        tag = f"$redshift_emulator_{secrets.token_hex(4)}$"
    return f"DO {tag} BEGIN {body} END {tag}"


def map_backend_error(
    fields: dict[str, str], backend_pid: int, isolation: Isolation = "serializable"
) -> dict[str, str]:
    """PostgreSQL's error -> Redshift's: serialization failures are Redshift's 1023 (SERIALIZABLE) or its
    conflict error (SNAPSHOT), byte-width checks are ``value too long``; anything else unchanged."""
    code = fields.get("C")
    if code == "40001" and isolation == "snapshot":
        return {
            "S": fields.get("S", "ERROR"),
            "V": fields.get("V", "ERROR"),
            "C": "40001",
            "M": "could not complete because of conflict with concurrent transaction",
            "D": f"emulated on PostgreSQL: {fields.get('M', '')}",
        }
    if code == "40001":
        reason = fields.get("M", "")
        return {
            "S": fields.get("S", "ERROR"),
            "V": fields.get("V", "ERROR"),
            "C": "XX000",
            "M": "1023",
            "D": f"Serializable isolation violation on table - 0, transactions forming the cycle are: unknown "
            f"(pid:{backend_pid}) [emulated on PostgreSQL: {reason}]",
        }
    constraint = fields.get("n", "")
    match = BYTE_CHECK_RE.match(constraint)
    if code == "23514" and match:
        kind, width = match.group(1), match.group(2)
        type_name = "character varying" if kind == "varchar" else "character"
        return {
            "S": fields.get("S", "ERROR"),
            "V": fields.get("V", "ERROR"),
            "C": "22001",
            "M": f"value too long for type {type_name}({width})",
        }
    return fields


@dataclass
class Expect:
    """One answer the relay waits for, in the order the backend (or the emulator) gives them.

    kinds: parse, bind, describe_s, describe_p, execute, close, sync, query (everything up to ReadyForQuery).
    ``synthetic``: the emulator's own answer (nothing comes from the backend). ``suppress``: drop what the
    backend answers (a message the emulator added), errors excepted. ``suppress_z``: drop a query's
    ReadyForQuery. ``rewrite``: an error the emulator had PostgreSQL raise (drop PL/pgSQL's context)."""

    kind: str
    synthetic: bytes | None = None
    suppress: bool = False
    suppress_z: bool = False
    rewrite: bool = False
    done: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    ok: bool = True


class SessionClosedError(Exception):
    """The client or the backend went away."""


class Session:
    """One client connection and its backend session."""

    _ids = itertools.count(1)

    def __init__(self, server: RedshiftEmulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.cfg = server.cfg
        self.reader = reader
        self.writer = writer
        self.number = next(self._ids)
        self.pg: psycopg.Connection[Any] | None = None
        self.sock: socket.socket | None = None
        self.backend_pid = 0
        self.isolation: Isolation = "serializable"
        self.secret = secrets.randbits(31)
        self.params: dict[str, str] = {}
        self.pending: deque[Expect] = deque()
        self.wakeup = asyncio.Event()
        self.buffer = bytearray()
        self.outbox = bytearray()
        self.closed = False
        self.txn_status = b"I"
        self.cycle_failed = False
        #: statement name -> the emulated statement (COPY, ALTER DATABASE) or a TRUNCATE to commit after
        self.statements: dict[str, Statement] = {}
        self.portals: dict[str, Statement] = {}
        self.queries = itertools.count(1)
        self.relay_task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------------
    async def run(self) -> None:
        peer = self.writer.get_extra_info("peername")
        try:
            if not await self._startup():
                return
            self.relay_task = asyncio.create_task(self._relay())
            log.info(
                "session %d: client %s (application_name=%r, user=%r, from %s), backend pid %d",
                self.number, self.client_name(), self.params.get("application_name", ""), self.params.get("user"),
                peer, self.backend_pid,
            )  # fmt: skip
            await self._client_loop()
        except (SessionClosedError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("session %d: internal error; closing the connection", self.number)
        finally:
            await self._close()

    def client_name(self) -> str:
        """The client as its startup parameters name it (redshift-connector sends driver_version)."""
        driver = self.params.get("driver_version")
        if driver:
            extra = f", client_protocol_version={self.params.get('client_protocol_version', '?')}"
            if self.params.get("plugin_name"):
                extra += f", plugin_name={self.params['plugin_name']}"
            return f"{driver}{extra}"
        return "PostgreSQL protocol client (libpq/psycopg or similar; no driver_version)"

    async def _close(self) -> None:
        if self.relay_task is not None:
            self.relay_task.cancel()
            with contextlib.suppress(BaseException):
                await self.relay_task
        self.server.sessions.pop(self.backend_pid, None)
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        if self.pg is not None:
            pg = self.pg
            with contextlib.suppress(Exception):
                await asyncio.to_thread(pg.close)
            log.info("session %d: closed", self.number)
        with contextlib.suppress(Exception):
            self.writer.close()

    # -- startup -------------------------------------------------------------------------------------
    async def _read_startup(self) -> tuple[int, bytes]:
        (length,) = struct.unpack("!i", await self.reader.readexactly(4))
        if not 8 <= length <= 10_000:
            raise SessionClosedError
        body = await self.reader.readexactly(length - 4)
        (code,) = struct.unpack_from("!i", body)
        return code, body[4:]

    async def _startup(self) -> bool:
        while True:
            code, body = await self._read_startup()
            if code in (protocol.SSL_REQUEST, protocol.GSSENC_REQUEST):
                # No TLS on loopback: the client goes on in the clear (redshift-connector needs ssl=False).
                self.writer.write(b"N")
                await self.writer.drain()
                continue
            if code == protocol.CANCEL_REQUEST:
                pid, key = struct.unpack_from("!ii", body)
                await self.server.cancel(pid, key)
                return False
            if code != protocol.PROTOCOL_3:
                await self._fatal(f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}", "0A000")
                return False
            break
        self.params = protocol.startup_parameters(body)
        user = self.params.get("user", "")
        database = self.params.get("database") or user
        if not await self._authenticate(user):
            return False
        if database != self.cfg.database:
            await self._fatal(f'database "{database}" does not exist', "3D000")
            return False
        try:
            self.pg = await asyncio.to_thread(self._connect_backend)
        except psycopg.Error as err:
            await self._fatal(f"the emulator's PostgreSQL is not reachable: {err}", "08006")
            return False
        self.backend_pid = self.pg.info.backend_pid
        self.isolation = await asyncio.to_thread(current_isolation, self.pg)
        self.sock = socket.socket(fileno=os.dup(self.pg.pgconn.socket))
        self.sock.setblocking(False)
        self.server.sessions[self.backend_pid] = self
        out = protocol.authentication(0)
        for name in FORWARDED_PARAMETERS:
            value = self.pg.info.parameter_status(name)
            if value is not None:
                out += protocol.parameter_status(name, value)
        out += protocol.parameter_status("server_version", SERVER_VERSION)
        out += protocol.parameter_status("session_authorization", user)
        out += protocol.backend_key_data(self.backend_pid, self.secret)
        out += protocol.ready_for_query(b"I")
        self.writer.write(out)
        await self.writer.drain()
        return True

    def _connect_backend(self) -> psycopg.Connection[Any]:
        options = {"TimeZone": "UTC"}
        for name in BACKEND_STARTUP_PARAMETERS:
            if name in self.params and name != "application_name":
                options[name] = self.params[name]
        opt = " ".join(f"-c {k}={v.replace(' ', chr(92) + ' ')}" for k, v in options.items())
        app = f"redshift-emulator:{self.params.get('application_name', '')}"[:63]
        return psycopg.connect(
            database_dsn(self.cfg.pg_host, self.cfg.pg_port, self.cfg.database),
            autocommit=True,
            application_name=app,
            options=opt,
            sslmode="disable",
        )

    async def _authenticate(self, user: str) -> bool:
        if self.cfg.auth == "password":
            self.writer.write(protocol.authentication(3))
        else:
            salt = secrets.token_bytes(4)
            self.writer.write(protocol.authentication(5, salt))
        await self.writer.drain()
        kind = await self.reader.readexactly(1)
        (length,) = struct.unpack("!i", await self.reader.readexactly(4))
        payload = await self.reader.readexactly(length - 4)
        if kind != b"p":
            raise SessionClosedError
        sent = payload.rstrip(b"\x00").decode("utf-8", errors="replace")
        if self.cfg.auth == "password":
            expected = self.cfg.password
        else:
            inner = hashlib.md5((self.cfg.password + user).encode()).hexdigest()  # noqa: S324 - PostgreSQL's md5 auth
            expected = "md5" + hashlib.md5(inner.encode() + salt).hexdigest()  # noqa: S324
        if user != self.cfg.user or not secrets.compare_digest(sent, expected):
            await self._fatal(f'password authentication failed for user "{user}"', "28P01")
            log.info("session %d: authentication failed for user %r", self.number, user)
            return False
        return True

    async def _fatal(self, text: str, sqlstate: str) -> None:
        self.writer.write(protocol.fatal(text, sqlstate))
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    def _socket(self) -> socket.socket:
        if self.sock is None:
            raise SessionClosedError
        return self.sock

    def _backend(self) -> psycopg.Connection[Any]:
        if self.pg is None:
            raise SessionClosedError
        return self.pg

    # -- sending -------------------------------------------------------------------------------------
    async def _send_backend(self, data: bytes) -> None:
        """Queue ``data`` for the backend; it leaves with the next flush (one write per batch of messages)."""
        self.outbox += data

    async def _flush_backend(self) -> None:
        if self.outbox:
            data = bytes(self.outbox)
            self.outbox.clear()
            await asyncio.get_running_loop().sock_sendall(self._socket(), data)

    def _expect(self, *entries: Expect) -> None:
        self.pending.extend(entries)
        self.wakeup.set()

    async def _step(self, entry: Expect, data: bytes) -> bool:
        """Send ``data`` answered by ``entry`` and wait for the answer; True when it had no error."""
        self._expect(entry)
        await self._send_backend(data)
        await self._flush_backend()
        ok = await entry.done
        if self.closed:
            raise SessionClosedError
        return ok

    async def _drain(self) -> None:
        """Wait until every answer expected so far has arrived (the backend is then idle)."""
        if self.pending:
            await self._send_backend(protocol.FLUSH)
            await self._flush_backend()
            await asyncio.shield(self.pending[-1].done)
        if self.closed:
            raise SessionClosedError

    # -- relay (backend -> client) -------------------------------------------------------------------
    async def _backend_message(self) -> tuple[bytes, bytes]:
        sock = self._socket()
        loop = asyncio.get_running_loop()
        while True:
            if len(self.buffer) >= 5:
                (length,) = struct.unpack_from("!i", self.buffer, 1)
                if len(self.buffer) >= length + 1:
                    kind = bytes(self.buffer[0:1])
                    payload = bytes(self.buffer[5 : length + 1])
                    del self.buffer[: length + 1]
                    return kind, payload
            chunk = await loop.sock_recv(sock, 262144)
            if not chunk:
                raise SessionClosedError
            self.buffer += chunk

    def _data_rows(self) -> bytes:
        """The complete DataRow messages at the start of the backend buffer, as one slice."""
        buffer = self.buffer
        size = len(buffer)
        pos = 0
        while pos + 5 <= size and buffer[pos] == 0x44:  # "D"
            end = pos + 1 + int.from_bytes(buffer[pos + 1 : pos + 5], "big")
            if end > size:
                break
            pos = end
        if not pos:
            return b""
        rows = bytes(buffer[:pos])
        del buffer[:pos]
        return rows

    def _finish(self, entry: Expect, ok: bool) -> None:
        self.pending.popleft()
        entry.ok = entry.ok and ok
        if not entry.done.done():
            entry.done.set_result(entry.ok)

    async def _relay(self) -> None:
        out = bytearray()
        try:
            while True:
                if not self.pending:
                    if out:
                        self.writer.write(bytes(out))
                        out.clear()
                        await self.writer.drain()
                    self.wakeup.clear()
                    if not self.pending:
                        await self.wakeup.wait()
                    continue
                head = self.pending[0]
                if head.synthetic is not None:
                    out += head.synthetic
                    self._finish(head, True)
                    continue
                if not self.buffer and out:
                    # Nothing more to read at once: let the client have what we have.
                    self.writer.write(bytes(out))
                    out.clear()
                    await self.writer.drain()
                if head.kind in ("execute", "query") and not head.suppress:
                    rows = self._data_rows()
                    if rows:  # the bulk of a result: passed on as it came, without parsing each row
                        out += rows
                        continue
                kind, payload = await self._backend_message()
                out += self._on_backend(head, kind, payload)
                if len(out) > 1 << 20:
                    self.writer.write(bytes(out))
                    out.clear()
                    await self.writer.drain()
        except (SessionClosedError, OSError):
            # The backend closed, or reset, its connection (a reset arriving before the backend's last messages
            # were read makes recv fail with ECONNRESET and drops them): end the client's session too, or a
            # client that sent its statement while the relay was idle waits for an answer for ever.
            self.writer.close()
        finally:
            # Whoever waits for an answer must not wait for ever once the backend is gone.
            self.closed = True
            for entry in self.pending:
                if not entry.done.done():
                    entry.done.set_result(False)

    def _on_backend(self, head: Expect, kind: bytes, payload: bytes) -> bytes:
        """One backend message; returns what goes to the client."""
        raw = protocol.message(kind, payload)
        if kind == b"S":  # ParameterStatus (asynchronous): keep Redshift's version
            name, _ = protocol.read_cstring(payload, 0)
            if name in ("server_version", "session_authorization"):
                return b""
            return raw
        if kind in (b"N", b"A"):  # notice / notification: asynchronous
            if head.suppress and not head.rewrite:
                return b""
            if head.rewrite and kind == b"N":
                fields = protocol.parse_fields(payload)
                return protocol.message(b"N", protocol.build_fields(_strip(fields)))
            return raw
        if kind == b"E":
            fields = protocol.parse_fields(payload)
            fields = _strip(fields) if head.rewrite else map_backend_error(fields, self.backend_pid, self.isolation)
            error = protocol.message(b"E", protocol.build_fields(fields))
            if head.kind == "query":
                head.ok = False
                return error
            # Extended protocol: PostgreSQL skips every message up to Sync.
            self.cycle_failed = True
            while self.pending and self.pending[0].kind != "sync":
                self._finish(self.pending[0], False)
            return error
        if kind == b"Z":
            self.txn_status = payload[:1]
            # Messages of a failed cycle that the backend skipped have no answer.
            while self.pending and self.pending[0].kind not in ("sync", "query"):
                self._finish(self.pending[0], False)
            entry = self.pending[0] if self.pending else head
            self.cycle_failed = False
            if self.pending:
                self._finish(entry, True)
            return b"" if (entry.suppress or entry.suppress_z) else raw
        forward = b"" if head.suppress else raw
        if head.kind == "query":
            return forward
        done = {
            "parse": (b"1",),
            "bind": (b"2",),
            "close": (b"3",),
            "describe_s": (b"T", b"n"),
            "describe_p": (b"T", b"n"),
            "execute": (b"C", b"I", b"s"),
        }.get(head.kind, ())
        if kind in done:
            self._finish(head, True)
        return forward

    # -- client -> backend ---------------------------------------------------------------------------
    async def _client_loop(self) -> None:
        inbox = bytearray()
        while True:
            chunk = await self.reader.read(262144)
            if not chunk:
                raise SessionClosedError
            inbox += chunk
            # Every complete message read so far, then one write to the backend for all of them.
            while len(inbox) >= 5:
                (length,) = struct.unpack_from("!i", inbox, 1)
                if len(inbox) < length + 1:
                    break
                kind, payload = bytes(inbox[0:1]), bytes(inbox[5 : length + 1])
                del inbox[: length + 1]
                await self._on_client(kind, payload)
            await self._flush_backend()

    async def _on_client(self, kind: bytes, payload: bytes) -> None:
        """One frontend message."""
        if kind == b"X":
            with contextlib.suppress(OSError):
                await self._send_backend(protocol.message(b"X"))
                await self._flush_backend()
            raise SessionClosedError
        if kind == b"Q":
            await self._on_query(protocol.read_cstring(payload, 0)[0])
        elif kind == b"P":
            await self._on_parse(protocol.Parse.decode(payload))
        elif kind == b"B":
            await self._on_bind(payload)
        elif kind == b"D":
            await self._on_describe(payload)
        elif kind == b"E":
            await self._on_execute(payload)
        elif kind == b"C":
            await self._on_close(payload)
        elif kind == b"S":
            self._expect(Expect("sync"))
            await self._send_backend(protocol.SYNC)
        elif kind == b"F":  # FunctionCall: answered up to ReadyForQuery, like a query
            self._expect(Expect("query"))
            await self._send_backend(protocol.message(kind, payload))
        else:  # Flush, CopyData/Done/Fail: PostgreSQL's business
            await self._send_backend(protocol.message(kind, payload))

    def _inspect(self, text: str) -> list[Statement]:
        return self.server.inspect(text)

    def _refused(self, err: GateError, text: str) -> None:
        log.info(
            "session %d: REFUSED %s: %s | statement: %s",
            self.number, err.construct, err.message, " ".join(text.split())[:500],
        )  # fmt: skip

    # Simple protocol
    async def _on_query(self, text: str) -> None:
        try:
            statements = self._inspect(text)
        except GateError as err:
            self._refused(err, text)
            self._expect(Expect("query", rewrite=True))
            await self._send_backend(protocol.query(raise_sql(err)))
            return
        special = any(s.kind in ("copy", "alter_isolation") for s in statements) or (
            any(s.kind == "truncate" for s in statements) and (self.txn_status == b"T" or len(statements) > 1)
        )
        if not special:
            statements = [self._outside_block(s) for s in statements]
            translated = any(s.run != s.text for s in statements)
            run = "; ".join(s.run for s in statements) if translated else text
            self._expect(Expect("query"))
            await self._send_backend(protocol.query(run))
            return
        await self._drain()
        for statement in statements:
            if statement.kind == "copy":
                ok = await self._simple_emulated(statement, self._copy)
            elif statement.kind == "alter_isolation":
                ok = await self._simple_emulated(statement, self._alter_isolation)
            else:
                run = self._outside_block(statement).run
                ok = await self._step(Expect("query", suppress_z=True), protocol.query(run))
                if ok and statement.kind == "truncate" and self.txn_status == b"T":
                    await self._step(Expect("query", suppress=True), protocol.query("commit"))
            if not ok:
                break
        self._expect(Expect("query", synthetic=protocol.ready_for_query(self.txn_status)))

    async def _simple_emulated(self, statement: Statement, action: Callable[[Statement], Any]) -> bool:
        try:
            tag = await action(statement)
        except RedshiftError as err:
            await self._step(Expect("query", rewrite=True, suppress_z=True), protocol.query(raise_sql(err)))
            return False
        await self._step(Expect("query", synthetic=protocol.command_complete(tag)), b"")
        return True

    # Extended protocol
    async def _on_parse(self, msg: protocol.Parse) -> None:
        try:
            statements = self._inspect(msg.query)
        except GateError as err:
            self._refused(err, msg.query)
            await self._inject_error(err)
            return
        self.statements.pop(msg.name, None)
        if len(statements) == 1 and statements[0].kind in ("copy", "alter_isolation"):
            self.statements[msg.name] = statements[0]
            self._expect(Expect("parse", synthetic=protocol.PARSE_COMPLETE))
            return
        if len(statements) == 1 and statements[0].kind == "truncate":
            self.statements[msg.name] = statements[0]
        run = self._outside_block(statements[0]).run if len(statements) == 1 else msg.query
        self._expect(Expect("parse"))
        await self._send_backend(protocol.Parse(msg.name, run, msg.param_types).encode())

    def _outside_block(self, statement: Statement) -> Statement:
        """Redshift runs LOCK outside a transaction block as a no-op (PostgreSQL refuses it)."""
        if statement.command == "LOCK" and self.txn_status == b"I":
            return replace(statement, run=gate.NOOP_SQL)
        return statement

    async def _inject_error(self, err: RedshiftError) -> None:
        """Have the backend raise ``err`` in the extended protocol: its answer stands for the client's message."""
        self._expect(Expect("parse", suppress=True), Expect("bind", suppress=True), Expect("execute", rewrite=True))
        await self._send_backend(
            protocol.Parse("", raise_sql(err), ()).encode() + protocol.simple_bind() + protocol.execute()
        )

    async def _on_bind(self, payload: bytes) -> None:
        portal, statement_name = protocol.bind_names(payload)
        statement = self.statements.get(statement_name)
        self.portals.pop(portal, None)
        if statement is not None:
            self.portals[portal] = statement
        if statement is not None and statement.kind in ("copy", "alter_isolation"):
            self._expect(Expect("bind", synthetic=protocol.BIND_COMPLETE))
            return
        self._expect(Expect("bind"))
        await self._send_backend(protocol.message(b"B", payload))

    async def _on_describe(self, payload: bytes) -> None:
        which = payload[:1]
        name = protocol.read_cstring(payload, 1)[0]
        emulated = (self.statements if which == b"S" else self.portals).get(name)
        if emulated is not None and emulated.kind in ("copy", "alter_isolation"):
            answer = protocol.EMPTY_PARAMETERS + protocol.NO_DATA if which == b"S" else protocol.NO_DATA
            self._expect(Expect("describe_s" if which == b"S" else "describe_p", synthetic=answer))
            return
        self._expect(Expect("describe_s" if which == b"S" else "describe_p"))
        await self._send_backend(protocol.message(b"D", payload))

    async def _on_execute(self, payload: bytes) -> None:
        portal = protocol.read_cstring(payload, 0)[0]
        statement = self.portals.get(portal)
        if statement is not None and statement.kind in ("copy", "alter_isolation"):
            await self._drain()
            if self.cycle_failed:
                return  # PostgreSQL skips everything up to Sync after an error
            action = self._copy if statement.kind == "copy" else self._alter_isolation
            try:
                tag = await action(statement)
            except RedshiftError as err:
                await self._inject_error(err)
                return
            self._expect(Expect("execute", synthetic=protocol.command_complete(tag)))
            return
        in_block = self.txn_status == b"T"
        self._expect(Expect("execute"))
        await self._send_backend(protocol.message(b"E", payload))
        if statement is not None and statement.kind == "truncate" and in_block:
            # Redshift's TRUNCATE commits the transaction it runs in.
            self._expect(
                Expect("parse", suppress=True), Expect("bind", suppress=True), Expect("execute", suppress=True)
            )
            await self._send_backend(
                protocol.Parse("", "commit", ()).encode() + protocol.simple_bind() + protocol.execute()
            )

    async def _on_close(self, payload: bytes) -> None:
        which = payload[:1]
        name = protocol.read_cstring(payload, 1)[0]
        table = self.statements if which == b"S" else self.portals
        emulated = table.pop(name, None)
        if emulated is not None and emulated.kind in ("copy", "alter_isolation"):
            self._expect(Expect("close", synthetic=protocol.CLOSE_COMPLETE))
            return
        self._expect(Expect("close"))
        await self._send_backend(protocol.message(b"C", payload))

    # -- emulated statements -------------------------------------------------------------------------
    async def _copy(self, statement: Statement) -> str:
        """Run a COPY from S3 in the session's transaction; returns the command tag."""
        if self.txn_status == b"E":
            raise RedshiftError(
                "current transaction is aborted, commands ignored until end of transaction block", sqlstate="25P02"
            )
        query_id = next(self.queries)
        started = time.monotonic()
        try:
            rows = await asyncio.to_thread(self._copy_in_backend, statement, query_id)
        except RedshiftError as err:
            log.info(
                "session %d: COPY FAILED (%.2f s): %s | %s",
                self.number, time.monotonic() - started, err.message, " ".join(statement.text.split())[:500],
            )  # fmt: skip
            raise
        log.info(
            "session %d: COPY %d rows (%.2f s): %s",
            self.number, rows, time.monotonic() - started, " ".join(statement.text.split())[:500],
        )  # fmt: skip
        return f"COPY {rows}"

    def _copy_in_backend(self, statement: Statement, query_id: int) -> int:
        copy = self.server.copy_module()
        cmd = copy.parse_copy(statement.text)
        pg = self._backend()
        wrapped = self.txn_status == b"I"
        # Atomic as one Redshift statement: its own transaction outside a block, a savepoint inside one.
        pg.execute("begin" if wrapped else "savepoint redshift_emulator_copy")
        try:
            rows = int(
                copy.run_copy(
                    cmd,
                    conn=pg,
                    s3=self.server.aws_client("s3"),
                    iam=self.server.aws_client("iam"),
                    errors=self.server.load_errors(),
                    session_id=self.backend_pid,
                    query_id=query_id,
                )
            )
        except BaseException as err:
            with contextlib.suppress(psycopg.Error):
                pg.execute("rollback" if wrapped else "rollback to savepoint redshift_emulator_copy")
            if isinstance(err, RedshiftError):
                raise
            if isinstance(err, psycopg.Error):
                diag = err.diag
                fields = map_backend_error(
                    {
                        "C": diag.sqlstate or "XX000",
                        "M": diag.message_primary or str(err),
                        "n": diag.constraint_name or "",
                    },
                    self.backend_pid,
                    self.isolation,
                )
                raise RedshiftError(
                    fields["M"], sqlstate=fields["C"], detail=fields.get("D", diag.message_detail)
                ) from err
            raise RedshiftError(f"COPY failed in the emulator: {err}") from err
        pg.execute("commit" if wrapped else "release savepoint redshift_emulator_copy")
        return rows

    async def _alter_isolation(self, statement: Statement) -> str:
        database = statement.database or ""
        if self.txn_status != b"I":
            raise RedshiftError(
                "ALTER DATABASE ISOLATION LEVEL cannot run inside a transaction block", sqlstate="25001"
            )
        if database == "dev":
            raise RedshiftError(
                "Cannot alter the isolation level of the dev database",
                sqlstate="0A000",
                hint="Redshift: you can't alter the isolation level of the dev database (r_ALTER_DATABASE); "
                "start the emulator with --isolation snapshot instead",
            )
        if database != self.cfg.database:
            raise RedshiftError(f'database "{database}" does not exist', sqlstate="3D000")
        others = [s for s in self.server.sessions.values() if s is not self]
        if others:
            raise RedshiftError(
                f"database {database} is being accessed by other users",
                sqlstate="55006",
                detail=f"There are {len(others)} other session(s) using the database.",
            )
        level: Isolation = "snapshot" if statement.isolation == "snapshot" else "serializable"
        pg = self._backend()
        await asyncio.to_thread(set_isolation, pg, database, level)
        log.info("session %d: database %s isolation level is now %s (new sessions)", self.number, database, level)
        return "ALTER DATABASE"


def _strip(fields: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in fields.items() if k not in _INTERNAL_FIELDS}


class RedshiftEmulator:
    """The server: accepts sessions, prepares the database, holds what sessions share (COPY's clients)."""

    def __init__(self, cfg: EmulatorConfig, copy_module: ModuleType | None = None) -> None:
        self.cfg = cfg
        self.sessions: dict[int, Session] = {}
        self._copy_module = copy_module
        self._clients: dict[str, Any] = {}
        self._load_errors: Any = None
        self._lock = threading.Lock()
        self._server: asyncio.Server | None = None
        self._stop_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._gate_decisions: OrderedDict[str, list[Statement] | GateError] = OrderedDict()

    def inspect(self, text: str) -> list[Statement]:
        """The gate's decision on a query text (``gate.inspect``), remembered for the last GATE_CACHE_SIZE texts:
        the gate is pure, so a text seen before gets the same statements, or the same refusal raised again."""
        with self._lock:
            decision = self._gate_decisions.get(text)
            if decision is not None:
                self._gate_decisions.move_to_end(text)
        if decision is None:
            try:
                decision = gate.inspect(text, parse_copy=self.parse_copy)
            except GateError as err:
                decision = err
            with self._lock:
                self._gate_decisions[text] = decision
                while len(self._gate_decisions) > GATE_CACHE_SIZE:
                    self._gate_decisions.popitem(last=False)
        if isinstance(decision, GateError):
            raise decision.with_traceback(None)
        return list(decision)

    # COPY's collaborators (rs-copy's module, boto3 clients), made on first use.
    def copy_module(self) -> ModuleType:
        if self._copy_module is None:
            try:
                from local.redshift import copy as copy_module  # type: ignore[attr-defined]
            except ImportError as err:
                raise RedshiftError(
                    "COPY from S3 is not available in this emulator build (local/redshift/copy.py is missing)",
                    sqlstate="0A000",
                ) from err
            self._copy_module = copy_module
        return self._copy_module

    def parse_copy(self, sql: str) -> Any:
        """rs-copy's parse_copy (None: not a COPY from S3); without the module every COPY is refused."""
        try:
            module = self.copy_module()
        except RedshiftError as err:
            raise GateError(err.message, construct="COPY (module missing)", sqlstate=err.sqlstate) from None
        try:
            return module.parse_copy(sql)
        except GateError:
            raise
        except RedshiftError as err:
            raise GateError(
                err.message, construct="COPY form", sqlstate=err.sqlstate, detail=err.detail, hint=err.hint
            ) from None

    def aws_client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                import boto3

                self._clients[service] = boto3.client(
                    service,
                    endpoint_url=self.cfg.aws_endpoint,
                    region_name=self.cfg.region,
                    aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
                    aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
                )
            return self._clients[service]

    def load_errors(self) -> Any:
        with self._lock:
            if self._load_errors is None:
                module = self.copy_module()
                self._load_errors = module.LoadErrorLog(
                    database_dsn(self.cfg.pg_host, self.cfg.pg_port, self.cfg.database)
                )
                self._load_errors.ensure_tables()
            return self._load_errors

    async def cancel(self, pid: int, key: int) -> None:
        session = self.sessions.get(pid)
        if session is None or session.secret != key or session.pg is None:
            return
        pg = session.pg
        cancel = getattr(pg, "cancel_safe", None) or pg.cancel
        with contextlib.suppress(Exception):
            await asyncio.to_thread(cancel)
        log.info("session %d: cancel request passed on", session.number)

    # Serving
    async def start(self) -> None:
        """Prepare the database and listen."""
        await asyncio.to_thread(
            prepare_database, self.cfg.pg_host, self.cfg.pg_port, self.cfg.database, self.cfg.isolation
        )
        if self._copy_module is not None or _copy_available():
            with contextlib.suppress(RedshiftError):
                await asyncio.to_thread(self.load_errors)
        self._server = await asyncio.start_server(self._accept, self.cfg.host, self.cfg.port)
        log.info(
            "Redshift emulator on %s:%d (database %s, user %s, isolation %s, PostgreSQL %s:%d, AWS %s)",
            self.cfg.host, self.cfg.port, self.cfg.database, self.cfg.user, self.cfg.isolation,
            self.cfg.pg_host, self.cfg.pg_port, self.cfg.aws_endpoint or "(default)",
        )  # fmt: skip

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await Session(self, reader, writer).run()

    async def serve_until(self, stop: asyncio.Event) -> None:
        await self.start()
        await stop.wait()
        await self.close()

    async def close(self) -> None:
        """Stop listening and end every session (each backend session rolls back what it had open)."""
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions.values()):
            session.writer.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=10)
        if self._server is not None:
            await self._server.wait_closed()

    # In a thread (tests)
    def start_in_thread(self, timeout: float = 30.0) -> None:
        """Serve from a background thread; returns once listening (raises what start() raised)."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            stop = asyncio.Event()
            self._stop_event = stop

            async def run() -> None:
                try:
                    await self.start()
                except Exception as err:  # noqa: BLE001 - handed to the caller of start_in_thread
                    failure.append(err)
                    ready.set()
                    return
                ready.set()
                await stop.wait()
                await self.close()

            loop.run_until_complete(run())
            loop.close()

        self._thread = threading.Thread(target=main, name=f"redshift-emulator-{self.cfg.port}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"the Redshift emulator did not start within {timeout:.0f} s")
        if failure:
            raise failure[0]

    def stop_thread(self) -> None:
        """Stop a server started with start_in_thread."""
        if self._loop is not None and self._thread is not None:
            stop = self._stop_event
            if stop is not None:
                self._loop.call_soon_threadsafe(stop.set)
            self._thread.join(30)


def _copy_available() -> bool:
    return (Path(__file__).parent / "copy.py").exists()
