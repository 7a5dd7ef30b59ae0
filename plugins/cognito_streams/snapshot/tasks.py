"""The bodies of the ``cognito_snapshot`` tasks, so that the DAG file stays wiring only.

Each reads the settings at run time and returns JSON-friendly values for XCom. Retries are for the
network only (:func:`network_retries_only`): a bad Param, a bad setting or a cursor that two tasks
fight over fails the task at once, since trying it again would change nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from cognito_streams.core.snapshot import SnapshotParams, snapshot_id_for
from cognito_streams.settings import PipelineSettings, load_settings

log = logging.getLogger(__name__)

#: Descriptor URIs listed in a walk task's return value (all of them are in the chunks' progress objects).
DESCRIPTORS_IN_EVENT = 100
#: Airflow's default ``[core] max_map_length``: the most mapped tasks one mapping may create.
DEFAULT_MAX_MAP_LENGTH = 1024


def is_transient(err: BaseException) -> bool:
    """A network error or throttling: what a retry may get past."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    from cognito_streams.snapshot.walker import THROTTLED

    if isinstance(err, ClientError):
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return str(err.response.get("Error", {}).get("Code")) in THROTTLED or status >= 500
    if isinstance(err, ConnectionError | HTTPClientError | OSError | TimeoutError):
        return True
    # The warehouse drivers' connection errors (psycopg, redshift-connector), without importing either.
    return type(err).__name__ in ("OperationalError", "InterfaceError")


@contextmanager
def network_retries_only() -> Iterator[None]:
    """Let network errors through (Airflow retries the task, which resumes from the cursor); turn anything
    else into a failure without retries, keeping its message."""
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    try:
        yield
    except AirflowException:
        raise
    except Exception as err:
        if is_transient(err):
            raise
        raise AirflowFailException(f"{type(err).__name__}: {err}") from err


def parse_params(
    params: Mapping[str, Any] | None, run_id: str, settings: PipelineSettings | None = None
) -> dict[str, Any]:
    """The run's Params, checked (a user's mistake fails here, before anything is read or written)."""
    settings = settings or load_settings()
    p = SnapshotParams.parse(params, settings.identity_pool_ids)
    return {
        "snapshot_id": snapshot_id_for(run_id),
        "identity_pool_ids": list(p.identity_pool_ids),
        "selection": p.selection,
        "sample_size": p.sample_size,
        "identities": list(p.identities),
        "export": p.export,
    }


def max_map_length() -> int:
    """``[core] max_map_length`` (the walk is mapped over at most this many groups of chunks)."""
    from airflow.sdk.configuration import conf

    return conf.getint("core", "max_map_length", fallback=DEFAULT_MAX_MAP_LENGTH)


def unit_label(unit: Mapping[str, Any]) -> str:
    """A mapped task's name in the UI: its chunks, ``000-000004`` or ``000-000004..000-000009``."""
    chunks = list(unit.get("chunks") or [])
    if not chunks:
        return "-"
    return chunks[0] if len(chunks) == 1 else f"{chunks[0]}..{chunks[-1]}"


def page(run: Mapping[str, Any], run_id: str, settings: PipelineSettings | None = None) -> list[dict[str, Any]]:
    """First task: the warehouse schema (the walk reads it), then the identities paged into chunks; returns
    the walk's mapped work."""
    from cognito_streams.landing_zone.load import ensure_schema
    from cognito_streams.snapshot.walker import SnapshotContext, page_identities, plan_units

    settings = settings or load_settings()
    ensure_schema(settings)
    ctx = SnapshotContext.from_settings(settings)
    plan = page_identities(
        ctx,
        run["snapshot_id"],
        run_id,
        pool_ids=run["identity_pool_ids"],
        selection=run["selection"],
        sample_size=run.get("sample_size"),
        identities=run.get("identities") or (),
        export=bool(run.get("export")),
    )
    return plan_units(plan, max_map_length())


def walk(unit: Mapping[str, Any], settings: PipelineSettings | None = None) -> dict[str, Any]:
    """One mapped walk task: its chunks, each from its cursor, loading what it lands as it goes; returns the
    counts and (some of) its batches."""
    from cognito_streams.snapshot.walker import SnapshotContext, walk_chunks

    settings = settings or load_settings()
    ctx = SnapshotContext.from_settings(settings)
    outcome = walk_chunks(ctx, unit["snapshot_id"], unit["chunks"])
    descriptors: list[str] = []
    for name in unit["chunks"]:
        progress, _ = ctx.store.progress(unit["snapshot_id"], name)
        descriptors += progress.batches if progress is not None else []
    out = outcome.as_dict()
    out["descriptors"] = descriptors[:DESCRIPTORS_IN_EVENT]
    out["descriptors_omitted"] = max(0, len(descriptors) - DESCRIPTORS_IN_EVENT)
    out["batches_landed"] = len(descriptors)
    return out


def load(run: Mapping[str, Any], settings: PipelineSettings | None = None) -> dict[str, Any]:
    """Load every batch of the snapshot not loaded yet (the walk tasks load theirs as they go; a batch a
    killed try landed is loaded here), check the data quality, and give the export its watermark."""
    from cognito_streams.landing_zone.load import check_quality, load_descriptors, raise_for_failed
    from cognito_streams.landing_zone.snapshots import snapshot_status
    from cognito_streams.snapshot.export import loaded_through
    from cognito_streams.snapshot.walker import SnapshotContext

    settings = settings or load_settings()
    ctx = SnapshotContext.from_settings(settings)
    snapshot_id = run["snapshot_id"]
    status = snapshot_status(ctx.store, snapshot_id)
    if not status.get("finished") and status.get("identities"):
        raise RuntimeError(
            f"snapshot {snapshot_id} is not walked to its end ({status.get('identities_done')} of "
            f"{status.get('identities')} identities): a walk task did not finish; clear it to resume from its cursor"
        )
    started = datetime.now(UTC)
    urls = [url for p in ctx.store.all_progress(snapshot_id) for url in p.batches]
    report = load_descriptors(settings, urls)
    check_quality(settings, started)
    # A batch set aside (its COPY or checks failed) is recorded in failed_batches and named here; the others
    # were loaded. Retrying this task tries it again.
    raise_for_failed(report, settings.warehouse_schema)
    with ctx.warehouse() as wh:
        mark = loaded_through(wh)
    log.info(
        "snapshot %s: %d identities walked, %d batch(es) landed, %d loaded now; %d dataset delete(s) inferred",
        snapshot_id,
        status.get("identities_done", 0),
        len(urls),
        report.batches,
        status.get("dataset_deletes", 0),
    )
    return {
        "snapshot": status,
        "batches": len(urls),
        "load": report.as_dict(),
        "loaded_through": None if mark is None else mark.isoformat(),
    }


def export(unit: Mapping[str, Any], settings: PipelineSettings | None = None) -> dict[str, Any]:
    """One mapped export task: the export's parts of its chunks."""
    from cognito_streams.snapshot.export import export_chunks
    from cognito_streams.snapshot.walker import SnapshotContext

    settings = settings or load_settings()
    return export_chunks(SnapshotContext.from_settings(settings), unit["snapshot_id"], unit["chunks"])


def finish_export(
    run: Mapping[str, Any],
    parts: Sequence[Mapping[str, Any]],
    loaded: Mapping[str, Any],
    settings: PipelineSettings | None = None,
) -> dict[str, Any]:
    """Last task of an export: ``export.json`` with the counts, the files and the watermark."""
    from cognito_streams.snapshot.export import finish_export as finish
    from cognito_streams.snapshot.walker import SnapshotContext

    settings = settings or load_settings()
    mark = loaded.get("loaded_through")
    return finish(
        SnapshotContext.from_settings(settings),
        run["snapshot_id"],
        [dict(p) for p in parts],
        None if mark is None else datetime.fromisoformat(mark),
    )
