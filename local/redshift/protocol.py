"""PostgreSQL v3 wire-protocol messages, as far as the Redshift emulator reads and writes them.

Pure: bytes in, bytes out. A message is a type byte, an Int32 length (itself included) and a payload; the
startup-phase messages have no type byte. Field codes of ErrorResponse/NoticeResponse are PostgreSQL's
(S severity, V non-localized severity, C SQLSTATE, M message, D detail, H hint, n constraint, ...).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from local.redshift.errors import RedshiftError

PROTOCOL_3 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102


def message(kind: bytes, payload: bytes = b"") -> bytes:
    """One typed message."""
    return kind + struct.pack("!i", len(payload) + 4) + payload


def cstring(value: str) -> bytes:
    """A NUL-terminated UTF-8 string."""
    return value.encode("utf-8") + b"\x00"


def read_cstring(data: bytes, pos: int) -> tuple[str, int]:
    """The NUL-terminated string at ``pos`` and the position after it."""
    end = data.index(b"\x00", pos)
    return data[pos:end].decode("utf-8", errors="replace"), end + 1


def startup_parameters(payload: bytes) -> dict[str, str]:
    """The name/value pairs of a StartupMessage's payload (after the protocol number)."""
    params: dict[str, str] = {}
    pos = 0
    while pos < len(payload) and payload[pos] != 0:
        name, pos = read_cstring(payload, pos)
        value, pos = read_cstring(payload, pos)
        params[name] = value
    return params


def parameter_status(name: str, value: str) -> bytes:
    return message(b"S", cstring(name) + cstring(value))


def ready_for_query(status: bytes) -> bytes:
    return message(b"Z", status)


def authentication(code: int, extra: bytes = b"") -> bytes:
    return message(b"R", struct.pack("!i", code) + extra)


def backend_key_data(pid: int, secret: int) -> bytes:
    return message(b"K", struct.pack("!ii", pid, secret))


def command_complete(tag: str) -> bytes:
    return message(b"C", cstring(tag))


PARSE_COMPLETE = message(b"1")
BIND_COMPLETE = message(b"2")
CLOSE_COMPLETE = message(b"3")
NO_DATA = message(b"n")
EMPTY_PARAMETERS = message(b"t", struct.pack("!h", 0))


def parse_fields(payload: bytes) -> dict[str, str]:
    """ErrorResponse/NoticeResponse payload -> {field code: value}."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(payload) and payload[pos] != 0:
        code = chr(payload[pos])
        value, pos = read_cstring(payload, pos + 1)
        fields[code] = value
    return fields


def build_fields(fields: dict[str, str]) -> bytes:
    """{field code: value} -> ErrorResponse/NoticeResponse payload."""
    return b"".join(code.encode("ascii") + cstring(value) for code, value in fields.items()) + b"\x00"


def error_fields(err: RedshiftError, severity: str = "ERROR") -> dict[str, str]:
    """The ErrorResponse fields of a RedshiftError."""
    fields = {"S": severity, "V": severity, "C": err.sqlstate, "M": err.message}
    if err.detail:
        fields["D"] = err.detail
    if err.hint:
        fields["H"] = err.hint
    return fields


def error_response(err: RedshiftError) -> bytes:
    return message(b"E", build_fields(error_fields(err)))


def fatal(message_text: str, sqlstate: str) -> bytes:
    """A FATAL ErrorResponse (the connection ends after it)."""
    return message(b"E", build_fields({"S": "FATAL", "V": "FATAL", "C": sqlstate, "M": message_text}))


@dataclass(frozen=True)
class Parse:
    """A Parse message: statement name, query text, parameter type OIDs."""

    name: str
    query: str
    param_types: tuple[int, ...]

    @classmethod
    def decode(cls, payload: bytes) -> Parse:
        name, pos = read_cstring(payload, 0)
        query, pos = read_cstring(payload, pos)
        (count,) = struct.unpack_from("!h", payload, pos)
        types = struct.unpack_from(f"!{count}i", payload, pos + 2) if count else ()
        return cls(name, query, tuple(types))

    def encode(self) -> bytes:
        body = cstring(self.name) + cstring(self.query) + struct.pack("!h", len(self.param_types))
        body += struct.pack(f"!{len(self.param_types)}i", *self.param_types) if self.param_types else b""
        return message(b"P", body)


def bind_names(payload: bytes) -> tuple[str, str]:
    """(portal, statement) of a Bind message."""
    portal, pos = read_cstring(payload, 0)
    statement, _ = read_cstring(payload, pos)
    return portal, statement


def simple_bind(portal: str = "", statement: str = "") -> bytes:
    """A Bind with no parameters and text results."""
    return message(b"B", cstring(portal) + cstring(statement) + struct.pack("!hhh", 0, 0, 0))


def execute(portal: str = "", max_rows: int = 0) -> bytes:
    return message(b"E", cstring(portal) + struct.pack("!i", max_rows))


def query(text: str) -> bytes:
    return message(b"Q", cstring(text))


SYNC = message(b"S")
FLUSH = message(b"H")
