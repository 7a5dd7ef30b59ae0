"""Counters the emulator reports at ``GET /_emulator/stats`` and in its periodic log line."""

from __future__ import annotations

import threading
from collections import Counter


class Stats:
    """Thread-safe named counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        with self._lock:
            self._counts[name] += amount

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter, sorted by name."""
        with self._lock:
            return dict(sorted(self._counts.items()))

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._counts.clear()
