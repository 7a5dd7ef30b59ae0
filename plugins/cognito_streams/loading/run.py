"""What the ``cognito_s3_to_redshift`` tasks do; each function is one task's work, with its logs."""

from __future__ import annotations

import logging
from datetime import date, datetime

from cognito_streams.core.load_plan import landing_day, plan_groups
from cognito_streams.loading.connect import landing_reader, open_warehouse
from cognito_streams.loading.landing import DescriptorRef, split_s3_url
from cognito_streams.settings import PipelineSettings
from cognito_streams.warehouse.models import BatchToLoad, CheckResult, LoadReport, MergeCounts

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
    most settings.load_max_files_per_batch files per transaction, until a listing finds nothing new."""
    reader = landing_reader(settings)
    total = LoadReport()
    reloaded: set[str] = set()
    scope = f"days {day_from or 'first'}..{day_to or 'last'}" if day_from or day_to else "all days"
    with open_warehouse(settings, fetch=reader.fetch) as wh:
        for pass_no in range(1, max_passes + 1):
            refs = reader.list_descriptors(day_from, day_to)
            found = len(refs)
            if force:
                refs = [r for r in refs if r.url not in reloaded]
            elif refs:
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
            batches = reader.read_batches(refs)
            groups = plan_groups(batches, settings.load_max_files_per_batch, _file_count)
            for i, group in enumerate(groups, start=1):
                report = wh.load(group, force=force)
                total.add(report)
                m = report.merge
                log.info(
                    "Transaction %d/%d: %d batch(es) (%d skipped: already loaded), %d file(s), %d row(s) staged, "
                    "%d version(s) staged, %d new in record_changes, %d dataset delete(s), %d key(s) changed "
                    "(%d new, %d tombstoned), %d dataset(s) updated, %d reject(s) staged, %d new; COPY %.2f s, "
                    "merge and commit %.2f s (%s)",
                    i,
                    len(groups),
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
            reloaded.update(r.url for r in refs)
        else:
            log.warning(
                "Still finding new batches after %d listing passes; stopping here, the next run continues", max_passes
            )
    log.info("Loaded: %s", ", ".join(f"{k}={v}" for k, v in total.as_dict().items()))
    return total


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
    with open_warehouse(settings, fetch=reader.fetch) as wh:
        done = wh.loaded_descriptors(min(r.landing_day for r in refs), max(r.landing_day for r in refs))
        todo = [r for r in refs if r.url not in done]
        log.info(
            "%d batch descriptor(s) given, %d already loaded, %d to load", len(refs), len(refs) - len(todo), len(todo)
        )
        for group in plan_groups(reader.read_batches(todo), settings.load_max_files_per_batch, _file_count):
            total.add(wh.load(group))
    log.info("Loaded: %s", ", ".join(f"{k}={v}" for k, v in total.as_dict().items()))
    return total
