"""A stand-in for rs-copy's ``local/redshift/copy.py`` with the same interface, for the wire server's own tests
of COPY (the session's transaction, the error state, the log). It loads two fixed rows; a source URL containing
``fail`` writes one row and then fails, as a COPY that breaks half-way would."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from local.redshift.errors import RedshiftError

_COPY_RE = re.compile(r"^\s*copy\s+([\w.]+)\s+from\s+'(s3://[^']+)'", re.IGNORECASE)


@dataclass(frozen=True)
class CopyCommand:
    table: str
    source: str


def parse_copy(sql: str) -> CopyCommand | None:
    match = _COPY_RE.match(sql)
    return CopyCommand(match.group(1), match.group(2)) if match else None


class LoadErrorLog:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.ready = False

    def ensure_tables(self) -> None:
        self.ready = True


def run_copy(
    cmd: CopyCommand, *, conn: Any, s3: Any, iam: Any, errors: LoadErrorLog, session_id: int, query_id: int
) -> int:
    if "fail" in cmd.source:
        conn.execute(f"insert into {cmd.table} values (99, 'half-way')")
        raise RedshiftError(
            "Load into table 't' failed. Check 'sys_load_error_detail' system table for details.",
            detail=f"stand-in COPY of {cmd.source} failed (session {session_id}, query {query_id})",
        )
    conn.execute(f"insert into {cmd.table} values (1, 'copied'), (2, 'copied')")
    return 2
