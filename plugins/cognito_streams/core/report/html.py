"""The pipeline-health report: one static HTML page with inline SVG charts (pure).

No JavaScript and no external assets, so the page renders anywhere: opened from disk, served by the
Airflow UI plugin, attached to a ticket. Every chart is a ``<figure>`` with an ``id`` (tests look for
them) and an accessible table of its numbers under ``<details>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape

from cognito_streams.core.reconcile import KINDS

CHART_IDS = (
    "changes-per-hour",
    "kinesis-lag",
    "rejects-by-reason",
    "bulk-publish-history",
    "last-load",
    "reconciliation",
)


#: The columns of ``bulk_publish_runs`` the report shows, in order (report.sql's bulk_publish_history).
BULK_PUBLISH_COLUMNS = (
    "identity_pool_id",
    "requested_at",
    "decision",
    "status",
    "started_at",
    "completed_at",
    "failure_message",
)


@dataclass
class ReportData:
    """Everything the report shows; gathered by ``cognito_streams.report.html_report`` from the warehouse and S3."""

    generated_at: datetime
    warehouse_schema: str
    changes_per_hour: list[tuple[datetime, int]] = field(default_factory=list)
    lag_ms_by_shard: list[tuple[str, int | None]] = field(default_factory=list)
    rejects_by_reason: list[tuple[str, int]] = field(default_factory=list)
    bulk_publish_runs: list[dict[str, object]] = field(default_factory=list)
    last_load_at: datetime | None = None
    batches_loaded: int = 0
    table_rows: dict[str, int] = field(default_factory=dict)
    reconciliation: dict[str, object] = field(default_factory=dict)  # run_id, checked_at, identities, by_kind
    reconciliation_samples: list[dict[str, object]] = field(default_factory=list)


PALETTE = {"bar": "#3b7dd8", "warn": "#d9822b", "bad": "#c23030", "ok": "#2e8540", "grid": "#d8dde3"}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1c2127; max-width: 1100px; }
h1 { font-size: 1.4rem; }
figure { margin: 1.2rem 0; padding: .8rem; border: 1px solid #d8dde3; border-radius: 6px; }
figcaption { font-weight: 600; margin-bottom: .4rem; }
table { border-collapse: collapse; font-size: .85rem; }
td, th { border: 1px solid #d8dde3; padding: 2px 6px; text-align: left; }
.big { font-size: 1.6rem; font-weight: 700; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 0 1rem; }
.bad { color: #c23030; } .ok { color: #2e8540; }
"""


def bar_chart(
    chart_id: str, title: str, bars: Sequence[tuple[str, float]], *, unit: str, color: str = PALETTE["bar"]
) -> str:
    """A horizontal bar chart as inline SVG, with the numbers as a table beside it."""
    width, row_h, label_w, pad = 640, 22, 190, 8
    height = max(1, len(bars)) * row_h + 2 * pad + 18
    top = max((v for _, v in bars), default=0) or 1
    parts = [
        f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="12">'
    ]
    if not bars:
        parts.append(f'<text x="{pad}" y="{pad + 14}" fill="#666">no data yet</text>')
    for i, (label, value) in enumerate(bars):
        y = pad + i * row_h
        w = (width - label_w - 80) * (value / top)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(label[:32])}</text>'
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row_h - 6}" fill="{color}">'
            f"<title>{escape(label)}: {value:,.0f} {escape(unit)}</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{value:,.0f}</text>'
        )
    parts.append("</svg>")
    rows = "".join(f"<tr><td>{escape(label)}</td><td>{value:,.0f}</td></tr>" for label, value in bars)
    table = (
        f"<details><summary>numbers</summary><table><tr><th></th><th>{escape(unit)}</th></tr>{rows}</table></details>"
    )
    return f'<figure id="{chart_id}"><figcaption>{escape(title)}</figcaption>{"".join(parts)}{table}</figure>'


def _fmt_time(value: object) -> str:
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return "" if value is None else escape(str(value))


def render(data: ReportData) -> str:
    """The whole page."""
    hours = [(f"{t:%m-%d %H:00}", float(n)) for t, n in data.changes_per_hour[-48:]]
    lag = [(shard, float(ms or 0) / 1000.0) for shard, ms in data.lag_ms_by_shard]
    lag_color = PALETTE["warn"] if any(v > 60 for _, v in lag) else PALETTE["ok"]
    rejects = [(reason, float(n)) for reason, n in data.rejects_by_reason]
    by_kind = dict(data.reconciliation.get("by_kind") or {})  # type: ignore[call-overload]
    recon_bars = [(kind, float(by_kind.get(kind, 0))) for kind in KINDS]
    recon_total = sum(v for _, v in recon_bars)

    bulk_rows = "".join(
        "<tr>" + "".join(f"<td>{_fmt_time(run.get(col))}</td>" for col in BULK_PUBLISH_COLUMNS) + "</tr>"
        for run in data.bulk_publish_runs[:20]
    )
    bulk_statuses: dict[str, float] = {}
    for run in data.bulk_publish_runs:
        status = str(run.get("status"))
        bulk_statuses[status] = bulk_statuses.get(status, 0) + 1
    sample_rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{_fmt_time(m.get(c))}</td>" for c in ("kind", "identity_id", "dataset_name", "record_key", "detail")
        )
        + "</tr>"
        for m in data.reconciliation_samples[:50]
    )
    tables = "".join(f"<tr><td>{escape(t)}</td><td>{n:,}</td></tr>" for t, n in sorted(data.table_rows.items()))
    last_load = _fmt_time(data.last_load_at) or "never"
    recon_state = (
        "no reconciliation yet"
        if not data.reconciliation
        else f"{recon_total:,.0f} mismatch(es) in {data.reconciliation.get('identities', 0)} identities, "
        f"checked {_fmt_time(data.reconciliation.get('checked_at'))} UTC"
    )
    recon_chart = bar_chart(
        "reconciliation-by-kind", "Mismatches by kind (latest run)", recon_bars, unit="mismatches", color=PALETTE["bad"]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cognito-streams: pipeline health</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{STYLE}</style></head><body>
<h1>cognito-streams: pipeline health</h1>
<p>Generated {_fmt_time(data.generated_at)} UTC from warehouse schema
<code>{escape(data.warehouse_schema)}</code>.</p>
<div class="grid">
<figure id="last-load"><figcaption>Last successful load</figcaption><div class="big">{last_load}</div>
<p>{data.batches_loaded:,} batches loaded in all.</p>
<table><tr><th>table</th><th>rows</th></tr>{tables}</table></figure>
<figure id="reconciliation"><figcaption>Reconciliation with Cognito Sync</figcaption>
<div class="big {"bad" if recon_total else "ok"}">{escape(recon_state)}</div>
{recon_chart}
<details><summary>mismatches (first 50)</summary><table>
<tr><th>kind</th><th>identity</th><th>dataset</th><th>key</th><th>detail</th></tr>{sample_rows}</table></details>
</figure>
</div>
{bar_chart("changes-per-hour", "Changes loaded per hour (UTC, last 48 hours)", hours, unit="changes")}
{bar_chart("kinesis-lag", "Kinesis lag per shard at the last landing run", lag, unit="seconds behind", color=lag_color)}
{bar_chart("rejects-by-reason", "Quarantined records by reason", rejects, unit="records", color=PALETTE["warn"])}
<figure id="bulk-publish-history"><figcaption>Bulk publish history</figcaption>
{bar_chart("bulk-publish-statuses", "Attempts by status", sorted(bulk_statuses.items()), unit="attempts")}
<table><tr><th>pool</th><th>requested</th><th>decision</th><th>status</th><th>started</th><th>completed</th><th>failure</th></tr>{bulk_rows}</table>
</figure>
</body></html>
"""
