"""End to end on the local stack: UpdateRecords -> emulator -> moto Kinesis -> landing -> moto S3 ->
loading -> ``records`` in PostgreSQL.

What is measured (quick mode in brackets):

1. **Continuous mode**, sustained for 5 minutes [30 s]: an app-like producer (its own process, plain
   keep-alive HTTP ``UpdateRecords`` calls, 4 keys per call, so every Kinesis record carries 4
   ``kinesisSyncRecords``) writes as fast as the emulator takes it, while the pipeline lands and
   loads back to back: a loop calling the landing task functions (``plan_run`` and one
   ``land_shard`` per shard, in parallel threads, as the mapped tasks run) and then the loading task
   function (``load_landing_zone``), with no scheduler between them. Why a loop and not Airflow's
   ``schedule="@continuous"``: the loop measures the pipeline's own latency; ``@continuous`` adds
   Airflow's per-run overhead (a process per task, XCom, the asset hop to the loader), which the
   scheduled mode below measures with the real scheduler.
   Figures: changes/s from the first update to the last change queryable in ``records``, and
   freshness (time from an ``UpdateRecords`` call to its changes being queryable in ``records``),
   median and p95, for every change made. A watcher polls ``records`` every 0.2 s.
2. **Scheduled mode**, 5 minutes [one minute: every phase of the interval once]: ``airflow standalone``
   (scheduler, LocalExecutor, a process per task) with the landing DAG on a one-minute cron and the
   loader on its Asset, the producer at a steady 200 changes/s; the same freshness figures.
3. **Our part apart from the producer** (the emulator caps the input rate): landing throughput from
   a pre-filled stream, beside a bare ``GetRecords`` loop over the same shards (moto's read floor),
   for 1, 2, 4 and 8 shards, and loading throughput from the landed files (1 and 8 shards).
4. **Scaling**: the continuous run with 1, 2, 4 and 8 shards [shorter windows].
5. **Cost per change as the warehouse grows**: the same landed batches loaded into a warehouse that
   already holds N and 10 N rows of other identities; landing + loading wall time per change.

Everything runs on one machine, so the producer, the emulator, moto, PostgreSQL and the pipeline share
its cores; the figures' notes say which side was the bottleneck.
"""

# ruff: noqa: S608 - the SQL here names bench-only schemas built from constants and integers, no input
from __future__ import annotations

import http.client
import json
import logging
import multiprocessing
import os
import random
import statistics
import threading
import time
import uuid
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlparse

from bench.harness import BenchContext, Figure

#: Amazon Data Firehose buffers for IntervalInSeconds (0-900 s, default 300 s) before it delivers to S3 and
#: COPYs into Redshift (append-only, duplicates included). Its default is the baseline; zero buffering exists
#: and delivers in seconds, without merging (not measured here: no Firehose locally).
FIREHOSE_MIN_BUFFER_S = 300.0
FIREHOSE = "Firehose default buffering interval (documented: 0-900 s, default 300 s; not measured)"
SCHEDULE_INTERVAL_S = 60.0
SHARD_COUNTS = (1, 2, 4, 8)
POLL_SECONDS = 0.2
KEYS_PER_CALL = 4

log = logging.getLogger(__name__)


# -- the producer (an app's devices) --------------------------------------------------------------------


@dataclass(frozen=True)
class ProducerConfig:
    """What the producer process does: ``threads`` devices, each owning some identities' datasets."""

    endpoint: str
    pool: str
    identities: tuple[str, ...]
    seconds: float
    datasets: int = 3
    keys_per_dataset: int = 24
    keys_per_call: int = KEYS_PER_CALL
    threads: int = 6
    #: changes per second for all threads together; None: as fast as the emulator answers
    rate: float | None = None
    seed: int = 7


#: One UpdateRecords call: (identity, dataset, the dataset's sync count after it, sent at (monotonic), changes).
Update = tuple[str, str, int, float, int]


def produce(cfg: ProducerConfig) -> list[Update]:
    """Make updates for ``cfg.seconds``; returns every call made (runs in its own process)."""
    host = urlparse(cfg.endpoint)
    words = ["dark", "light", "en-US", "fr-FR", "level-7", "sword", "shield", "Zoë", "渡辺", "🚀"]
    out: list[list[Update]] = [[] for _ in range(cfg.threads)]
    errors: list[str] = []
    deadline = time.monotonic() + cfg.seconds
    interval = cfg.threads * cfg.keys_per_call / cfg.rate if cfg.rate else 0.0

    def device(worker: int) -> None:
        rnd = random.Random(cfg.seed * 1000 + worker)
        conn = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port, timeout=60)
        owned = cfg.identities[worker :: cfg.threads]
        mine = [(identity, f"bench_ds_{d}") for identity in owned for d in range(cfg.datasets)]
        tokens: dict[tuple[str, str], str] = {}
        counts: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        for identity, dataset in mine:
            path = _dataset_path(cfg.pool, identity, dataset)
            conn.request("GET", path + "/records")
            tokens[(identity, dataset)] = json.loads(conn.getresponse().read())["SyncSessionToken"]
        next_at = time.monotonic()
        i = 0
        while time.monotonic() < deadline:
            identity, dataset = mine[i % len(mine)]
            i += 1
            known = counts[(identity, dataset)]
            keys = rnd.sample(range(cfg.keys_per_dataset), cfg.keys_per_call)
            patches = []
            for k in keys:
                key = f"key_{k:02d}"
                value = " ".join(rnd.choice(words) for _ in range(rnd.randint(2, 12)))
                patches.append({"Op": "replace", "Key": key, "Value": value, "SyncCount": known.get(key, 0)})
            body = json.dumps({"SyncSessionToken": tokens[(identity, dataset)], "RecordPatches": patches})
            if interval:
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
            sent = time.monotonic()
            conn.request("POST", _dataset_path(cfg.pool, identity, dataset), body=body)
            response = conn.getresponse()
            answer = json.loads(response.read())
            if response.status != 200:
                errors.append(f"UpdateRecords answered {response.status}: {answer}")
                return
            sync = 0
            for record in answer["Records"]:
                known[record["Key"]] = record["SyncCount"]
                sync = max(sync, record["SyncCount"])
            out[worker].append((identity, dataset, sync, sent, len(patches)))
        conn.close()

    threads = [threading.Thread(target=device, args=(w,)) for w in range(cfg.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return [u for part in out for u in part]


def run_producer(cfg: ProducerConfig, failed: Callable[[], BaseException | None] = lambda: None) -> list[Update]:
    """``produce`` in its own process (apps are not in the pipeline's process); stops it at once and
    raises when ``failed()`` reports that the pipeline died meanwhile."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pending = pool.apply_async(produce, (cfg,))
        while not pending.ready():
            error = failed()
            if error is not None:
                pool.terminate()
                raise RuntimeError(f"the pipeline failed during the run: {error!r}") from error
            pending.wait(0.5)
        return list(pending.get())


def _dataset_path(pool: str, identity: str, dataset: str) -> str:
    return f"/identitypools/{quote(pool, safe='')}/identities/{quote(identity, safe='')}/datasets/{dataset}"


# -- the watcher (an analyst's query) ---------------------------------------------------------------------


class Watcher:
    """Polls ``records`` every ``POLL_SECONDS``: when did each dataset's sync count become queryable?"""

    def __init__(self, dsn: str, schema: str, pool: str) -> None:
        self.dsn, self.schema, self.pool = dsn, schema, pool
        #: (identity, dataset) -> [(seen at, sync count)], sync counts increasing
        self.seen: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)
        self.polls = 0

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psycopg

        sql = (
            f"select identity_id, dataset_name, max(sync_count) from {self.schema}.records "
            "where identity_pool_id = %s group by 1, 2"
        )
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                try:
                    rows = conn.execute(sql, (self.pool,)).fetchall()
                except psycopg.errors.UndefinedTable:
                    rows = []  # the loader has not created the schema yet
                now = time.monotonic()
                self.polls += 1
                for identity, dataset, sync in rows:
                    history = self.seen[(identity, dataset)]
                    if not history or history[-1][1] < sync:
                        history.append((now, int(sync)))
                self._stop.wait(POLL_SECONDS)

    def visible_at(self, identity: str, dataset: str, sync: int) -> float | None:
        """When a sync count >= ``sync`` was first seen for the dataset (None: never)."""
        history = self.seen.get((identity, dataset))
        if not history:
            return None
        i = bisect_left([s for _, s in history], sync)
        return history[i][0] if i < len(history) else None

    def caught_up(self, updates: list[Update]) -> bool:
        """Every update's changes are queryable."""
        last: dict[tuple[str, str], int] = {}
        for identity, dataset, sync, _, _ in updates:
            last[(identity, dataset)] = max(sync, last.get((identity, dataset), 0))
        return all((h := self.seen.get(k)) and h[-1][1] >= s for k, s in last.items())


@dataclass
class Freshness:
    """Freshness of every change of a run, and its throughput."""

    seconds: list[float]
    changes: int
    missing: int
    first_sent: float
    last_sent: float
    last_visible: float

    @classmethod
    def of(cls, updates: list[Update], watcher: Watcher) -> Freshness:
        values: list[float] = []
        missing = 0
        last_visible = 0.0
        for identity, dataset, sync, sent, n in updates:
            seen = watcher.visible_at(identity, dataset, sync)
            if seen is None:
                missing += n
                continue
            values.extend([seen - sent] * n)
            last_visible = max(last_visible, seen)
        return cls(
            sorted(values),
            sum(u[4] for u in updates),
            missing,
            min(u[3] for u in updates),
            max(u[3] for u in updates),
            last_visible,
        )

    def pct(self, q: float) -> float:
        """The q-th quantile (0-1) of freshness, in seconds."""
        if not self.seconds:
            return float("nan")
        return self.seconds[min(len(self.seconds) - 1, round(q * (len(self.seconds) - 1)))]

    @property
    def rate(self) -> float:
        """Changes per second from the first update to the last change queryable."""
        return self.changes / max(1e-9, self.last_visible - self.first_sent)

    @property
    def drain_seconds(self) -> float:
        """From the last update to the last change queryable."""
        return self.last_visible - self.last_sent


# -- the pipeline driven in this process -------------------------------------------------------------------


@dataclass
class Cycles:
    """What the continuous loop did."""

    landing_seconds: list[float] = field(default_factory=list)
    loading_seconds: list[float] = field(default_factory=list)
    records_landed: int = 0
    batches: int = 0
    #: what stopped the loop, if it failed
    error: BaseException | None = None

    def median(self, values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")


def land_all(ctx: Any, owner: str) -> tuple[int, int, int]:
    """One landing run: plan, then every readable shard in parallel (threads, as mapped tasks run in
    parallel); returns (records read, batches landed, change rows)."""
    from cognito_streams.landing.runner import land_shard, plan_run

    plan, _ = plan_run(ctx, owner)
    if not plan.readable:
        return 0, 0, 0
    with ThreadPoolExecutor(max_workers=len(plan.readable), thread_name_prefix="land") as pool:
        outcomes = list(pool.map(lambda shard: land_shard(ctx, shard, owner), plan.readable))
    return (
        sum(o.records_read for o in outcomes),
        sum(len(o.batches) for o in outcomes),
        0,
    )


def continuous(settings: Any, stop: threading.Event, cycles: Cycles) -> None:
    """Land and load back to back until ``stop`` (the continuous mode); a failure is kept in ``cycles.error``."""
    try:
        _continuous(settings, stop, cycles)
    except BaseException as err:  # noqa: BLE001 - handed to the main thread, which raises it
        cycles.error = err


def _continuous(settings: Any, stop: threading.Event, cycles: Cycles) -> None:
    from cognito_streams.landing.runner import LandingContext
    from cognito_streams.landing_zone.load import load_landing_zone

    ctx = LandingContext.from_settings(settings)
    owner = f"bench:{uuid.uuid4().hex[:8]}"
    while not stop.is_set():
        t0 = time.monotonic()
        read, batches, _ = land_all(ctx, owner)
        t1 = time.monotonic()
        cycles.landing_seconds.append(t1 - t0)
        cycles.records_landed += read
        cycles.batches += batches
        if batches:
            load_landing_zone(settings)
            cycles.loading_seconds.append(time.monotonic() - t1)
        else:
            stop.wait(0.1)


# -- setting a run up ------------------------------------------------------------------------------------------


@dataclass
class Lane:
    """One pool streaming to its own stream, landing under its own prefix, loading into its own schema."""

    pool: str
    stream: str
    schema: str
    shards: int
    identities: tuple[str, ...]
    settings: Any


def make_lane(stack: Any, shards: int, identities: int, tag: str) -> Lane:
    """A fresh identity pool streaming to a fresh ``shards``-shard stream, and the pipeline's settings for it."""
    import boto3

    from cognito_streams.settings import parse_settings
    from local.simulator import ensure_streaming

    cfg = stack.cfg
    suffix = uuid.uuid4().hex[:6]
    session = boto3.session.Session(region_name=cfg.region)
    identity = session.client("cognito-identity", endpoint_url=cfg.aws_endpoint)
    pool = identity.create_identity_pool(IdentityPoolName=f"bench_{tag}_{suffix}", AllowUnauthenticatedIdentities=True)[
        "IdentityPoolId"
    ]
    ids = tuple(identity.get_id(IdentityPoolId=pool)["IdentityId"] for _ in range(identities))
    stream = f"bench-{tag}-{suffix}"
    ensure_streaming(
        [pool],
        stream_name=stream,
        shards=shards,
        role_name=f"bench-{tag}-{suffix}",
        aws_endpoint=cfg.aws_endpoint,
        cognito_sync_endpoint=cfg.emulator_endpoint,
        region=cfg.region,
    )
    schema = f"bench_{tag}_{suffix}".replace("-", "_")
    variable = {
        **json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"]),
        "identity_pool_ids": [pool],
        "stream_name": stream,
        "stream_shards": shards,
        "landing_prefix": f"bench/{stream}",
        "warehouse_schema": schema,
    }
    return Lane(pool, stream, schema, shards, ids, parse_settings(variable))


def ensure_schema(settings: Any) -> None:
    from cognito_streams.landing_zone.load import ensure_schema as ensure

    ensure(settings)


def count_changes(dsn: str, schema: str, pool: str) -> int:
    """Rows of ``record_changes`` for the pool (each change made is one version)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        sql = f"select count(*) from {schema}.record_changes where identity_pool_id = %s"
        row = conn.execute(sql, (pool,)).fetchone()
    return int(row[0]) if row else 0


@dataclass
class E2EResult:
    """One end-to-end run."""

    mode: str
    shards: int
    freshness: Freshness
    cycles: Cycles | None
    seconds: float
    producer_rate: float


def run_continuous(stack: Any, shards: int, seconds: float, identities: int, tag: str) -> E2EResult:
    """Producer at full speed for ``seconds`` while the pipeline lands and loads back to back."""
    lane = make_lane(stack, shards, identities, tag)
    ensure_schema(lane.settings)
    dsn = os.environ["CS_WAREHOUSE_DSN"]
    cycles = Cycles()
    stop = threading.Event()
    pipeline = threading.Thread(target=continuous, args=(lane.settings, stop, cycles), name="pipeline", daemon=True)
    producer_cfg = ProducerConfig(stack.cfg.emulator_endpoint, lane.pool, lane.identities, seconds)
    with Watcher(dsn, lane.schema, lane.pool) as watcher:
        pipeline.start()
        try:
            updates = run_producer(producer_cfg, lambda: cycles.error)
            _wait_visible(watcher, updates, timeout=120, failed=lambda: cycles.error)
        finally:
            stop.set()
            pipeline.join(timeout=300)
    fresh = Freshness.of(updates, watcher)
    _check_complete(dsn, lane, fresh)
    return E2EResult("continuous", shards, fresh, cycles, seconds, fresh.changes / seconds)


def _wait_visible(
    watcher: Watcher,
    updates: list[Update],
    timeout: float,
    failed: Callable[[], BaseException | None] = lambda: None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not watcher.caught_up(updates):
        error = failed()
        if error is not None:
            raise RuntimeError(f"the pipeline failed during the run: {error!r}") from error
        time.sleep(POLL_SECONDS)
    time.sleep(2 * POLL_SECONDS)  # one more poll after the last load


def _check_complete(dsn: str, lane: Lane, fresh: Freshness, others: int = 0) -> None:
    """Every change made is in ``record_changes`` (``others``: changes made besides ``fresh``'s)."""
    loaded = count_changes(dsn, lane.schema, lane.pool) - others
    if fresh.missing or loaded != fresh.changes:
        raise RuntimeError(
            f"end-to-end run on {lane.stream}: {fresh.changes} changes made, {loaded} versions in "
            f"{lane.schema}.record_changes, {fresh.missing} never queryable in records"
        )


# -- through Airflow: the one-minute schedule and the event mode ----------------------------------------------

LANDING_DAGS = ("cognito_stream_to_s3", "cognito_s3_to_redshift")


@dataclass
class AirflowRun:
    """What a run through ``airflow standalone`` measured besides freshness."""

    mode: str
    landing_runs: int = 0
    loading_runs: int = 0
    #: event mode: task instances of the two DAGs that started in the idle window, and the window (s)
    idle_task_instances: int | None = None
    idle_seconds: float = 0.0
    idle_dag_runs: int = 0
    #: event mode: seconds from a lone change's UpdateRecords (its record's arrival) to its landing task's start
    arrival_to_landing_start: list[float] = field(default_factory=list)
    landing_runs_per_burst: list[int] = field(default_factory=list)
    paced_loads: int = 0
    load_average: list[float] = field(default_factory=list)
    #: where the time went (bench.airflow_timeline) over the landing runs of the measured window
    breakdown: dict[str, Any] = field(default_factory=dict)
    #: event mode: CPU seconds the Airflow processes (scheduler, triggerer, api-server, dag-processor,
    #: executor workers) used per minute of the idle window: the price of the scheduler's loop settings
    idle_cpu_per_minute: float | None = None


class AirflowApi:
    """The REST calls the benchmark makes on ``airflow standalone``."""

    def __init__(self, airflow: Any) -> None:
        self.airflow = airflow
        self.token = airflow._token()

    def _all(self, path: str, key: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            sep = "&" if "?" in path else "?"
            page = self.airflow._api("GET", f"{path}{sep}limit=100&offset={len(out)}", None, self.token)
            items = list(page.get(key) or [])
            out.extend(items)
            if not items or len(out) >= int(page.get("total_entries") or 0):
                return out

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self._all(f"/api/v2/dags/{dag_id}/dagRuns", "dag_runs")

    def task_instances(self, dag_id: str) -> list[dict[str, Any]]:
        return self._all(f"/api/v2/dags/{dag_id}/dagRuns/~/taskInstances", "task_instances")

    def busy(self) -> bool:
        """A run of the landing or loading DAG is queued or running."""
        return any(r.get("state") in ("queued", "running") for d in LANDING_DAGS for r in self.dag_runs(d))


def _when(value: str | None) -> float | None:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def _warm_parser() -> None:
    """The decoder's numba parser in its cache before Airflow's task processes need it (what make up does)."""
    import subprocess
    import sys

    from bench.harness import REPO

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")])}
    subprocess.run([sys.executable, "-m", "cognito_streams.core.warm"], env=env, check=True, timeout=900)


def run_through_airflow(
    stack: Any, mode: str, seconds: float, rate: float, identities: int, idle_seconds: float = 0.0, bursts: int = 0
) -> tuple[E2EResult, AirflowRun]:
    """``airflow standalone`` (scheduler, triggerer, LocalExecutor: a process per task) with the landing DAG
    in ``mode`` (``schedule``: every minute; ``event``: the records watcher) and the loader on its Asset, while
    the producer makes ``rate`` changes per second for ``seconds``. In event mode, then: an idle window of
    ``idle_seconds`` (task instances that start in it are counted) and ``bursts`` lone changes (the time from
    each one's arrival to its landing task's start, and the landing runs each one caused)."""
    from local.stack import AirflowService, migrate_airflow, stack_environment

    _warm_parser()
    lane = make_lane(stack, 2, identities, "evt" if mode == "event" else "sched")
    ensure_schema(lane.settings)
    variable = lane.settings.model_dump(mode="json")
    # Each mode gets its own Airflow home (metadata DB, logs): runs of one never mix with the other's.
    cfg = replace(stack.cfg, extra_variable=variable, state_dir=stack.cfg.state_dir / f"airflow-{mode}")
    for directory in (cfg.state_dir, cfg.log_dir, cfg.run_dir):
        directory.mkdir(parents=True, exist_ok=True)
    env = stack_environment(cfg, [lane.pool])
    migrate_airflow(cfg, env)
    airflow = AirflowService(cfg)
    dsn = os.environ["CS_WAREHOUSE_DSN"]
    settings = {
        "AIRFLOW__COGNITO_STREAMS__LANDING_MODE": mode,
        "AIRFLOW__COGNITO_STREAMS__LANDING_SCHEDULE": "* * * * *",
    }
    previous = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    extra = AirflowRun(mode)
    try:
        airflow.ensure_running()
        airflow.unpause(LANDING_DAGS)
        if mode == "event":
            airflow.wait_for_watcher()
            time.sleep(5)  # the triggerer picks the new trigger up within its next loops
        api = AirflowApi(airflow)
        with Watcher(dsn, lane.schema, lane.pool) as watcher:
            # Warm-up, not measured: one change through both DAGs, so that the measured window starts with
            # Airflow's workers and caches as they are in a deployment that has been running.
            warmup = ProducerConfig(stack.cfg.emulator_endpoint, lane.pool, lane.identities[-1:], 0.0, threads=1)
            _one_update(warmup, seed=0)
            _wait_until_loaded(dsn, lane, 1, timeout=3 * SCHEDULE_INTERVAL_S + 120)
            producer_cfg = ProducerConfig(
                stack.cfg.emulator_endpoint, lane.pool, lane.identities, seconds, threads=2, rate=rate
            )
            extra.load_average.append(round(os.getloadavg()[0], 2))
            window_start = time.time()
            updates = run_producer(producer_cfg)
            window_end = time.time()
            extra.load_average.append(round(os.getloadavg()[0], 2))
            _wait_visible(watcher, updates, timeout=3 * SCHEDULE_INTERVAL_S + 60)
            extra.breakdown = _breakdown(cfg.airflow_home, mode, window_start, window_end)
            if mode == "event":
                _idle_and_bursts(stack, lane, api, extra, idle_seconds, bursts, watcher, airflow.pid())
        extra.landing_runs = len(api.dag_runs(LANDING_DAGS[0]))
        extra.loading_runs = len(api.dag_runs(LANDING_DAGS[1]))
        extra.paced_loads = _paced_loads(cfg.airflow_home)
    finally:
        airflow.stop()
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    fresh = Freshness.of(updates, watcher)
    try:
        _check_complete(dsn, lane, fresh, others=1 + len(extra.arrival_to_landing_start))
    except RuntimeError as err:
        raise RuntimeError(f"{err}\nAirflow task errors:\n{_airflow_errors(cfg.airflow_home)}") from None
    return E2EResult(
        "event" if mode == "event" else "scheduled", 2, fresh, None, seconds, fresh.changes / seconds
    ), extra


def _breakdown(home: Any, mode: str, since: float, until: float) -> dict[str, Any]:
    """The critical path's stages over the landing runs triggered in the measured window, printed, and kept
    with the metadata DB and task logs under ``bench/profiles/`` (for a closer look after the run)."""
    import shutil

    from bench.airflow_timeline import breakdown, render
    from bench.harness import REPO

    found = breakdown(home / "airflow.db", since=since, until=until)
    print(f"   where the time went, {mode} mode (seconds):\n" + render(found), flush=True)
    keep = REPO / "bench" / "profiles" / f"airflow-{mode}-{time.strftime('%Y%m%dT%H%M%S')}"
    keep.mkdir(parents=True, exist_ok=True)
    (keep / "breakdown.json").write_text(json.dumps(found, indent=2) + "\n")
    shutil.copy2(home / "airflow.db", keep / "airflow.db")
    if (home / "logs").is_dir():
        shutil.copytree(home / "logs", keep / "logs", dirs_exist_ok=True)
    return found


def _settle(api: AirflowApi, timeout: float = 180.0) -> None:
    """Until no landing or loading run is queued or running (several checks in a row: a finished landing
    run may still queue a loading run)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:
        quiet = 0 if api.busy() else quiet + 1
        time.sleep(2)


def _tree_cpu_seconds(root: int | None) -> float | None:
    """User + system CPU seconds of ``root`` and its descendants (Linux ``/proc``; None elsewhere)."""
    if root is None or not os.path.isdir("/proc"):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = defaultdict(list)
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children[int(fields[1])].append(int(entry))
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


def _idle_and_bursts(
    stack: Any,
    lane: Lane,
    api: AirflowApi,
    extra: AirflowRun,
    idle_seconds: float,
    bursts: int,
    watcher: Watcher,
    airflow_pid: int | None = None,
) -> None:
    """The idle window (no record arriving), then lone changes a while apart."""
    _settle(api)
    window_start = time.time()
    cpu_before = _tree_cpu_seconds(airflow_pid)
    time.sleep(idle_seconds)
    cpu_after = _tree_cpu_seconds(airflow_pid)
    window_end = time.time()
    extra.idle_seconds = window_end - window_start
    if cpu_before is not None and cpu_after is not None and idle_seconds > 0:
        extra.idle_cpu_per_minute = round((cpu_after - cpu_before) * 60 / extra.idle_seconds, 2)
    started = [
        ti
        for dag_id in LANDING_DAGS
        for ti in api.task_instances(dag_id)
        if (t := _when(ti.get("start_date"))) is not None and window_start <= t <= window_end
    ]
    extra.idle_task_instances = len(started)
    extra.idle_dag_runs = sum(
        1
        for dag_id in LANDING_DAGS
        for r in api.dag_runs(dag_id)
        if (t := _when(r.get("run_after"))) is not None and window_start <= t <= window_end
    )
    producer = ProducerConfig(stack.cfg.emulator_endpoint, lane.pool, lane.identities[:1], 0.0, threads=1)
    for i in range(bursts):
        runs_before = {r["dag_run_id"] for r in api.dag_runs(LANDING_DAGS[0])}
        sent = time.time()
        _one_update(producer, seed=100 + i)
        deadline = time.monotonic() + 120
        start: float | None = None
        while time.monotonic() < deadline and start is None:
            time.sleep(0.5)
            for ti in api.task_instances(LANDING_DAGS[0]):
                if ti["dag_run_id"] not in runs_before and ti["task_id"] == "land_shard":
                    t = _when(ti.get("start_date"))
                    if t is not None:
                        start = t if start is None else min(start, t)
        if start is None:
            raise RuntimeError(f"event mode: no landing task started within 120 s of a change (burst {i + 1})")
        extra.arrival_to_landing_start.append(start - sent)
        _settle(api)
        extra.landing_runs_per_burst.append(len({r["dag_run_id"] for r in api.dag_runs(LANDING_DAGS[0])} - runs_before))


def _one_update(cfg: ProducerConfig, seed: int) -> None:
    """One UpdateRecords call (one Kinesis record), as an app makes it."""
    host = urlparse(cfg.endpoint)
    conn = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port, timeout=60)
    identity, dataset = cfg.identities[0], "bench_burst"
    path = _dataset_path(cfg.pool, identity, dataset)
    conn.request("GET", path + "/records")
    listing = json.loads(conn.getresponse().read())
    known = {r["Key"]: r["SyncCount"] for r in listing.get("Records") or []}
    patch = {"Op": "replace", "Key": "k", "Value": f"burst {seed}", "SyncCount": known.get("k", 0)}
    body = json.dumps({"SyncSessionToken": listing["SyncSessionToken"], "RecordPatches": [patch]})
    conn.request("POST", path, body=body)
    response = conn.getresponse()
    answer = response.read()
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"UpdateRecords answered {response.status}: {answer[:300]!r}")


def _wait_until_loaded(dsn: str, lane: Lane, changes: int, timeout: float) -> None:
    """Until ``changes`` versions of the lane's pool are in ``record_changes``."""
    import psycopg

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if count_changes(dsn, lane.schema, lane.pool) >= changes:
                return
        except psycopg.errors.UndefinedTable:
            pass
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"the warm-up change was not loaded into {lane.schema} within {timeout:.0f} s")


def _paced_loads(home: Any) -> int:
    """Load tasks that waited for min_load_interval_seconds (their log says so)."""
    return sum(
        1
        for path in home.glob("logs/dag_id=cognito_s3_to_redshift/**/task_id=load_batches/**/*.log")
        if "min_load_interval_seconds" in path.read_text(errors="replace")
    )


def _airflow_errors(home: Any, limit: int = 5) -> str:
    """The first error lines of the task logs under ``home`` (for a scheduled run that lost changes)."""
    found = []
    for path in sorted(home.glob("logs/dag_id=*/**/*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if '"level":"error"' in line:
                found.append(f"{path.relative_to(home)}: {line[:400]}")
                break
        if len(found) >= limit:
            break
    return "\n".join(found) or f"(no task log with an error under {home}/logs)"


# -- our part apart from the producer: landing from a pre-filled stream, loading from landed files -----------


def synthetic_records(n: int, identities: int, seed: int = 11) -> list[tuple[str, bytes]]:
    """``n`` Kinesis records as the emulator writes them (4 changes each), with their partition keys."""
    from local.emulator import stream_format

    rnd = random.Random(seed)
    pool = "us-east-1:00000000-0000-4000-8000-00000000beef"
    words = ["dark", "light", "en-US", "fr-FR", "level-7", "sword", "shield", "Zoë", "渡辺", "🚀"]
    syncs: dict[tuple[str, str], int] = defaultdict(int)
    out = []
    for i in range(n):
        identity = f"us-east-1:{rnd.randrange(identities):08d}-0000-4000-8000-000000000000"
        dataset = f"bench_ds_{rnd.randrange(3)}"
        syncs[(identity, dataset)] += 1
        sync = syncs[(identity, dataset)]
        at = 1_700_000_000_000 + i
        elements = []
        for k in rnd.sample(range(24), KEYS_PER_CALL):
            value = " ".join(rnd.choice(words) for _ in range(rnd.randint(2, 12)))
            elements.append(stream_format.element(f"key_{k:02d}", value, sync, at, at - 7, "replace"))
        data = stream_format.inline_record(
            identity_pool_id=pool,
            identity_id=identity,
            dataset_name=dataset,
            operation="replace",
            elements=elements,
            last_modified_ms=at,
            sync_count=sync,
        )
        out.append((stream_format.partition_key(identity, dataset), data))
    return out


def prefill(stack: Any, shards: int, records: list[tuple[str, bytes]], tag: str) -> Any:
    """A fresh stream of ``shards`` shards holding ``records``; returns the pipeline settings for it."""
    import boto3

    from cognito_streams.settings import parse_settings

    kinesis = boto3.client("kinesis", endpoint_url=stack.cfg.aws_endpoint, region_name=stack.cfg.region)
    stream = f"bench-{tag}-{uuid.uuid4().hex[:6]}"
    kinesis.create_stream(StreamName=stream, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 60})

    def put(part: list[tuple[str, bytes]]) -> None:
        for lo in range(0, len(part), 500):
            entries = [{"Data": d, "PartitionKey": k} for k, d in part[lo : lo + 500]]
            if kinesis.put_records(StreamName=stream, Records=entries).get("FailedRecordCount"):
                raise RuntimeError(f"put_records into {stream} failed")

    put(records)
    variable = {
        **json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"]),
        "stream_name": stream,
        "stream_shards": shards,
        "landing_prefix": f"bench/{stream}",
        "warehouse_schema": f"bench_{tag}_{uuid.uuid4().hex[:6]}".replace("-", "_"),
        "run_max_seconds": 600,
        "checkpoint_lease_seconds": 1200,
    }
    return parse_settings(variable)


def bare_read(settings: Any) -> int:
    """The floor: every shard read with GetRecords (threads, one per shard), nothing done with the data."""
    import boto3

    from cognito_streams.landing.runner import raw_timestamps

    kinesis = boto3.client("kinesis")
    raw_timestamps(kinesis)  # as the landing's own client: the floor must not be slower than ours for that
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=settings.stream_name)["Shards"]]

    def read(shard: str) -> int:
        iterator = kinesis.get_shard_iterator(
            StreamName=settings.stream_name, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        n = 0
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=settings.get_records_limit)
            n += len(page["Records"])
            if not page["Records"] and page.get("MillisBehindLatest") == 0:
                break
            iterator = page.get("NextShardIterator")
        return n

    with ThreadPoolExecutor(max_workers=len(shards)) as pool:
        return sum(pool.map(read, shards))


@dataclass
class Component:
    """Landing from a pre-filled stream and loading from the landed files."""

    shards: int
    records: int
    changes: int
    landing_s: float
    floor_s: float
    loading_s: float
    bytes: int
    parquet_bytes: int


def components(stack: Any, shards: int, records: list[tuple[str, bytes]], load: bool = True) -> Component:
    """Land a pre-filled stream (timed), beside the bare read floor; then load it (timed)."""
    from cognito_streams.landing.runner import LandingContext
    from cognito_streams.landing_zone.load import load_landing_zone

    settings = prefill(stack, shards, records, f"comp{shards}")
    t0 = time.perf_counter()
    floor_read = bare_read(settings)
    floor_s = time.perf_counter() - t0
    ctx = LandingContext.from_settings(settings)
    t0 = time.perf_counter()
    landed = 0
    while True:
        read, batches, _ = land_all(ctx, "bench:components")
        landed += read
        if not batches:
            break
    landing_s = time.perf_counter() - t0
    if landed != len(records) or floor_read != len(records):
        raise RuntimeError(f"{shards} shards: {len(records)} records put, {floor_read} read bare, {landed} landed")
    parquet_bytes = _landed_bytes(ctx.s3, settings)
    loading_s = float("nan")
    if load:
        ensure_schema(settings)
        t0 = time.perf_counter()
        report = load_landing_zone(settings)
        loading_s = time.perf_counter() - t0
        if report.rows_staged != len(records) * KEYS_PER_CALL:
            raise RuntimeError(f"loaded {report.rows_staged} change rows of {len(records) * KEYS_PER_CALL}")
    return Component(
        shards,
        len(records),
        len(records) * KEYS_PER_CALL,
        landing_s,
        floor_s,
        loading_s,
        sum(len(d) for _, d in records),
        parquet_bytes,
    )


def _landed_bytes(s3: Any, settings: Any) -> int:
    """Bytes of the changes Parquet files landed for the stream (for COPY sizing)."""
    total = 0
    prefix = f"{settings.landing_prefix}/data/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.landing_bucket, Prefix=prefix):
        total += sum(int(o["Size"]) for o in page.get("Contents", []) if o["Key"].endswith(".parquet"))
    return total


# -- cost per change as the warehouse grows -------------------------------------------------------------------------


def populate(dsn: str, schema: str, rows: int) -> None:
    """``rows`` keys of other identities in records and record_changes (and their datasets): a warehouse
    that already holds data, with its indexes."""
    import psycopg

    pool = "us-east-1:00000000-0000-4000-8000-0000000f111e"
    ident = "'us-east-1:' || lpad((i / 60)::text, 8, '0') || '-0000-4000-8000-000000000000'"
    dataset = "'ds' || ((i / 20) % 3)::text"
    key = "'k' || (i % 20)::text"
    at = "timestamp '2025-01-01' + (i % 100000) * interval '1 second'"
    with psycopg.connect(dsn) as conn:
        conn.execute(
            f"insert into {schema}.records (identity_pool_id, identity_id, dataset_name, record_key, op, record_value, "
            "value_bytes, is_value_cut, value_ref, sync_count, last_modified_at, device_last_modified_at, is_deleted, "
            f"updated_at) select '{pool}', {ident}, {dataset}, {key}, 'replace', 'value ' || i, 12, false, null, 3, "
            f"{at}, {at}, false, now() from generate_series(0, {rows - 1}) as i"
        )
        conn.execute(
            f"insert into {schema}.record_changes (identity_pool_id, identity_id, dataset_name, record_key, op, "
            "record_value, value_bytes, is_value_cut, value_ref, sync_count, last_modified_at, "
            "device_last_modified_at, event_sync_count, event_last_modified_at, payload_type, stream_name, "
            "shard_id, sequence_number, "
            "sub_sequence_number, record_index, arrived_at, landed_file, loaded_at) "
            f"select '{pool}', {ident}, {dataset}, {key}, 'replace', 'value ' || i, 12, false, null, 3, {at}, {at}, 3, "
            f"{at}, 'Inline', 'filler', 'shardId-000000000000', lpad(i::text, 56, '0'), 0, 0, {at}, "
            f"'s3://filler/x.parquet', now() from generate_series(0, {rows - 1}) as i"
        )
        conn.execute(
            f"insert into {schema}.datasets (identity_pool_id, identity_id, dataset_name, last_sync_count, "
            "last_modified_at, is_deleted, deleted_at, delete_sync_count, generation_sync_count, live_record_count, "
            f"updated_at) select '{pool}', {ident}, {dataset}, 3, {at}, false, null, null, 3, 20, now() "
            f"from generate_series(0, {rows - 1}, 20) as i"
        )
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("records", "record_changes", "datasets"):
            conn.execute(f"vacuum analyze {schema}.{table}")


def cost_per_change(stack: Any, records: list[tuple[str, bytes]], sizes: tuple[int, int]) -> list[tuple[int, float]]:
    """Land ``records`` once, then load them into warehouses already holding ``sizes`` rows: returns
    (rows, landing + loading seconds per change)."""
    from cognito_streams.landing.runner import LandingContext
    from cognito_streams.landing_zone.load import load_landing_zone

    settings = prefill(stack, 2, records, "cost")
    ctx = LandingContext.from_settings(settings)
    t0 = time.perf_counter()
    while land_all(ctx, "bench:cost")[1]:
        pass
    landing_s = time.perf_counter() - t0
    dsn = os.environ["CS_WAREHOUSE_DSN"]
    loading: dict[int, float] = {}
    # 0 first: a warm-up into an empty warehouse (the first load in a process pays one-time costs).
    for rows in (0, *sizes):
        target = settings.model_copy(update={"warehouse_schema": f"bench_cost_{rows}_{uuid.uuid4().hex[:4]}"})
        ensure_schema(target)
        if rows:
            populate(dsn, target.warehouse_schema, rows)
        t0 = time.perf_counter()
        load_landing_zone(target)
        loading[rows] = time.perf_counter() - t0
    return [(rows, (landing_s + loading[rows]) / (len(records) * KEYS_PER_CALL)) for rows in sizes]


# -- figures ----------------------------------------------------------------------------------------------------------


def _task_start_mode() -> str:
    """How the run's scheduler started its task processes (the stack's default, or what the caller's environment
    set instead): with the forkserver preload, or forked from the scheduler importing their modules themselves."""
    from local.stack import PRELOADED_LOCAL_WORKERS

    method = os.environ.get(
        "AIRFLOW__SCHEDULER__MP_START_METHOD", PRELOADED_LOCAL_WORKERS["AIRFLOW__SCHEDULER__MP_START_METHOD"]
    )
    preload = os.environ.get(
        "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD",
        PRELOADED_LOCAL_WORKERS["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"],
    )
    if method == "forkserver" and preload:
        return f"from the scheduler's forkserver, preloaded with {preload}"
    return f"from the scheduler's {method or 'default'} start method, no preload"


def _freshness_figures(result: E2EResult, goal_s: float, label: str, extra: AirflowRun | None = None) -> list[Figure]:
    f = result.freshness
    note = (
        f"{f.changes:,} changes in {result.seconds:.0f} s ({result.producer_rate:,.0f}/s made), "
        f"{result.shards} shards; "
        f"freshness max {f.seconds[-1] if f.seconds else float('nan'):.1f} s"
    )
    if extra is not None:
        note += (
            f"; {extra.landing_runs} landing and {extra.loading_runs} loading runs, {extra.paced_loads} load(s) paced "
            f"by min_load_interval_seconds (default 10 s); load average {extra.load_average}; "
            f"task processes {_task_start_mode()}"
        )
    return [
        Figure(
            f"freshness p50, {label}",
            round(f.pct(0.5), 2),
            "s",
            higher_is_better=False,
            baseline=FIREHOSE,
            baseline_value=FIREHOSE_MIN_BUFFER_S,
            note=note,
        ),
        Figure(
            f"freshness p95, {label}",
            round(f.pct(0.95), 2),
            "s",
            higher_is_better=False,
            baseline=FIREHOSE,
            baseline_value=FIREHOSE_MIN_BUFFER_S,
            goal=f"< {goal_s:.0f} s",
        ),
    ]


def quiet() -> None:
    """Task logs (one line per shard and batch) would drown the table: warnings only."""
    for name in ("", "cognito_streams", "botocore", "airflow"):
        logging.getLogger(name).setLevel(logging.WARNING)


#: The parts of this benchmark, in order; ``CS_BENCH_E2E_PARTS=event,schedule`` runs only those (e.g. the
#: freshness through Airflow, ``make bench BENCH_ARGS="--only e2e"`` with the variable set).
PARTS = ("continuous", "event", "schedule", "components", "scaling", "cost")


def _parts() -> set[str]:
    chosen = {p.strip() for p in os.environ.get("CS_BENCH_E2E_PARTS", "").split(",") if p.strip()}
    unknown = chosen - set(PARTS)
    if unknown:
        raise ValueError(f"CS_BENCH_E2E_PARTS: unknown part(s) {sorted(unknown)}; the parts are {', '.join(PARTS)}")
    return chosen or set(PARTS)


def run(ctx: BenchContext) -> list[Figure]:
    """``make bench`` entry point."""
    quiet()
    parts = _parts()
    stack = ctx.stack(emulator=True)
    figures: list[Figure] = []
    if "continuous" in parts:
        figures += _continuous_part(ctx, stack)
    if "event" in parts:
        figures += _event_part(ctx, stack)
    if "schedule" in parts:
        sched, sc = run_through_airflow(stack, "schedule", ctx.scale(60, 300), rate=200, identities=48)
        figures += _freshness_figures(sched, SCHEDULE_INTERVAL_S + 30, "one-minute schedule (Airflow)", extra=sc)
    if "components" in parts:
        figures += _components_part(ctx, stack)
    if "scaling" in parts:
        figures += _scaling_part(ctx, stack)
    if "cost" in parts:
        figures += _cost_part(ctx, stack)
    return figures


def _continuous_part(ctx: BenchContext, stack: Any) -> list[Figure]:
    figures: list[Figure] = []
    # 1. continuous, sustained
    seconds = ctx.scale(30, 300)
    main = run_continuous(stack, 2, seconds, identities=ctx.scale(48, 96), tag="cont")
    f, c = main.freshness, main.cycles
    assert c is not None
    figures.append(
        Figure(
            "e2e changes/s, continuous (UpdateRecords -> records)",
            round(f.rate),
            "changes/s",
            note=(
                f"sustained {seconds} s, 2 shards, {f.changes:,} changes ({KEYS_PER_CALL} per Kinesis record), all "
                f"queryable {f.drain_seconds:.1f} s after the last update; the producer (emulator + moto Kinesis) "
                f"is the bottleneck: landing cycle median {c.median(c.landing_seconds):.2f} s, loading "
                f"{c.median(c.loading_seconds):.2f} s, {c.batches} batches"
            ),
        )
    )
    figures += _freshness_figures(main, 30, "continuous")
    ctx.continuous_main = main  # type: ignore[attr-defined]  # quick mode's scaling row for 2 shards
    return figures


def _event_part(ctx: BenchContext, stack: Any) -> list[Figure]:
    figures: list[Figure] = []
    # 2. through Airflow (airflow standalone: scheduler, triggerer, a process per task) at a steady 200 changes/s:
    # the event mode (2 min quick, 5 min full; then the idle window and lone changes), beside the one-minute
    # schedule (quick: one interval, so every phase of the minute once)
    idle = ctx.scale(120, 600)
    event, ev = run_through_airflow(
        stack, "event", ctx.scale(120, 300), rate=200, identities=48, idle_seconds=idle, bursts=ctx.scale(3, 5)
    )
    figures += _freshness_figures(event, 30, "event mode (Airflow)", extra=ev)
    assert ev.idle_task_instances is not None
    figures.append(
        Figure(
            "idle task instances per 10 minutes, event mode",
            round(ev.idle_task_instances * 600 / max(1.0, ev.idle_seconds), 1),
            "task instances",
            higher_is_better=False,
            goal="< 1 (none)",
            note=(
                f"{ev.idle_task_instances} task instance(s) of cognito_stream_to_s3 / cognito_s3_to_redshift started "
                f"and {ev.idle_dag_runs} run(s) were created in a {ev.idle_seconds:.0f} s window with no record "
                "arriving (scaled to 10 minutes); only the watcher's trigger ran, in the triggerer; the Airflow "
                f"processes used {ev.idle_cpu_per_minute} CPU s per minute meanwhile"
            ),
        )
    )
    waits = sorted(ev.arrival_to_landing_start)
    figures.append(
        Figure(
            "event mode: change -> its landing task starts (Airflow)",
            round(statistics.median(waits), 2),
            "s",
            higher_is_better=False,
            note=(
                f"median of {len(waits)} lone changes after the idle window "
                f"(each: {', '.join(f'{w:.1f}' for w in waits)} s;"
                f" UpdateRecords -> the land_shard task's start: watcher probe <= 1 s, asset event, the scheduler "
                f"creating the run, plan_shards); landing runs per lone change: {ev.landing_runs_per_burst}"
            ),
        )
    )
    return figures


def _components_part(ctx: BenchContext, stack: Any) -> list[Figure]:
    figures: list[Figure] = []
    # 3. our part apart from the producer
    backlog = synthetic_records(ctx.scale(8_000, 100_000), identities=2_000)
    mb = sum(len(d) for _, d in backlog) / 1e6
    for shards in SHARD_COUNTS:
        comp = components(stack, shards, backlog, load=shards in (1, 8))
        figures.append(
            Figure(
                f"landing from a pre-filled stream, {shards} shard(s)",
                round(comp.records / comp.landing_s),
                "records/s",
                baseline="bare GetRecords loop over the same shards (moto's read floor)",
                baseline_value=round(comp.records / comp.floor_s),
                note=f"{comp.records:,} records ({mb:.0f} MB, {comp.changes:,} changes): "
                f"{comp.changes / comp.landing_s:,.0f} changes/s landed in moto S3; changes Parquet "
                f"{comp.parquet_bytes / comp.changes:.0f} B per change ({comp.parquet_bytes / comp.bytes:.0%} of the "
                "Kinesis bytes)",
            )
        )
        if shards in (1, 8):
            figures.append(
                Figure(
                    f"loading from landed files, {shards} shard(s)",
                    round(comp.changes / comp.loading_s),
                    "changes/s",
                    note="load_landing_zone into an empty warehouse (PostgreSQL stand-in): list, read manifests, "
                    "fetch Parquet from moto S3, stage, merge",
                )
            )
    return figures


def _scaling_part(ctx: BenchContext, stack: Any) -> list[Figure]:
    figures: list[Figure] = []
    # 4. scaling with shards
    scale_seconds = ctx.scale(8, 60)
    main = getattr(ctx, "continuous_main", None)
    for shards in SHARD_COUNTS:
        result = (
            main
            if shards == 2 and not ctx.full and main is not None
            else run_continuous(stack, shards, scale_seconds, identities=ctx.scale(48, 96), tag=f"s{shards}")
        )
        figures.append(
            Figure(
                f"e2e continuous with {shards} shard(s): changes/s",
                round(result.freshness.rate),
                "changes/s",
                note=f"{result.freshness.changes:,} changes over {result.seconds:.0f} s; freshness p50 "
                f"{result.freshness.pct(0.5):.1f} s",
            )
        )
        figures.append(
            Figure(
                f"e2e continuous with {shards} shard(s): freshness p95",
                round(result.freshness.pct(0.95), 2),
                "s",
                higher_is_better=False,
                baseline=FIREHOSE,
                baseline_value=FIREHOSE_MIN_BUFFER_S,
                goal="< 30 s",
            )
        )

    return figures


def _cost_part(ctx: BenchContext, stack: Any) -> list[Figure]:
    figures: list[Figure] = []
    # 5. cost per change at two warehouse sizes
    small, large = ctx.scale(50_000, 250_000), ctx.scale(500_000, 2_500_000)
    changes = synthetic_records(ctx.scale(3_000, 25_000), identities=1_000, seed=5)
    costs = cost_per_change(stack, changes, (small, large))
    (_, small_cost), (_, large_cost) = costs
    figures.append(
        Figure(
            f"cost per change, warehouse of {large:,} rows",
            round(large_cost * 1e6, 1),
            "µs/change",
            higher_is_better=False,
            baseline=f"the same changes into a warehouse of {small:,} rows",
            baseline_value=round(small_cost * 1e6, 1),
            goal="about 1x (flat as the warehouse grows)",
            note="landing + loading wall time per change (landing is the same for both)",
        )
    )
    return figures
