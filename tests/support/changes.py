"""Builders of landed change rows (``core.state.Change``), with defaults so a test states only what matters."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cognito_streams.core.landing_format import OP_DATASET_REMOVE
from cognito_streams.core.state import Change

POOL = "us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"
IDENTITY = "us-east-1:7d3c9b1a-2e4f-4c5d-8a6b-0c1d2e3f4a5b"
STREAM = "cognito-sync-stream"
SHARD = "shardId-000000000000"
#: 2015-02-24 18:37:04.343 UTC, the seed's example time (1424801824343 ms).
T0 = datetime(2015, 2, 24, 18, 37, 4, 343000)

_sequence = itertools.count(1)


def at(offset_ms: int) -> datetime:
    """T0 plus ``offset_ms`` milliseconds (naive UTC, as the warehouse stores it)."""
    return T0 + timedelta(milliseconds=offset_ms)


def sequence_number(n: int) -> str:
    """A Kinesis-like sequence number (56 digits) that orders as ``n`` does."""
    return f"4959{n:052d}"


def change(
    key: str,
    value: str | None,
    sync_count: int,
    lma: int,
    *,
    op: str | None = None,
    dataset: str = "game_state",
    identity: str = IDENTITY,
    pool: str = POOL,
    seq: int | None = None,
    index: int = 0,
    shard: str = SHARD,
    event_sync_count: int | None = None,
    value_bytes: int | None = None,
    is_value_cut: bool = False,
    value_ref: str | None = None,
    payload_type: str = "Inline",
) -> Change:
    """A record change: ``replace`` when ``value`` is not None, else ``remove`` (or ``op`` if given).
    ``lma`` is milliseconds after T0; ``seq`` the stream position (a fresh one when omitted)."""
    op = op or ("remove" if value is None else "replace")
    n = next(_sequence) if seq is None else seq
    return Change(
        identity_pool_id=pool,
        identity_id=identity,
        dataset_name=dataset,
        record_key=key,
        op=op,
        record_value=value,
        value_bytes=value_bytes if value_bytes is not None else (len(value.encode()) if value is not None else None),
        is_value_cut=is_value_cut,
        value_ref=value_ref,
        sync_count=sync_count,
        last_modified_at=at(lma),
        device_last_modified_at=at(lma - 100),
        event_sync_count=event_sync_count if event_sync_count is not None else sync_count,
        event_last_modified_at=at(lma),
        payload_type=payload_type,
        stream_name=STREAM,
        shard_id=shard,
        sequence_number=sequence_number(n),
        sub_sequence_number=0,
        record_index=index,
        arrived_at=at(lma + 1000),
        landed_file="s3://test/unset.parquet",
    )


def dataset_remove(
    sync_count: int,
    lma: int,
    *,
    dataset: str = "game_state",
    identity: str = IDENTITY,
    pool: str = POOL,
    seq: int | None = None,
    shard: str = SHARD,
) -> Change:
    """A dataset delete (``operation: remove`` with no records) at T0 + ``lma`` ms."""
    n = next(_sequence) if seq is None else seq
    return Change(
        identity_pool_id=pool,
        identity_id=identity,
        dataset_name=dataset,
        record_key=None,
        op=OP_DATASET_REMOVE,
        record_value=None,
        value_bytes=None,
        is_value_cut=False,
        value_ref=None,
        sync_count=sync_count,
        last_modified_at=at(lma),
        device_last_modified_at=None,
        event_sync_count=sync_count,
        event_last_modified_at=at(lma),
        payload_type="Inline",
        stream_name=STREAM,
        shard_id=shard,
        sequence_number=sequence_number(n),
        sub_sequence_number=0,
        record_index=0,
        arrived_at=at(lma + 1000),
        landed_file="s3://test/unset.parquet",
    )


def resent(c: Change, seq: int | None = None) -> Change:
    """The same change arriving again at another stream position (a bulk publish resend, a replay)."""
    return replace(c, sequence_number=sequence_number(next(_sequence) if seq is None else seq))


def epoch_ms(value: datetime) -> int:
    """Milliseconds since the epoch of a naive UTC time."""
    return int(value.replace(tzinfo=UTC).timestamp() * 1000)
