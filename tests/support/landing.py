"""A landing-zone writer for tests, built from the contract (``core/landing_format.py``) alone: it writes
what ``cognito_stream_to_s3`` writes for one batch (changes Parquet, rejects Parquet + raw .jsonl, COPY
manifests, and the descriptor last) into moto S3."""

from __future__ import annotations

import base64
import io
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from cognito_streams.core.landing_format import (
    CHANGES_SCHEMA,
    FORMAT_VERSION,
    REJECTS_SCHEMA,
    FileRef,
    LandedBatch,
    LandingLayout,
    copy_manifest,
)
from cognito_streams.core.state import Change
from tests.support.changes import SHARD, STREAM, at, sequence_number


def cut_value(value: str, max_bytes: int) -> tuple[str, int, bool]:
    """(value cut at a character boundary to ``max_bytes`` UTF-8 bytes, full byte length, was it cut)."""
    raw = value.encode()
    if len(raw) <= max_bytes:
        return value, len(raw), False
    return raw[:max_bytes].decode("utf-8", errors="ignore"), len(raw), True


def reject_row(
    n: int, reason: str = "invalid_json", *, shard: str = SHARD, raw: bytes = b"{not json"
) -> dict[str, Any]:
    """A quarantined record's metadata row (REJECTS_SCHEMA, without the file columns)."""
    return {
        "stream_name": STREAM,
        "shard_id": shard,
        "sequence_number": sequence_number(n),
        "sub_sequence_number": 0,
        "arrived_at": at(n),
        "reason": reason,
        "detail": f"{reason} at byte 1",
        "identity_pool_id": None,
        "identity_id": None,
        "dataset_name": None,
        "raw_bytes": len(raw),
        "_raw": raw,
    }


class LandingWriter:
    """Writes landed batches under ``s3://<bucket>/<prefix>/`` with the contract's layout."""

    def __init__(self, s3: Any, bucket: str, prefix: str, stream_name: str = STREAM) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.layout = LandingLayout(bucket, prefix, stream_name)
        self.stream_name = stream_name

    def _put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)

    def land(
        self,
        changes: list[Change],
        *,
        raw_rows: list[dict[str, Any]] | None = None,
        rejects: list[dict[str, Any]] | None = None,
        shard: str = SHARD,
        first: int | None = None,
        last: int | None = None,
        arrived_at: datetime | None = None,
        tamper_manifest_count: int | None = None,
        format_version: int = FORMAT_VERSION,
    ) -> str:
        """Land one batch; returns the descriptor's s3:// URL. ``first``/``last`` default to the changes'
        sequence range; ``arrived_at`` (UTC) picks the dt=/hour= partition. ``format_version`` 1 writes the
        files as version 1 of the contract did (millisecond timestamps), for the loader's compatibility."""
        rejects = rejects or []
        seqs = [int(c.sequence_number) for c in changes] + [int(r["sequence_number"]) for r in rejects]
        seqs += [int(r["sequence_number"]) for r in raw_rows or []]
        first_s = str(first) if first is not None else str(min(seqs))
        last_s = str(last) if last is not None else str(max(seqs))
        arrived = (arrived_at or at(0)).replace(tzinfo=UTC) if (arrived_at or at(0)).tzinfo is None else arrived_at
        assert arrived is not None
        layout = self.layout
        changes_ref = rejects_ref = raw_ref = None
        changes_manifest = rejects_manifest = None
        if changes or raw_rows:
            key = layout.changes_key(shard, first_s, last_s, arrived)
            url = layout.url(key)
            rows = [replace(c, landed_file=url).as_row() for c in changes]
            rows += [{**r, "landed_file": url} for r in raw_rows or []]
            body = _parquet(pa.Table.from_pylist(rows, schema=CHANGES_SCHEMA), format_version)
            self._put(key, body)
            changes_ref = FileRef(url=url, rows=len(rows), bytes=len(body))
            mkey = layout.manifest_key(shard, first_s, last_s, arrived, "changes")
            manifest = copy_manifest([changes_ref])
            if tamper_manifest_count is not None:
                manifest["entries"][0]["meta"]["record_count"] = tamper_manifest_count  # type: ignore[index]
            self._put(mkey, orjson.dumps(manifest))
            changes_manifest = layout.url(mkey)
        if rejects:
            key = layout.rejects_key(shard, first_s, last_s, arrived)
            raw_key = layout.rejects_raw_key(shard, first_s, last_s, arrived)
            url, raw_url = layout.url(key), layout.url(raw_key)
            lines, rows = [], []
            for i, r in enumerate(rejects, start=1):
                lines.append(
                    orjson.dumps(
                        {"sequence_number": r["sequence_number"], "data": base64.b64encode(r["_raw"]).decode()}
                    )
                )
                rows.append(
                    {
                        **{k: v for k, v in r.items() if k != "_raw"},
                        "raw_ref": f"{raw_url}#line={i}",
                        "landed_file": url,
                    }
                )
            raw_body = b"\n".join(lines) + b"\n"
            self._put(raw_key, raw_body)
            body = _parquet(pa.Table.from_pylist(rows, schema=REJECTS_SCHEMA), format_version)
            self._put(key, body)
            rejects_ref = FileRef(url=url, rows=len(rows), bytes=len(body))
            raw_ref = FileRef(url=raw_url, rows=len(lines), bytes=len(raw_body))
            mkey = layout.manifest_key(shard, first_s, last_s, arrived, "rejects")
            self._put(mkey, orjson.dumps(copy_manifest([rejects_ref])))
            rejects_manifest = layout.url(mkey)
        descriptor = LandedBatch(
            format_version=format_version,  # type: ignore[arg-type]
            batch_id=f"{self.stream_name}/{shard}/{first_s}-{last_s}",
            stream_name=self.stream_name,
            shard_id=shard,
            first_sequence_number=first_s,
            last_sequence_number=last_s,
            first_arrived_at=arrived,
            last_arrived_at=arrived,
            landed_at=datetime.now(UTC),
            kinesis_records_read=len({c.sequence_number for c in changes}) + len(rejects),
            kinesis_records_landed=len({c.sequence_number for c in changes}),
            kinesis_records_rejected=len(rejects),
            changes=changes_ref,
            changes_manifest=changes_manifest,
            rejects=rejects_ref,
            rejects_raw=raw_ref,
            rejects_manifest=rejects_manifest,
        )
        bkey = layout.batch_key(shard, first_s, last_s, arrived)
        self._put(bkey, descriptor.model_dump_json().encode())
        return layout.url(bkey)

    def put_value(self, shard: str, seq: str, index: int, full_value: str) -> str:
        """Store a value's full text where the landing DAG keeps cut values; returns its s3:// URL."""
        key = self.layout.value_key(shard, seq, 0, index)
        self._put(key, full_value.encode())
        return self.layout.url(key)


def _parquet(table: pa.Table, format_version: int = FORMAT_VERSION) -> bytes:
    if format_version == 1:  # INT64 TIMESTAMP(MILLIS, UTC)
        table = table.cast(
            pa.schema(
                [
                    pa.field(f.name, pa.timestamp("ms", tz="UTC"), f.nullable) if pa.types.is_timestamp(f.type) else f
                    for f in table.schema
                ]
            )
        )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()
