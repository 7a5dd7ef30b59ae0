"""Which machine read or wrote which file: the proof that no task depends on another worker's disk.

``CS_EXECUTOR=celery make up`` runs two Celery workers on one machine as if on two, each with its own
folder (working directory, ``TMPDIR``, ``NUMBA_CACHE_DIR``, Airflow home and logs). Sharing one disk, a
task *could* still read what the other worker wrote there and work here, then fail on two machines.
This audit makes that visible: with ``CS_FILE_AUDIT=<log file>`` and ``CS_FILE_AUDIT_ROOT=<folder>``
in its environment and ``local/fileaudit_site`` first on ``PYTHONPATH`` (its ``sitecustomize`` calls
:func:`install_from_env`), every Python process — and every process it forks: Celery's pool, Airflow's
task supervisor and task — appends one line per file it opens or renames under the root: its machine
(``CS_MACHINE_NAME``), pid, ``r`` or ``w``, path. :func:`violations` reads the log back and names every
read of a file that another machine wrote, and every access under another machine's own folder.

Only Python's own file access is seen (``open``, ``os.open``, renames: Python's audit events); a C
library reading a file by itself (pyarrow's local filesystem) is not. The pipeline hands nothing over
through local files (S3, the warehouse and XCom carry every hand-off), which is what the audit checks.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

AUDIT_LOG_ENV = "CS_FILE_AUDIT"
AUDIT_ROOT_ENV = "CS_FILE_AUDIT_ROOT"
MACHINE_ENV = "CS_MACHINE_NAME"
#: The folder to put first on ``PYTHONPATH`` so that every new interpreter installs the audit.
SITE_DIR = Path(__file__).resolve().parent / "fileaudit_site"

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


@dataclass(frozen=True)
class Access:
    """One file access of one process."""

    machine: str
    pid: int
    kind: str  # "r" | "w"
    path: str


def install(log_path: str, root: str, machine: str) -> None:
    """Record this process's file accesses under ``root`` in ``log_path`` (see the module docstring)."""
    prefix = os.path.abspath(root).rstrip(os.sep) + os.sep
    log_file = os.path.abspath(log_path)

    def record(kind: str, path: object) -> None:
        if isinstance(path, int):  # an already open descriptor: its open was recorded
            return
        try:
            text = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return
        if not text.startswith(prefix) or text == log_file:
            return
        line = f"{machine}\t{os.getpid()}\t{kind}\t{text}\n".encode()
        # One write(2) with O_APPEND per line: lines of concurrent processes do not interleave.
        fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "open":
            path, mode, flags = args
            writing = bool(flags & _WRITE_FLAGS) if isinstance(flags, int) else any(c in str(mode) for c in "wax+")
            record("w" if writing else "r", path)
        elif event == "os.rename":
            record("r", args[0])
            record("w", args[1])

    sys.addaudithook(hook)


def install_from_env() -> bool:
    """:func:`install` from ``CS_FILE_AUDIT`` / ``CS_FILE_AUDIT_ROOT`` / ``CS_MACHINE_NAME``; False when off."""
    log_path, root = os.environ.get(AUDIT_LOG_ENV), os.environ.get(AUDIT_ROOT_ENV)
    if not log_path or not root:
        return False
    install(log_path, root, os.environ.get(MACHINE_ENV) or "unnamed")
    return True


def read_log(path: Path) -> list[Access]:
    """The accesses recorded in an audit log."""
    accesses = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        machine, pid, kind, file_path = line.split("\t", 3)
        accesses.append(Access(machine, int(pid), kind, file_path))
    return accesses


def _under(path: str, folder: Path) -> bool:
    return path == str(folder) or path.startswith(str(folder).rstrip(os.sep) + os.sep)


def violations(accesses: Iterable[Access], own_folders: Mapping[str, Path]) -> list[str]:
    """Every access that would fail on separate machines, in words.

    - a machine read a file that only other machines wrote (a hand-off through a local disk);
    - a machine read or wrote under another machine's own folder (``own_folders``: machine -> folder).
    Files no audited process wrote (the code, the seeded caches, the configuration) may be read by all,
    except under another machine's own folder.
    """
    items = list(accesses)
    writers: dict[str, set[str]] = {}
    for a in items:
        if a.kind == "w":
            writers.setdefault(a.path, set()).add(a.machine)
    found: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for a in items:
        for owner, folder in own_folders.items():
            if owner != a.machine and _under(a.path, folder) and (a.machine, a.path, owner) not in seen:
                seen.add((a.machine, a.path, owner))
                verb = "read" if a.kind == "r" else "wrote"
                found.append(f"{a.machine} (pid {a.pid}) {verb} {a.path}, in {owner}'s own folder")
        if a.kind != "r":
            continue
        by = writers.get(a.path, set())
        if by and a.machine not in by and (a.machine, a.path, "") not in seen:
            seen.add((a.machine, a.path, ""))
            found.append(f"{a.machine} (pid {a.pid}) read {a.path}, written by {', '.join(sorted(by))} only")
    return found
