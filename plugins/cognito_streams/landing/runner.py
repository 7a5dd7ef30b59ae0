"""What the ``cognito_stream_to_s3`` tasks do: plan the shards, land one shard, sum up a run.

Landing one shard, in order:

1. take the shard's lease (compare-and-swap on its checkpoint); leave the shard alone if another
   run holds a live lease;
2. find where to start: after the checkpoint, at the replay timestamp, or at the trim horizon; if
   the checkpoint is older than the stream's retention, stop loudly (records may be lost);
3. read bounded batches; for each: decode, fetch the ``S3Url`` payloads, write the batch (descriptor
   last), then move the checkpoint (compare-and-swap, lease renewed);
4. give the lease back.

A crash anywhere leaves the checkpoint at the last complete batch: the rerun lands the rest (and
maybe a batch again: the loader absorbs duplicates). Nothing is ever skipped.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from cognito_streams.core.decode import (
    DecodeOptions,
    KinesisRecords,
    decode_records,
)
from cognito_streams.core.landing import s3url
from cognito_streams.core.landing.checkpoints import (
    Checkpoint,
    ExpiryGap,
    departed_message,
    expiry_gap,
    from_other_stream,
    may_have_expired,
    utcnow,
)
from cognito_streams.core.landing.shards import ShardInfo, ShardPlan, plan_shards, sequence_key
from cognito_streams.core.landing_format import LandingLayout
from cognito_streams.landing.payloads import PayloadStore, gather, resolve_payloads
from cognito_streams.landing.reader import ReadBatch, ReadLimits, ShardReader, StartPosition
from cognito_streams.landing.replay import check_replay_from, rewind, supersede_replayed
from cognito_streams.landing.s3url import PayloadFetcher
from cognito_streams.landing.summary import RunSummary, summarize  # noqa: F401 - the run's totals, re-exported
from cognito_streams.landing_zone.checkpoints import CheckpointConflictError, CheckpointStore, LeaseRefused, Versioned
from cognito_streams.landing_zone.writer import BatchRange, BatchWriter
from cognito_streams.settings import PipelineSettings

log = logging.getLogger(__name__)

#: How many GetRecords calls the oldest-record probe may make on a shard whose first responses are empty.
PROBE_MAX_CALLS = 20


class RecordsMayBeLostError(RuntimeError):
    """A checkpoint points before the stream's trim horizon: records may have expired unread."""


@dataclass
class ShardOutcome:
    """What one landing task did to one shard (its return value; JSON-friendly)."""

    shard_id: str
    status: str
    records_read: int = 0
    records_landed: int = 0
    records_rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    batches: list[str] = field(default_factory=list)
    lag_ms: int | None = None
    checkpoint_sequence: str | None = None
    stopped_because: str = ""
    note: str = ""
    get_records_calls: int = 0
    throttled: int = 0
    iterators_renewed: int = 0
    elapsed_seconds: float = 0.0
    #: Older batches whose records a replay landed again: their descriptors were moved aside (_superseded/).
    batches_superseded: int = 0

    def as_dict(self) -> dict[str, Any]:
        """For XCom."""
        return asdict(self)


@dataclass
class LandingContext:
    """Everything the landing steps use; built once per task from the settings."""

    settings: PipelineSettings
    s3: Any
    kinesis: Any  # KinesisReaderHook (or anything with its methods)
    layout: LandingLayout
    store: CheckpointStore
    writer: BatchWriter
    fetcher: PayloadFetcher
    payloads: PayloadStore

    @classmethod
    def from_settings(cls, settings: PipelineSettings) -> LandingContext:
        """Hooks on ``settings.aws_conn_id`` (run time only: this creates AWS clients)."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from cognito_streams.hooks.kinesis_reader import KinesisReaderHook

        s3 = S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()
        kinesis = KinesisReaderHook(aws_conn_id=settings.aws_conn_id)
        raw_timestamps(kinesis.conn)
        return cls.build(settings, s3, kinesis)

    @classmethod
    def build(cls, settings: PipelineSettings, s3: Any, kinesis: Any) -> LandingContext:
        """From ready clients (tests, benchmarks)."""
        layout = LandingLayout(settings.landing_bucket, settings.landing_prefix, settings.stream_name)
        allowed = set(settings.s3url_allowed_hosts)
        endpoint_host = s3url.host_of(getattr(getattr(s3, "meta", None), "endpoint_url", "") or "")
        if endpoint_host:
            # The S3 endpoint this deployment itself uses (a local or private S3) is trusted too.
            allowed.add(endpoint_host)
        fetcher = PayloadFetcher(
            concurrency=settings.s3url_fetch_concurrency,
            timeout_seconds=settings.s3url_fetch_timeout_seconds,
            retries=settings.s3url_fetch_retries,
            max_bytes=settings.s3url_max_bytes,
            allowed_hosts=frozenset(allowed),
            allowed_networks=settings.s3url_allowed_networks,
        )
        return cls(
            settings=settings,
            s3=s3,
            kinesis=kinesis,
            layout=layout,
            store=CheckpointStore(s3, layout, settings.checkpoint_lease_seconds),
            writer=BatchWriter(s3, layout, settings.landing_compression),
            fetcher=fetcher,
            payloads=PayloadStore(s3, layout),
        )


def raw_timestamps(client: Any) -> bool:
    """Make ``client`` return timestamps as the epoch seconds the service sent, not datetimes.

    botocore turns every ``ApproximateArrivalTimestamp`` of a GetRecords response into a tz-aware
    datetime through dateutil: about 15 µs per record, more than decoding the record itself (the
    profile of a landing task; docs/performance.md). The reader only needs epoch milliseconds. The
    parser's attribute is not public API: when a botocore version lacks it, nothing changes (the
    reader and :func:`oldest_kept` accept both forms). Returns whether the client was changed.
    """
    parser = getattr(client, "_response_parser", None)
    if parser is None or not hasattr(parser, "_timestamp_parser"):
        return False
    parser._timestamp_parser = _as_is
    return True


def _as_is(value: Any) -> Any:
    return value


def _arrival(value: datetime | float | int | str) -> datetime:
    """ApproximateArrivalTimestamp as a UTC datetime (boto3 gives a datetime, or epoch seconds raw)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromtimestamp(float(value), UTC)


# -- planning -------------------------------------------------------------------------------------


def plan_run(
    ctx: LandingContext,
    owner: str,
    only: Iterable[str] | None = None,
    replay_from: datetime | None = None,
    run_id: str = "",
) -> tuple[ShardPlan, list[str]]:
    """The shards to read this run. For a replay, first rewind every (selected) shard's checkpoint
    to ``replay_from`` (each under its lease; a retry of the same run does not rewind twice).

    Returns the plan and the shards rewound now.
    """
    stream = ctx.settings.stream_name
    shards = [ShardInfo.from_api(s) for s in ctx.kinesis.list_shards(stream)]
    selected = set(only) if only else None
    unknown = sorted(selected - {s.shard_id for s in shards}) if selected else []
    if unknown:
        raise ValueError(
            f"shards {unknown} are not shards of stream {stream} (it has: "
            f"{', '.join(s.shard_id for s in shards)}); fix the run's 'shards' param"
        )
    if selected:
        # Checked before a replay rewinds anything: a refused run must leave the checkpoints as they were.
        finished, unfinished = _shard_states(ctx, stream, warn=False)
        before = plan_shards(shards, finished, only=selected, unfinished=unfinished)
        refused = before.unreadable_selection(selected, replaying=replay_from is not None)
        if refused:
            raise ValueError(
                "the run's 'shards' param names shards this run cannot read, so nothing of them would be landed: "
                f"{'; '.join(refused)}"
            )
    rewound: list[str] = []
    if replay_from is not None:
        check_replay_from(replay_from, ctx.kinesis.retention_hours(stream), utcnow())
        for shard in shards:
            keep = selected is None or shard.shard_id in selected
            if keep and rewind(ctx.store, shard.shard_id, replay_from, owner, run_id):
                rewound.append(shard.shard_id)
    finished, unfinished = _shard_states(ctx, stream, warn=True)
    plan = plan_shards(shards, finished, only=selected, unfinished=unfinished)
    log.info("stream %s: %s", stream, plan.summary())
    if plan.departed:
        log.error(
            "stream %s: shard(s) %s left the stream before being read to their end: records MAY BE LOST; their "
            "landing tasks fail and say what to do",
            stream,
            ", ".join(plan.departed),
        )
    return plan, rewound


def _shard_states(ctx: LandingContext, stream: str, *, warn: bool) -> tuple[list[str], list[str]]:
    """The shards whose checkpoint says they were read to their end, and those with a checkpoint that was
    not (checkpoints of a deleted stream of the same name count as neither)."""
    checkpoints = ctx.store.read_all()
    created = stream_created_at(ctx)
    stale = sorted(shard_id for shard_id, ckpt in checkpoints.items() if from_other_stream(ckpt, created))
    if stale and warn:
        # Their shard ids exist again in the new stream; each landing task starts them over (loudly).
        log.warning(
            "stream %s was re-created at %s: the checkpoints of %s belong to the deleted stream and are not used",
            stream,
            created.isoformat(),
            ", ".join(stale),
        )
    current = {shard_id: ckpt for shard_id, ckpt in checkpoints.items() if shard_id not in stale}
    return (
        [shard_id for shard_id, ckpt in current.items() if ckpt.finished],
        [shard_id for shard_id, ckpt in current.items() if not ckpt.finished],
    )


# -- landing one shard ------------------------------------------------------------------------------


def _start(checkpoint: Checkpoint) -> StartPosition:
    if checkpoint.sequence_number is not None:
        return StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number=checkpoint.sequence_number)
    if checkpoint.replay_from is not None:
        return StartPosition("AT_TIMESTAMP", timestamp=checkpoint.replay_from)
    return StartPosition("TRIM_HORIZON")


def oldest_kept(kinesis: Any, stream_name: str, shard_id: str) -> tuple[str, datetime] | None:
    """The shard's oldest record still in the stream, as (sequence number, arrival), or None."""
    iterator = kinesis.shard_iterator(stream_name, shard_id, "TRIM_HORIZON")
    for _ in range(PROBE_MAX_CALLS):
        response = kinesis.get_records(iterator, 1)
        records = response.get("Records") or []
        if records:
            return records[0]["SequenceNumber"], _arrival(records[0]["ApproximateArrivalTimestamp"])
        iterator = response.get("NextShardIterator")
        if iterator is None or response.get("MillisBehindLatest") == 0:
            return None
    return None


def land_shard(ctx: LandingContext, shard: ShardInfo, owner: str) -> ShardOutcome:
    """Land one shard from its checkpoint, within the run limits. See the module docstring."""
    started = time.monotonic()
    shard_id = shard.shard_id
    if shard.departed:
        return _departed(ctx, shard_id)
    acquired = ctx.store.acquire(shard_id, owner)
    if isinstance(acquired, LeaseRefused):
        log.warning("%s: not read by this run (%s)", acquired.describe(), owner)
        return ShardOutcome(shard_id, "leased", note=acquired.describe())
    # The latest version of the checkpoint we wrote: releasing the lease (even after a failure)
    # must compare-and-swap against it, not against the version we started from.
    held = [acquired]
    outcome = ShardOutcome(shard_id, "running", checkpoint_sequence=acquired.checkpoint.sequence_number)
    try:
        _land(ctx, shard, owner, held, outcome)
    except CheckpointConflictError:
        # The shard is someone else's now: there is no lease of ours to give back.
        outcome.status = "conflict"
        outcome.elapsed_seconds = round(time.monotonic() - started, 3)
        raise
    except BaseException as err:
        outcome.elapsed_seconds = round(time.monotonic() - started, 3)
        _release_after_failure(ctx, held[0], owner, err)
        raise
    outcome.elapsed_seconds = round(time.monotonic() - started, 3)
    try:
        ctx.store.release(held[0], owner)
    except CheckpointConflictError as err:
        # Someone took the shard over meanwhile: what this task landed stays landed and checkpointed.
        log.error("shard %s: could not release the lease: %s", shard_id, err)
    log.info(
        "shard %s: %s; read %d = landed %d + rejected %d in %d batch(es); checkpoint at %s; lag %s ms; %.1f s",
        shard_id,
        outcome.stopped_because or outcome.status,
        outcome.records_read,
        outcome.records_landed,
        outcome.records_rejected,
        len(outcome.batches),
        outcome.checkpoint_sequence,
        outcome.lag_ms,
        outcome.elapsed_seconds,
    )
    return outcome


def _release_after_failure(ctx: LandingContext, held: Versioned, owner: str, error: BaseException) -> None:
    """Give the lease back after ``error`` stopped the task, without ever replacing ``error``.

    The task's message and the failure alert show the exception that leaves the task: that must stay the
    real cause (``MAY BE LOST``, a decode bug, S3 down), not the clean-up's own failure (S3 down too, a
    conflict). An error while releasing is logged and added to ``error`` as a note; the lease then
    expires after ``checkpoint_lease_seconds``, and a retry of the same run takes it back at once."""
    try:
        ctx.store.release(held, owner)
    except Exception as cleanup:  # noqa: BLE001 - logged and attached; the error in flight is what the task raises
        log.error(
            "shard %s: could not give the lease back after the task failed (%s: %s); it expires by itself. "
            "The task's own error follows.",
            held.checkpoint.shard_id,
            type(cleanup).__name__,
            cleanup,
        )
        error.add_note(
            f"(then could not give the lease back: {type(cleanup).__name__}: {cleanup}; it expires by itself)"
        )


def _departed(ctx: LandingContext, shard_id: str) -> ShardOutcome:
    """The task of a shard that left the stream before it was read to its end: it fails, saying what may be
    lost, until the loss is acknowledged by deleting the shard's checkpoint."""
    checkpoint = ctx.store.read(shard_id)
    if checkpoint.etag is None or checkpoint.checkpoint.finished:
        # Deleted (or finished) since the plan: acknowledged.
        note = f"shard {shard_id} left the stream; its checkpoint was deleted: the loss is acknowledged"
        log.info("%s", note)
        return ShardOutcome(shard_id, "acknowledged", note=note, stopped_because="acknowledged")
    raise RecordsMayBeLostError(departed_message(checkpoint.checkpoint, ctx.store.url(shard_id)))


def stream_created_at(ctx: LandingContext) -> datetime:
    """When the stream of this name was created (in UTC): tells a re-created stream from the one the
    checkpoints were written for."""
    return ctx.kinesis.stream_created_at(ctx.settings.stream_name).astimezone(UTC)  # type: ignore[no-any-return]


def _sequence_from_other_stream(ctx: LandingContext, shard_id: str, sequence_number: str) -> bool:
    """Kinesis' own verdict on a checkpoint of unknown origin (written before checkpoints kept the
    stream's creation time): AFTER_SEQUENCE_NUMBER with a number of another stream is refused."""
    try:
        ctx.kinesis.shard_iterator(
            ctx.settings.stream_name, shard_id, "AFTER_SEQUENCE_NUMBER", sequence_number=sequence_number
        )
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "InvalidArgumentException":
            return True
        raise
    return False


def _same_stream(ctx: LandingContext, shard_id: str, held: list[Versioned], outcome: ShardOutcome) -> Checkpoint:
    """The checkpoint, started over from the trim horizon if it belongs to a deleted stream of the
    same name (shard ids repeat; its sequence numbers, end marker and lease mean nothing here)."""
    checkpoint = held[0].checkpoint
    created = stream_created_at(ctx)
    if checkpoint.stream_created_at is None and checkpoint.sequence_number is not None:
        stale = _sequence_from_other_stream(ctx, shard_id, checkpoint.sequence_number)
    else:
        stale = from_other_stream(checkpoint, created)
    if stale:
        previous = checkpoint.stream_created_at.isoformat() if checkpoint.stream_created_at else "unknown"
        outcome.note = (
            f"stream {ctx.settings.stream_name} was re-created at {created.isoformat()} (the checkpoint was for the "
            f"stream created at {previous}, at sequence number {checkpoint.sequence_number}): reading the new "
            "stream from its trim horizon. Changes made while the stream was missing were not streamed by Cognito: "
            "cognito_streams_configure re-enables streaming and triggers cognito_bulk_publish, which republishes them"
        )
        log.error("shard %s: %s", shard_id, outcome.note)
        checkpoint = checkpoint.for_new_stream(created, utcnow())
    elif checkpoint.stream_created_at is None:
        checkpoint = checkpoint.model_copy(update={"stream_created_at": created})
    # Written with the next checkpoint move (or the lease's release), compare-and-swap on the same ETag.
    held[0] = Versioned(checkpoint, held[0].etag)
    return checkpoint


def _land(ctx: LandingContext, shard: ShardInfo, owner: str, held: list[Versioned], outcome: ShardOutcome) -> None:
    settings = ctx.settings
    stream = settings.stream_name
    checkpoint = _same_stream(ctx, shard.shard_id, held, outcome)
    if checkpoint.finished:
        outcome.status = "finished"
        outcome.stopped_because = "already read to its end"
        return
    # Whatever the checkpoint holds (a position, only a time, nothing but parents), records it has not
    # landed may have expired: checked before any read, never skipped.
    gap = _expiry_gap(ctx, shard.shard_id, checkpoint, _parent_checkpoints(ctx, shard, checkpoint))
    if gap is not None:
        outcome.status = "records_may_be_lost"
        raise RecordsMayBeLostError(gap.message(ctx.store.url(shard.shard_id)))
    start = _start(checkpoint)
    log.info("shard %s: reading %s", shard.shard_id, start.describe())
    limits = ReadLimits(
        batch_max_records=settings.batch_max_records,
        batch_max_bytes=settings.batch_max_bytes,
        run_max_records=settings.run_max_records,
        run_max_seconds=settings.run_max_seconds,
        get_records_limit=settings.get_records_limit,
    )
    reader = ShardReader(ctx.kinesis, stream, shard, start, limits)
    reasons: Counter[str] = Counter()
    for batch in reader.batches():
        if len(batch.records):
            descriptor_url, landed, rejected, batch_reasons, last, kept, superseded = _land_batch(
                ctx, shard.shard_id, batch, checkpoint
            )
            outcome.batches_superseded += superseded
            if kept < len(batch.records):
                # Cut short by its payloads' bytes: the rest is read again as the next batch.
                reader.give_back(len(batch.records) - kept)
                batch = replace(batch, records=batch.records.slice(0, kept), shard_ended=False, caught_up=False)
            outcome.batches.append(descriptor_url)
            outcome.records_read += landed + rejected
            outcome.records_landed += landed
            outcome.records_rejected += rejected
            reasons.update(batch_reasons)
            checkpoint = _advanced(checkpoint, batch, last, descriptor_url, landed, rejected, reader)
        else:
            checkpoint = _advanced(checkpoint, batch, None, None, 0, 0, reader)
        held[0] = ctx.store.update(held[0], checkpoint, owner)
        checkpoint = held[0].checkpoint
        outcome.checkpoint_sequence = checkpoint.sequence_number
    stats = reader.stats
    outcome.rejected_by_reason = dict(reasons)
    outcome.lag_ms = stats.lag_ms
    outcome.stopped_because = stats.stopped_because
    outcome.get_records_calls = stats.get_records_calls
    outcome.throttled = stats.throttled
    outcome.iterators_renewed = stats.iterators_renewed
    if checkpoint.finished:
        outcome.status = "shard_ended"
    elif stats.stopped_because.startswith("caught up"):
        outcome.status = "caught_up"
    else:
        outcome.status = "limit"


def _parent_checkpoints(ctx: LandingContext, shard: ShardInfo, checkpoint: Checkpoint) -> list[Checkpoint]:
    """The parents' checkpoints, for a shard never read (no position, no time of its own): a child's
    records began after its parents were last seen open (core.landing.checkpoints.unread_since)."""
    never_read = checkpoint.sequence_number is None and checkpoint.verified_at is None and not checkpoint.replay_from
    if not (never_read and shard.parents):
        return []
    created = stream_created_at(ctx)
    parents = []
    for parent_id in shard.parents:
        parent = ctx.store.read(parent_id)
        if parent.etag is not None and not from_other_stream(parent.checkpoint, created):
            parents.append(parent.checkpoint)
    return parents


def _expiry_gap(
    ctx: LandingContext, shard_id: str, checkpoint: Checkpoint, parents: list[Checkpoint]
) -> ExpiryGap | None:
    stream = ctx.settings.stream_name
    retention = ctx.kinesis.retention_hours(stream)
    now = utcnow()
    # Cheap first: only when the retention may have passed what was landed is the shard probed.
    if not may_have_expired(checkpoint, retention, now, parents):
        return None
    return expiry_gap(checkpoint, retention, now, oldest_kept(ctx.kinesis, stream, shard_id), parents)


def _advanced(
    checkpoint: Checkpoint,
    batch: ReadBatch,
    last_sequence: str | None,
    descriptor_url: str | None,
    landed: int,
    rejected: int,
    reader: ShardReader,
) -> Checkpoint:
    now = utcnow()
    update: dict[str, Any] = {
        "updated_at": now,
        "finished": checkpoint.finished or batch.shard_ended,
        "lag_ms": reader.stats.lag_ms,
    }
    if last_sequence is not None:
        last_arrived = datetime.fromtimestamp(max(batch.records.arrived_at_ms) / 1000, UTC)
        update.update(
            sequence_number=last_sequence,
            last_arrived_at=last_arrived,
            # Never back: a replay re-reads records that were landed before its rewind.
            verified_at=max(last_arrived, checkpoint.verified_at or last_arrived),
            replay_from=None,
            last_batch_id=descriptor_url,
            records_landed=checkpoint.records_landed + landed,
            records_rejected=checkpoint.records_rejected + rejected,
        )
        if checkpoint.replay_until is not None and checkpoint.replay_first_sequence is None:
            first = batch.records.sequence_numbers[0]
            first_arrived = datetime.fromtimestamp(batch.records.arrived_at_ms[0] / 1000, UTC)
            update.update(replay_first_sequence=first, replay_first_arrived_at=first_arrived)
        if checkpoint.replay_until is not None and sequence_key(last_sequence) >= sequence_key(checkpoint.replay_until):
            # The replay is past where the shard was: later batches are new data, named as usual.
            update.update(
                replay_until=None, replay_token=None, replay_first_sequence=None, replay_first_arrived_at=None
            )
    if batch.caught_up and not batch.shard_ended and reader.stats.caught_up_at is not None:
        # Seen at the tip while open. Not at the end of a closed shard: a finished shard's verified_at must stay
        # before it closed, since its children's records are unread from then on
        # (core.landing.checkpoints.unread_since).
        caught_up = datetime.fromtimestamp(reader.stats.caught_up_at, UTC)
        update["verified_at"] = max(caught_up, update.get("verified_at") or checkpoint.verified_at or caught_up)
    return checkpoint.model_copy(update=update)


def _span(shard_id: str, folder: str, records: KinesisRecords) -> BatchRange:
    return BatchRange(
        shard_id=shard_id,
        first_sequence_number=records.sequence_numbers[0],
        last_sequence_number=records.sequence_numbers[-1],
        first_arrived_at=datetime.fromtimestamp(records.arrived_at_ms[0] / 1000, UTC),
        last_arrived_at=datetime.fromtimestamp(max(records.arrived_at_ms) / 1000, UTC),
        key_shard=folder if folder != shard_id else None,
    )


def _land_batch(
    ctx: LandingContext, shard_id: str, batch: ReadBatch, checkpoint: Checkpoint
) -> tuple[str, int, int, Counter[str], str, int, int]:
    """Decode, gather the payloads, write the batch. Returns the descriptor's URI, the counts, the reasons,
    the last sequence number landed, how many of ``batch``'s records the batch kept (fewer when its
    ``S3Url`` payloads would pass ``batch_max_bytes``: the caller gives the rest back to the reader), and
    how many older batches a replay batch superseded."""
    records = batch.records
    # A re-created stream's objects go to their own folder: its sequence numbers may repeat the deleted one's.
    folder = shard_id + (checkpoint.key_suffix or "")
    replay = checkpoint.replay_until is not None and sequence_key(records.sequence_numbers[0]) <= sequence_key(
        checkpoint.replay_until
    )
    # A replay's batches get names of their own (the loader skips descriptors it has loaded, and a replay
    # cutting at the same records would write the same names); cut values and payloads keep the shard's.
    batch_folder = f"{folder}~{checkpoint.replay_token}" if replay and checkpoint.replay_token else folder
    span = _span(shard_id, batch_folder, records)
    options = DecodeOptions(
        stream_name=ctx.settings.stream_name,
        shard_id=shard_id,
        landed_file=ctx.writer.changes_url(span),
        value_ref=ctx.writer.value_url(folder),
        value_max_bytes=ctx.settings.value_max_bytes,
        identity_pool_ids=tuple(ctx.settings.identity_pool_ids),
    )
    # The changes file is encoded while the records are decoded (row groups in stream order; the
    # fetched S3Url payloads' rows come last, as in decoded.changes).
    changes_file = ctx.writer.changes_file()
    decoded = decode_records(records, options, sink=changes_file.write)
    if decoded.pending:
        gathering = gather(ctx.payloads, ctx.fetcher, folder, decoded.pending, records, ctx.settings.batch_max_bytes)
        try:
            if gathering.keep_records < len(records):
                log.info(
                    "shard %s: the batch's S3Url payloads would pass batch_max_bytes (%d): landing its first %d of "
                    "%d records now, the rest in the next batch",
                    shard_id,
                    ctx.settings.batch_max_bytes,
                    gathering.keep_records,
                    len(records),
                )
                # Decoded again without the records left out: the changes file must hold exactly the batch's rows.
                records = records.slice(0, gathering.keep_records)
                span = _span(shard_id, batch_folder, records)
                options = replace(options, landed_file=ctx.writer.changes_url(span))
                changes_file = ctx.writer.changes_file()
                decoded = decode_records(records, options, sink=changes_file.write)
            resolve_payloads(shard_id, decoded, options, gathering.items, sink=changes_file.write)
            log.info(
                "shard %s: %d S3Url payload(s): %d read back from the landing zone (kept by an earlier landing of "
                "this batch), %d fetched, %d failed; %.1f MiB",
                shard_id,
                len(gathering.items),
                gathering.reused,
                gathering.fetched,
                gathering.failed,
                gathering.body_bytes / 2**20,
            )
        finally:
            gathering.close()
    _, url = ctx.writer.write(
        span, decoded, decoded.records_read, decoded.records_landed, replay=replay, changes_file=changes_file
    )
    superseded = 0
    if replay and checkpoint.replay_token:
        superseded = supersede_replayed(
            ctx.s3,
            ctx.layout,
            folder,
            checkpoint.replay_token,
            checkpoint.replay_first_sequence or span.first_sequence_number,
            span.last_sequence_number,
            checkpoint.replay_first_arrived_at or span.first_arrived_at,
            span.last_arrived_at,
        )
    reasons = Counter(r.reason for r in decoded.rejects)
    log.info(
        "shard %s batch %s-%s: read %d = landed %d + rejected %d%s; %d change rows; %d cut value(s); "
        "%d record(s) checked one by one, %d parser restart(s); descriptor %s",
        shard_id,
        span.first_sequence_number,
        span.last_sequence_number,
        decoded.records_read,
        decoded.records_landed,
        decoded.records_rejected,
        f" ({dict(reasons)})" if reasons else "",
        decoded.changes.num_rows,
        len(decoded.cut_values),
        decoded.records_checked_slowly,
        decoded.parser_restarts,
        url,
    )
    return (
        url,
        decoded.records_landed,
        decoded.records_rejected,
        reasons,
        span.last_sequence_number,
        len(records),
        superseded,
    )
