"""``cognito_reconcile``'s adapter: read both sides, compare (``core.reconcile``), record the result.

Cognito's side comes from Cognito Sync itself (``ListDatasets`` + ``ListRecords`` from sync count 0,
so removed keys come back as tombstones), the identities from the warehouse and from Cognito
Identity's ``ListIdentities``. Mismatches go to ``reconciliation_results``, the run's counts to
``reconciliation_runs``; record values are never logged nor stored there.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from cognito_streams.core.reconcile import (
    KINDS,
    CognitoRecord,
    Mismatch,
    WarehouseRecord,
    compare_identity,
    sample_identities,
)
from cognito_streams.core.sql_text import ReportingSql
from cognito_streams.hooks.cognito_sync import CognitoSyncHook
from cognito_streams.settings import PipelineSettings
from cognito_streams.warehouse.base import Warehouse

log = logging.getLogger(__name__)

CHUNK = 200  # identities per warehouse query
COGNITO_CONCURRENCY = 8


@dataclass
class ReconcileSummary:
    """The run's counts (the task's return value)."""

    run_id: str
    checked_at: datetime
    identity_pools: int = 0
    identities: int = 0
    keys_checked: int = 0
    in_flight: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    settle_seconds: int = 0
    sample_size: int | None = None
    max_mismatches: int = 0

    @property
    def mismatches(self) -> int:
        return sum(self.by_kind.values())

    @property
    def passed(self) -> bool:
        return self.mismatches <= self.max_mismatches

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "checked_at": self.checked_at.isoformat(),
            "identity_pools": self.identity_pools,
            "identities": self.identities,
            "keys_checked": self.keys_checked,
            "in_flight": self.in_flight,
            "mismatches": self.mismatches,
            "by_kind": dict(self.by_kind),
            "max_mismatches": self.max_mismatches,
            "passed": self.passed,
        }


def _utc(value: Any) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _ms(value: datetime) -> datetime:
    """Cognito dates are epoch milliseconds: compare at that precision."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


class Reconciler:
    """Compares a sample (or all) of the configured pools' identities with Cognito Sync."""

    def __init__(self, settings: PipelineSettings, warehouse: Warehouse) -> None:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        self.settings = settings
        self.warehouse = warehouse
        self.sql = ReportingSql(warehouse.schema, warehouse.engine)
        self.sync = CognitoSyncHook(aws_conn_id=settings.aws_conn_id)
        self.identity = AwsBaseHook(aws_conn_id=settings.aws_conn_id, client_type="cognito-identity").conn

    # -- identities ---------------------------------------------------------------------------
    def _warehouse_identities(self, pool_id: str) -> list[str]:
        with self.warehouse.transaction() as cur:
            cur.execute(self.sql.identities_in_warehouse(), (pool_id,))
            return [str(row[0]) for row in cur.fetchall()]

    def _cognito_identities(self, pool_id: str) -> list[str]:
        found: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"IdentityPoolId": pool_id, "MaxResults": 60}
            if token:
                kwargs["NextToken"] = token
            page = self.identity.list_identities(**kwargs)
            found += [i["IdentityId"] for i in page.get("Identities", [])]
            token = page.get("NextToken")
            if not token:
                return found

    def identities(self, pool_ids: Iterable[str], sample_size: int | None, seed: str) -> list[tuple[str, str]]:
        """Warehouse identities plus Cognito Identity's, sampled deterministically by ``seed``."""
        pairs: list[tuple[str, str]] = []
        for pool_id in pool_ids:
            pairs += [(pool_id, i) for i in self._warehouse_identities(pool_id)]
            pairs += [(pool_id, i) for i in self._cognito_identities(pool_id)]
        return sample_identities(pairs, sample_size, seed)

    # -- both sides -------------------------------------------------------------------------------
    def cognito_records(self, pool_id: str, identity_id: str) -> list[CognitoRecord]:
        """Every record (live and removed) of every dataset of one identity, from Cognito Sync."""
        out: list[CognitoRecord] = []
        for dataset in self.sync.list_datasets(pool_id, identity_id):
            name = dataset["DatasetName"]
            try:
                records = list(self.sync.list_records(pool_id, identity_id, name))
            except ClientError as err:
                if self.sync.error_code(err) == "ResourceNotFoundException":  # deleted meanwhile
                    continue
                raise
            out += [
                CognitoRecord(name, r["Key"], r.get("Value"), int(r["SyncCount"]), _ms(_utc(r["LastModifiedDate"])))
                for r in records
            ]
        return out

    def warehouse_records(self, pool_id: str, identity_ids: list[str]) -> dict[str, list[WarehouseRecord]]:
        """Current rows of these identities, by identity."""
        out: dict[str, list[WarehouseRecord]] = {i: [] for i in identity_ids}
        for start in range(0, len(identity_ids), CHUNK):
            chunk = identity_ids[start : start + CHUNK]
            with self.warehouse.transaction() as cur:
                cur.execute(self.sql.records_of_identities(len(chunk)), (pool_id, *chunk))
                for identity, dataset, key, value, sync, modified, deleted, cut, size in cur.fetchall():
                    out[identity].append(
                        WarehouseRecord(
                            dataset,
                            key,
                            value,
                            int(sync),
                            _ms(_utc(modified)),
                            bool(deleted),
                            bool(cut),
                            None if size is None else int(size),
                        )
                    )
        return out

    # -- the run ------------------------------------------------------------------------------------
    def run(
        self,
        run_id: str,
        *,
        pool_ids: list[str],
        sample_size: int | None,
        settle_seconds: int,
        max_mismatches: int,
        now: datetime | None = None,
    ) -> ReconcileSummary:
        """Compare, record, and return the counts (the caller fails the task above the threshold)."""
        now = now or datetime.now(UTC)
        settled_before = now - timedelta(seconds=settle_seconds)
        summary = ReconcileSummary(
            run_id,
            now,
            identity_pools=len(pool_ids),
            settle_seconds=settle_seconds,
            sample_size=sample_size,
            max_mismatches=max_mismatches,
        )
        chosen = self.identities(pool_ids, sample_size, seed=f"{now:%Y-%m-%d}")
        summary.identities = len(chosen)
        log.info(
            "reconciling %d identities of %d pool(s) (sample_size=%s, settle %d s)",
            len(chosen),
            len(pool_ids),
            sample_size,
            settle_seconds,
        )
        mismatches: list[Mismatch] = []
        by_pool: dict[str, list[str]] = {}
        for pool_id, identity_id in chosen:
            by_pool.setdefault(pool_id, []).append(identity_id)
        with ThreadPoolExecutor(max_workers=COGNITO_CONCURRENCY) as pool:
            for pool_id, identity_ids in by_pool.items():
                ours = self.warehouse_records(pool_id, identity_ids)
                theirs = pool.map(lambda i, p=pool_id: self.cognito_records(p, i), identity_ids)
                for identity_id, cognito in zip(identity_ids, theirs, strict=True):
                    result = compare_identity(
                        pool_id, identity_id, cognito, ours[identity_id], settled_before=settled_before
                    )
                    summary.keys_checked += result.keys_checked
                    summary.in_flight += result.in_flight
                    mismatches += result.mismatches
        summary.by_kind.update(Counter(m.kind for m in mismatches))
        self._record(summary, mismatches)
        log.info(
            "reconciliation %s: %d keys checked, %d in flight, %d mismatch(es) %s",
            run_id,
            summary.keys_checked,
            summary.in_flight,
            summary.mismatches,
            dict(summary.by_kind),
        )
        for m in mismatches[:20]:
            log.warning(
                "mismatch %s: pool %s identity %s dataset %s key %s: %s",
                m.kind,
                m.identity_pool_id,
                m.identity_id,
                m.dataset_name,
                m.record_key,
                m.detail,
            )
        return summary

    def _record(self, summary: ReconcileSummary, mismatches: list[Mismatch]) -> None:
        checked = summary.checked_at.replace(tzinfo=None)
        with self.warehouse.transaction() as cur:
            for statement in self.sql.delete_reconciliation_run():
                cur.execute(statement, (summary.run_id,))
            if mismatches:
                cur.executemany(
                    self.sql.insert_reconciliation_result(),
                    [
                        (
                            summary.run_id,
                            checked,
                            m.identity_pool_id,
                            m.identity_id,
                            m.dataset_name,
                            m.record_key,
                            m.kind,
                            m.detail[:4096],
                            m.cognito_sync_count,
                            m.warehouse_sync_count,
                        )
                        for m in mismatches
                    ],
                )
            cur.execute(
                self.sql.insert_reconciliation_run(),
                (
                    summary.run_id,
                    checked,
                    summary.identity_pools,
                    summary.identities,
                    summary.keys_checked,
                    summary.in_flight,
                    summary.mismatches,
                    *(summary.by_kind[k] for k in KINDS),
                    summary.settle_seconds,
                    summary.sample_size,
                    summary.max_mismatches,
                    summary.passed,
                ),
            )
