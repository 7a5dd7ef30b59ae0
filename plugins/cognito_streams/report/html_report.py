"""The pipeline-health report's adapter: gather the numbers (warehouse, checkpoints in S3), render
(``core.report.html``), write it to S3 (served by the Airflow UI plugin) and, locally, to a folder."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from cognito_streams.core.landing_format import LandingLayout
from cognito_streams.core.reconcile import KINDS
from cognito_streams.core.report.html import BULK_PUBLISH_COLUMNS, ReportData, render
from cognito_streams.core.sql_text import ReportingSql
from cognito_streams.settings import PipelineSettings
from cognito_streams.warehouse.base import Warehouse

log = logging.getLogger(__name__)

#: Where the task also writes the report on the worker's disk (``make stack-up`` sets it to .local/).
REPORT_DIR_ENV = "COGNITO_STREAMS_REPORT_DIR"
REPORT_NAME = "pipeline_health.html"


def report_key(settings: PipelineSettings) -> str:
    """The report's S3 key in the landing bucket."""
    return f"{settings.landing_prefix}/reports/{REPORT_NAME}".lstrip("/")


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def lag_by_shard(settings: PipelineSettings, s3: Any) -> list[tuple[str, int | None]]:
    """Each shard's Kinesis lag (ms behind the tip) at its last landing run, from its checkpoint."""
    layout = LandingLayout(settings.landing_bucket, settings.landing_prefix, settings.stream_name)
    prefix = layout.checkpoint_key("x").rsplit("/", 1)[0] + "/"
    out: list[tuple[str, int | None]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.landing_bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = orjson.loads(s3.get_object(Bucket=settings.landing_bucket, Key=obj["Key"])["Body"].read())
            if body.get("finished"):
                continue  # a closed, drained shard has no lag
            out.append((str(body.get("shard_id")), body.get("lag_ms")))
    return sorted(out)


def gather(settings: PipelineSettings, warehouse: Warehouse, s3: Any, now: datetime | None = None) -> ReportData:
    """Every number of the report."""
    now = now or datetime.now(UTC)
    sql = ReportingSql(warehouse.schema, warehouse.engine)
    data = ReportData(generated_at=now, warehouse_schema=warehouse.schema)
    with warehouse.transaction() as cur:
        cur.execute(sql.report("changes_per_hour"), ((now - timedelta(hours=48)).replace(tzinfo=None),))
        data.changes_per_hour = [(_aware(h), int(n)) for h, n in cur.fetchall()]
        cur.execute(sql.report("rejects_by_reason"))
        data.rejects_by_reason = [(str(r), int(n)) for r, n in cur.fetchall()]
        cur.execute(sql.report("bulk_publish_history"))
        data.bulk_publish_runs = [dict(zip(BULK_PUBLISH_COLUMNS, row, strict=True)) for row in cur.fetchall()]
        cur.execute(sql.report("last_load"))
        last, batches = cur.fetchone()
        data.last_load_at, data.batches_loaded = _aware(last), int(batches)
        cur.execute(sql.report("table_rows"))
        data.table_rows = {str(t): int(n) for t, n in cur.fetchall()}
        cur.execute(sql.report("latest_reconciliation_run"))
        row = cur.fetchone()
        if row:
            run_id, checked, identities, keys, in_flight, total, *kinds, passed = row
            data.reconciliation = {
                "run_id": run_id,
                "checked_at": _aware(checked),
                "identities": int(identities),
                "keys_checked": int(keys),
                "in_flight": int(in_flight),
                "mismatches": int(total),
                "passed": bool(passed),
                "by_kind": dict(zip(KINDS, (int(k or 0) for k in kinds), strict=True)),
            }
            cur.execute(sql.report("reconciliation_samples"), (run_id,))
            cols = ["kind", "identity_pool_id", "identity_id", "dataset_name", "record_key", "detail"]
            data.reconciliation_samples = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    data.lag_ms_by_shard = lag_by_shard(settings, s3)
    return data


def write_report(settings: PipelineSettings, warehouse: Warehouse, s3: Any) -> dict[str, Any]:
    """Render and write the report; returns where it went."""
    data = gather(settings, warehouse, s3)
    html = render(data)
    key = report_key(settings)
    s3.put_object(Bucket=settings.landing_bucket, Key=key, Body=html.encode(), ContentType="text/html; charset=utf-8")
    out: dict[str, Any] = {"s3_url": f"s3://{settings.landing_bucket}/{key}", "bytes": len(html), "local_path": None}
    folder = os.environ.get(REPORT_DIR_ENV)
    if folder:
        path = Path(folder) / REPORT_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
        out["local_path"] = str(path)
    log.info(
        "report written: %s%s (%d bytes)",
        out["s3_url"],
        f" and {out['local_path']}" if out["local_path"] else "",
        len(html),
    )
    return out
