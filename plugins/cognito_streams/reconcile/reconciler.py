"""``cognito_reconcile``'s adapter: read both sides, compare (``core.reconcile``), record the result.

Cognito's side comes from Cognito Sync itself: ``ListDatasets`` (each dataset's ``Dataset``
description), ``DescribeDataset`` for a dataset the warehouse has live and the listing does not (the
listing is paged, not a snapshot: only a not-found answer proves the dataset gone), and
``ListRecords`` from sync count 0 (removed keys come back as tombstones) for every dataset, or at
depth ``datasets`` only for those whose description differs from the warehouse. The identities come
from the warehouse and from Cognito Identity's ``ListIdentities``. An identity Cognito Sync does not
know (``ListDatasets`` answers ResourceNotFoundException) is reported as ``unknown_identity`` for the
data the warehouse holds of it, and the run goes on with the others. Mismatches go to
``reconciliation_results``, the run's counts to ``reconciliation_runs``; record values, and anything
computed from them but their length, are never logged nor stored there.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cognito_streams.core.reconcile import (
    DEPTHS,
    KINDS,
    CognitoDataset,
    CognitoRecord,
    Mismatch,
    WarehouseDataset,
    WarehouseRecord,
    compare_datasets,
    compare_identity,
    sample_identities,
    summary_matches,
    unknown_identity,
)
from cognito_streams.core.sql_text import ReportingSql
from cognito_streams.core.values import clip_text
from cognito_streams.core.walk import walk_identity
from cognito_streams.hooks.cognito_identity import CognitoIdentityHook
from cognito_streams.hooks.cognito_sync import CognitoSyncHook
from cognito_streams.settings import PipelineSettings
from cognito_streams.warehouse.base import Warehouse, insert_rows

log = logging.getLogger(__name__)

CHUNK = 200  # identities per warehouse query
COGNITO_CONCURRENCY = 8
#: reconciliation_results.detail is varchar(4096): bytes, in Redshift.
RESULT_DETAIL_BYTES = 4096

#: What reconciliation asks the pipeline before judging: (stalled, watermark). The watermark is the time
#: before which every Kinesis record is landed and loaded (``cognito_streams.monitoring.state``); None: unknown.
PipelineProbe = Callable[[], tuple[bool, datetime | None]]
#: Cognito Streams publishes a change to Kinesis as it is made (within seconds): a change made this long
#: before the watermark has arrived before it.
PUBLISH_MARGIN = timedelta(seconds=10)
#: How often to ask the pipeline again while waiting for it to load past the end of the Cognito reads.
WATERMARK_POLL_SECONDS = 5.0
#: The least time to wait for that (with settle_seconds 0 too): an idle pipeline's watermark is the time of
#: the peek, so it passes the end of the reads plus the publish margin a few seconds later.
EXTRA_WAIT_MIN_SECONDS = 30.0
STALLED_VERDICT = "stalled, not judged"


@dataclass
class ReconcileSummary:
    """The run's counts (the task's return value)."""

    run_id: str
    checked_at: datetime
    identity_pools: int = 0
    identities: int = 0
    keys_checked: int = 0
    in_flight: int = 0
    depth: str = "records"
    datasets_checked: int = 0
    #: Datasets changed too recently to judge at the dataset level (their keys count in ``in_flight``).
    datasets_in_flight: int = 0
    #: Datasets whose records were not listed (depth ``datasets``: their description matched).
    datasets_screened: int = 0
    #: ``DescribeDataset`` calls (datasets the warehouse has live and the listing did not show).
    datasets_described: int = 0
    #: Identities Cognito Sync does not know (their live warehouse data counts as ``unknown_identity``).
    unknown_identities: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    settle_seconds: int = 0
    sample_size: int | None = None
    max_mismatches: int = 0
    #: ``judged``, or ``stalled, not judged`` (the pipeline was stalled: nothing was compared).
    verdict: str = "judged"
    #: The pipeline's watermark the run judged against (None: no probe, or unknown).
    watermark: datetime | None = None

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
            "depth": self.depth,
            "datasets_checked": self.datasets_checked,
            "datasets_in_flight": self.datasets_in_flight,
            "datasets_screened": self.datasets_screened,
            "datasets_described": self.datasets_described,
            "unknown_identities": self.unknown_identities,
            "mismatches": self.mismatches,
            "by_kind": dict(self.by_kind),
            "max_mismatches": self.max_mismatches,
            "passed": self.passed,
            "verdict": self.verdict,
            "watermark": self.watermark.isoformat() if self.watermark else None,
        }


def _utc(value: Any) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _ms(value: datetime) -> datetime:
    """Cognito dates are epoch milliseconds: compare at that precision."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


@dataclass
class WarehouseSide:
    """One identity's rows: ``records`` (all datasets) and ``datasets`` (by name)."""

    records: list[WarehouseRecord] = field(default_factory=list)
    datasets: dict[str, WarehouseDataset] = field(default_factory=dict)

    def records_of(self, dataset_name: str) -> list[WarehouseRecord]:
        """The ``records`` rows of one dataset."""
        return [r for r in self.records if r.dataset_name == dataset_name]


@dataclass
class CognitoSide:
    """What Cognito Sync answered for one identity."""

    datasets: list[CognitoDataset] = field(default_factory=list)
    #: Listed datasets' records (live and removed), by dataset name.
    records: dict[str, list[CognitoRecord]] = field(default_factory=dict)
    #: Datasets not listed because their description matched the warehouse (depth ``datasets``).
    screened: set[str] = field(default_factory=set)
    described: int = 0
    #: Set when Cognito Sync does not know the identity: the error code ListDatasets answered.
    unknown: str | None = None


def _dataset(described: Mapping[str, Any]) -> CognitoDataset:
    return CognitoDataset(
        str(described["DatasetName"]),
        _ms(_utc(described["LastModifiedDate"])),
        int(described.get("NumRecords") or 0),
        int(described.get("DataStorage") or 0),
    )


class Reconciler:
    """Compares a sample (or all) of the configured pools' identities with Cognito Sync."""

    def __init__(self, settings: PipelineSettings, warehouse: Warehouse) -> None:
        self.settings = settings
        self.warehouse = warehouse
        self.sql = ReportingSql(warehouse.schema, warehouse.engine)
        self.sync = CognitoSyncHook(aws_conn_id=settings.aws_conn_id)
        self.identity = CognitoIdentityHook(aws_conn_id=settings.aws_conn_id)

    # -- identities ---------------------------------------------------------------------------
    def _warehouse_identities(self, pool_id: str) -> list[str]:
        with self.warehouse.transaction() as cur:
            cur.execute(self.sql.identities_in_warehouse(), (pool_id,))
            return [str(row[0]) for row in cur.fetchall()]

    def _cognito_identities(self, pool_id: str) -> list[str]:
        return list(self.identity.list_identities(pool_id))

    def identities(self, pool_ids: Iterable[str], sample_size: int | None, seed: str) -> list[tuple[str, str]]:
        """Warehouse identities plus Cognito Identity's, sampled deterministically by ``seed``."""
        pairs: list[tuple[str, str]] = []
        for pool_id in pool_ids:
            pairs += [(pool_id, i) for i in self._warehouse_identities(pool_id)]
            pairs += [(pool_id, i) for i in self._cognito_identities(pool_id)]
        return sample_identities(pairs, sample_size, seed)

    # -- both sides -------------------------------------------------------------------------------
    def cognito_side(
        self,
        pool_id: str,
        identity_id: str,
        ours: WarehouseSide,
        *,
        depth: str,
        settled_before: datetime,
    ) -> CognitoSide:
        """Cognito's datasets of one identity and, for each one that needs it, its records (the walk
        ``core.walk.walk_identity`` shares with the snapshot)."""

        def screened(described: Any) -> bool:
            name = str(described["DatasetName"])
            return depth == "datasets" and summary_matches(
                _dataset(described), ours.datasets.get(name), ours.records_of(name), settled_before=settled_before
            )

        read = walk_identity(
            self.sync,
            pool_id,
            identity_id,
            # Live in the warehouse, not in the listing: gone, or created between two pages.
            expected=[name for name, row in ours.datasets.items() if not row.is_deleted],
            want_records=lambda described: not screened(described),
        )
        side = CognitoSide(described=read.described)
        if read.unknown:
            # The pool exists (ListIdentities answered for it): not found is this identity. One such
            # identity must not stop the reconciliation of all the others.
            side.unknown = "ResourceNotFoundException"
            return side
        for dataset in read.datasets:
            side.datasets.append(_dataset(dataset.description))
            if dataset.records is None:
                side.screened.add(dataset.name)
                continue
            # A dataset deleted after it was listed answers with no records: every warehouse row of it is
            # then judged against nothing, as it should be.
            side.records[dataset.name] = [
                CognitoRecord(
                    dataset.name, r["Key"], r.get("Value"), int(r["SyncCount"]), _ms(_utc(r["LastModifiedDate"]))
                )
                for r in dataset.records
            ]
        return side

    def warehouse_side(self, pool_id: str, identity_ids: list[str]) -> dict[str, WarehouseSide]:
        """The ``records`` and ``datasets`` rows of these identities, by identity."""
        out = {i: WarehouseSide() for i in identity_ids}
        for start in range(0, len(identity_ids), CHUNK):
            chunk = identity_ids[start : start + CHUNK]
            with self.warehouse.transaction() as cur:
                cur.execute(self.sql.records_of_identities(len(chunk)), (pool_id, *chunk))
                for identity, dataset, key, value, sync, modified, deleted, cut, size in cur.fetchall():
                    out[identity].records.append(
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
                cur.execute(self.sql.datasets_of_identities(len(chunk)), (pool_id, *chunk))
                for identity, dataset, modified, deleted, live in cur.fetchall():
                    out[identity].datasets[dataset] = WarehouseDataset(
                        dataset, _ms(_utc(modified)), bool(deleted), int(live)
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
        depth: str = "records",
        now: datetime | None = None,
        pipeline: PipelineProbe | None = None,
    ) -> ReconcileSummary:
        """Compare, record, and return the counts (the caller fails the task above the threshold).

        With ``pipeline`` (the live state, :data:`PipelineProbe`), only what the pipeline has had time to
        load is judged: nothing at all while it is stalled (verdict ``stalled, not judged``); changes made
        before its watermark (less ``PUBLISH_MARGIN``) and before ``settle_seconds`` ago; and an ``extra``
        (a live warehouse row Cognito does not have, so no Cognito time to go by) only once the watermark
        has passed the end of the Cognito reads, against the warehouse read again then."""
        if depth not in DEPTHS:
            raise ValueError(f"reconciliation depth {depth!r} is not one of {', '.join(DEPTHS)}")
        now = now or datetime.now(UTC)
        settled_before = now - timedelta(seconds=settle_seconds)
        stalled, mark = pipeline() if pipeline is not None else (False, None)
        if mark is not None:
            settled_before = min(settled_before, mark - PUBLISH_MARGIN)
        summary = ReconcileSummary(
            run_id,
            now,
            identity_pools=len(pool_ids),
            settle_seconds=settle_seconds,
            sample_size=sample_size,
            max_mismatches=max_mismatches,
            depth=depth,
            watermark=mark,
        )
        if stalled:
            summary.verdict = STALLED_VERDICT
            log.warning(
                "the pipeline is stalled (records waiting longer than stall_alert_seconds, see Browse > Pipeline "
                "health): the warehouse is behind Cognito by an unknown amount, so nothing is judged"
            )
            self._record(summary, [])
            return summary
        chosen = self.identities(pool_ids, sample_size, seed=f"{now:%Y-%m-%d}")
        summary.identities = len(chosen)
        log.info(
            "reconciling %d identities of %d pool(s) (sample_size=%s, settle %d s, depth %s)",
            len(chosen),
            len(pool_ids),
            sample_size,
            settle_seconds,
            depth,
        )
        mismatches: list[Mismatch] = []
        by_pool: dict[str, list[str]] = {}
        for pool_id, identity_id in chosen:
            by_pool.setdefault(pool_id, []).append(identity_id)
        with ThreadPoolExecutor(max_workers=COGNITO_CONCURRENCY) as pool:
            for pool_id, identity_ids in by_pool.items():
                ours = self.warehouse_side(pool_id, identity_ids)
                theirs = pool.map(
                    lambda i, p=pool_id, o=ours: self.cognito_side(
                        p, i, o[i], depth=depth, settled_before=settled_before
                    ),
                    identity_ids,
                )
                for identity_id, cognito in zip(identity_ids, theirs, strict=True):
                    mine = ours[identity_id]
                    if cognito.unknown is not None:
                        gone = unknown_identity(
                            pool_id, identity_id, mine.datasets.values(), mine.records, error_code=cognito.unknown
                        )
                        log.warning(
                            "pool %s: Cognito Sync does not know identity %s (%s); %d live dataset(s) of it in the "
                            "warehouse reported as unknown_identity",
                            pool_id,
                            identity_id,
                            cognito.unknown,
                            len(gone.mismatches),
                        )
                        summary.unknown_identities += 1
                        summary.datasets_checked += gone.datasets_checked
                        mismatches += gone.mismatches
                        continue
                    datasets = compare_datasets(
                        pool_id,
                        identity_id,
                        cognito.datasets,
                        mine.datasets.values(),
                        cognito.records,
                        settled_before=settled_before,
                    )
                    records = compare_identity(
                        pool_id,
                        identity_id,
                        [r for rs in cognito.records.values() for r in rs],
                        [r for r in mine.records if r.dataset_name not in cognito.screened],
                        settled_before=settled_before,
                    )
                    summary.keys_checked += records.keys_checked
                    summary.in_flight += records.in_flight
                    summary.datasets_in_flight += datasets.in_flight
                    summary.datasets_checked += datasets.datasets_checked
                    summary.datasets_screened += len(cognito.screened)
                    summary.datasets_described += cognito.described
                    mismatches += datasets.mismatches + records.mismatches
        if pipeline is not None:
            timeout = max(float(settle_seconds), EXTRA_WAIT_MIN_SECONDS)
            mismatches = self._confirm_extras(mismatches, pipeline, summary, timeout=timeout)
        summary.by_kind.update(Counter(m.kind for m in mismatches))
        self._record(summary, mismatches)
        log.info(
            "reconciliation %s: %d datasets checked (%d by their description alone, %d described), "
            "%d keys checked, %d in flight, %d mismatch(es) %s",
            run_id,
            summary.datasets_checked,
            summary.datasets_screened,
            summary.datasets_described,
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

    def _confirm_extras(
        self, mismatches: list[Mismatch], pipeline: PipelineProbe, summary: ReconcileSummary, *, timeout: float
    ) -> list[Mismatch]:
        """Keep an ``extra`` only if it holds once the pipeline has loaded everything Cognito had when it was
        read (the delete may have been on its way): wait for the watermark to pass the end of the reads (at
        most ``timeout`` s), read those rows again, and keep the rows still live and older than the reads.
        Unconfirmed extras count as in flight."""
        extras = [m for m in mismatches if m.kind == "extra"]
        if not extras:
            return mismatches
        others = [m for m in mismatches if m.kind != "extra"]
        read_end = datetime.now(UTC)
        deadline = time.monotonic() + timeout
        while True:
            stalled, mark = pipeline()
            if not stalled and mark is not None and mark - PUBLISH_MARGIN >= read_end:
                break
            if stalled or time.monotonic() >= deadline:
                log.warning(
                    "%d extra row(s) not judged: the pipeline has not loaded past the Cognito reads (watermark %s, "
                    "reads ended %s%s)",
                    len(extras),
                    mark.isoformat() if mark else "unknown",
                    read_end.isoformat(),
                    ", stalled" if stalled else "",
                )
                summary.in_flight += len(extras)
                return others
            time.sleep(min(WATERMARK_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        summary.watermark = mark
        confirmed: list[Mismatch] = []
        by_pool: dict[str, set[str]] = {}
        for m in extras:
            by_pool.setdefault(m.identity_pool_id, set()).add(m.identity_id)
        now_rows = {pool: self.warehouse_side(pool, sorted(ids)) for pool, ids in by_pool.items()}
        for m in extras:
            side = now_rows[m.identity_pool_id][m.identity_id]
            if m.record_key is None:
                row = side.datasets.get(m.dataset_name)
                live = row is not None and not row.is_deleted and row.last_modified_at < read_end
            else:
                rec = next((r for r in side.records_of(m.dataset_name) if r.key == m.record_key), None)
                live = rec is not None and not rec.is_deleted and rec.last_modified_at < read_end
            if live:
                confirmed.append(m)
            else:
                summary.in_flight += 1
        return others + confirmed

    def _record(self, summary: ReconcileSummary, mismatches: list[Mismatch]) -> None:
        checked = summary.checked_at.replace(tzinfo=None)

        def write(cur: Any) -> None:
            for statement in self.sql.delete_reconciliation_run():
                cur.execute(statement, (summary.run_id,))
            insert_rows(
                cur,
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
                        clip_text(m.detail, RESULT_DETAIL_BYTES),
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
            cur.execute(
                self.sql.report("set_reconciliation_verdict"),
                (
                    summary.verdict,
                    summary.watermark.astimezone(UTC).replace(tzinfo=None) if summary.watermark else None,
                    summary.run_id,
                ),
            )

        # A manual run beside the scheduled one: both delete then insert in both tables.
        self.warehouse.write(f"reconciliation run {summary.run_id}", self.sql.lock_reconciliation(), write)
