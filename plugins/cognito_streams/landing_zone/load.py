"""What the ``cognito_s3_to_redshift`` tasks do; each function is one task's work, with its logs."""

from __future__ import annotations

import logging
from datetime import date, datetime

from cognito_streams.core.loading.plan import landing_day, plan_groups
from cognito_streams.landing_zone.reader import DescriptorRef, LandingReader, landing_reader, split_s3_url
from cognito_streams.settings import PipelineSettings
from cognito_streams.warehouse.base import Warehouse
from cognito_streams.warehouse.connect import open_warehouse
from cognito_streams.warehouse.models import (
    BatchDataError,
    BatchToLoad,
    CheckResult,
    FailedBatch,
    LoadReport,
    MergeCounts,
    batches_failed_error,
)

log = logging.getLogger(__name__)

#: Listing passes per run: a pass loads what it found, the next finds what landed meanwhile.
MAX_PASSES = 20


def ensure_schema(settings: PipelineSettings) -> list[str]:
    """Create or upgrade the warehouse schema; returns the migrations applied now."""
    with open_warehouse(settings) as wh:
        return wh.ensure_schema()


def load_landing_zone(
    settings: PipelineSettings,
    *,
    day_from: date | None = None,
    day_to: date | None = None,
    force: bool = False,
    max_passes: int = MAX_PASSES,
) -> LoadReport:
    """Load every landed batch not loaded yet (or, with ``force``, every batch of the day range again), at
    most settings.load_max_files_per_batch files per transaction, until a listing finds nothing new.

    Loading never stalls behind a bad batch: a batch whose descriptor, COPY or staged-row checks fail is set
    aside (the transaction it was in is rolled back and the others are loaded again without it), recorded in
    ``failed_batches`` and returned in ``LoadReport.failed``; the caller fails the run naming it
    (:func:`raise_for_failed`). Batches set aside by earlier runs are tried again after the others, in
    transactions of their own; one a replay superseded since (or whose descriptor is gone) is resolved as such,
    since it is not listed any more. Any other error (the warehouse or S3 unreachable) stops the run as before."""
    reader = landing_reader(settings)
    total = LoadReport()
    seen: set[str] = set()
    scope = f"days {day_from or 'first'}..{day_to or 'last'}" if day_from or day_to else "all days"
    with open_warehouse(settings, fetch=reader.fetch, write_manifest=reader.put_load_manifest) as wh:
        set_aside = wh.unresolved_failed_batches()
        for pass_no in range(1, max_passes + 1):
            listing = reader.find_descriptors(day_from, day_to)
            refs = listing.refs
            found = len(refs)
            settled = listing.settle(set_aside)
            if settled:
                # Not listed any more, so never tried again: resolved, or they would stay unresolved forever.
                wh.settle_failed_batches(settled)
                set_aside -= set(settled)
                _log_settled(settled)
            if pass_no == 1 and set_aside:
                log.warning(
                    "%d batch(es) set aside by earlier runs are not loaded yet; they are tried again after the "
                    "others: %s",
                    len(set_aside),
                    ", ".join(sorted(set_aside)[:10]) + (" ..." if len(set_aside) > 10 else ""),
                )
            # A batch is tried once per run: one that failed in this run is not tried again by the next pass.
            refs = [r for r in refs if r.url not in seen]
            if not force and refs:
                done = wh.loaded_descriptors(min(r.landing_day for r in refs), max(r.landing_day for r in refs))
                refs = [r for r in refs if r.url not in done]
            log.info(
                "Pass %d (%s): %d batch descriptor(s) in the landing zone, %d to load%s",
                pass_no,
                scope,
                found,
                len(refs),
                " (force: reloading)" if force else "",
            )
            if pass_no == 1 and found == 0 and (day_from or day_to):
                # A manual backfill of days with nothing landed would end green having loaded nothing.
                raise ValueError(
                    f"no landed batch for from_day {day_from or '(first)'} .. to_day {day_to or '(last)'} under "
                    f"s3://{settings.landing_bucket}/{settings.landing_prefix}: nothing to load. The days are landing "
                    "days (the dt= partition: the UTC day a batch was landed), not the days the changes were made; "
                    "fix from_day/to_day, or leave them empty to load every batch not loaded yet"
                )
            if not refs:
                break
            seen.update(r.url for r in refs)
            total.add(_load_refs(wh, reader, refs, settings, force=force, set_aside=set_aside))
        else:
            log.warning(
                "Still finding new batches after %d listing passes; stopping here, the next run continues", max_passes
            )
    log.info("Loaded: %s", ", ".join(f"{k}={v}" for k, v in total.as_dict().items()))
    return total


def _load_refs(
    wh: Warehouse,
    reader: LandingReader,
    refs: list[DescriptorRef],
    settings: PipelineSettings,
    *,
    force: bool,
    set_aside: set[str],
) -> LoadReport:
    """Read and load these batches in groups of at most settings.load_max_files_per_batch files, the ones set
    aside by earlier runs last; a batch whose descriptor, COPY or checks fail is set aside (recorded in
    ``failed_batches`` and returned in ``LoadReport.failed``) and the others are loaded."""
    total = LoadReport()
    batches, unreadable = reader.read_batches(refs)
    failed = [FailedBatch.of(ref.url, ref.landing_day, None, err) for ref, err in unreadable]
    fresh = [b for b in batches if b.descriptor_url not in set_aside]
    retried = [b for b in batches if b.descriptor_url in set_aside]
    groups = plan_groups(fresh, settings.load_max_files_per_batch, _file_count)
    groups += plan_groups(retried, settings.load_max_files_per_batch, _file_count)
    for i, group in enumerate(groups, start=1):
        report, group_failed = load_isolating(wh, group, force=force)
        total.add(report)
        failed += group_failed
        _log_transaction(i, len(groups), report)
    if failed:
        # Durable before anything else can fail: the next run and the operators see them.
        wh.record_failed_batches(failed)
        total.failed.extend(failed)
        for f in failed:
            log.error("Set aside batch %s (%s): %s", f.descriptor_url, f.error_kind, f.error_message)
    return total


def _log_settled(settled: dict[str, str]) -> None:
    superseded = sorted(u for u, how in settled.items() if how == "superseded")
    removed = sorted(u for u, how in settled.items() if how == "removed")
    if superseded:
        log.info(
            "Resolved %d batch(es) set aside by earlier runs as superseded: a replay landed their records again, in "
            "batches of its own (failed_batches.resolution = 'superseded'): %s",
            len(superseded),
            ", ".join(superseded[:10]) + (" ..." if len(superseded) > 10 else ""),
        )
    if removed:
        # Nothing of the pipeline deletes a descriptor: someone did, and the batch's records may be missing.
        log.warning(
            "Resolved %d batch(es) set aside by earlier runs as removed: their descriptors are no longer in the "
            "landing zone, so they cannot be tried again (failed_batches.resolution = 'removed'); if their records "
            "were not landed again, replay that window or bulk publish: %s",
            len(removed),
            ", ".join(removed[:10]) + (" ..." if len(removed) > 10 else ""),
        )


def load_isolating(wh: Warehouse, group: list[BatchToLoad], *, force: bool) -> tuple[LoadReport, list[FailedBatch]]:
    """Load ``group`` in one transaction; if it fails because of some batches' data (``BatchDataError``), load
    the others without them. The batches at fault are those whose files (or descriptors) the error names;
    when it names none, the group is halved until each failure is pinned on a single batch. Each attempt is one
    transaction: a failed one leaves nothing behind."""
    try:
        return wh.load(group, force=force), []
    except BatchDataError as err:
        if len(group) == 1:
            b = group[0]
            return LoadReport(), [FailedBatch.of(b.descriptor_url, b.landing_day, b.batch.batch_id, err)]
        named = [
            b for b in group if b.descriptor_url in err.descriptors or any(f.url in err.files for f in b.batch.files())
        ]
        if named:
            log.warning(
                "A load of %d batches failed on %d of them (%s); loading the others without them",
                len(group),
                len(named),
                ", ".join(b.descriptor_url for b in named),
            )
            failed = [FailedBatch.of(b.descriptor_url, b.landing_day, b.batch.batch_id, err) for b in named]
            rest = [b for b in group if b not in named]
            report, more = load_isolating(wh, rest, force=force) if rest else (LoadReport(), [])
            return report, failed + more
        log.warning(
            "A load of %d batches failed and the error names no file of theirs (%s); loading them in halves to find "
            "the batch at fault",
            len(group),
            type(err).__name__,
        )
        half = len(group) // 2
        report, failed = load_isolating(wh, group[:half], force=force)
        second, more = load_isolating(wh, group[half:], force=force)
        report.add(second)
        return report, failed + more


def raise_for_failed(report: LoadReport, schema: str) -> None:
    """Raise :class:`BatchesFailedError` naming every batch the run set aside, if any."""
    if report.failed:
        raise batches_failed_error(report.failed, schema)


def _log_transaction(i: int, n: int, report: LoadReport) -> None:
    m = report.merge
    log.info(
        "Transaction %d/%d: %d batch(es) (%d skipped: already loaded), %d file(s), %d row(s) staged, "
        "%d version(s) staged, %d new in record_changes, %d dataset delete(s), %d key(s) changed "
        "(%d new, %d tombstoned), %d dataset(s) updated, %d reject(s) staged, %d new; COPY %.2f s, "
        "merge and commit %.2f s (%s)",
        i,
        n,
        report.batches,
        report.batches_skipped,
        report.files,
        report.rows_staged,
        m.versions_staged,
        m.versions_inserted,
        m.deletes_inserted,
        m.keys_changed,
        m.keys_inserted,
        m.keys_deleted,
        m.datasets_touched,
        report.rejects_staged,
        report.rejects_inserted,
        report.stage_seconds,
        report.merge_seconds,
        report.steps_text(),
    )


def _file_count(batch: BatchToLoad) -> int:
    return batch.file_count


def rebuild_current_state(settings: PipelineSettings) -> MergeCounts:
    """Rebuild records and datasets from the history (one transaction)."""
    with open_warehouse(settings) as wh:
        return wh.rebuild_current_state()


def check_quality(settings: PipelineSettings, since: datetime) -> list[CheckResult]:
    """The data-quality checks; raises DataQualityError with the numbers when one fails."""
    with open_warehouse(settings) as wh:
        return wh.check_quality(since)


def load_descriptors(settings: PipelineSettings, descriptor_urls: list[str]) -> LoadReport:
    """Load these landed batches (those not loaded yet), as :func:`load_landing_zone` loads what it finds: for
    a producer that knows its own batches (``cognito_snapshot``) and must see them merged before it goes on."""
    reader = landing_reader(settings)
    refs = []
    for url in dict.fromkeys(descriptor_urls):
        key = split_s3_url(url)[1]
        day = landing_day(key)
        if day is None:
            raise ValueError(f"{url} is not a batch descriptor of the landing zone (no dt= partition)")
        refs.append(DescriptorRef(url=url, key=key, landing_day=day))
    total = LoadReport()
    if not refs:
        return total
    with open_warehouse(settings, fetch=reader.fetch, write_manifest=reader.put_load_manifest) as wh:
        done = wh.loaded_descriptors(min(r.landing_day for r in refs), max(r.landing_day for r in refs))
        todo = [r for r in refs if r.url not in done]
        log.info(
            "%d batch descriptor(s) given, %d already loaded, %d to load", len(refs), len(refs) - len(todo), len(todo)
        )
        total.add(_load_refs(wh, reader, todo, settings, force=False, set_aside=set()))
    log.info("Loaded: %s", ", ".join(f"{k}={v}" for k, v in total.as_dict().items()))
    return total
