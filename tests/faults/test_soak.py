"""The soak: the demo's flow (activity, a bulk publish, landing, loading, reconciliation) over many
cycles with a random fault in each, bounded in time, ending exact.

``make test`` runs a short one (3 cycles); ``make test-slow`` a long one (``CS_SOAK_SECONDS``, default
600 s, at least 20 cycles). ``CS_SOAK_SEED`` replays a run (the seed is in the figures' name).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cognito_streams.core.sql_text import WarehouseSql
from local.emulator.control import EmulatorControl
from local.stack import Stack
from tests.faults.conftest import Proxy
from tests.support.faults import Scenario, kill_emulator, restart_postgres, scenario, start_emulator

pytestmark = pytest.mark.integration

LAND_POINTS = ("after_batch_written", "before_descriptor", "after_checkpoint")
LOAD_POINTS = (
    "copy",
    "sql:merge_records",
    "sql:create_dataset_updates",
    "sql:insert_rejected_records",
    "sql:merge_loaded_batches",
    "sql:drop_work_tables",
)


class Soak:
    """Applies one random fault per cycle to a scenario whose pipeline goes through the fault proxy."""

    def __init__(self, sc: Scenario, stack: Stack, proxy: Proxy, rng: random.Random) -> None:
        self.sc, self.stack, self.proxy, self.rng = sc, stack, proxy, rng
        self.applied: Counter[str] = Counter()
        self.faults: dict[str, Callable[[], None]] = {
            "kill landing": self.kill_landing,
            "kill loader": self.kill_loader,
            "throttling": self.throttling,
            "server errors": self.server_errors,
            "refused connections": self.refused,
            "PostgreSQL restart mid-load": self.postgres_restart,
            "emulator SIGKILL with records queued": self.emulator_kill,
            "no fault": self.no_fault,
        }

    def cycle(self) -> None:
        """Activity, then one fault while the pipeline works."""
        self.sc.activity.run(self.rng.randint(6, 14), delete_share=0.05, large_share=0.1)
        name = self.rng.choice(sorted(self.faults))
        self.applied[name] += 1
        self.faults[name]()

    # -- the faults ------------------------------------------------------------------------------
    def _child(self, task: str, point: str) -> None:
        run_id = self.sc.run_id()
        killed = self.sc.kill_in_child(task, point, nth=self.rng.randint(1, 2), run_id=run_id, must_die=False)
        if task == "land" and killed:
            self.sc.land(run_id)  # Airflow's retry of the killed task: same run, same lease owner

    def kill_landing(self) -> None:
        self.sc.flush()
        self._child("land", self.rng.choice(LAND_POINTS))
        self.sc.load_run()

    def kill_loader(self) -> None:
        self.sc.flush()
        self.sc.land_run()
        self._child("load", self.rng.choice(LOAD_POINTS))
        self.sc.load_run()

    def _under_rules(self, rules: list[dict[str, Any]]) -> None:
        self.sc.flush()
        self.proxy.control.set_rules(rules, seed=self.rng.randint(0, 2**31))
        self.sc.land_run()
        self.sc.load_run()
        self.sc.figures.faults_injected += int(self.proxy.control.stats()["injected_total"])
        self.proxy.control.reset()

    def throttling(self) -> None:
        self._under_rules(
            [
                {"fault": "throttle", "service": "kinesis", "operation": "GetRecords", "probability": 0.5, "count": 3},
                {"fault": "throttle", "service": "s3", "probability": 0.2, "count": 4},
            ]
        )

    def server_errors(self) -> None:
        self._under_rules([{"fault": "error", "service": "s3", "status": 500, "probability": 0.3, "count": 6}])

    def refused(self) -> None:
        self.sc.flush()
        self.proxy.control.refuse(self.rng.uniform(1.0, 3.0))
        self.sc.land_run(retries=0)
        self.sc.figures.faults_injected += 1
        while not self.proxy.control.health()["listening"]:
            time.sleep(0.05)
        self.sc.load_run()

    def postgres_restart(self) -> None:
        self.sc.flush()
        self.sc.land_run()
        with restarting_postgres_at_merge(self.stack, self.sc):
            self.sc.load_run(retries=0)
        self.sc.load_run()

    def emulator_kill(self) -> None:
        # Answered changes may still be in the outbox: they must reach the stream after the restart.
        kill_emulator(self.stack)
        start_emulator(self.stack)
        self.sc.figures.service_restarts += 1
        self.sc.flush()
        self.sc.land_run()
        self.sc.load_run()

    def no_fault(self) -> None:
        self.sc.flush()
        self.sc.land_run()
        self.sc.load_run()


@contextmanager
def restarting_postgres_at_merge(stack: Stack, sc: Scenario) -> Iterator[None]:
    """PostgreSQL restarts (crash-style) when the next load reaches its MERGE."""
    original = WarehouseSql.merge_records
    done = [False]

    def restart_then_merge(self: WarehouseSql) -> str:
        if not done[0]:
            done[0] = True
            restart_postgres(stack)
            sc.figures.service_restarts += 1
        return original(self)

    WarehouseSql.merge_records = restart_then_merge  # type: ignore[method-assign]
    try:
        yield
    finally:
        WarehouseSql.merge_records = original  # type: ignore[method-assign]


def run_soak(stack: Stack, aws: Any, tmp: Path, proxy: Proxy, *, seconds: float, min_cycles: int, name: str) -> None:
    seed = int(os.environ.get("CS_SOAK_SEED") or random.SystemRandom().randint(1, 10**6))
    rng = random.Random(seed)
    with scenario(f"{name}-seed{seed}", "random faults, demo flow", stack, aws, tmp, shards=2, identities=6,
                  seed=seed, batch_max_records=8, load_max_files_per_batch=3) as sc:  # fmt: skip
        sc.override(s3url_allowed_hosts=[urlsplit(proxy.upstream).netloc])
        soak = Soak(sc, stack, proxy, rng)
        deadline = time.monotonic() + seconds
        cycles = 0
        while cycles < min_cycles or time.monotonic() < deadline:
            soak.cycle()
            cycles += 1
            if cycles == max(2, min_cycles // 2):
                # Cognito resends every dataset (as the daily bulk publish does): duplicates, absorbed.
                bulk_publish(aws, sc)
        sc.figures.notes.append(f"{cycles} cycles: {dict(soak.applied)}")
        sc.catch_up()
        sc.verify()


def bulk_publish(aws: Any, sc: Scenario, timeout: float = 60) -> None:
    client = aws("cognito-sync")
    client.bulk_publish(IdentityPoolId=sc.pool_id)
    deadline = time.monotonic() + timeout
    while client.get_bulk_publish_details(IdentityPoolId=sc.pool_id)["BulkPublishStatus"] != "SUCCEEDED":
        assert time.monotonic() < deadline, "the bulk publish did not finish"
        time.sleep(0.2)


@pytest.fixture
def large_records_as_s3url(emulator: str) -> Iterator[None]:
    """Records above 1 KB go as S3Url payloads (so the soak fetches some)."""
    ctl = EmulatorControl(emulator)
    before = ctl.settings()["s3url_threshold_bytes"]
    ctl.update_settings(s3url_threshold_bytes=1024)
    try:
        yield
    finally:
        ctl.update_settings(s3url_threshold_bytes=before)


def test_short_soak(
    stack: Stack, emulator: str, aws: Any, fault_tmp: Path, through_proxy: Proxy, large_records_as_s3url: None
) -> None:
    run_soak(stack, aws, fault_tmp, through_proxy, seconds=0, min_cycles=3, name="soak-short")


@pytest.mark.slow
def test_long_soak(
    stack: Stack, emulator: str, aws: Any, fault_tmp: Path, through_proxy: Proxy, large_records_as_s3url: None
) -> None:
    seconds = float(os.environ.get("CS_SOAK_SECONDS", "600"))
    run_soak(stack, aws, fault_tmp, through_proxy, seconds=seconds, min_cycles=20, name="soak")
