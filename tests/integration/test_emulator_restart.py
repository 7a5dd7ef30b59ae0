"""The emulator's state survives a restart, and a SIGKILL at any moment neither corrupts it nor loses
an answered change or its stream record; an interrupted bulk publish resumes.

Each test runs its own emulator process (on a free port, with a temporary state folder) against
the session's moto, so it can stop and kill it freely.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local.emulator.control import EmulatorControl
from local.procs import free_port, http_ok
from local.stack import REPO, Stack

pytestmark = pytest.mark.integration

TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "cognito-sync.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


class EmulatorProcess:
    """``python -m local.emulator`` in a child process, restartable on the same state folder."""

    def __init__(self, stack: Stack, state_dir: Path) -> None:
        self.stack = stack
        self.state_dir = state_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = state_dir / "emulator.log"

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "local.emulator", "--port", str(self.port), "--state-dir", str(self.state_dir)]
        argv += ["--aws-endpoint", self.stack.cfg.aws_endpoint, "--region", self.stack.cfg.region]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not http_ok(f"{self.url}/_emulator/health"):
            assert self.proc.poll() is None, f"the emulator exited: {self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the emulator did not answer within 30 s"
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def client(self) -> Any:
        return boto3.client(
            "cognito-sync",
            endpoint_url=self.url,
            region_name=self.stack.cfg.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=2, read_timeout=10),
        )


@pytest.fixture
def own_emulator(stack: Stack, tmp_path: Path) -> Iterator[EmulatorProcess]:
    emulator = EmulatorProcess(stack, tmp_path / "emulator-state")
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop(signal.SIGKILL)


@pytest.fixture
def streaming_pool(aws: Callable[[str], Any]) -> dict[str, str]:
    """A pool with an identity, a stream and a publish role (not yet enabled on any emulator)."""
    suffix = uuid.uuid4().hex[:10]
    identity = aws("cognito-identity")
    pool = identity.create_identity_pool(IdentityPoolName=f"r_{suffix}", AllowUnauthenticatedIdentities=True)[
        "IdentityPoolId"
    ]
    aws("kinesis").create_stream(StreamName=f"restart-{suffix}", ShardCount=1)
    role = aws("iam").create_role(RoleName=f"restart-{suffix}", AssumeRolePolicyDocument=json.dumps(TRUST))
    return {
        "pool": pool,
        "identity": identity.get_id(IdentityPoolId=pool)["IdentityId"],
        "stream": f"restart-{suffix}",
        "role": role["Role"]["Arn"],
    }


def _enable(cs: Any, p: dict[str, str]) -> None:
    cs.set_identity_pool_configuration(
        IdentityPoolId=p["pool"],
        PushSync={"ApplicationArns": ["arn:aws:sns:us-east-1:123456789012:app/GCM/demo"]},
        CognitoStreams={"StreamName": p["stream"], "RoleArn": p["role"], "StreamingStatus": "ENABLED"},
    )


def _put(cs: Any, pool: str, identity: str, dataset: str, patches: list[dict[str, Any]]) -> dict[str, Any]:
    token = cs.list_records(IdentityPoolId=pool, IdentityId=identity, DatasetName=dataset)["SyncSessionToken"]
    return dict(
        cs.update_records(
            IdentityPoolId=pool, IdentityId=identity, DatasetName=dataset, SyncSessionToken=token, RecordPatches=patches
        )
    )


def _stream_records(aws: Callable[[str], Any], stream: str) -> list[dict[str, Any]]:
    kinesis = aws("kinesis")
    out: list[dict[str, Any]] = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            out += [json.loads(r["Data"]) for r in page["Records"]]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return out


def test_state_survives_a_restart(
    own_emulator: EmulatorProcess, streaming_pool: dict[str, str], aws: Callable[[str], Any]
) -> None:
    p = streaming_pool
    cs, ctl = own_emulator.client(), EmulatorControl(own_emulator.url)
    # GIVEN data, a configuration, a removed key, a deleted dataset, a successful bulk publish, a moved
    # clock and changed settings
    _enable(cs, p)
    _put(cs, p["pool"], p["identity"], "game", [{"Op": "replace", "Key": "level", "Value": "7", "SyncCount": 0}])
    _put(cs, p["pool"], p["identity"], "game", [{"Op": "replace", "Key": "coins", "Value": "10", "SyncCount": 0}])
    _put(cs, p["pool"], p["identity"], "game", [{"Op": "remove", "Key": "coins", "SyncCount": 2}])
    _put(cs, p["pool"], p["identity"], "gone", [{"Op": "replace", "Key": "k", "Value": "v", "SyncCount": 0}])
    cs.delete_dataset(IdentityPoolId=p["pool"], IdentityId=p["identity"], DatasetName="gone")
    ctl.update_settings(s3url_threshold_bytes=65_536, bulk_publish_min_seconds=0)
    cs.bulk_publish(IdentityPoolId=p["pool"])
    deadline = time.monotonic() + 20
    while cs.get_bulk_publish_details(IdentityPoolId=p["pool"])["BulkPublishStatus"] != "SUCCEEDED":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ctl.advance_clock(hours=2)
    before = {
        "records": cs.list_records(IdentityPoolId=p["pool"], IdentityId=p["identity"], DatasetName="game")["Records"],
        "config": cs.get_identity_pool_configuration(IdentityPoolId=p["pool"])["CognitoStreams"],
        "usage": cs.describe_identity_pool_usage(IdentityPoolId=p["pool"])["IdentityPoolUsage"]["DataStorage"],
        "bulk": cs.get_bulk_publish_details(IdentityPoolId=p["pool"])["BulkPublishCompleteTime"],
    }
    last_stamp = max(r["lastModifiedDate"] for r in _stream_records(aws, p["stream"]))
    # WHEN the emulator stops and starts again
    own_emulator.stop()
    own_emulator.start()
    # THEN everything is as it was
    after_records = cs.list_records(IdentityPoolId=p["pool"], IdentityId=p["identity"], DatasetName="game")
    assert after_records["Records"] == before["records"]
    assert after_records["DatasetSyncCount"] == 3
    configuration = cs.get_identity_pool_configuration(IdentityPoolId=p["pool"])
    assert configuration["CognitoStreams"] == before["config"]
    assert configuration["PushSync"]["ApplicationArns"] == ["arn:aws:sns:us-east-1:123456789012:app/GCM/demo"]
    assert (
        cs.describe_identity_pool_usage(IdentityPoolId=p["pool"])["IdentityPoolUsage"]["DataStorage"] == before["usage"]
    )
    assert cs.get_bulk_publish_details(IdentityPoolId=p["pool"])["BulkPublishCompleteTime"] == before["bulk"]
    assert ctl.settings()["s3url_threshold_bytes"] == 65_536
    assert 7_199_000 <= ctl.clock()["offset_ms"] <= 7_201_000
    stale = cs.list_records(IdentityPoolId=p["pool"], IdentityId=p["identity"], DatasetName="gone", LastSyncCount=1)
    assert stale["DatasetDeletedAfterRequestedSyncCount"] is True
    # AND the 24-hour rule still holds (2 h after the success on the moved clock)
    with pytest.raises(ClientError) as again:
        cs.bulk_publish(IdentityPoolId=p["pool"])
    assert again.value.response["Error"]["Code"] == "AlreadyStreamedException"
    # AND counts and dates continue where they were
    answer = _put(
        cs, p["pool"], p["identity"], "game", [{"Op": "replace", "Key": "level", "Value": "8", "SyncCount": 1}]
    )
    assert answer["Records"][0]["SyncCount"] == 4
    ctl.flush()
    assert _stream_records(aws, p["stream"])[-1]["lastModifiedDate"] > last_stamp


def test_sigkill_during_writes_loses_no_answered_change(
    own_emulator: EmulatorProcess, streaming_pool: dict[str, str], aws: Callable[[str], Any]
) -> None:
    p = streaming_pool
    _enable(own_emulator.client(), p)
    acked: dict[str, int] = {}
    stop = threading.Event()

    def writer(dataset: str) -> None:
        cs = own_emulator.client()
        count = 0
        while not stop.is_set():
            try:
                answer = _put(
                    cs,
                    p["pool"],
                    p["identity"],
                    dataset,
                    [{"Op": "replace", "Key": "n", "Value": str(count + 1), "SyncCount": count}],
                )
            except Exception:  # the kill makes the in-flight call fail in any of several ways
                return
            count = answer["Records"][0]["SyncCount"]
            acked[dataset] = count

    # GIVEN four devices writing as fast as they can
    threads = [threading.Thread(target=writer, args=(f"ds{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    # WHEN the emulator is killed with SIGKILL mid-stream, then started again
    own_emulator.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join()
    assert sum(acked.values()) > 20, "too few writes before the kill to mean anything"
    with sqlite3.connect(own_emulator.state_dir / "state.sqlite") as db:
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)
    own_emulator.start()
    cs, ctl = own_emulator.client(), EmulatorControl(own_emulator.url)
    # THEN every answered change is there (one more may be, committed but not yet answered)
    for dataset, count in acked.items():
        listed = cs.list_records(IdentityPoolId=p["pool"], IdentityId=p["identity"], DatasetName=dataset)
        assert listed["DatasetSyncCount"] in (count, count + 1)
    # AND every answered change reaches the stream (at least once), records queued at the kill included
    ctl.flush()
    on_stream: dict[str, set[int]] = {}
    for record in _stream_records(aws, p["stream"]):
        on_stream.setdefault(record["dataSetName"], set()).add(record["syncCount"])
    for dataset, count in acked.items():
        assert set(range(1, count + 1)) <= on_stream.get(dataset, set()), dataset


def test_an_interrupted_bulk_publish_resumes_after_a_restart(
    own_emulator: EmulatorProcess, streaming_pool: dict[str, str], aws: Callable[[str], Any]
) -> None:
    p = streaming_pool
    cs, ctl = own_emulator.client(), EmulatorControl(own_emulator.url)
    _enable(cs, p)
    for name in ("a", "b", "c"):
        _put(cs, p["pool"], p["identity"], name, [{"Op": "replace", "Key": "k", "Value": name, "SyncCount": 0}])
    ctl.flush()
    # GIVEN a bulk publish in progress (one dataset a second)
    ctl.update_settings(bulk_publish_datasets_per_second=1, bulk_publish_min_seconds=0)
    cs.bulk_publish(IdentityPoolId=p["pool"])
    time.sleep(0.3)
    # WHEN the emulator is killed and started again
    own_emulator.stop(signal.SIGKILL)
    own_emulator.start()
    cs = own_emulator.client()
    assert cs.get_bulk_publish_details(IdentityPoolId=p["pool"])["BulkPublishStatus"] == "IN_PROGRESS"
    # THEN the bulk publish runs again to the end
    deadline = time.monotonic() + 30
    while (status := cs.get_bulk_publish_details(IdentityPoolId=p["pool"])["BulkPublishStatus"]) == "IN_PROGRESS":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert status == "SUCCEEDED"
    bulk = _stream_records(aws, p["stream"])[3:]
    assert {r["dataSetName"] for r in bulk} == {"a", "b", "c"}
