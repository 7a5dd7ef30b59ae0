"""Pure planning of a load: which landed batches go together in one warehouse transaction."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from typing import TypeVar

T = TypeVar("T")

_DAY_RE = re.compile(r"/dt=(\d{4}-\d{2}-\d{2})/")


def plan_groups(items: Sequence[T], max_files: int, files: Callable[[T], int]) -> list[list[T]]:
    """Cut ``items`` (in order) into groups of at most ``max_files`` files each; an item is never split, so
    an item with more files than the bound forms a group of its own."""
    if max_files < 1:
        raise ValueError(f"max_files must be at least 1, got {max_files}")
    groups: list[list[T]] = []
    current: list[T] = []
    size = 0
    for item in items:
        n = files(item)
        if current and size + n > max_files:
            groups.append(current)
            current, size = [], 0
        current.append(item)
        size += n
    if current:
        groups.append(current)
    return groups


def landing_day(key: str) -> date | None:
    """The ``dt=YYYY-MM-DD`` partition of a landing-zone key, or None when it has none."""
    match = _DAY_RE.search(key)
    if not match:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


#: Where the loader writes the combined COPY manifests, under the landing prefix (the worker may write there and
#: Redshift's COPY role may read there; nothing deletes them: a lifecycle rule on this prefix can).
LOAD_MANIFESTS = "load-manifests"


def load_manifest_name(table: str, file_urls: Iterable[str]) -> str:
    """``<table>/<digest>.manifest``: the name of the one manifest a load COPYs ``table`` from, listing these
    files. The same files give the same name, so a retried load rewrites the same object instead of adding one."""
    digest = hashlib.sha256("\n".join(sorted(file_urls)).encode()).hexdigest()[:32]
    return f"{table}/{digest}.manifest"
