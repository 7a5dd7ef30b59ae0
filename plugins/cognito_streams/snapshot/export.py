"""The export: a self-contained copy of the warehouse's current state, for the move off Cognito Sync.

Written under ``<landing_prefix>/exports/<snapshot id>/`` after the snapshot's batches are loaded, one
part per chunk of identities (the walk's chunks, so the export is mapped like the walk):

    parquet/<chunk>.parquet            one row per live key, values whole (core.snapshot.EXPORT_SCHEMA)
    dynamodb/data/<chunk>.json.gz      the same keys as DynamoDB items (DYNAMODB_JSON, gzip): the prefix
                                       DynamoDB's "Import from S3" takes to create a new table
    values/<sha256>.txt                values too large for a 400 KB item (the item points at them)
    export.json                        written last: counts, files, the watermark, the import request

A value the warehouse holds flagged (cut to its VARCHAR, or escaped because it holds U+0000) is read back
exact from its ``value_ref``; a key stored escaped is written as Cognito has it. The
watermark ``loaded_through`` is the latest load the export could see: changes loaded after it are
newer than the export and are applied with PutItem until the cut-over (docs/migration.md).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow.parquet as pq

from cognito_streams.core.snapshot import (
    DYNAMODB_TABLE_PARAMETERS,
    ExportRow,
    dynamodb_item,
    dynamodb_json_line,
    export_table,
    needs_s3,
    partition_key,
    sort_key,
)
from cognito_streams.core.sql_text import ReportingSql
from cognito_streams.core.values import original_key
from cognito_streams.landing_zone.snapshots import SnapshotStateError
from cognito_streams.snapshot.walker import WAREHOUSE_CHUNK, SnapshotContext
from cognito_streams.warehouse.base import Warehouse

log = logging.getLogger(__name__)

#: Whole values read back from the landing zone at once.
VALUE_FETCH_CONCURRENCY = 8


class ExportError(RuntimeError):
    """The export found something it cannot write truthfully; the message says what and what to do."""


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def loaded_through(wh: Warehouse) -> datetime | None:
    """The latest ``loaded_at`` of ``loaded_batches``: the export's watermark."""
    with wh.transaction() as cur:
        cur.execute(ReportingSql(wh.schema, wh.engine).loaded_through())
        row = cur.fetchone()
    return None if row is None or row[0] is None else _utc(row[0])


def export_rows(ctx: SnapshotContext, wh: Warehouse, pool_id: str, identity_ids: Sequence[str]) -> list[ExportRow]:
    """The live keys of these identities, values whole."""
    sql = ReportingSql(wh.schema, wh.engine)
    raw: list[tuple[Any, ...]] = []
    for start in range(0, len(identity_ids), WAREHOUSE_CHUNK):
        part = list(identity_ids[start : start + WAREHOUSE_CHUNK])
        with wh.transaction() as cur:
            cur.execute(sql.export_rows_of_identities(len(part)), (pool_id, *part))
            raw += cur.fetchall()
    cut = [(i, str(row[6]), row[4]) for i, row in enumerate(raw) if row[5]]
    whole: dict[int, str] = {}
    if cut:
        with ThreadPoolExecutor(VALUE_FETCH_CONCURRENCY, "export-values") as pool:
            for i, text in zip((i for i, _, _ in cut), pool.map(lambda c: _whole_value(ctx, *c[1:]), cut), strict=True):
                whole[i] = text
    rows = []
    for i, (
        identity,
        dataset,
        key,
        value,
        _,
        cut_flag,
        ref,
        sync,
        modified,
        device,
        ds_sync,
        ds_modified,
        live,
    ) in enumerate(raw):
        rows.append(
            ExportRow(
                pool_id,
                str(identity),
                str(dataset),
                original_key(str(key)),
                whole.get(i, "" if value is None else str(value)),
                int(sync),
                _utc(modified),
                None if device is None else _utc(device),
                None if ds_sync is None else int(ds_sync),
                _utc(ds_modified),
                int(live),
                str(ref) if cut_flag and ref is not None else None,
            )
        )
    return rows


def _whole_value(ctx: SnapshotContext, ref: str, value_bytes: Any) -> str:
    """A cut value's whole text, from its ``value_ref``; its length must be the row's ``value_bytes``."""
    if not ref.startswith("s3://") or "/" not in ref[5:]:
        raise ExportError(f"a cut value's value_ref {ref!r} is not an s3:// URI; rebuild the row (mode: rebuild)")
    bucket, key = ref[5:].split("/", 1)
    data = bytes(ctx.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    if value_bytes is not None and len(data) != int(value_bytes):
        raise ExportError(
            f"{ref} holds {len(data)} bytes but the warehouse row says the whole value has {value_bytes}: the "
            "value kept in the landing zone is not the one loaded; re-land that batch or reload it, then export again"
        )
    return data.decode("utf-8", "surrogatepass")


def export_chunks(ctx: SnapshotContext, snapshot_id: str, chunk_names: Sequence[str]) -> dict[str, Any]:
    """Write the export's parts of these chunks (one mapped task's work); returns the counts."""
    layout = ctx.layout
    started = time.monotonic()
    out: dict[str, Any] = dict.fromkeys(
        ("chunks", "keys", "parquet_bytes", "dynamodb_bytes", "values_in_s3", "value_s3_bytes"), 0
    )
    with ctx.warehouse() as wh:
        for name in chunk_names:
            chunk = ctx.store.chunk(snapshot_id, name)
            rows = export_rows(ctx, wh, chunk.identity_pool_id, chunk.identities)
            out["chunks"] += 1
            if not rows:
                continue
            sink = io.BytesIO()
            pq.write_table(export_table(rows), sink, compression="zstd")
            parquet = sink.getvalue()
            ctx.s3.put_object(
                Bucket=layout.bucket,
                Key=layout.export_key(snapshot_id, "parquet", f"{name}.parquet"),
                Body=parquet,
                ContentType="application/vnd.apache.parquet",
            )
            lines = io.BytesIO()
            large = {i: _value_key(ctx, snapshot_id, row) for i, row in enumerate(rows) if needs_s3(row)}
            with ThreadPoolExecutor(VALUE_FETCH_CONCURRENCY, "export-values") as pool:
                list(pool.map(_keep_value, [ctx] * len(large), [rows[i] for i in large], list(large.values())))
            with gzip.GzipFile(fileobj=lines, mode="wb", mtime=0) as gz:
                for i, row in enumerate(rows):
                    uri = layout.url(large[i]) if i in large else None
                    gz.write(dynamodb_json_line(dynamodb_item(row, uri)))
            out["values_in_s3"] += len(large)
            out["value_s3_bytes"] += sum(len(rows[i].value.encode("utf-8", "surrogatepass")) for i in large)
            ctx.s3.put_object(
                Bucket=layout.bucket,
                Key=layout.export_key(snapshot_id, "dynamodb", "data", f"{name}.json.gz"),
                Body=lines.getvalue(),
                ContentType="application/gzip",
            )
            out["keys"] += len(rows)
            out["parquet_bytes"] += len(parquet)
            out["dynamodb_bytes"] += len(lines.getvalue())
            log.info(
                "export of chunk %s: %d live keys, %d + %d bytes", name, len(rows), len(parquet), len(lines.getvalue())
            )
    out["seconds"] = round(time.monotonic() - started, 3)
    return out


def _value_key(ctx: SnapshotContext, snapshot_id: str, row: ExportRow) -> str:
    """Where a value too large for a DynamoDB item is kept: named by its item's key (a rerun overwrites)."""
    digest = hashlib.sha256(
        f"{partition_key(row.identity_id, row.dataset_name)}\n{sort_key(row.record_key)}".encode()
    ).hexdigest()
    return ctx.layout.export_key(snapshot_id, "values", f"{digest}.txt")


def _keep_value(ctx: SnapshotContext, row: ExportRow, key: str) -> None:
    """Put a large value under the export: copied inside S3 from where the landing zone keeps it (no bytes
    through the worker), or written when it is kept nowhere else."""
    bucket = ctx.layout.bucket
    if row.value_ref is not None and row.value_ref.startswith("s3://") and "/" in row.value_ref[5:]:
        source_bucket, source_key = row.value_ref[5:].split("/", 1)
        ctx.s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": source_bucket, "Key": source_key})
        return
    body = row.value.encode("utf-8", "surrogatepass")
    ctx.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/plain; charset=utf-8")


def finish_export(
    ctx: SnapshotContext, snapshot_id: str, parts: Sequence[dict[str, Any]], watermark: datetime | None
) -> dict[str, Any]:
    """Write ``export.json`` (last: an export with it is complete) from the parts' counts and the files."""
    layout = ctx.layout
    plan = ctx.store.plan(snapshot_id)
    if plan is None:
        raise SnapshotStateError(f"snapshot {snapshot_id} has no plan: nothing was exported")
    files: dict[str, list[dict[str, Any]]] = {"parquet": [], "dynamodb": [], "values": []}
    prefix = layout.export_key(snapshot_id) + "/"
    for page in ctx.s3.get_paginator("list_objects_v2").paginate(Bucket=layout.bucket, Prefix=prefix):
        for item in page.get("Contents") or []:
            kind = item["Key"][len(prefix) :].split("/", 1)[0]
            if kind in files:
                files[kind].append({"url": layout.url(item["Key"]), "bytes": int(item["Size"])})
    size = {kind: sum(f["bytes"] for f in found) for kind, found in files.items()}
    keys = sum(int(p.get("keys", 0)) for p in parts)
    values_in_s3 = sum(int(p.get("values_in_s3", 0)) for p in parts)
    manifest: dict[str, Any] = {
        "snapshot_id": snapshot_id,
        "exported_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "loaded_through": None if watermark is None else watermark.isoformat(timespec="microseconds"),
        "identity_pool_ids": plan.identity_pool_ids,
        "identities": plan.identities,
        "keys": keys,
        "values_in_s3": values_in_s3,
        "bytes": size,
        "files": files,
        "dynamodb_import": {
            "S3BucketSource": {
                "S3Bucket": layout.bucket,
                "S3KeyPrefix": layout.export_key(snapshot_id, "dynamodb", "data") + "/",
            },
            "InputFormat": "DYNAMODB_JSON",
            "InputCompressionType": "GZIP",
            "TableCreationParameters": {"TableName": "<your table>", **DYNAMODB_TABLE_PARAMETERS},
        },
    }
    key = layout.export_key(snapshot_id, "export.json")
    ctx.s3.put_object(
        Bucket=layout.bucket,
        Key=key,
        Body=orjson.dumps(manifest, option=orjson.OPT_INDENT_2),
        ContentType="application/json",
    )
    log.info(
        "export %s: %d live keys of %d identities; Parquet %d bytes, DynamoDB JSON %d bytes, %d value(s) in S3",
        layout.url(key),
        keys,
        plan.identities,
        size["parquet"],
        size["dynamodb"],
        values_in_s3,
    )
    return {"url": layout.url(key), **{k: v for k, v in manifest.items() if k not in ("files", "dynamodb_import")}}
