"""A DB-API connection that records what a ``RedshiftWarehouse`` sends, for unit tests of the Redshift path
without a cluster (the boundary faked: redshift-connector's connection). It has no ``executemany``: the
warehouse must never call it (redshift-connector runs it as one prepared INSERT per row)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: ``respond(sql, params)`` returns rows for a query, or raises to simulate a server error.
Respond = Callable[[str, Any], list[tuple[Any, ...]] | None]


@dataclass
class Executed:
    sql: str
    params: Any


@dataclass
class FakeRedshift:
    """The connection: every statement executed (in order), commits and rollbacks."""

    respond: Respond = lambda sql, params: None
    log: list[Executed] = field(default_factory=list)
    commits: int = 0
    rollbacks: int = 0

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        self.commits += 1
        self.log.append(Executed("COMMIT", None))

    def rollback(self) -> None:
        self.rollbacks += 1
        self.log.append(Executed("ROLLBACK", None))

    def transactions(self) -> list[list[str]]:
        """The statements executed, cut at each COMMIT or ROLLBACK (comment lines dropped)."""
        out: list[list[str]] = [[]]
        for e in self.log:
            if e.sql in ("COMMIT", "ROLLBACK"):
                out.append([])
            else:
                out[-1].append(code(e.sql))
        return [t for t in out if t]

    def close(self) -> None:
        pass

    def statements(self, prefix: str = "") -> list[str]:
        """The statements executed whose code (comment lines dropped) starts with ``prefix``."""
        return [e.sql for e in self.log if code(e.sql).startswith(prefix)]


def code(sql: str) -> str:
    """A statement without its leading comment lines."""
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--")).strip()


class FakeCursor:
    def __init__(self, conn: FakeRedshift) -> None:
        self.conn = conn
        self.rowcount = 0
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str, params: Any = None) -> None:
        self.conn.log.append(Executed(sql, params))
        rows = self.conn.respond(code(sql), params)
        self._rows = list(rows or [])
        self.rowcount = len(self._rows)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def close(self) -> None:
        pass
