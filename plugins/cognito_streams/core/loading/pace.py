"""How long the loader waits before it loads: ``min_load_interval_seconds``, pure.

Redshift serialises commits across the cluster, and AWS advises few large commits over many small
ones. The loader therefore starts a load at most once per ``min_load_interval_seconds``, measured
from the start of the last load (``loaded_at`` of its batches); whatever lands meanwhile is taken by
the next load. Manual day-range and forced reloads are not paced (an operator asked for them).
"""

from __future__ import annotations

from datetime import datetime


def load_wait_seconds(last_load_at: datetime | None, now: datetime, interval_seconds: float) -> float:
    """Seconds to wait before the next load may start (0: now). A ``last_load_at`` in the future
    (clocks of two machines) waits at most ``interval_seconds``."""
    if last_load_at is None or interval_seconds <= 0:
        return 0.0
    elapsed = (now - last_load_at).total_seconds()
    return min(interval_seconds, max(0.0, interval_seconds - elapsed))
