"""Gather the pipeline's health live: the checkpoints and a one-record peek at Kinesis per open shard,
the landed batches not yet loaded, and the warehouse's tables (last load, freshness per load,
throughput, rejects, bulk publishes, reconciliation, the ``health_samples`` history).

Used by the UI plugin (each page view, behind a short cache), by ``cognito_pipeline_health`` (the stall
check) and by ``cognito_reconcile`` (the watermark). Reads only: nothing here writes.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import orjson

from cognito_streams.core.checkpoints import Checkpoint
from cognito_streams.core.health import (
    Assessment,
    Backlog,
    HealthReport,
    Series,
    ShardState,
    assess,
)
from cognito_streams.core.landing_format import LandingLayout
from cognito_streams.core.report_html import BULK_PUBLISH_COLUMNS
from cognito_streams.core.shards import ShardInfo
from cognito_streams.core.sql_text import ReportingSql
from cognito_streams.landing.descriptors import list_batches
from cognito_streams.settings import PipelineSettings
from cognito_streams.warehouse.base import Warehouse

log = logging.getLogger(__name__)

#: Landing days (``dt=`` partitions, UTC) searched for batches not loaded yet: today and the two before.
BACKLOG_DAYS = 3
#: GetRecords calls a peek may make when the first answers are empty but behind the tip.
PEEK_MAX_CALLS = 5
PEEK_CONCURRENCY = 8
#: Points per chart line at most (longer histories are reduced to the maximum of each time bucket).
MAX_POINTS = 360
#: Metrics of ``health_samples`` (also the names of the charts' lines).
LAG_METRIC = "kinesis_lag_seconds"
BACKLOG_METRIC = "backlog_batches"
STALLED_METRIC = "stalled"
LOAD_SECONDS_METRIC = "load_seconds"

T = TypeVar("T")


def _utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _arrival(value: Any) -> datetime:
    """ApproximateArrivalTimestamp: a datetime, or the raw epoch seconds (the landing's fast parser)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromtimestamp(float(value), UTC)


@dataclass(frozen=True)
class LandedObject:
    """One batch descriptor in the landing zone."""

    key: str
    url: str
    shard_id: str
    landed_at: datetime  # the object's LastModified: the descriptor is written last


def _shard_of(key: str) -> str:
    # batches/stream=<s>/dt=<day>/<shard folder>/<first>-<last>.json; a re-created stream's folder has "@<time>",
    # a replay's "~<token>" (landing.runner).
    folder = key.rsplit("/", 2)[-2]
    return folder.split("@", 1)[0].split("~", 1)[0]


def list_recent_batches(s3: Any, layout: LandingLayout, today: date) -> tuple[list[LandedObject], tuple[str, ...]]:
    """The batch descriptors of the last ``BACKLOG_DAYS`` landing days, and those days. Those a replay
    superseded are left out, as the loader leaves them out: they will never be loaded, so they are no backlog."""
    days = tuple(f"{today - timedelta(days=n):%Y-%m-%d}" for n in reversed(range(BACKLOG_DAYS)))
    listing = list_batches(s3, layout, [layout.batches_prefix(day) for day in days])
    found = [
        LandedObject(o.key, layout.url(o.key), _shard_of(o.key), _utc(o.last_modified))
        for o in listing.live
        if o.key.endswith(".json")
    ]
    return found, days


def peek(kinesis: Any, stream: str, shard_id: str, checkpoint: Checkpoint | None) -> tuple[datetime | None, int | None]:
    """The arrival of the first record after the checkpoint (None: none waits) and MillisBehindLatest.

    Raises ``LookupError`` when Kinesis kept answering empty pages behind the tip (nothing can be said)."""
    if checkpoint is not None and checkpoint.sequence_number is not None:
        iterator = kinesis.shard_iterator(
            stream, shard_id, "AFTER_SEQUENCE_NUMBER", sequence_number=checkpoint.sequence_number
        )
    elif checkpoint is not None and checkpoint.replay_from is not None:
        iterator = kinesis.shard_iterator(stream, shard_id, "AT_TIMESTAMP", timestamp=checkpoint.replay_from)
    else:
        iterator = kinesis.shard_iterator(stream, shard_id, "TRIM_HORIZON")
    behind: int | None = None
    for _ in range(PEEK_MAX_CALLS):
        response = kinesis.get_records(iterator, 1)
        behind = response.get("MillisBehindLatest")
        records = response.get("Records") or []
        if records:
            return _arrival(records[0]["ApproximateArrivalTimestamp"]), behind
        iterator = response.get("NextShardIterator")
        if iterator is None or behind == 0:
            return None, behind
    raise LookupError(f"{PEEK_MAX_CALLS} empty GetRecords answers {behind} ms behind the tip")


def read_checkpoints(s3: Any, layout: LandingLayout) -> dict[str, Checkpoint]:
    """Every checkpoint of the stream (read-only; the landing's store, without a lease)."""
    from cognito_streams.landing.checkpoints import CheckpointStore

    return CheckpointStore(s3, layout, lease_seconds=1).read_all()


def _descriptor_times(s3: Any, layout: LandingLayout, key: str) -> datetime | None:
    body = orjson.loads(s3.get_object(Bucket=layout.bucket, Key=key)["Body"].read())
    value = body.get("first_arrived_at")
    return _utc(datetime.fromisoformat(str(value).replace("Z", "+00:00"))) if value else None


@dataclass
class PipelineState:
    """The live state the verdict is taken from."""

    now: datetime
    shards: list[ShardState]
    backlog: Backlog
    last_load: dict[str, Any]
    assessment: Assessment


def pipeline_state(
    settings: PipelineSettings,
    warehouse: Warehouse,
    s3: Any,
    kinesis: Any,
    *,
    now: datetime | None = None,
    stall_alert_seconds: float | None = None,
) -> PipelineState:
    """Checkpoints, Kinesis peeks, backlog and last load, and the verdict on them. Raises when a source
    cannot be read (the stall check must not call a pipeline healthy that it could not see)."""
    now = now or datetime.now(UTC)
    layout = LandingLayout(settings.landing_bucket, settings.landing_prefix, settings.stream_name)
    sql = ReportingSql(warehouse.schema, warehouse.engine)
    listed, days = list_recent_batches(s3, layout, now.date())
    with warehouse.transaction() as cur:
        cur.execute(sql.report("health_loaded_descriptors"), (date.fromisoformat(days[0]),))
        loaded = {str(row[0]) for row in cur.fetchall()}
        cur.execute(sql.report("health_last_load"))
        row = cur.fetchone()
    last_load: dict[str, Any] = {}
    if row:
        loaded_at, batches, read, rejected, first_arrived, last_arrived = row
        last_load = {
            "loaded_at": _utc(loaded_at),
            "batches": int(batches),
            "records_read": int(read),
            "records_rejected": int(rejected),
            "first_arrived_at": _utc(first_arrived),
            "last_arrived_at": _utc(last_arrived),
        }
    unloaded = [o for o in listed if o.url not in loaded]
    backlog = Backlog(
        batches=len(unloaded),
        oldest_landed_at=min((o.landed_at for o in unloaded), default=None),
        days=days,
    )
    last_landed: dict[str, datetime] = {}
    for obj in listed:
        last_landed[obj.shard_id] = max(obj.landed_at, last_landed.get(obj.shard_id, obj.landed_at))
    first_unloaded: dict[str, str] = {}
    for obj in unloaded:
        first_unloaded.setdefault(obj.shard_id, obj.key)

    checkpoints = read_checkpoints(s3, layout)
    shards = [ShardInfo.from_api(s) for s in kinesis.list_shards(settings.stream_name)]
    finished = {sid for sid, c in checkpoints.items() if c.finished}
    open_shards = [s for s in shards if s.shard_id not in finished]

    def one(shard: ShardInfo) -> ShardState:
        checkpoint = checkpoints.get(shard.shard_id)
        waiting: datetime | None = None
        behind: int | None = None
        peeked: datetime | None = None
        error = ""
        try:
            waiting, behind = peek(kinesis, settings.stream_name, shard.shard_id, checkpoint)
            peeked = now
        except Exception as err:  # noqa: BLE001 - shown per shard; the checkpoint's numbers are used instead
            error = f"{type(err).__name__}: {str(err)[:200]}"
        unloaded_since = None
        if shard.shard_id in first_unloaded:
            unloaded_since = _descriptor_times(s3, layout, first_unloaded[shard.shard_id]) or now
        return ShardState(
            shard_id=shard.shard_id,
            landed_through=_utc(checkpoint.verified_at) if checkpoint else None,
            oldest_waiting_at=waiting,
            peeked_at=peeked,
            behind_ms=behind,
            last_landed_at=last_landed.get(shard.shard_id),
            checkpoint_lag_ms=checkpoint.lag_ms if checkpoint else None,
            checkpoint_at=_utc(checkpoint.updated_at) if checkpoint else None,
            unloaded_since=unloaded_since,
            peek_error=error,
            waiting_for_parent=any(p not in finished for p in shard.parents),
        )

    with ThreadPoolExecutor(max_workers=max(1, min(PEEK_CONCURRENCY, len(open_shards)))) as pool:
        states = list(pool.map(one, open_shards))
    limit = settings.stall_alert_seconds if stall_alert_seconds is None else stall_alert_seconds
    assessment = assess(now, states, backlog, last_load.get("loaded_at"), limit)
    return PipelineState(now, states, backlog, last_load, assessment)


def _downsample(points: list[tuple[datetime, float]], limit: int = MAX_POINTS) -> list[tuple[datetime, float]]:
    """At most ``limit`` points: the maximum of each run of equal length (peaks stay visible)."""
    if len(points) <= limit:
        return points
    size = -(-len(points) // limit)
    return [max(points[i : i + size], key=lambda p: p[1]) for i in range(0, len(points), size)]


def _guard(errors: dict[str, str], source: str, fn: Callable[[], T], default: T) -> T:
    """Run one source's read; a failure is shown on the page (with its reason) instead of the whole page
    failing: the other numbers are still worth seeing."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - reported in the page and the JSON under errors.<source>
        log.warning("pipeline health: %s could not be read: %s", source, err)
        errors[source] = f"{type(err).__name__}: {str(err)[:300]}"
        return default


def gather(
    settings: PipelineSettings,
    warehouse: Warehouse,
    s3: Any,
    kinesis: Any,
    *,
    now: datetime | None = None,
    window_hours: float = 24.0,
) -> HealthReport:
    """The whole health report (page and JSON). A source that cannot be read is named in ``errors``."""
    now = now or datetime.now(UTC)
    since = now - timedelta(hours=window_hours)
    errors: dict[str, str] = {}
    state = _guard(errors, "pipeline", lambda: pipeline_state(settings, warehouse, s3, kinesis, now=now), None)
    if state is None:
        assessment = assess(now, [], Backlog(), None, settings.stall_alert_seconds)
        state = PipelineState(now, [], Backlog(), {}, assessment)
    report = HealthReport(
        generated_at=now,
        stall_alert_seconds=settings.stall_alert_seconds,
        assessment=state.assessment,
        shards=state.shards,
        backlog=state.backlog,
        last_load=state.last_load,
        window_hours=window_hours,
    )
    report.as_of["kinesis"] = now if "pipeline" not in errors else None
    sql = ReportingSql(warehouse.schema, warehouse.engine)

    def warehouse_numbers() -> None:
        with warehouse.transaction() as cur:
            cur.execute(sql.report("health_freshness_per_load"), (_naive(since),))
            per_load = [(_utc(at), int(n), float(p50), float(p95)) for at, n, p50, p95 in cur.fetchall()]
            cur.execute(sql.report("health_throughput_per_minute"), (_naive(since),))
            throughput = [(_utc(t), int(r), int(ld), int(rj), int(b)) for t, r, ld, rj, b in cur.fetchall()]
            cur.execute(sql.report("health_rejects_per_hour"), (_naive(since),))
            rejects_hourly = [(_utc(t), str(reason), int(n)) for t, reason, n in cur.fetchall()]
            cur.execute(sql.report("rejects_by_reason"))
            report.rejects_by_reason = {str(r): int(n) for r, n in cur.fetchall()}
            cur.execute(sql.report("bulk_publish_history"))
            report.bulk_publish = [
                {k: _utc(v) for k, v in zip(BULK_PUBLISH_COLUMNS, row, strict=True)} for row in cur.fetchall()[:20]
            ]
            cur.execute(sql.report("health_latest_reconciliation"))
            row = cur.fetchone()
            cur.execute(sql.report("health_samples_since"), (_naive(since),))
            samples = [(_utc(t), str(m), str(s), float(v)) for t, m, s, v in cur.fetchall()]
        report.as_of["warehouse"] = datetime.now(UTC)
        if per_load:
            at, changes, p50, p95 = per_load[-1]
            report.freshness = {"loaded_at": at, "changes": changes, "p50_seconds": p50, "p95_seconds": p95}
        report.charts["freshness"] = [
            Series("p50", "s", _downsample([(t, p50) for t, _, p50, _ in per_load])),
            Series("p95", "s", _downsample([(t, p95) for t, _, _, p95 in per_load])),
        ]
        report.charts["throughput"] = [
            Series("records read", "records/min", _downsample([(t, float(r)) for t, r, _, _, _ in throughput])),
            Series("rejected", "records/min", _downsample([(t, float(rj)) for t, _, _, rj, _ in throughput])),
        ]
        by_reason: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
        for t, reason, n in rejects_hourly:
            by_reason[reason].append((t, float(n)))
        report.charts["rejects"] = [Series(reason, "records/h", pts) for reason, pts in sorted(by_reason.items())]
        history: dict[tuple[str, str], list[tuple[datetime, float]]] = defaultdict(list)
        for t, metric, series, value in samples:
            history[(metric, series)].append((t, value))
        live_lag = {s.shard_id: s.lag_seconds(now) for s in state.shards}
        lag_series = sorted({s for m, s in history if m == LAG_METRIC} | set(live_lag))
        report.charts["lag"] = [
            Series(
                shard,
                "s",
                _downsample(
                    history.get((LAG_METRIC, shard), []) + ([(now, live_lag[shard])] if shard in live_lag else [])
                ),
            )
            for shard in lag_series
        ]
        backlog_points = history.get((BACKLOG_METRIC, ""), [])
        if "pipeline" not in errors:
            backlog_points = [*backlog_points, (now, float(state.backlog.batches))]
        report.charts["backlog"] = [Series("batches landed, not loaded", "batches", _downsample(backlog_points))]
        report.charts["load_duration"] = [Series("load", "s", _downsample(history.get((LOAD_SECONDS_METRIC, ""), [])))]
        if row:
            run_id, checked, identities, keys, in_flight, total, missing, extra, stale, wrong, passed, verdict, mark = (
                row
            )
            report.reconciliation = {
                "run_id": run_id,
                "checked_at": _utc(checked),
                "identities": int(identities),
                "keys_checked": int(keys),
                "in_flight": int(in_flight),
                "mismatches": int(total),
                "by_kind": {"missing": int(missing), "extra": int(extra), "stale_value": int(stale),
                            "wrong_delete_state": int(wrong)},
                "passed": bool(passed),
                "verdict": verdict or "judged",
                "watermark_at": _utc(mark),
            }  # fmt: skip

    _guard(errors, "warehouse", warehouse_numbers, None)

    def snapshot() -> dict[str, Any]:
        from cognito_streams.snapshot.store import SnapshotStore, snapshot_status

        layout = LandingLayout(settings.landing_bucket, settings.landing_prefix, settings.stream_name)
        return snapshot_status(SnapshotStore(s3, layout), now=now)

    report.snapshot = _guard(errors, "snapshot", snapshot, {})
    report.as_of["snapshot"] = now if "snapshot" not in errors else None
    report.errors = errors
    return report


def sample_rows(state: PipelineState) -> list[tuple[str, str, float]]:
    """The ``health_samples`` rows of one check: (metric, series, value)."""
    rows = [(LAG_METRIC, s.shard_id, s.lag_seconds(state.now)) for s in state.shards]
    rows.append((BACKLOG_METRIC, "", float(state.backlog.batches)))
    rows.append((STALLED_METRIC, "", 1.0 if state.assessment.stalled else 0.0))
    return rows


def by_shard(states: Iterable[ShardState]) -> Mapping[str, ShardState]:
    """The states by shard id."""
    return {s.shard_id: s for s in states}
