"""The reference model of docs/semantics.md: from any collection of landed changes, the state the
warehouse must end in (``records`` and ``datasets``).

It is the specification in executable form, written for clarity, not speed: the property tests compare
the loader's SQL (sql/load.sql) with it for every permutation, duplication and batching of a set of
changes, and the demo reconciles the warehouse against it. Nothing here knows of SQL, Airflow or AWS.

Lineage is not part of the state: among copies of one version (duplicates), the warehouse keeps the first
one it loaded. Copies of one version carry the same content (one sync of one key), so what the analysts
see does not depend on which copy that was.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from cognito_streams.core.landing_format import CHANGES_SCHEMA, OP_DATASET_REMOVE, OP_REMOVE, OPS

#: The generation of changes made before any dataset delete (docs/semantics.md).
FIRST_GENERATION = datetime(1970, 1, 1)

KeyId = tuple[str, str, str, str]  # identity_pool_id, identity_id, dataset_name, record_key
DatasetId = tuple[str, str, str]  # identity_pool_id, identity_id, dataset_name


def naive_utc(value: datetime) -> datetime:
    """UTC as the warehouse stores it (TIMESTAMP without time zone)."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


@dataclass(frozen=True)
class Change:
    """One row of the changes file (``CHANGES_SCHEMA``, same fields in the same order)."""

    identity_pool_id: str
    identity_id: str
    dataset_name: str
    record_key: str | None
    op: str
    record_value: str | None
    value_bytes: int | None
    is_value_cut: bool
    value_ref: str | None
    sync_count: int
    last_modified_at: datetime
    device_last_modified_at: datetime | None
    event_sync_count: int | None
    event_last_modified_at: datetime | None
    payload_type: str
    stream_name: str
    shard_id: str
    sequence_number: str
    sub_sequence_number: int
    record_index: int
    arrived_at: datetime
    landed_file: str

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"op {self.op!r} is not one of {OPS}")
        if (self.op == OP_DATASET_REMOVE) != (self.record_key is None):
            raise ValueError(f"record_key must be null exactly for {OP_DATASET_REMOVE} rows, got {self!r}")

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Change:
        """From a dict with CHANGES_SCHEMA's names (timestamps may be aware or naive UTC)."""
        values = {f.name: row[f.name] for f in fields(cls)}
        for name in ("last_modified_at", "device_last_modified_at", "event_last_modified_at", "arrived_at"):
            if values[name] is not None:
                values[name] = naive_utc(values[name])
        return cls(**values)

    def as_row(self) -> dict[str, Any]:
        """A dict with CHANGES_SCHEMA's names, in its order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def as_tuple(self) -> tuple[Any, ...]:
        """The values in CHANGES_SCHEMA's order (a stage table row)."""
        return tuple(getattr(self, f.name) for f in fields(self))

    @property
    def key(self) -> KeyId:
        if self.record_key is None:
            raise ValueError("a dataset_remove row has no record key")
        return (self.identity_pool_id, self.identity_id, self.dataset_name, self.record_key)

    @property
    def dataset(self) -> DatasetId:
        return (self.identity_pool_id, self.identity_id, self.dataset_name)

    @property
    def position(self) -> tuple[str, int, int, int]:
        """Stream position, the last tie-break: shard, sequence number as a number, sub-sequence, index."""
        return (self.shard_id, int(self.sequence_number), self.sub_sequence_number, self.record_index)


assert [f.name for f in fields(Change)] == CHANGES_SCHEMA.names, "Change must follow CHANGES_SCHEMA"  # noqa: S101


@dataclass(frozen=True)
class RecordState:
    """A row of ``records`` (without its load time)."""

    op: str
    record_value: str | None
    value_bytes: int | None
    is_value_cut: bool
    value_ref: str | None
    sync_count: int
    last_modified_at: datetime
    device_last_modified_at: datetime | None
    is_deleted: bool


@dataclass(frozen=True)
class DatasetState:
    """A row of ``datasets`` (without its load time)."""

    last_sync_count: int | None
    last_modified_at: datetime
    is_deleted: bool
    deleted_at: datetime | None
    live_record_count: int


@dataclass(frozen=True)
class WarehouseState:
    """What ``records`` and ``datasets`` must hold."""

    records: dict[KeyId, RecordState]
    datasets: dict[DatasetId, DatasetState]


def generation(last_modified_at: datetime, deletes: Iterable[datetime]) -> datetime:
    """The latest delete strictly before the change, or the first generation."""
    earlier = [d for d in deletes if d < last_modified_at]
    return max(earlier) if earlier else FIRST_GENERATION


def expected_state(changes: Iterable[Change]) -> WarehouseState:
    """The state docs/semantics.md defines for these changes, whatever their order and duplication."""
    deletes: dict[DatasetId, dict[datetime, int]] = defaultdict(dict)
    versions: dict[tuple[KeyId, int, datetime], Change] = {}
    last_modified: dict[DatasetId, datetime] = {}
    for change in changes:
        ds = change.dataset
        last_modified[ds] = max(last_modified.get(ds, change.last_modified_at), change.last_modified_at)
        if change.op == OP_DATASET_REMOVE:
            deletes[ds].setdefault(change.last_modified_at, change.sync_count)
            continue
        version = (change.key, change.sync_count, change.last_modified_at)
        known = versions.get(version)
        if known is None or change.position > known.position:
            versions[version] = change

    by_key: dict[KeyId, list[Change]] = defaultdict(list)
    for (key, _, _), change in versions.items():
        by_key[key].append(change)

    records: dict[KeyId, RecordState] = {}
    for key, candidates in by_key.items():
        ds = key[:3]
        ds_deletes = deletes.get(ds, {})
        winner = max(
            candidates,
            key=lambda c: (generation(c.last_modified_at, ds_deletes), c.sync_count, c.last_modified_at, c.position),
        )
        latest_delete = max(ds_deletes) if ds_deletes else None
        is_deleted = winner.op == OP_REMOVE or (latest_delete is not None and winner.last_modified_at <= latest_delete)
        records[key] = RecordState(
            op=winner.op,
            record_value=winner.record_value,
            value_bytes=winner.value_bytes,
            is_value_cut=winner.is_value_cut,
            value_ref=winner.value_ref,
            sync_count=winner.sync_count,
            last_modified_at=winner.last_modified_at,
            device_last_modified_at=winner.device_last_modified_at,
            is_deleted=is_deleted,
        )

    datasets: dict[DatasetId, DatasetState] = {}
    for ds, lma in last_modified.items():
        ds_deletes = deletes.get(ds, {})
        deleted_at = max(ds_deletes) if ds_deletes else None
        current = [
            v.sync_count
            for (key, _, _), v in versions.items()
            if key[:3] == ds and (deleted_at is None or v.last_modified_at > deleted_at)
        ]
        last_sync_count = max(current) if current else (ds_deletes[deleted_at] if deleted_at is not None else None)
        datasets[ds] = DatasetState(
            last_sync_count=last_sync_count,
            last_modified_at=lma,
            is_deleted=deleted_at is not None and lma <= deleted_at,
            deleted_at=deleted_at,
            live_record_count=sum(1 for k, r in records.items() if k[:3] == ds and not r.is_deleted),
        )
    return WarehouseState(records=records, datasets=datasets)
