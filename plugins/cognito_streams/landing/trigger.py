"""The event mode's watcher: a trigger in Airflow's triggerer that fires when records wait in a
shard after its checkpoint (rules: :mod:`cognito_streams.core.landing.watch`).

It is an ``AssetWatcher``'s trigger (``cognito_streams.assets.RECORDS_WAITING``): each event it
yields becomes an asset event, which schedules ``cognito_stream_to_s3``. It never reads records for
the pipeline (``land_shard`` does, from the same checkpoints, with its leases): it only asks Kinesis
whether one record is there (``GetRecords`` with ``Limit`` 1), at most once per shard per second.

boto3 is synchronous; each round runs in a worker thread (``asyncio.to_thread``) so the triggerer's
event loop is never blocked. (The Amazon provider's async hooks need aiobotocore, which pins its own
botocore and is not in our pinned set.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from cognito_streams.core.landing import watch as rules
from cognito_streams.core.landing.checkpoints import Checkpoint, utcnow

if TYPE_CHECKING:
    # Imported where used: every task process parses the DAG file, which builds this trigger, and
    # pyarrow (landing_format) costs ~0.5 s of that on a busy machine.
    from cognito_streams.core.landing.shards import ShardInfo
    from cognito_streams.core.landing_format import LandingLayout

log = logging.getLogger(__name__)

#: Shards are listed again this often (a reshard adds shards; a closed parent's children follow).
LIST_SHARDS_SECONDS = 60.0
#: The settings (Variable) are read again this often, so that a change applies without a restart.
SETTINGS_SECONDS = 60.0
#: After an error (stream missing, S3 down, a bad Variable) the next round waits this long.
ERROR_PAUSE_SECONDS = 15.0
THROTTLED = frozenset({"ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException"})


@dataclass
class Clients:
    """The watcher's AWS side (boto3 clients) and what it was built from."""

    kinesis: Any
    s3: Any
    layout: LandingLayout
    stream_name: str


def clients_from_settings(variable: str) -> Clients:
    """Read the pipeline's settings and build the clients (blocking: runs in a worker thread)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from cognito_streams.core.landing_format import LandingLayout
    from cognito_streams.hooks.kinesis_reader import KinesisReaderHook
    from cognito_streams.settings import load_settings

    settings = load_settings(variable)
    s3 = S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()
    kinesis = KinesisReaderHook(aws_conn_id=settings.aws_conn_id).conn
    layout = LandingLayout(settings.landing_bucket, settings.landing_prefix, settings.stream_name)
    return Clients(kinesis, s3, layout, settings.stream_name)


class ShardProber:
    """One watcher's state and its blocking round (checkpoints from S3, probes to Kinesis)."""

    def __init__(
        self,
        clients: Clients,
        *,
        min_interval: float = rules.WATCHER_MIN_CALL_INTERVAL_SECONDS,
        refire_seconds: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.clients = clients
        self.budget = rules.CallBudget(min_interval)
        self.refire_seconds = refire_seconds
        self.clock = clock
        self.sleep = sleep
        self.shards: list[ShardInfo] = []
        self.listed_at: float | None = None
        self.watches: dict[str, rules.ShardWatch] = {}
        self.pending: rules.PendingRun | None = None
        #: Creation time of the stream the shards were listed from (tells a re-created stream's checkpoints).
        self.stream_created_at: datetime | None = None
        #: Kinesis calls made, by API (for the logs and the tests).
        self.calls: dict[str, int] = {"GetRecords": 0, "GetShardIterator": 0, "ListShards": 0}

    # -- S3: the checkpoints ----------------------------------------------------------------------------

    def _checkpoint_prefix(self) -> str:
        return self.clients.layout.checkpoint_key("x").rsplit("/", 1)[0] + "/"

    def _versions(self) -> dict[str, str]:
        """ETag of every shard's checkpoint object, from one listing (a GET only for those that changed)."""
        prefix = self._checkpoint_prefix()
        found: dict[str, str] = {}
        paginator = self.clients.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.clients.layout.bucket, Prefix=prefix):
            for item in page.get("Contents") or []:
                name = item["Key"][len(prefix) :]
                if name.endswith(".json") and "/" not in name:
                    found[name.removesuffix(".json")] = item["ETag"]
        return found

    def _read_checkpoint(self, shard_id: str) -> tuple[str | None, Checkpoint]:
        from cognito_streams.core.landing.checkpoints import from_other_stream
        from cognito_streams.landing_zone.checkpoints import CheckpointStore

        # The lease length does not matter for reading.
        versioned = CheckpointStore(self.clients.s3, self.clients.layout, 1.0).read(shard_id)
        checkpoint = versioned.checkpoint
        if self.stream_created_at is not None and from_other_stream(checkpoint, self.stream_created_at):
            # Written for a deleted stream of the same name: the landing run reads the new stream's shard
            # from its trim horizon (runner._same_stream), so the watcher probes from there too; its
            # finished flag and lease mean nothing for this stream.
            checkpoint = Checkpoint.new(self.clients.stream_name, shard_id, utcnow())
        return versioned.etag, checkpoint

    # -- Kinesis ------------------------------------------------------------------------------------------

    def _list_shards(self, now: float) -> None:
        from cognito_streams.core.landing.shards import ShardInfo

        shards: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamName": self.clients.stream_name}
        while True:
            self.calls["ListShards"] += 1
            page = self.clients.kinesis.list_shards(**kwargs)
            shards.extend(page.get("Shards") or [])
            if not page.get("NextToken"):
                break
            kwargs = {"NextToken": page["NextToken"]}
        self.shards = [ShardInfo.from_api(s) for s in shards]
        self.listed_at = now
        summary = self.clients.kinesis.describe_stream_summary(StreamName=self.clients.stream_name)
        created = summary["StreamDescriptionSummary"]["StreamCreationTimestamp"]
        if isinstance(created, datetime) and created != self.stream_created_at:
            if self.stream_created_at is not None:
                self.watches = {}  # the stream was deleted and created again: what we knew is void
            self.stream_created_at = created.astimezone(UTC)

    def _call(self, shard_id: str, api: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """One Kinesis call within the shard's budget; None when throttled (the next call waits longer)."""
        from botocore.exceptions import ClientError

        delay = self.budget.wait(shard_id, api, self.clock())
        if delay:
            self.sleep(delay)
        self.calls[api] += 1
        try:
            response = fn()
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in THROTTLED:
                self.budget.spend(shard_id, api, self.clock(), penalty=4 * self.budget.min_interval)
                log.warning("shard %s: %s throttled (%s); the watcher slows down on it", shard_id, api, code)
                return None
            self.budget.spend(shard_id, api, self.clock())
            raise
        self.budget.spend(shard_id, api, self.clock())
        return dict(response)

    def _iterator(self, w: rules.ShardWatch, ckpt: Checkpoint) -> None:
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {"StreamName": self.clients.stream_name, "ShardId": w.shard_id}
        if ckpt.sequence_number is not None:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=ckpt.sequence_number)
        elif ckpt.replay_from is not None:
            kwargs.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=ckpt.replay_from)
        else:
            kwargs.update(ShardIteratorType="TRIM_HORIZON")
        try:
            response = self._call(
                w.shard_id, "GetShardIterator", lambda: self.clients.kinesis.get_shard_iterator(**kwargs)
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "InvalidArgumentException":
                # A checkpoint of a deleted stream of the same name: the landing run starts the new
                # stream over (runner._same_stream), which is work to do.
                w.waiting = True
                return
            raise
        if response is not None:
            w.took_iterator(str(response["ShardIterator"]), self.clock())

    def _probe(self, w: rules.ShardWatch, shard: ShardInfo, ckpt: Checkpoint) -> None:
        from botocore.exceptions import ClientError

        if w.needs_iterator(self.clock()):
            self._iterator(w, ckpt)
            if w.iterator is None:
                return
        iterator = w.iterator
        try:
            response = self._call(
                w.shard_id, "GetRecords", lambda: self.clients.kinesis.get_records(ShardIterator=iterator, Limit=1)
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "ExpiredIteratorException":
                w.iterator = None
                return
            raise
        if response is None:
            return
        w.probed(
            records=len(response.get("Records") or []),
            next_iterator=response.get("NextShardIterator"),
            behind_ms=response.get("MillisBehindLatest"),
            closed=shard.is_closed,
        )

    # -- a round --------------------------------------------------------------------------------------------

    def round(self) -> list[str]:
        """Read the checkpoints, probe the readable shards that are neither leased nor known to wait, and
        return the shards to fire for (empty: nothing to do). Blocking."""
        from cognito_streams.core.landing.shards import plan_shards

        now = self.clock()
        if self.listed_at is None or now - self.listed_at >= LIST_SHARDS_SECONDS:
            self._list_shards(now)
        versions = self._versions()
        wall = utcnow()
        finished: list[str] = []
        leased: set[str] = set()
        checkpoints: dict[str, Checkpoint] = {}
        for shard in self.shards:
            w = self.watches.setdefault(shard.shard_id, rules.ShardWatch(shard.shard_id))
            version = versions.get(shard.shard_id)
            checkpoint = w.checkpoint
            if checkpoint is None or version != w.version:
                etag, checkpoint = self._read_checkpoint(shard.shard_id)
                w.saw_checkpoint(etag, checkpoint)
            checkpoints[shard.shard_id] = checkpoint
            if checkpoint.finished:
                finished.append(shard.shard_id)
            if rules.is_leased(checkpoint, wall):
                leased.add(shard.shard_id)
        plan = plan_shards(self.shards, finished)
        ended_one = False
        for shard in plan.readable:
            w = self.watches[shard.shard_id]
            if shard.shard_id in leased or w.waiting:
                continue
            self._probe(w, shard, checkpoints[shard.shard_id])
            ended_one = ended_one or (w.waiting and w.iterator is None)
        if ended_one:
            self.listed_at = None  # a closed shard's children: list again next round
        fire, self.pending = rules.to_fire(
            self.watches,
            [s.shard_id for s in plan.readable],
            leased,
            self.pending,
            self.clock(),
            self.refire_seconds,
        )
        return fire


class RecordsWaitingTrigger(BaseEventTrigger):
    """Fires (one event per burst) when records wait after a shard's checkpoint.

    ``variable``: the Airflow Variable holding the pipeline's settings (read at run time, in the
    triggerer, never at parse time). ``poll_seconds``: the time between probes of one shard (at least
    1 s: the budget). ``refire_seconds``: fire again for records still waiting that long after a fire
    that no landing run took up. The event's payload: ``{"shards": [...], "at": ISO time}``.
    """

    def __init__(self, variable: str = "cognito_pipeline", poll_seconds: float = 1.0, refire_seconds: float = 120.0):
        super().__init__()
        rules.CallBudget(poll_seconds)  # validates the budget at parse time too
        self.variable = variable
        self.poll_seconds = poll_seconds
        self.refire_seconds = refire_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "cognito_streams.landing.trigger.RecordsWaitingTrigger",
            {"variable": self.variable, "poll_seconds": self.poll_seconds, "refire_seconds": self.refire_seconds},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Probe in rounds, forever; yield an event when a round finds shards to fire for."""
        prober: ShardProber | None = None
        built_at = 0.0
        while True:
            started = time.monotonic()
            try:
                if prober is None or started - built_at >= SETTINGS_SECONDS:
                    clients = await asyncio.to_thread(clients_from_settings, self.variable)
                    if prober is None or prober.clients.stream_name != clients.stream_name:
                        prober = self._prober(clients)
                    else:
                        prober.clients = clients
                    built_at = started
                fire = await asyncio.to_thread(prober.round)
            except Exception as err:  # noqa: BLE001 - the watcher must outlive a bad round; it says why
                # A watcher that died would leave event mode silent: log loudly and try again. A lasting
                # cause (stream deleted, Variable broken) also shows as a stalled pipeline (no loads).
                self.log.error(
                    "records watcher: this round failed (%s: %s); trying again in %g s",
                    type(err).__name__,
                    err,
                    ERROR_PAUSE_SECONDS,
                )
                prober = None
                await asyncio.sleep(ERROR_PAUSE_SECONDS)
                continue
            if fire:
                self.log.info("records waiting in %s: starting a landing run", ", ".join(fire))
                yield TriggerEvent({"shards": fire, "at": datetime.now(UTC).isoformat(timespec="milliseconds")})
            await asyncio.sleep(max(0.0, self.poll_seconds - (time.monotonic() - started)))

    def _prober(self, clients: Clients) -> ShardProber:
        return ShardProber(clients, min_interval=self.poll_seconds, refire_seconds=self.refire_seconds)
