"""Reading the Redshift emulator's log back: which clients connected, which COPY statements ran, what was refused.

The demo (``CS_WAREHOUSE=redshift make demo``) and the tests use it to show that the Redshift path was really taken:
sessions of redshift-connector (it names itself with ``driver_version``), and the server-side COPYs from S3 the
emulator executed. It reads the lines ``server.py`` writes (docs/redshift-emulator.md, "The log").
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_CLIENT = re.compile(r"local\.redshift: session (\d+): client (.+?) \(application_name=")
_COPY = re.compile(r"local\.redshift: session (\d+): COPY (\d+) rows \(([\d.]+) s\): (.*)$")
_COPY_FAILED = re.compile(r"local\.redshift: session (\d+): COPY FAILED \(([\d.]+) s\): (.*)$")
_REFUSED = re.compile(r"local\.redshift: session (\d+): REFUSED (.*)$")
#: How redshift-connector names itself in its startup message (``driver_version``).
REDSHIFT_CONNECTOR = "Redshift Python Driver"


@dataclass
class EmulatorLog:
    """What a stretch of the emulator's log shows."""

    #: sessions per client name (``Redshift Python Driver 2.2.0, client_protocol_version=2``, ...)
    clients: Counter[str] = field(default_factory=Counter)
    #: every COPY executed: (rows, statement as logged)
    copies: list[tuple[int, str]] = field(default_factory=list)
    copies_failed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def redshift_connector_sessions(self) -> int:
        """Sessions opened by redshift-connector."""
        return sum(n for client, n in self.clients.items() if client.startswith(REDSHIFT_CONNECTOR))

    @property
    def rows_copied(self) -> int:
        return sum(rows for rows, _ in self.copies)

    def problems(self) -> list[str]:
        """Why this stretch of log does not show the Redshift path taken (empty when it does)."""
        out = []
        if not self.redshift_connector_sessions:
            out.append(f"no session of redshift-connector ({REDSHIFT_CONNECTOR} ...) connected")
        if not self.copies:
            out.append("no COPY from S3 was executed")
        return out


def read_emulator_log(path: Path, offset: int = 0) -> EmulatorLog:
    """Parse the emulator's log from byte ``offset`` (the size it had when the stretch began) to its end."""
    result = EmulatorLog()
    if not path.exists():
        return result
    with open(path, "rb") as fh:
        fh.seek(offset)
        text = fh.read().decode(errors="replace")
    for line in text.splitlines():
        if m := _CLIENT.search(line):
            result.clients[m.group(2)] += 1
        elif m := _COPY.search(line):
            result.copies.append((int(m.group(2)), m.group(4)))
        elif m := _COPY_FAILED.search(line):
            result.copies_failed.append(m.group(3))
        elif m := _REFUSED.search(line):
            result.refused.append(m.group(2))
    return result


def log_size(path: Path) -> int:
    """The log's size now (where a stretch read later with :func:`read_emulator_log` begins)."""
    return path.stat().st_size if path.exists() else 0
