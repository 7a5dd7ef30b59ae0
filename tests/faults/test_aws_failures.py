"""AWS failing for a while, between the pipeline and the local endpoints (``local.faultproxy`` in front
of moto): throttling, server errors and refused connections, during landing and during loading. Calls
that fail past botocore's retries fail the task; the rerun Airflow makes must end exact."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cognito_streams.landing_zone.writer import BatchWriter
from cognito_streams.warehouse.postgres import PostgresWarehouse
from local.stack import Stack
from tests.faults.conftest import Proxy
from tests.support.faults import Scenario, scenario

pytestmark = pytest.mark.integration


def through(proxy: Proxy, sc: Scenario) -> None:
    """The scenario's pipeline reaches S3 and Kinesis through the proxy; the S3Url payloads' presigned
    URLs still point at moto itself, which the fetcher must be allowed to read."""
    sc.override(s3url_allowed_hosts=[urlsplit(proxy.upstream).netloc])


def wait_listening(proxy: Proxy, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not proxy.control.health()["listening"]:
        assert time.monotonic() < deadline, "the fault proxy did not listen again"
        time.sleep(0.05)


def injected(proxy: Proxy) -> int:
    return int(proxy.control.stats()["injected_total"])


def test_throttling_while_landing_and_loading(
    stack: Stack, emulator: str, aws: Any, fault_tmp: Path, through_proxy: Proxy
) -> None:
    proxy = through_proxy
    with scenario("aws-throttling", "throttling (Kinesis, S3 SlowDown)", stack, aws, fault_tmp, shards=2,
                  batch_max_records=6, seed=8) as sc:  # fmt: skip
        through(proxy, sc)
        sc.activity.run(24, delete_share=0.1)
        sc.flush()
        # GIVEN Kinesis refusing half of the reads and S3 slowing down a third of the writes and reads, for a while
        proxy.control.set_rules(
            [
                {"fault": "throttle", "service": "kinesis", "operation": "GetRecords", "probability": 0.5, "count": 4},
                {"fault": "throttle", "service": "kinesis", "operation": "GetShardIterator", "count": 1},
                {"fault": "throttle", "service": "s3", "operation": "PutObject", "probability": 0.3, "count": 3},
                {"fault": "throttle", "service": "s3", "operation": "GetObject", "probability": 0.3, "count": 3},
            ],
            seed=8,
        )
        # WHEN the pipeline lands and loads, retrying what fails (as Airflow does)
        for _ in range(2):
            sc.land_run()
            sc.load_run()
        sc.figures.faults_injected = injected(proxy)
        proxy.control.set_rules([])
        sc.catch_up()
        # THEN the throttling was real, and nothing is lost or wrong
        assert sc.figures.faults_injected >= 6
        sc.verify()


def test_server_errors_while_landing_and_loading(
    stack: Stack, emulator: str, aws: Any, fault_tmp: Path, through_proxy: Proxy
) -> None:
    proxy = through_proxy
    with scenario("aws-5xx", "HTTP 500/503 from S3 (checkpoints, landed files)", stack, aws, fault_tmp,
                  batch_max_records=6, seed=9) as sc:  # fmt: skip
        through(proxy, sc)
        sc.activity.run(24, delete_share=0.1)
        sc.flush()
        # GIVEN S3 answering 500 to a checkpoint write as often as botocore tries it, once the shard's lease
        # is taken: the first batch is written, its checkpoint cannot move
        rule = {"fault": "error", "service": "s3", "operation": "PutObject", "path_contains": "/_checkpoints/"}
        proxy.control.set_rules([{**rule, "after": 1, "count": 3, "status": 500}])
        # WHEN the landing runs (and is retried)
        sc.land_run()
        faults = injected(proxy)
        # AND loading meets 503s on the batch descriptors it reads, as often as botocore tries each
        proxy.control.set_rules([{"fault": "error", "service": "s3", "operation": "GetObject",
                                  "path_contains": "/batches/", "count": 12, "status": 503}])  # fmt: skip
        sc.load_run()
        sc.figures.faults_injected = faults + injected(proxy)
        proxy.control.set_rules([])
        sc.catch_up()
        assert sc.figures.failed_task_runs >= 2 and faults > 0
        sc.verify()


def test_refused_connections_while_landing_and_loading(
    stack: Stack, emulator: str, aws: Any, fault_tmp: Path, through_proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = through_proxy
    with scenario("aws-refused", "connections refused (AWS endpoint down 4 s)", stack, aws, fault_tmp,
                  batch_max_records=6, seed=10) as sc:  # fmt: skip
        through(proxy, sc)
        sc.activity.run(24, delete_share=0.1)
        sc.flush()
        write, stage = BatchWriter.write, PostgresWarehouse._stage
        down = {"landing": False, "loading": False}

        def write_then_refuse(self: BatchWriter, *args: Any, **kwargs: Any) -> Any:
            result = write(self, *args, **kwargs)
            if not down["landing"]:
                down["landing"] = True
                proxy.control.refuse(4)  # the endpoint goes away after the first batch is written
            return result

        def refuse_then_stage(self: PostgresWarehouse, *args: Any, **kwargs: Any) -> Any:
            if not down["loading"]:
                down["loading"] = True
                proxy.control.refuse(4)  # ... and while the loader fetches the landed files
            return stage(self, *args, **kwargs)

        monkeypatch.setattr(BatchWriter, "write", write_then_refuse)
        monkeypatch.setattr(PostgresWarehouse, "_stage", refuse_then_stage)
        # WHEN the endpoint refuses connections for 4 s in the middle of a landing, then of a load
        landed = sc.land_run(retries=0)
        wait_listening(proxy)
        loaded = sc.load_run(retries=0)
        monkeypatch.setattr(BatchWriter, "write", write)
        monkeypatch.setattr(PostgresWarehouse, "_stage", stage)
        sc.figures.faults_injected = int(proxy.control.stats()["refusals"])
        # THEN (each failed, or rode it out on retries) the reruns catch up exactly
        assert down == {"landing": True, "loading": True}
        assert landed is None or loaded is None or sc.figures.failed_task_runs == 0
        wait_listening(proxy)
        sc.catch_up()
        sc.verify()


def test_the_readers_backoff_starts_over_after_a_successful_read() -> None:
    """Found by the throttling scenario: the backoff grew with every throttle of the run, so after a
    few of them each later throttle, however isolated, waited the 5 s maximum."""
    from cognito_streams.core.landing.shards import ShardInfo
    from cognito_streams.landing.reader import ReadLimits, ShardReader, StartPosition
    from tests.unit.test_land_reader import ScriptedKinesis

    # GIVEN a shard throttled at every other call
    throttled = "ProvisionedThroughputExceededException"
    kinesis = ScriptedKinesis(40, page=2, script={n: throttled for n in range(1, 40, 2)})
    naps: list[float] = []
    limits = ReadLimits(batch_max_records=100, batch_max_bytes=10**6, run_max_records=40, run_max_seconds=60,
                        get_records_limit=2)  # fmt: skip
    reader = ShardReader(kinesis, "s", ShardInfo("shardId-0"), StartPosition("TRIM_HORIZON"), limits, sleep=naps.append)
    # WHEN it is read
    records = [r for batch in reader.batches() for r in batch.records.sequence_numbers]
    # THEN everything is read, and each isolated throttle backs off as the first one did
    assert len(records) == 40 and reader.stats.throttled >= 10
    throttle_naps = naps[: reader.stats.throttled] if len(naps) >= reader.stats.throttled else naps
    assert max(throttle_naps) <= 0.4, naps
