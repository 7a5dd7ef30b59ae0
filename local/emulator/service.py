"""Cognito Sync's behaviour: datasets, records, sync counts, sessions, pool configuration, usage,
bulk publish requests, and the stream records each change produces.

State lives in memory (dicts) and is written through to :class:`~local.emulator.store.Store`
inside one transaction per operation, under one lock: an answered operation is durable, and
concurrent requests are serialised only for the few microseconds of the update itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from local.emulator import stream_format, validation
from local.emulator.aws import AwsGateway
from local.emulator.errors import ApiError, conflict, invalid, limit_exceeded, not_found
from local.emulator.settings import Clock, EmulatorSettings
from local.emulator.store import Snapshot, Store, StoredDataset, StoredRecord

log = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000
LIST_RECORDS_MAX = 1024
LIST_DATASETS_DEFAULT = 20
LIST_POOLS_MAX = 60


def _seconds(ms: int | None) -> float | None:
    """rest-json timestamps are epoch seconds (botocore turns them into datetimes)."""
    return None if ms is None else ms / 1000.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _utf8_len(text: str | None) -> int:
    return 0 if text is None else len(text.encode("utf-8", "surrogatepass"))


@dataclass
class Record:
    """One key of a dataset; ``value`` None means the key was removed (kept so devices learn it)."""

    key: str
    value: str | None
    sync_count: int
    last_modified_ms: int
    device_last_modified_ms: int
    last_modified_by: str

    @property
    def size(self) -> int:
        """Bytes this record counts against the dataset's size limit (0 once removed)."""
        return 0 if self.value is None else _utf8_len(self.key) + _utf8_len(self.value)

    def api(self) -> dict[str, Any]:
        """As the ``Record`` shape."""
        out: dict[str, Any] = {"Key": self.key}
        if self.value is not None:
            out["Value"] = self.value
        out["SyncCount"] = self.sync_count
        out["LastModifiedDate"] = _seconds(self.last_modified_ms)
        out["LastModifiedBy"] = self.last_modified_by
        out["DeviceLastModifiedDate"] = _seconds(self.device_last_modified_ms)
        return out

    def element(self) -> dict[str, Any]:
        """As an element of ``kinesisSyncRecords``."""
        op = stream_format.OPERATION_REPLACE if self.value is not None else stream_format.OPERATION_REMOVE
        return stream_format.element(
            self.key, self.value, self.sync_count, self.last_modified_ms, self.device_last_modified_ms, op
        )

    def stored(self) -> StoredRecord:
        return StoredRecord(
            self.key,
            self.value,
            self.sync_count,
            self.last_modified_ms,
            self.device_last_modified_ms,
            self.last_modified_by,
        )


@dataclass
class Dataset:
    """One dataset of one identity."""

    pool_id: str
    identity_id: str
    name: str
    creation_ms: int
    last_modified_ms: int
    last_modified_by: str
    sync_count: int
    records: dict[str, Record] = field(default_factory=dict)

    @property
    def data_storage(self) -> int:
        """Bytes of live keys and values."""
        return sum(r.size for r in self.records.values())

    @property
    def num_records(self) -> int:
        """Live (not removed) records."""
        return sum(1 for r in self.records.values() if r.value is not None)

    def api(self) -> dict[str, Any]:
        """As the ``Dataset`` shape."""
        return {
            "IdentityId": self.identity_id,
            "DatasetName": self.name,
            "CreationDate": _seconds(self.creation_ms),
            "LastModifiedDate": _seconds(self.last_modified_ms),
            "LastModifiedBy": self.last_modified_by,
            "DataStorage": self.data_storage,
            "NumRecords": self.num_records,
        }

    def stored(self) -> StoredDataset:
        return StoredDataset(
            self.pool_id,
            self.identity_id,
            self.name,
            self.creation_ms,
            self.last_modified_ms,
            self.last_modified_by,
            self.sync_count,
        )


@dataclass
class BulkState:
    """A pool's last bulk publish."""

    status: str = "NOT_STARTED"
    start_ms: int | None = None
    complete_ms: int | None = None
    failure_message: str | None = None
    last_success_ms: int | None = None

    def row(self) -> tuple[Any, ...]:
        return (self.status, self.start_ms, self.complete_ms, self.failure_message, self.last_success_ms)


@dataclass
class PoolUsage:
    """Counters ``DescribeIdentityPoolUsage`` reports (storage is computed from the datasets)."""

    sync_sessions: int = 0
    last_modified_ms: int | None = None


@dataclass(frozen=True)
class StreamTarget:
    """Where a pool's changes go while its streaming is ENABLED."""

    stream_name: str
    role_arn: str


@dataclass
class OutboxEntry:
    """A stream record waiting for the publisher (also in the store, so it survives a crash)."""

    seq: int
    pool_id: str
    partition_key: str
    data: bytes


class CognitoSync:
    """The emulated service. Public methods are the API operations (they take the decoded
    request, return the response body as a dict, and raise :class:`ApiError`)."""

    def __init__(self, store: Store, aws: AwsGateway, region: str) -> None:
        self.store = store
        self.aws = aws
        self.region = region
        self.lock = threading.RLock()
        self.settings = EmulatorSettings()
        self.clock = Clock()
        self.datasets: dict[tuple[str, str], dict[str, Dataset]] = {}
        self.deletions: dict[tuple[str, str, str], tuple[int, int]] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        self.bulk: dict[str, BulkState] = {}
        #: ``POST /_emulator/faults`` ``stale_bulk_publish_details``: the next BulkPublish stays unseen by
        #: this many GetBulkPublishDetails of its pool, which show the pool's previous publish instead.
        self.stale_details_next = 0
        self._stale_details: dict[str, tuple[int, BulkState]] = {}
        self.usage: dict[str, PoolUsage] = {}
        self.pool_storage: dict[str, int] = {}
        self._secret = b""
        # Wired by the server: the publisher takes stream records, the bulk runner starts workers.
        self.on_outbox: Callable[[OutboxEntry], None] = lambda entry: None
        self.on_bulk_start: Callable[[str], None] = lambda pool_id: None
        self._load(store.load())

    # -- start-up -----------------------------------------------------------------------------------
    def _load(self, snap: Snapshot) -> None:
        meta = snap.meta
        if "token_secret" not in meta:
            meta["token_secret"] = secrets.token_hex(32)
            with self.store.transaction() as db:
                Store.put_meta(db, "token_secret", meta["token_secret"])
        self._secret = bytes.fromhex(meta["token_secret"])
        if "settings" in meta:
            self.settings = EmulatorSettings.model_validate_json(meta["settings"])
        last = 0
        for sd in snap.datasets:
            ds = Dataset(
                sd.pool_id,
                sd.identity_id,
                sd.name,
                sd.creation_ms,
                sd.last_modified_ms,
                sd.last_modified_by,
                sd.sync_count,
            )
            ds.records = {k: Record(**vars(r)) for k, r in sd.records.items()}
            self.datasets.setdefault((sd.pool_id, sd.identity_id), {})[sd.name] = ds
            self.pool_storage[sd.pool_id] = self.pool_storage.get(sd.pool_id, 0) + ds.data_storage
            last = max(last, sd.last_modified_ms)
        self.deletions = dict(snap.deletions)
        last = max([last, *(t for t, _ in self.deletions.values())])
        self.configs = {p: orjson.loads(c) for p, c in snap.pool_configs.items()}
        self.bulk = {p: BulkState(*row) for p, row in snap.bulk.items()}
        self.usage = {p: PoolUsage(s, m) for p, (s, m) in snap.pool_usage.items()}
        self.clock = Clock(offset_ms=int(meta.get("clock_offset_ms", "0")), last_ms=last)
        log.info(
            "state loaded from %s: %d datasets, %d pool configurations, %d stream records waiting",
            self.store.path,
            len(snap.datasets),
            len(self.configs),
            len(snap.outbox),
        )

    def in_progress_bulk_publishes(self) -> list[str]:
        """Pools whose bulk publish was running when the emulator stopped (resumed at start)."""
        return [p for p, b in self.bulk.items() if b.status == "IN_PROGRESS"]

    # -- sessions and paging tokens -----------------------------------------------------------------
    def _session_token(self, pool_id: str, identity: str, dataset: str, session: str) -> str:
        expires = self.clock.now_ms() + int(self.settings.session_token_ttl_seconds * 1000)
        body = orjson.dumps({"p": pool_id, "i": identity, "d": dataset, "s": session, "x": expires})
        mac = hmac.new(self._secret, body, hashlib.sha256).digest()[:16]
        return f"{_b64(body)}.{_b64(mac)}"

    def _check_session_token(self, token: str, pool_id: str, identity: str, dataset: str) -> str:
        """The session id of a valid token for this identity and dataset."""
        problem = "SyncSessionToken is not one this service issued"
        try:
            body_part, mac_part = token.split(".", 1)
            body = _unb64(body_part)
            if hmac.compare_digest(_unb64(mac_part), hmac.new(self._secret, body, hashlib.sha256).digest()[:16]):
                claims = orjson.loads(body)
                if (claims["p"], claims["i"], claims["d"]) != (pool_id, identity, dataset):
                    problem = "SyncSessionToken was issued for another identity or dataset"
                elif claims["x"] < self.clock.now_ms():
                    problem = "SyncSessionToken has expired"
                else:
                    return str(claims["s"])
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            pass
        raise invalid(f"{problem}; call ListRecords for this identity and dataset to get a new one")

    @staticmethod
    def _page_token(payload: Any) -> str:
        return _b64(orjson.dumps(payload))

    @staticmethod
    def _read_page_token(token: str, what: str) -> Any:
        try:
            return orjson.loads(_unb64(token))
        except (ValueError, orjson.JSONDecodeError):
            raise invalid(f"NextToken {token!r} is not a token {what} returned") from None

    # -- checks shared by the operations ------------------------------------------------------------
    def check_pool(self, pool_id: str) -> None:
        """Valid id and known to Cognito Identity."""
        validation.identity_pool_id(pool_id)
        self.aws.ensure_pool(pool_id, self.settings.pool_cache_seconds)

    def check_identity(self, pool_id: str, identity: str) -> None:
        """Valid ids, and the identity belongs to the pool in Cognito Identity."""
        self.check_pool(pool_id)
        validation.identity_id(identity)
        self.aws.ensure_identity(pool_id, identity)

    def streaming_target(self, pool_id: str) -> StreamTarget | None:
        """The pool's stream and role while streaming is ENABLED, else None."""
        streams = (self.configs.get(pool_id) or {}).get("CognitoStreams") or {}
        if streams.get("StreamingStatus") != "ENABLED":
            return None
        return StreamTarget(streams["StreamName"], streams["RoleArn"])

    def _queue(self, db: Any, pool_id: str, partition_key: str, data: bytes) -> OutboxEntry | None:
        if self.streaming_target(pool_id) is None:
            return None
        seq = Store.add_outbox(db, pool_id, partition_key, data)
        return OutboxEntry(seq, pool_id, partition_key, data)

    def _touch_usage(self, db: Any, pool_id: str, stamp: int | None = None, new_session: bool = False) -> None:
        usage = self.usage.setdefault(pool_id, PoolUsage())
        if new_session:
            usage.sync_sessions += 1
        if stamp is not None:
            usage.last_modified_ms = stamp
        Store.put_usage(db, pool_id, usage.sync_sessions, usage.last_modified_ms)

    # -- configuration ------------------------------------------------------------------------------
    def get_identity_pool_configuration(self, pool_id: str) -> dict[str, Any]:
        """``GetIdentityPoolConfiguration``."""
        self.check_pool(pool_id)
        with self.lock:
            config = self.configs.get(pool_id) or {}
            return {"IdentityPoolId": pool_id, **{k: v for k, v in config.items() if v is not None}}

    def set_identity_pool_configuration(self, pool_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``SetIdentityPoolConfiguration``: the given configuration replaces the pool's (a member
        left out is cleared: callers read-modify-write, as with AWS)."""
        self.check_pool(pool_id)
        unknown = set(body) - {"PushSync", "CognitoStreams"}
        if unknown:
            raise invalid(f"SetIdentityPoolConfiguration got unknown members {sorted(unknown)}")
        push = validation.push_sync(body.get("PushSync"))
        streams = self._validate_streams(body.get("CognitoStreams"))
        config = {"PushSync": push, "CognitoStreams": streams}
        with self.lock, self.store.transaction() as db:
            Store.put_pool_config(db, pool_id, orjson.dumps(config).decode())
            self.configs[pool_id] = config
        log.info(
            "pool %s configured: streaming %s%s",
            pool_id,
            (streams or {}).get("StreamingStatus", "not configured"),
            f" to {streams['StreamName']}" if streams and streams.get("StreamName") else "",
        )
        return {"IdentityPoolId": pool_id, **{k: v for k, v in config.items() if v is not None}}

    def _validate_streams(self, value: Any) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise invalid("CognitoStreams must be an object with StreamName, RoleArn and StreamingStatus")
        unknown = set(value) - {"StreamName", "RoleArn", "StreamingStatus"}
        if unknown:
            raise invalid(f"CognitoStreams has unknown members {sorted(unknown)}")
        streams: dict[str, Any] = {}
        if value.get("StreamName") is not None:
            streams["StreamName"] = validation.stream_name(value["StreamName"])
        if value.get("RoleArn") is not None:
            streams["RoleArn"] = validation.role_arn(value["RoleArn"], "CognitoStreams.RoleArn")
        status = value.get("StreamingStatus", "DISABLED")
        if status not in validation.STREAMING_STATUSES:
            raise invalid(f"CognitoStreams.StreamingStatus {status!r} is not one of ENABLED, DISABLED")
        streams["StreamingStatus"] = status
        if status == "ENABLED":
            missing = [k for k in ("StreamName", "RoleArn") if k not in streams]
            if missing:
                raise invalid(f"CognitoStreams with StreamingStatus ENABLED needs {' and '.join(missing)}")
            problem = self.aws.stream_problem(streams["StreamName"])
            if problem:
                raise invalid(f"Cannot enable Cognito Streams: {problem}; create it first")
            problem = self.aws.role_problem(streams["RoleArn"], self.settings.role_check_cache_seconds, fresh=True)
            if problem:
                raise ApiError("InvalidConfigurationException", f"Cannot enable Cognito Streams: {problem}")
        return streams

    def disable_streaming(self, pool_ids: list[str], reason: str) -> list[str]:
        """Turn streaming off for these pools, as Cognito does when it cannot publish; returns the
        pools that were ENABLED."""
        changed = []
        with self.lock, self.store.transaction() as db:
            for pool_id in pool_ids:
                config = self.configs.get(pool_id)
                streams = (config or {}).get("CognitoStreams") or {}
                if config is None or streams.get("StreamingStatus") != "ENABLED":
                    continue
                config["CognitoStreams"] = {**streams, "StreamingStatus": "DISABLED", "DisabledReason": reason}
                Store.put_pool_config(db, pool_id, orjson.dumps(config).decode())
                changed.append(pool_id)
        for pool_id in changed:
            log.warning("pool %s: Cognito Streams turned DISABLED: %s", pool_id, reason)
        return changed

    # -- usage --------------------------------------------------------------------------------------
    def _pool_usage(self, pool_id: str) -> dict[str, Any]:
        usage = self.usage.get(pool_id, PoolUsage())
        out: dict[str, Any] = {
            "IdentityPoolId": pool_id,
            "SyncSessionsCount": usage.sync_sessions,
            "DataStorage": self.pool_storage.get(pool_id, 0),
        }
        if usage.last_modified_ms is not None:
            out["LastModifiedDate"] = _seconds(usage.last_modified_ms)
        return out

    def describe_identity_pool_usage(self, pool_id: str) -> dict[str, Any]:
        """``DescribeIdentityPoolUsage``."""
        self.check_pool(pool_id)
        with self.lock:
            return {"IdentityPoolUsage": self._pool_usage(pool_id)}

    def list_identity_pool_usage(self, max_results: str | None, next_token: str | None) -> dict[str, Any]:
        """``ListIdentityPoolUsage``: every identity pool of the account (Cognito Identity's list)."""
        limit = (
            validation.integer(max_results, "MaxResults", minimum=1, maximum=LIST_POOLS_MAX)
            if max_results is not None
            else LIST_POOLS_MAX
        )
        pools = self.aws.list_pool_ids()
        after = str(self._read_page_token(next_token, "ListIdentityPoolUsage")) if next_token else ""
        page = [p for p in pools if p > after][:limit]
        with self.lock:
            out: dict[str, Any] = {
                "IdentityPoolUsages": [self._pool_usage(p) for p in page],
                "MaxResults": limit,
                "Count": len(page),
            }
        if page and page[-1] != pools[-1]:
            out["NextToken"] = self._page_token(page[-1])
        return out

    def describe_identity_usage(self, pool_id: str, identity: str) -> dict[str, Any]:
        """``DescribeIdentityUsage``."""
        self.check_identity(pool_id, identity)
        with self.lock:
            sets = self.datasets.get((pool_id, identity), {})
            stamps = [d.last_modified_ms for d in sets.values()]
            stamps += [t for (p, i, _), (t, _) in self.deletions.items() if p == pool_id and i == identity]
            usage: dict[str, Any] = {
                "IdentityId": identity,
                "IdentityPoolId": pool_id,
                "DatasetCount": len(sets),
                "DataStorage": sum(d.data_storage for d in sets.values()),
            }
            if stamps:
                usage["LastModifiedDate"] = _seconds(max(stamps))
            return {"IdentityUsage": usage}

    # -- datasets -----------------------------------------------------------------------------------
    def _dataset(self, pool_id: str, identity: str, name: str) -> Dataset:
        ds = self.datasets.get((pool_id, identity), {}).get(name)
        if ds is None:
            raise not_found(f"Dataset {name} does not exist for identity {identity} in pool {pool_id}")
        return ds

    def list_datasets(
        self, pool_id: str, identity: str, max_results: str | None, next_token: str | None
    ) -> dict[str, Any]:
        """``ListDatasets``, by name."""
        self.check_identity(pool_id, identity)
        limit = (
            validation.integer(max_results, "MaxResults", minimum=1)
            if max_results is not None
            else LIST_DATASETS_DEFAULT
        )
        after = str(self._read_page_token(next_token, "ListDatasets")) if next_token else ""
        with self.lock:
            names = sorted(self.datasets.get((pool_id, identity), {}))
            page = [n for n in names if n > after][:limit]
            out: dict[str, Any] = {
                "Datasets": [self.datasets[(pool_id, identity)][n].api() for n in page],
                "Count": len(page),
            }
        if page and page[-1] != names[-1]:
            out["NextToken"] = self._page_token(page[-1])
        return out

    def describe_dataset(self, pool_id: str, identity: str, name: str) -> dict[str, Any]:
        """``DescribeDataset``."""
        self.check_identity(pool_id, identity)
        validation.dataset_name(name)
        with self.lock:
            return {"Dataset": self._dataset(pool_id, identity, name).api()}

    def delete_dataset(self, pool_id: str, identity: str, name: str) -> dict[str, Any]:
        """``DeleteDataset``: the dataset and its records go; the stream gets ``operation: remove``.
        Writing the dataset again creates it anew, with sync counts starting over at 1."""
        self.check_identity(pool_id, identity)
        validation.dataset_name(name)
        with self.lock:
            ds = self._dataset(pool_id, identity, name)
            described = ds.api()
            stamp = self.clock.tick()
            data = stream_format.inline_record(
                identity_pool_id=pool_id,
                identity_id=identity,
                dataset_name=name,
                operation=stream_format.OPERATION_REMOVE,
                elements=[],
                last_modified_ms=stamp,
                sync_count=ds.sync_count,
            )
            with self.store.transaction() as db:
                Store.delete_dataset(db, pool_id, identity, name, stamp, ds.sync_count)
                entry = self._queue(db, pool_id, stream_format.partition_key(identity, name), data)
                self._touch_usage(db, pool_id, stamp)
            del self.datasets[(pool_id, identity)][name]
            self.deletions[(pool_id, identity, name)] = (stamp, ds.sync_count)
            self.pool_storage[pool_id] = self.pool_storage.get(pool_id, 0) - described["DataStorage"]
            if entry is not None:
                self.on_outbox(entry)
        return {"Dataset": described}

    # -- records ------------------------------------------------------------------------------------
    def list_records(
        self,
        pool_id: str,
        identity: str,
        name: str,
        *,
        last_sync_count: str | None,
        max_results: str | None,
        next_token: str | None,
        session_token: str | None,
    ) -> dict[str, Any]:
        """``ListRecords``: the records changed after ``LastSyncCount`` (removed keys included, so a
        device can drop them), by sync count then key; a new sync session unless a token is given."""
        self.check_identity(pool_id, identity)
        validation.dataset_name(name)
        since = validation.integer(last_sync_count, "LastSyncCount", minimum=0) if last_sync_count is not None else 0
        limit = (
            validation.integer(max_results, "MaxResults", minimum=1, maximum=LIST_RECORDS_MAX)
            if max_results is not None
            else LIST_RECORDS_MAX
        )
        after: tuple[int, str] | None = None
        if next_token:
            raw = self._read_page_token(next_token, "ListRecords")
            if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], int) and isinstance(raw[1], str)):
                raise invalid(f"NextToken {next_token!r} is not a token ListRecords returned")
            after = (raw[0], raw[1])
        with self.lock:
            if session_token:
                session = self._check_session_token(session_token, pool_id, identity, name)
            else:
                session = secrets.token_hex(8)
                with self.store.transaction() as db:
                    self._touch_usage(db, pool_id, new_session=True)
            ds = self.datasets.get((pool_id, identity), {}).get(name)
            deleted = self.deletions.get((pool_id, identity, name))
            current = ds.sync_count if ds is not None else 0
            changed = sorted(
                (r for r in (ds.records.values() if ds else ()) if r.sync_count > since),
                key=lambda r: (r.sync_count, r.key),
            )
            if after is not None:
                changed = [r for r in changed if (r.sync_count, r.key) > after]
            page = changed[:limit]
            out: dict[str, Any] = {
                "Records": [r.api() for r in page],
                "Count": len(page),
                "DatasetSyncCount": current,
                "DatasetExists": ds is not None,
                # The device's copy predates a delete: it must drop its local dataset. Sync counts restart
                # after a re-creation, so a count above the current one also means "older generation".
                "DatasetDeletedAfterRequestedSyncCount": bool(
                    deleted is not None and since > 0 and (ds is None or since > current)
                ),
                "SyncSessionToken": self._session_token(pool_id, identity, name, session),
            }
            if ds is not None:
                out["LastModifiedBy"] = ds.last_modified_by
            if len(changed) > limit:
                out["NextToken"] = self._page_token([page[-1].sync_count, page[-1].key])
            return out

    def update_records(
        self, pool_id: str, identity: str, name: str, body: dict[str, Any], client_context: str | None
    ) -> dict[str, Any]:
        """``UpdateRecords``: apply the patches atomically. Each patch's SyncCount must be the key's
        current sync count (0 for a new key), else ResourceConflictException and nothing changes.
        Every patched key gets the dataset's new sync count; one stream record carries them all."""
        validation.identity_pool_id(pool_id)
        validation.identity_id(identity)
        validation.dataset_name(name)
        token = body.get("SyncSessionToken")
        if not isinstance(token, str) or not token:
            raise invalid("SyncSessionToken is required: call ListRecords first and pass the token it returns")
        device = validation.device_id(body.get("DeviceId"))
        patches = self._validate_patches(body.get("RecordPatches"))
        self.check_identity(pool_id, identity)
        by = device or identity
        with self.lock:
            self._check_session_token(token, pool_id, identity, name)
            sets = self.datasets.get((pool_id, identity), {})
            ds = sets.get(name)
            if not patches:
                return {"Records": []}
            if ds is None and len(sets) >= self.settings.max_datasets_per_identity:
                raise limit_exceeded(
                    f"Identity {identity} already has {len(sets)} datasets, the most Cognito Sync allows "
                    f"({self.settings.max_datasets_per_identity}); delete one before creating {name}"
                )
            current = ds.records if ds is not None else {}
            counts = {p["Key"]: (current[p["Key"]].sync_count if p["Key"] in current else 0) for p in patches}
            stale = [
                f"{p['Key']} (sent {p['SyncCount']}, current {counts[p['Key']]})"
                for p in patches
                if p["SyncCount"] != counts[p["Key"]]
            ]
            if stale:
                raise conflict(
                    f"Current SyncCount for: {', '.join(stale)} differs from the one sent; "
                    "call ListRecords, merge, and send the current counts"
                )
            stamp = self.clock.tick()
            new_sync = (ds.sync_count if ds is not None else 0) + 1
            changed = [
                Record(
                    p["Key"],
                    p["Value"] if p["Op"] == "replace" else None,
                    new_sync,
                    stamp,
                    p["DeviceLastModifiedDate"] if p["DeviceLastModifiedDate"] is not None else stamp,
                    by,
                )
                for p in patches
            ]
            merged = {**current, **{r.key: r for r in changed}}
            live = sum(1 for r in merged.values() if r.value is not None)
            size = sum(r.size for r in merged.values())
            if live > self.settings.max_records_per_dataset:
                raise limit_exceeded(
                    f"Dataset {name} would hold {live} records; Cognito Sync allows "
                    f"{self.settings.max_records_per_dataset} per dataset"
                )
            if size > self.settings.max_dataset_bytes:
                raise limit_exceeded(
                    f"Dataset {name} would hold {size} bytes of keys and values; Cognito Sync allows "
                    f"{self.settings.max_dataset_bytes} bytes per dataset"
                )
            new_ds = Dataset(
                pool_id,
                identity,
                name,
                ds.creation_ms if ds is not None else stamp,
                stamp,
                by,
                new_sync,
                merged,
            )
            data = stream_format.inline_record(
                identity_pool_id=pool_id,
                identity_id=identity,
                dataset_name=name,
                operation=stream_format.OPERATION_REPLACE,
                elements=[r.element() for r in changed],
                last_modified_ms=stamp,
                sync_count=new_sync,
            )
            old_size = ds.data_storage if ds is not None else 0
            with self.store.transaction() as db:
                Store.put_dataset(db, new_ds.stored())
                Store.put_records(db, pool_id, identity, name, [r.stored() for r in changed])
                entry = self._queue(db, pool_id, stream_format.partition_key(identity, name), data)
                self._touch_usage(db, pool_id, stamp)
            self.datasets.setdefault((pool_id, identity), {})[name] = new_ds
            self.pool_storage[pool_id] = self.pool_storage.get(pool_id, 0) + size - old_size
            if entry is not None:
                self.on_outbox(entry)
        return {"Records": [r.api() for r in changed]}

    @staticmethod
    def _validate_patches(value: Any) -> list[dict[str, Any]]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise invalid("RecordPatches must be a list of {Op, Key, Value, SyncCount, DeviceLastModifiedDate}")
        patches = []
        seen: set[str] = set()
        for i, p in enumerate(value):
            where = f"RecordPatches[{i}]"
            if not isinstance(p, dict):
                raise invalid(f"{where} must be an object")
            op, key, val = p.get("Op"), p.get("Key"), p.get("Value")
            if op not in validation.OPERATIONS:
                raise invalid(f"{where}.Op {op!r} is not one of replace, remove")
            if not isinstance(key, str) or not (1 <= len(key) <= validation.RECORD_KEY_MAX):
                raise invalid(f"{where}.Key must be 1 to {validation.RECORD_KEY_MAX} characters")
            if key in seen:
                raise invalid(f"{where}.Key {key!r} appears twice in one UpdateRecords")
            seen.add(key)
            if op == "replace" and not isinstance(val, str):
                raise invalid(f"{where} (Key {key!r}): Op replace needs a string Value")
            if isinstance(val, str) and len(val) > validation.RECORD_VALUE_MAX:
                raise invalid(
                    f"{where}.Value of key {key!r} has {len(val)} characters; at most {validation.RECORD_VALUE_MAX}"
                )
            if "SyncCount" not in p:
                raise invalid(f"{where}.SyncCount is required (0 for a key the device has never synced)")
            sync = validation.integer(p["SyncCount"], f"{where}.SyncCount", minimum=0)
            device_date = p.get("DeviceLastModifiedDate")
            if device_date is not None:
                if isinstance(device_date, bool) or not isinstance(device_date, int | float):
                    raise invalid(f"{where}.DeviceLastModifiedDate must be a timestamp")
                device_date = round(device_date * 1000)
            patches.append(
                {"Op": op, "Key": key, "Value": val, "SyncCount": sync, "DeviceLastModifiedDate": device_date}
            )
        return patches

    # -- bulk publish -------------------------------------------------------------------------------
    def bulk_publish(self, pool_id: str) -> dict[str, Any]:
        """``BulkPublish``: start publishing every dataset of the pool, in the background."""
        self.check_pool(pool_id)
        with self.lock:
            state = self.bulk.get(pool_id, BulkState())
            now = self.clock.now_ms()
            if state.status == "IN_PROGRESS":
                raise ApiError(
                    "DuplicateRequestException",
                    f"A bulk publish of identity pool {pool_id} is already in progress (started at "
                    f"{state.start_ms} ms); wait for GetBulkPublishDetails to report SUCCEEDED or FAILED",
                )
            if state.last_success_ms is not None and now - state.last_success_ms < DAY_MS:
                raise ApiError(
                    "AlreadyStreamedException",
                    f"Identity pool {pool_id} was bulk published successfully at {state.last_success_ms} ms; "
                    "one successful bulk publish is allowed per 24 hours "
                    f"(next at {state.last_success_ms + DAY_MS} ms)",
                )
            if self.streaming_target(pool_id) is None:
                streams = (self.configs.get(pool_id) or {}).get("CognitoStreams") or {}
                why = f"is {streams['StreamingStatus']}" if streams else "is not configured"
                if streams.get("DisabledReason"):
                    why += f" ({streams['DisabledReason']})"
                raise invalid(
                    f"Cannot bulk publish identity pool {pool_id}: Cognito Streams {why}; "
                    "enable streaming with SetIdentityPoolConfiguration first"
                )
            new = BulkState("IN_PROGRESS", now, None, None, state.last_success_ms)
            with self.store.transaction() as db:
                Store.put_bulk(db, pool_id, new.row())
            self.bulk[pool_id] = new
            if self.stale_details_next:
                self._stale_details[pool_id] = (self.stale_details_next, state)
                self.stale_details_next = 0
        log.info("pool %s: bulk publish requested", pool_id)
        self.on_bulk_start(pool_id)
        return {"IdentityPoolId": pool_id}

    def get_bulk_publish_details(self, pool_id: str) -> dict[str, Any]:
        """``GetBulkPublishDetails``: status of the last bulk publish (NOT_STARTED if none)."""
        self.check_pool(pool_id)
        with self.lock:
            state = self.bulk.get(pool_id, BulkState())
            stale = self._stale_details.pop(pool_id, None)
            if stale is not None:  # injected: the last request not visible yet
                remaining, state = stale
                if remaining > 1:
                    self._stale_details[pool_id] = (remaining - 1, state)
            out: dict[str, Any] = {"IdentityPoolId": pool_id, "BulkPublishStatus": state.status}
            if state.start_ms is not None:
                out["BulkPublishStartTime"] = _seconds(state.start_ms)
            if state.complete_ms is not None:
                out["BulkPublishCompleteTime"] = _seconds(state.complete_ms)
            if state.failure_message:
                out["FailureMessage"] = state.failure_message
            return out

    def clear_stale_details(self) -> None:
        """No injected stale GetBulkPublishDetails, pending or under way."""
        with self.lock:
            self.stale_details_next = 0
            self._stale_details.clear()

    def finish_bulk_publish(self, pool_id: str, failure: str | None) -> None:
        """Record the outcome of the running bulk publish."""
        with self.lock:
            state = self.bulk.get(pool_id)
            if state is None or state.status != "IN_PROGRESS":
                return  # reset meanwhile
            now = self.clock.now_ms()
            if failure is None:
                new = BulkState("SUCCEEDED", state.start_ms, now, None, now)
            else:
                new = BulkState("FAILED", state.start_ms, None, failure, state.last_success_ms)
            with self.store.transaction() as db:
                Store.put_bulk(db, pool_id, new.row())
            self.bulk[pool_id] = new
        if failure is None:
            log.info("pool %s: bulk publish SUCCEEDED", pool_id)
        else:
            log.warning("pool %s: bulk publish FAILED: %s", pool_id, failure)

    def dataset_keys(self, pool_id: str) -> list[tuple[str, str]]:
        """(identity, dataset) of every dataset of the pool, in a stable order."""
        with self.lock:
            return sorted((i, n) for (p, i), sets in self.datasets.items() if p == pool_id for n in sets)

    def current_state_record(self, pool_id: str, identity: str, name: str) -> tuple[str, bytes] | None:
        """(partition key, record) with the dataset's current state, as bulk publish sends it: every
        key (removed ones as ``op: remove``), the dataset's sync count and last modified date."""
        with self.lock:
            ds = self.datasets.get((pool_id, identity), {}).get(name)
            if ds is None:
                return None
            data = stream_format.inline_record(
                identity_pool_id=pool_id,
                identity_id=identity,
                dataset_name=name,
                operation=stream_format.OPERATION_REPLACE,
                elements=[ds.records[k].element() for k in sorted(ds.records)],
                last_modified_ms=ds.last_modified_ms,
                sync_count=ds.sync_count,
            )
        return stream_format.partition_key(identity, name), data

    # -- control ------------------------------------------------------------------------------------
    def set_settings(self, changes: dict[str, Any]) -> EmulatorSettings:
        """Apply and persist settings (raises SettingsError for a bad value)."""
        with self.lock:
            new = self.settings.updated(changes)
            with self.store.transaction() as db:
                Store.put_meta(db, "settings", new.model_dump_json())
            self.settings = new
        return new

    def set_clock(self, offset_ms: int) -> None:
        """Move the clock to ``offset_ms`` from the real time (persisted)."""
        with self.lock:
            with self.store.transaction() as db:
                Store.put_meta(db, "clock_offset_ms", str(offset_ms))
            self.clock.offset_ms = offset_ms

    def reset(self) -> None:
        """Forget every dataset, configuration, bulk publish, setting and the clock offset."""
        with self.lock:
            self.store.reset()
            self.datasets.clear()
            self.deletions.clear()
            self.configs.clear()
            self.bulk.clear()
            self.clear_stale_details()
            self.usage.clear()
            self.pool_storage.clear()
            self.settings = EmulatorSettings()
            self.clock.offset_ms = 0
        self.aws.forget()

    def pool_state(self, pool_id: str) -> dict[str, Any]:
        """What the emulator holds for a pool, beyond what boto3 shows (DisabledReason included)."""
        with self.lock:
            bulk = self.bulk.get(pool_id, BulkState())
            return {
                "identity_pool_id": pool_id,
                "configuration": self.configs.get(pool_id) or {},
                "bulk_publish": {
                    "status": bulk.status,
                    "start_ms": bulk.start_ms,
                    "complete_ms": bulk.complete_ms,
                    "failure_message": bulk.failure_message,
                    "last_success_ms": bulk.last_success_ms,
                },
                "usage": self._pool_usage(pool_id),
                "datasets": sum(len(s) for (p, _), s in self.datasets.items() if p == pool_id),
            }

    def export(self, pool_id: str | None) -> Iterator[dict[str, Any]]:
        """Every dataset (of one pool, or all) with all its records, for reconciliation and tests."""
        with self.lock:
            owners = sorted(k for k in self.datasets if pool_id is None or k[0] == pool_id)
        for pool, identity in owners:
            with self.lock:
                sets = list(self.datasets.get((pool, identity), {}).values())
                rows = [
                    {
                        "identityPoolId": pool,
                        "identityId": identity,
                        "dataSetName": ds.name,
                        "syncCount": ds.sync_count,
                        "creationDate": ds.creation_ms,
                        "lastModifiedDate": ds.last_modified_ms,
                        "records": [ds.records[k].element() for k in sorted(ds.records)],
                    }
                    for ds in sorted(sets, key=lambda d: d.name)
                ]
            yield from rows

    def export_deletions(self, pool_id: str | None) -> list[dict[str, Any]]:
        """The latest delete of every dataset ever deleted (re-created ones included)."""
        with self.lock:
            return [
                {"identityPoolId": p, "identityId": i, "dataSetName": d, "deletedDate": t, "syncCount": c}
                for (p, i, d), (t, c) in sorted(self.deletions.items())
                if pool_id is None or p == pool_id
            ]
