"""The activity simulator drives the emulator as the mobile SDKs do, its counts match what reaches
Kinesis, replaying the stream rebuilds Cognito Sync's exact state, and a seed makes it repeatable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from local.emulator.control import EmulatorControl
from local.simulator import SimulationConfig, SimulationError, ensure_streaming, simulate
from local.stack import REPO, Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def ctl(emulator: str) -> Iterator[EmulatorControl]:
    control = EmulatorControl(emulator)
    before = control.settings()
    yield control
    control.update_settings(**before)


def _new_pool(aws: Callable[[str], Any]) -> str:
    name = f"sim_{uuid.uuid4().hex[:10]}"
    return str(
        aws("cognito-identity").create_identity_pool(IdentityPoolName=name, AllowUnauthenticatedIdentities=True)[
            "IdentityPoolId"
        ]
    )


def _stream(aws: Callable[[str], Any], stream: str) -> list[dict[str, Any]]:
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


def _replay(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, tuple[str | None, int]]]:
    """Cognito Sync's state rebuilt from its stream alone (per dataset, the stream keeps commit order)."""
    state: dict[tuple[str, str], dict[str, tuple[str | None, int]]] = {}
    for record in records:
        owner = (record["identityId"], record["dataSetName"])
        if record["operation"] == "remove":
            state.pop(owner, None)
            continue
        if record["payloadType"] == "S3Url":
            with urllib.request.urlopen(record["kinesisSyncRecordsURL"], timeout=10) as response:
                elements = json.loads(response.read())
        else:
            elements = record["kinesisSyncRecords"]
        keys = state.setdefault(owner, {})
        for element in elements:
            keys[element["key"]] = (element["value"], element["syncCount"])
    return state


def _exported(ctl: EmulatorControl, pool: str) -> dict[tuple[str, str], dict[str, tuple[str | None, int]]]:
    return {
        (d["identityId"], d["dataSetName"]): {r["key"]: (r["value"], r["syncCount"]) for r in d["records"]}
        for d in ctl.export(pool)["datasets"]
    }


def test_simulated_activity_reaches_the_stream_and_replays_to_the_same_state(
    stack: Stack, aws: Callable[[str], Any], ctl: EmulatorControl
) -> None:
    # GIVEN a streaming pool, and a low S3Url threshold so large updates stay small
    pool = _new_pool(aws)
    stream = f"sim-{uuid.uuid4().hex[:8]}"
    ensure_streaming([pool], stream_name=stream, shards=2, role_name=f"sim-{uuid.uuid4().hex[:8]}")
    ctl.update_settings(s3url_threshold_bytes=4096)
    # WHEN users update, remove, delete datasets, write large values and cross edits between devices
    stats = simulate(
        SimulationConfig(
            identity_pool_ids=(pool,),
            identities_per_pool=6,
            changes=400,
            workers=3,
            large_share=0.05,
            delete_share=0.06,
            conflict_share=0.2,
            remove_share=0.2,
        )
    )
    ctl.flush()
    records = _stream(aws, stream)
    # THEN exactly the changes asked for were made, of every kind
    assert stats.changes == 400 == stats.replaces + stats.removes + stats.dataset_deletes
    assert min(stats.removes, stats.dataset_deletes, stats.large_updates, stats.conflicts) > 0
    assert stats.identities == 6 and stats.syncs > 0
    assert stats.update_records_calls == stats.syncs + stats.conflicts
    # AND the stream holds one record per sync and per delete, the large ones as S3Url
    assert len(records) == stats.stream_records_expected == stats.syncs + stats.dataset_deletes
    assert sum(r["payloadType"] == "S3Url" for r in records) == stats.stream_records_expected_s3url
    assert sum(r["operation"] == "remove" for r in records) == stats.dataset_deletes
    # AND a dataset is created by its first sync and by the first sync after each delete
    last: dict[tuple[str, str], str] = {}
    creations = 0
    for record in records:
        owner = (record["identityId"], record["dataSetName"])
        creations += record["operation"] == "replace" and last.get(owner, "remove") == "remove"
        last[owner] = record["operation"]
    assert creations == stats.dataset_creations
    # AND replaying the stream gives Cognito Sync's state exactly (removed keys included)
    assert _replay(records) == _exported(ctl, pool)


def test_the_same_seed_makes_the_same_changes(aws: Callable[[str], Any], ctl: EmulatorControl) -> None:
    def run(
        seed: int, workers: int = 2, processes: int = 1
    ) -> tuple[dict[str, Any], dict[tuple[int, str], dict[str, tuple[str | None, int]]]]:
        """(the counts, the final state by identity index) of one run in a fresh pool."""
        pool = _new_pool(aws)
        stats = simulate(
            SimulationConfig(
                identity_pool_ids=(pool,),
                identities_per_pool=4,
                changes=150,
                workers=workers,
                processes=processes,
                seed=seed,
                large_share=0.0,
                delete_share=0.05,
                conflict_share=0.1,
            )
        )
        order = [
            i["IdentityId"]
            for i in aws("cognito-identity").list_identities(IdentityPoolId=pool, MaxResults=60)["Identities"]
        ]
        state = {(order.index(i), d): keys for (i, d), keys in _exported(ctl, pool).items()}
        counts = {k: v for k, v in stats.as_dict().items() if k not in ("elapsed_seconds", "changes_per_second")}
        return counts, state

    # The same seed: the same counts (conflicts included) and the same final values and sync counts,
    # whether the two workers are threads of one process or two worker processes
    first, again, other = run(7), run(7, workers=1, processes=2), run(8)
    assert first == again
    assert first[1] != other[1]


def test_trickle_mode_runs_until_stopped(aws: Callable[[str], Any], emulator: str) -> None:
    pool = _new_pool(aws)
    stop = threading.Event()
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(
            simulate(
                SimulationConfig(identity_pool_ids=(pool,), identities_per_pool=2, workers=1, trickle_rate=10.0), stop
            )
        )
    )
    thread.start()
    # It keeps going (no budget) until stopped: wait for a few sync sessions (on a loaded machine the first
    # ones may take seconds), then stop it.
    sync = aws("cognito-sync")
    deadline = time.monotonic() + 120
    while sync.describe_identity_pool_usage(IdentityPoolId=pool)["IdentityPoolUsage"]["SyncSessionsCount"] < 3:
        assert time.monotonic() < deadline and thread.is_alive(), "the trickle made no sync sessions in 120 s"
        time.sleep(0.2)
    time.sleep(1.0)
    assert thread.is_alive()
    stop.set()
    thread.join(timeout=30)
    [stats] = result
    # ... and never faster than its rate
    assert 3 <= stats.changes <= 10.0 * stats.elapsed_seconds + 4


def test_command_line(stack: Stack, aws: Callable[[str], Any], emulator: str) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "local.simulator", "--help"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "--trickle" in help_text and "--changes" in help_text
    pool = _new_pool(aws)
    done = subprocess.run(
        [sys.executable, "-m", "local.simulator", "--pool-id", pool, "--changes", "30", "--identities", "3", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "AWS_ENDPOINT_URL_COGNITO_SYNC": emulator},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["changes"] == 30
    refused = subprocess.run(
        [sys.executable, "-m", "local.simulator", "--pool-id", pool, "--large-share", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "large_share must be between 0 and 1" in refused.stderr


def test_settings_are_checked_before_anything_runs() -> None:
    with pytest.raises(SimulationError, match="identity_pool_ids is empty"):
        SimulationConfig(identity_pool_ids=())
    with pytest.raises(SimulationError, match="workers must be at least 1"):
        SimulationConfig(identity_pool_ids=("us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f",), workers=0)
