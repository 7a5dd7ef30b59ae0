"""The emulator's durable state: one SQLite file under ``--state-dir``.

SQLite in WAL mode commits each operation atomically; a process killed at any instant (SIGKILL
included) leaves the file consistent, and the next start sees every operation that was answered.
(``synchronous=NORMAL``: only a power loss may forget the last few commits, never corrupt.)

The emulator keeps its working state in memory and writes through this store; it reads the file
only at start-up (:meth:`Store.load`).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1"

_SCHEMA = """
create table if not exists meta (
    name text primary key,
    value text not null
);
create table if not exists pool_config (
    pool_id text primary key,
    config text not null
);
create table if not exists pool_usage (
    pool_id text primary key,
    sync_sessions integer not null,
    last_modified_ms integer
);
create table if not exists datasets (
    pool_id text not null,
    identity_id text not null,
    dataset_name text not null,
    creation_ms integer not null,
    last_modified_ms integer not null,
    last_modified_by text not null,
    sync_count integer not null,
    primary key (pool_id, identity_id, dataset_name)
);
create table if not exists records (
    pool_id text not null,
    identity_id text not null,
    dataset_name text not null,
    record_key text not null,
    value text,
    sync_count integer not null,
    last_modified_ms integer not null,
    device_last_modified_ms integer not null,
    last_modified_by text not null,
    primary key (pool_id, identity_id, dataset_name, record_key)
);
create table if not exists dataset_deletions (
    pool_id text not null,
    identity_id text not null,
    dataset_name text not null,
    deleted_ms integer not null,
    sync_count integer not null,
    primary key (pool_id, identity_id, dataset_name)
);
create table if not exists bulk_publish (
    pool_id text primary key,
    status text not null,
    start_ms integer,
    complete_ms integer,
    failure_message text,
    last_success_ms integer
);
create table if not exists outbox (
    seq integer primary key autoincrement,
    pool_id text not null,
    partition_key text not null,
    data blob not null
);
create table if not exists payloads (
    bucket text not null,
    object_key text not null,
    expires_ms integer not null,
    primary key (bucket, object_key)
);
"""


class StoreError(RuntimeError):
    """The state file cannot be used; the message says why and what to do."""


@dataclass
class StoredRecord:
    """One row of ``records`` (``value`` None: the key was removed)."""

    key: str
    value: str | None
    sync_count: int
    last_modified_ms: int
    device_last_modified_ms: int
    last_modified_by: str


@dataclass
class StoredDataset:
    """One row of ``datasets`` with its records."""

    pool_id: str
    identity_id: str
    name: str
    creation_ms: int
    last_modified_ms: int
    last_modified_by: str
    sync_count: int
    records: dict[str, StoredRecord] = field(default_factory=dict)


@dataclass
class Snapshot:
    """Everything :meth:`Store.load` read."""

    meta: dict[str, str]
    pool_configs: dict[str, str]
    pool_usage: dict[str, tuple[int, int | None]]
    datasets: list[StoredDataset]
    deletions: dict[tuple[str, str, str], tuple[int, int]]
    bulk: dict[str, tuple[str, int | None, int | None, str | None, int | None]]
    outbox: list[tuple[int, str, str, bytes]]
    payloads: list[tuple[str, str, int]]


class Store:
    """Write-through persistence. Callers serialise writes (the emulator holds its lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("pragma journal_mode=wal")
            self._db.execute("pragma synchronous=normal")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as err:
            raise StoreError(
                f"the emulator's state file {path} cannot be opened ({err}); "
                "move it away (or run `make clean`) to start with an empty state"
            ) from err
        version = self._db.execute("select value from meta where name = 'schema_version'").fetchone()
        if version is None:
            self._db.execute("insert into meta values ('schema_version', ?)", (SCHEMA_VERSION,))
        elif version[0] != SCHEMA_VERSION:
            raise StoreError(
                f"the state file {path} has schema version {version[0]}, this emulator writes {SCHEMA_VERSION}; "
                "remove it to start with an empty state"
            )
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database (the WAL is checkpointed)."""
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: committed when the block ends, rolled back if it raises."""
        with self._lock:
            self._db.execute("begin immediate")
            try:
                yield self._db
            except BaseException:
                self._db.execute("rollback")
                raise
            self._db.execute("commit")

    # -- reading ----------------------------------------------------------------------------------
    def load(self) -> Snapshot:
        """Read the whole state (at start-up)."""
        db = self._db
        with self._lock:
            datasets: dict[tuple[str, str, str], StoredDataset] = {}
            for row in db.execute("select * from datasets"):
                ds = StoredDataset(*row)
                datasets[(ds.pool_id, ds.identity_id, ds.name)] = ds
            for row in db.execute("select * from records"):
                pool_id, identity, name, key, *rest = row
                owner = datasets.get((pool_id, identity, name))
                if owner is not None:  # records of a deleted dataset are removed with it
                    owner.records[key] = StoredRecord(key, *rest)
            return Snapshot(
                meta=dict(db.execute("select name, value from meta").fetchall()),
                pool_configs=dict(db.execute("select pool_id, config from pool_config").fetchall()),
                pool_usage={p: (s, m) for p, s, m in db.execute("select * from pool_usage")},
                datasets=list(datasets.values()),
                deletions={(p, i, d): (t, c) for p, i, d, t, c in db.execute("select * from dataset_deletions")},
                bulk={row[0]: tuple(row[1:]) for row in db.execute("select * from bulk_publish")},  # type: ignore[misc]
                outbox=[(s, p, k, bytes(d)) for s, p, k, d in db.execute("select * from outbox order by seq")],
                payloads=list(db.execute("select bucket, object_key, expires_ms from payloads")),
            )

    # -- writing (inside :meth:`transaction`) ------------------------------------------------------
    @staticmethod
    def put_meta(db: sqlite3.Connection, name: str, value: str) -> None:
        """Set one ``meta`` value."""
        db.execute("insert or replace into meta values (?, ?)", (name, value))

    @staticmethod
    def put_dataset(db: sqlite3.Connection, ds: StoredDataset) -> None:
        """Insert or update a dataset row (not its records)."""
        db.execute(
            "insert or replace into datasets values (?, ?, ?, ?, ?, ?, ?)",
            (
                ds.pool_id,
                ds.identity_id,
                ds.name,
                ds.creation_ms,
                ds.last_modified_ms,
                ds.last_modified_by,
                ds.sync_count,
            ),
        )

    @staticmethod
    def put_records(
        db: sqlite3.Connection, pool_id: str, identity: str, name: str, recs: Iterable[StoredRecord]
    ) -> None:
        """Insert or update records of one dataset."""
        db.executemany(
            "insert or replace into records values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    pool_id,
                    identity,
                    name,
                    r.key,
                    r.value,
                    r.sync_count,
                    r.last_modified_ms,
                    r.device_last_modified_ms,
                    r.last_modified_by,
                )
                for r in recs
            ],
        )

    @staticmethod
    def delete_dataset(
        db: sqlite3.Connection, pool_id: str, identity: str, name: str, deleted_ms: int, sync: int
    ) -> None:
        """Remove a dataset and its records; remember when it was deleted and at which sync count."""
        key = (pool_id, identity, name)
        db.execute("delete from records where pool_id = ? and identity_id = ? and dataset_name = ?", key)
        db.execute("delete from datasets where pool_id = ? and identity_id = ? and dataset_name = ?", key)
        db.execute("insert or replace into dataset_deletions values (?, ?, ?, ?, ?)", (*key, deleted_ms, sync))

    @staticmethod
    def put_pool_config(db: sqlite3.Connection, pool_id: str, config: str) -> None:
        """Store a pool's configuration (JSON)."""
        db.execute("insert or replace into pool_config values (?, ?)", (pool_id, config))

    @staticmethod
    def put_usage(db: sqlite3.Connection, pool_id: str, sync_sessions: int, last_modified_ms: int | None) -> None:
        """Store a pool's usage counters."""
        db.execute("insert or replace into pool_usage values (?, ?, ?)", (pool_id, sync_sessions, last_modified_ms))

    @staticmethod
    def put_bulk(db: sqlite3.Connection, pool_id: str, values: tuple[Any, ...]) -> None:
        """Store a pool's bulk publish state (status, start, complete, failure, last success)."""
        db.execute("insert or replace into bulk_publish values (?, ?, ?, ?, ?, ?)", (pool_id, *values))

    @staticmethod
    def add_outbox(db: sqlite3.Connection, pool_id: str, partition_key: str, data: bytes) -> int:
        """Queue one stream record; returns its sequence number."""
        cur = db.execute(
            "insert into outbox (pool_id, partition_key, data) values (?, ?, ?)", (pool_id, partition_key, data)
        )
        assert cur.lastrowid is not None  # noqa: S101 - sqlite always sets it for an insert
        return int(cur.lastrowid)

    def remove_outbox(self, seqs: list[int]) -> None:
        """Forget stream records that were published (or dropped)."""
        if not seqs:
            return
        with self.transaction() as db:
            db.executemany("delete from outbox where seq = ?", [(s,) for s in seqs])

    def add_payload(self, bucket: str, key: str, expires_ms: int) -> None:
        """Remember an S3Url payload object, to delete it when its URL expires."""
        with self.transaction() as db:
            db.execute("insert or replace into payloads values (?, ?, ?)", (bucket, key, expires_ms))

    def remove_payload(self, bucket: str, key: str) -> None:
        """Forget a payload object (deleted)."""
        with self.transaction() as db:
            db.execute("delete from payloads where bucket = ? and object_key = ?", (bucket, key))

    def reset(self) -> None:
        """Forget everything but the schema version (``POST /_emulator/reset``)."""
        with self.transaction() as db:
            for table in (
                "pool_config",
                "pool_usage",
                "datasets",
                "records",
                "dataset_deletions",
                "bulk_publish",
                "outbox",
            ):
                db.execute(f"delete from {table}")  # noqa: S608 - fixed table names
            db.execute("delete from meta where name != 'schema_version' and name != 'token_secret'")
