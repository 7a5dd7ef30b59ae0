"""The pipeline's live state, shared by the features that judge it: the checkpoints and a one-record peek
at Kinesis per open shard, the landed batches not yet loaded and the last load, and the verdict on them
(``core.report.health.assess``: stalled or not, the watermark).

Read by the pipeline-health report (``report.gather``: the page, the JSON, the stall check) and by
``cognito_reconcile`` (the watermark it judges up to); its rows (``sample_rows``) are kept in
``health_samples`` by ``monitoring.samples``. Reads only: nothing here writes.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from cognito_streams.core.landing.checkpoints import Checkpoint
from cognito_streams.core.landing.shards import ShardInfo
from cognito_streams.core.landing_format import LandingLayout
from cognito_streams.core.report.health import Assessment, Backlog, ShardState, assess
from cognito_streams.core.sql_text import ReportingSql
from cognito_streams.landing_zone.descriptors import list_batches
from cognito_streams.settings import PipelineSettings
from cognito_streams.warehouse.base import Warehouse

log = logging.getLogger(__name__)

#: Landing days (``dt=`` partitions, UTC) searched for batches not loaded yet: today and the two before.
BACKLOG_DAYS = 3
#: GetRecords calls a peek may make when the first answers are empty but behind the tip.
PEEK_MAX_CALLS = 5
PEEK_CONCURRENCY = 8
#: Metrics of ``health_samples`` (also the names of the charts' lines).
LAG_METRIC = "kinesis_lag_seconds"
BACKLOG_METRIC = "backlog_batches"
STALLED_METRIC = "stalled"
LOAD_SECONDS_METRIC = "load_seconds"


def utc_aware(value: Any) -> Any:
    """A datetime as aware UTC (a naive one is taken as UTC); anything else as it is."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def utc_naive(value: datetime) -> datetime:
    """A datetime as naive UTC (the warehouse's timestamp columns)."""
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
        LandedObject(o.key, layout.url(o.key), _shard_of(o.key), utc_aware(o.last_modified))
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
    from cognito_streams.landing_zone.checkpoints import CheckpointStore

    return CheckpointStore(s3, layout, lease_seconds=1).read_all()


def _descriptor_times(s3: Any, layout: LandingLayout, key: str) -> datetime | None:
    body = orjson.loads(s3.get_object(Bucket=layout.bucket, Key=key)["Body"].read())
    value = body.get("first_arrived_at")
    return utc_aware(datetime.fromisoformat(str(value).replace("Z", "+00:00"))) if value else None


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
            "loaded_at": utc_aware(loaded_at),
            "batches": int(batches),
            "records_read": int(read),
            "records_rejected": int(rejected),
            "first_arrived_at": utc_aware(first_arrived),
            "last_arrived_at": utc_aware(last_arrived),
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
            landed_through=utc_aware(checkpoint.verified_at) if checkpoint else None,
            oldest_waiting_at=waiting,
            peeked_at=peeked,
            behind_ms=behind,
            last_landed_at=last_landed.get(shard.shard_id),
            checkpoint_lag_ms=checkpoint.lag_ms if checkpoint else None,
            checkpoint_at=utc_aware(checkpoint.updated_at) if checkpoint else None,
            unloaded_since=unloaded_since,
            peek_error=error,
            waiting_for_parent=any(p not in finished for p in shard.parents),
        )

    with ThreadPoolExecutor(max_workers=max(1, min(PEEK_CONCURRENCY, len(open_shards)))) as pool:
        states = list(pool.map(one, open_shards))
    limit = settings.stall_alert_seconds if stall_alert_seconds is None else stall_alert_seconds
    assessment = assess(now, states, backlog, last_load.get("loaded_at"), limit)
    return PipelineState(now, states, backlog, last_load, assessment)


def sample_rows(state: PipelineState) -> list[tuple[str, str, float]]:
    """The ``health_samples`` rows of one check: (metric, series, value)."""
    rows = [(LAG_METRIC, s.shard_id, s.lag_seconds(state.now)) for s in state.shards]
    rows.append((BACKLOG_METRIC, "", float(state.backlog.batches)))
    rows.append((STALLED_METRIC, "", 1.0 if state.assessment.stalled else 0.0))
    return rows
