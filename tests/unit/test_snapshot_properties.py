"""The snapshot's rows, merged under docs/semantics.md's rules (the reference model ``core.state``), give
Cognito Sync's true state whatever the warehouse knew before the walk, for any history of syncs, removes,
dataset deletes and re-creations (sync counts starting over):

- streaming off: the warehouse knew any subset of the changes made before the walk (the rest never
  reached it), nothing reaches it after: snapshot + what it knew = Cognito's state when the walk read it;
- streaming on after the warehouse was read: every later change reaches it too (before or after the
  snapshot's rows, the merge does not care): snapshot + all of it = Cognito's final state.

Cognito Sync is modelled as the emulator behaves (one sync gives every key it patches the dataset's next
sync count and the same time; a delete drops the dataset and its records; a re-creation starts at sync
count 1), and its ``Date`` answers have whole seconds, the moment of the check up to 40 ms before them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cognito_streams.core.landing_format import OP_DATASET_REMOVE, OP_REMOVE, OP_REPLACE
from cognito_streams.core.snapshot import (
    HeldDataset,
    changes_table,
    from_ms,
    identity_rows,
)
from cognito_streams.core.state import Change, WarehouseState, expected_state, naive_utc
from cognito_streams.core.walk import DatasetRead, IdentityRead

POOL, IDENTITY = "us-east-1:00000000-0000-0000-0000-000000000001", "us-east-1:00000000-0000-0000-0000-0000000000aa"
DATASETS = ("prefs", "game")
KEYS = ("a", "b", "c")
START_MS = 1_780_000_000_000


@dataclass
class CognitoDataset:
    creation_ms: int
    sync_count: int = 0
    last_modified_ms: int = 0
    records: dict[str, tuple[str | None, int, int]] = field(default_factory=dict)  # key -> (value, sync, lmt)


@dataclass
class Cognito:
    """The model: datasets of one identity, the clock, and every change as the stream would carry it."""

    now: int = START_MS
    datasets: dict[str, CognitoDataset] = field(default_factory=dict)
    changes: list[tuple[int, Change]] = field(default_factory=list)  # (op index, change)
    ops: int = 0

    def tick(self, step: int) -> int:
        self.now += step
        return self.now

    def sync(self, name: str, patches: dict[str, str | None], step: int) -> None:
        ds = self.datasets.get(name)
        live = {k for k, (v, _, _) in (ds.records.items() if ds else ()) if v is not None}
        patches = {k: v for k, v in patches.items() if v is not None or k in live}  # remove only live keys
        if not patches:
            return
        stamp = self.tick(step)
        if ds is None:
            ds = self.datasets[name] = CognitoDataset(creation_ms=stamp)
        ds.sync_count += 1
        ds.last_modified_ms = stamp
        for key, value in sorted(patches.items()):
            ds.records[key] = (value, ds.sync_count, stamp)
            self.changes.append((self.ops, stream_change(name, key, value, ds.sync_count, stamp, len(self.changes))))
        self.ops += 1

    def delete(self, name: str, step: int) -> None:
        ds = self.datasets.pop(name, None)
        if ds is None:
            return
        stamp = self.tick(step)
        self.changes.append((self.ops, stream_change(name, None, None, ds.sync_count, stamp, len(self.changes))))
        self.ops += 1

    def read(self, name: str) -> DatasetRead:
        """``ListDatasets`` + ``ListRecords`` of one dataset, as boto3 parses them."""
        ds = self.datasets[name]
        records = []
        for key, (value, sync, lmt) in sorted(ds.records.items(), key=lambda kv: (kv[1][1], kv[0])):
            record: dict[str, Any] = {"Key": key, "SyncCount": sync, "LastModifiedDate": from_ms(lmt)}
            record["DeviceLastModifiedDate"] = from_ms(lmt)
            if value is not None:
                record["Value"] = value
            records.append(record)
        description = {
            "DatasetName": name,
            "CreationDate": from_ms(ds.creation_ms),
            "LastModifiedDate": from_ms(ds.last_modified_ms),
            "NumRecords": sum(1 for v, _, _ in ds.records.values() if v is not None),
        }
        return DatasetRead(description, records=records, dataset_sync_count=ds.sync_count)


def stream_change(name: str, key: str | None, value: str | None, sync: int, stamp: int, n: int) -> Change:
    op = OP_DATASET_REMOVE if key is None else (OP_REMOVE if value is None else OP_REPLACE)
    at = naive_utc(from_ms(stamp))
    return Change(
        POOL, IDENTITY, name, key, op, value, None if value is None else len(value.encode()), False, None,
        sync, at, None if key is None else at, sync, at, "Inline", "s", "shardId-000000000000", str(10**20 + n),
        0, 0, at, "s3://landing/p/data/x.parquet",
    )  # fmt: skip


def held_of(known: list[Change]) -> dict[str, HeldDataset]:
    """What the warehouse holds after loading ``known`` (``datasets`` and the oldest live key)."""
    state = expected_state(known)
    out = {}
    for (_, _, name), ds in state.datasets.items():
        live = [r.last_modified_at for k, r in state.records.items() if k[2] == name and not r.is_deleted]
        versions = [
            c.sync_count
            for c in known
            if c.dataset_name == name and c.op != OP_DATASET_REMOVE
            and (ds.deleted_at is None or c.last_modified_at > ds.deleted_at)
        ]  # fmt: skip
        utc = lambda v: None if v is None else v.replace(tzinfo=UTC)  # noqa: E731
        out[name] = HeldDataset(
            name, ds.is_deleted, utc(ds.deleted_at), ds.last_sync_count, utc(ds.last_modified_at),
            max(versions) if versions else None, utc(min(live)) if live else None,
        )  # fmt: skip
    return out


def snapshot_changes(cognito: Cognito, held: dict[str, HeldDataset], check_ms: int, answer_ms: int) -> list[Change]:
    """The walk at ``check_ms`` (answers dated ``answer_ms``, whole seconds), as rows of the changes file."""
    date = from_ms(answer_ms // 1000 * 1000)
    read = IdentityRead(POOL, IDENTITY, listed_at=date)
    read.datasets = [cognito.read(name) for name in sorted(cognito.datasets)]
    for dataset in read.datasets:
        dataset.records_read_at = date
    read.absent = {n: date for n, h in held.items() if h.holds_live and n not in cognito.datasets}
    rows = identity_rows(read, held, position="000000000000000000", started_at=from_ms(check_ms - 5))
    table, _ = changes_table(
        rows.changes,
        stream_name="s",
        shard_id="snapshot=x",
        landed_file="s3://landing/p/data/snapshot.parquet",
        value_max_bytes=65_535,
        value_ref=lambda *_: "s3://landing/v",
    )
    return [Change.from_row(r) for r in table.to_pylist()]


def assert_true_state(state: WarehouseState, cognito: Cognito) -> None:
    live = {
        (name, key): (value, sync, lmt)
        for name, ds in cognito.datasets.items()
        for key, (value, sync, lmt) in ds.records.items()
        if value is not None
    }
    got = {
        (k[2], k[3]): (r.record_value, r.sync_count, r.last_modified_at)
        for k, r in state.records.items()
        if not r.is_deleted
    }
    assert got == {k: (v, s, naive_utc(from_ms(t))) for k, (v, s, t) in live.items()}
    for (_, _, name), ds in state.datasets.items():
        assert (not ds.is_deleted) == (name in cognito.datasets), (name, ds)
    for name in cognito.datasets:
        assert (POOL, IDENTITY, name) in state.datasets


op = st.one_of(
    st.tuples(
        st.just("sync"),
        st.sampled_from(DATASETS),
        st.dictionaries(
            st.sampled_from(KEYS), st.one_of(st.none(), st.text("xyz", min_size=1, max_size=3)), min_size=1
        ),
        st.integers(1, 1500),
    ),
    st.tuples(st.just("delete"), st.sampled_from(DATASETS), st.just({}), st.integers(1, 1500)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=st.lists(op, max_size=14),
    between=st.lists(op, max_size=4),
    after=st.lists(op, max_size=6),
    known_mask=st.lists(st.booleans(), min_size=40, max_size=40),
    gap=st.integers(0, 2500),
    delay=st.integers(0, 40),
    streaming_after=st.booleans(),
)
def test_snapshot_and_what_the_warehouse_knew_merge_to_cognitos_state(
    before: list[Any],
    between: list[Any],
    after: list[Any],
    known_mask: list[bool],
    gap: int,
    delay: int,
    streaming_after: bool,
) -> None:
    cognito = Cognito()

    def apply(ops: list[Any]) -> None:
        for kind, name, patches, step in ops:
            if kind == "sync":
                cognito.sync(name, {k: (None if v is None else f"{v}{cognito.now}") for k, v in patches.items()}, step)
            else:
                cognito.delete(name, step)

    # GIVEN a history, of which the warehouse knew any part when it was read (t0) ...
    apply(before)
    t0 = cognito.ops
    known = [c for i, (n, c) in enumerate(cognito.changes) if n < t0 and known_mask[i % len(known_mask)]]
    held = held_of(known)
    # ... apps syncing on until the walk reads the identity (at check_ms; the answer dated in whole seconds)
    apply(between)
    check_ms = cognito.tick(gap)
    snapshot = snapshot_changes(cognito, held, check_ms, check_ms + delay)
    if streaming_after:
        # ... and on after it, every change after t0 reaching the warehouse through the stream
        apply(after)
        streamed = [c for n, c in cognito.changes if n >= t0]
    else:
        streamed = []
    # WHEN all of it is merged (in any order: the rules do not depend on it)
    state = expected_state([*known, *snapshot, *streamed])
    # THEN the warehouse holds exactly Cognito's state (at the walk, or at the end with the stream on)
    assert_true_state(state, cognito)
