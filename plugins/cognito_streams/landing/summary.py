"""The landing run's totals from its ``land_shard`` outcomes (``publish_landed``).

Apart from :mod:`cognito_streams.landing.runner` on purpose: the tasks that only sum up a run must not
import the decoder (numba, pyarrow, pandas: 0.5-2 s per task process, on every landing run's critical path).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunSummary:
    """The run's totals, for the final task and the asset event."""

    records_read: int = 0
    records_landed: int = 0
    records_rejected: int = 0
    descriptors: list[str] = field(default_factory=list)
    by_shard: dict[str, dict[str, Any]] = field(default_factory=dict)
    leased: list[str] = field(default_factory=list)
    max_lag_ms: int | None = None

    def line(self) -> str:
        """One line for the logs."""
        return (
            f"read {self.records_read} = landed {self.records_landed} + rejected {self.records_rejected}; "
            f"{len(self.descriptors)} batch(es) over {len(self.by_shard)} shard(s); "
            f"shards held by another run: {', '.join(self.leased) or 'none'}; max lag {self.max_lag_ms} ms"
        )


def summarize(outcomes: Iterable[dict[str, Any] | None]) -> RunSummary:
    """Sum the landing tasks' return values (missing ones: failed tasks)."""
    summary = RunSummary()
    for item in outcomes:
        if not item:
            continue
        summary.records_read += int(item["records_read"])
        summary.records_landed += int(item["records_landed"])
        summary.records_rejected += int(item["records_rejected"])
        summary.descriptors.extend(item["batches"])
        summary.by_shard[item["shard_id"]] = {
            k: item[k] for k in ("status", "records_read", "records_landed", "records_rejected", "lag_ms")
        }
        if item["status"] == "leased":
            summary.leased.append(item["shard_id"])
        lag = item.get("lag_ms")
        if lag is not None:
            summary.max_lag_ms = lag if summary.max_lag_ms is None else max(summary.max_lag_ms, lag)
    if summary.records_read != summary.records_landed + summary.records_rejected:
        raise RuntimeError(f"run accounting broken: {summary.line()}")
    return summary
