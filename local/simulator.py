"""App activity against Cognito Sync, driven through boto3 exactly as the mobile SDKs sync.

N identities (from Cognito Identity's GetId) in M identity pools keep realistic datasets
(``app_prefs``, ``game_state``, ``player_profile``, ``achievements``, ``inventory``, ``save_game``).
Each session syncs one dataset the way the AWS Mobile SDK does: ``ListRecords`` from the device's
last sync count (all pages, one SyncSessionToken), merge, then ``UpdateRecords`` with each key's
sync count as the device knows it; on ``ResourceConflictException`` list again, merge, retry.
Sessions also remove keys, delete datasets (which later come back, with sync counts starting
over) and, for an adjustable share, write a value large enough to travel as ``S3Url``. Some
identities use two devices whose edits cross, to exercise the conflict path.

Deterministic with a seed: every identity draws from its own random generator, and one worker
thread owns each identity, so the same seed, sizes and worker count produce the same changes.

    python -m local.simulator --changes 10000 --identities 50
    python -m local.simulator --trickle --rate 3          # a few changes per second until Ctrl-C
    python -m local.simulator --help

From Python: ``simulate(SimulationConfig(...)) -> SimulationStats``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger("local.simulator")

REPO = Path(__file__).resolve().parents[1]

#: Datasets an app keeps per user, with the keys it writes (``save_game`` holds the large values).
DATASETS: dict[str, tuple[str, ...]] = {
    "app_prefs": ("theme", "language", "notifications", "sound_volume", "font_scale", "last_tab"),
    "game_state": ("level", "coins", "xp", "checkpoint", "lives", "last_played_at"),
    "player_profile": ("display_name", "avatar", "country", "bio", "title"),
    "achievements": ("first_win", "coins_100", "speedrun", "explorer", "collector", "night_owl", "perfectionist"),
    "inventory": ("sword", "shield", "potion", "key", "map", "gem", "bow", "arrows"),
}
DATASET_WEIGHTS = {"app_prefs": 2, "game_state": 4, "player_profile": 1, "achievements": 2, "inventory": 3}
LARGE_DATASET, LARGE_KEY = "save_game", "snapshot"
#: Datasets a user may wipe (settings reset, inventory cleared, save deleted); they come back later.
DELETABLE = ("inventory", "achievements", "app_prefs", "save_game")
NAMES = ("Zoë", "Łukasz", "渡辺 美咲", "José", "Ana 🚀", "Ngozi", "Søren", "Priya", "O'Brien", 'Li "Ace" Wei')
THEMES = ("dark", "light", "system", "solarized")
LANGUAGES = ("en", "fr", "de", "ja", "pt-BR", "es", "pl", "sw")
COUNTRIES = ("FR", "JP", "BR", "NG", "DK", "IN", "PL", "US", "KE")
CONFLICT_RETRIES = 5


class SimulationError(RuntimeError):
    """The simulation could not run or stopped on an unexpected answer; the message says why."""


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Endpoints default to botocore's environment variables
    (``AWS_ENDPOINT_URL_COGNITO_SYNC``, ``AWS_ENDPOINT_URL``), as ``make stack-up`` exports them."""

    identity_pool_ids: tuple[str, ...]
    identities_per_pool: int = 20
    #: Record changes to make (key replaces + key removes + dataset deletes); ignored when trickling.
    changes: int = 1000
    seed: int = 42
    #: Worker threads (per process); each identity belongs to one worker.
    workers: int = 4
    #: Processes the workers are spread over (boto3's cost per call makes one process CPU-bound).
    processes: int = 1
    #: Share of sessions writing a value large enough for the stream record to go as S3Url.
    large_share: float = 0.01
    #: Share of key changes that remove the key (when it exists).
    remove_share: float = 0.1
    #: Share of sessions deleting a whole dataset.
    delete_share: float = 0.02
    #: Share of sessions where a second device of the same user edits the same keys meanwhile.
    conflict_share: float = 0.02
    #: The S3Url threshold the large values must exceed; None asks the emulator (``/_emulator/settings``).
    s3url_threshold_bytes: int | None = None
    #: Trickle mode: about this many changes per second until stopped (``changes`` is ignored).
    trickle_rate: float | None = None
    cognito_sync_endpoint: str | None = None
    aws_endpoint: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if not self.identity_pool_ids:
            problems.append("identity_pool_ids is empty: give at least one identity pool")
        if self.identities_per_pool < 1:
            problems.append(f"identities_per_pool must be at least 1, got {self.identities_per_pool}")
        if self.changes < 0:
            problems.append(f"changes must be >= 0, got {self.changes}")
        if self.workers < 1:
            problems.append(f"workers must be at least 1, got {self.workers}")
        if self.processes < 1:
            problems.append(f"processes must be at least 1, got {self.processes}")
        for name in ("large_share", "remove_share", "delete_share", "conflict_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                problems.append(f"{name} must be between 0 and 1, got {value}")
        if self.large_share + self.delete_share > 1.0:
            problems.append("large_share + delete_share must not exceed 1")
        if self.trickle_rate is not None and self.trickle_rate <= 0:
            problems.append(f"trickle_rate must be > 0 changes per second, got {self.trickle_rate}")
        if problems:
            raise SimulationError("invalid simulation settings: " + "; ".join(problems))


@dataclass
class SimulationStats:
    """What the simulation did (counts are of successful operations)."""

    pools: int = 0
    identities: int = 0
    #: Record changes: ``replaces + removes + dataset_deletes``.
    changes: int = 0
    replaces: int = 0
    removes: int = 0
    dataset_deletes: int = 0
    #: Successful UpdateRecords calls with at least one patch (one stream record each).
    syncs: int = 0
    #: Syncs that created a dataset (first write, or first write after a delete).
    dataset_creations: int = 0
    #: Syncs carrying a value sized above the S3Url threshold.
    large_updates: int = 0
    #: ResourceConflictException answers that were merged and retried.
    conflicts: int = 0
    list_records_calls: int = 0
    update_records_calls: int = 0
    #: Records Cognito Streams should put on Kinesis: syncs and deletes in pools streaming ENABLED.
    stream_records_expected: int = 0
    #: Of those, the ones sent as S3Url (the large updates).
    stream_records_expected_s3url: int = 0
    elapsed_seconds: float = 0.0
    by_dataset: dict[str, int] = field(default_factory=dict)

    @property
    def changes_per_second(self) -> float:
        """Record changes per second of wall time."""
        return self.changes / self.elapsed_seconds if self.elapsed_seconds else 0.0

    def merge(self, other: SimulationStats) -> None:
        """Add another worker's counts."""
        for name, value in asdict(other).items():
            if name in ("pools", "identities", "elapsed_seconds"):
                continue
            if name == "by_dataset":
                for k, v in value.items():
                    self.by_dataset[k] = self.by_dataset.get(k, 0) + v
            else:
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, with the rate."""
        out = asdict(self)
        out["changes_per_second"] = round(self.changes_per_second, 1)
        return out


# -- clients ------------------------------------------------------------------------------------------
def _clients(config: SimulationConfig) -> tuple[Any, Any]:
    """(cognito-sync client, cognito-identity client), one pair per worker thread."""
    session = boto3.session.Session(region_name=config.region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    boto_config = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=4)
    sync = session.client("cognito-sync", endpoint_url=config.cognito_sync_endpoint, config=boto_config)
    identity = session.client("cognito-identity", endpoint_url=config.aws_endpoint, config=boto_config)
    return sync, identity


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def ensure_identities(identity_client: Any, pool_id: str, count: int) -> list[str]:
    """``count`` identities of the pool: the existing ones first (in ListIdentities order, which is
    creation order in Cognito Identity and moto), then new ones from GetId. A re-run on the same pool
    maps the same identity to the same random generator."""
    existing: list[str] = []
    token: str | None = None
    while True:
        page = identity_client.list_identities(
            IdentityPoolId=pool_id, MaxResults=60, **({"NextToken": token} if token else {})
        )
        existing.extend(i["IdentityId"] for i in page.get("Identities", []))
        token = page.get("NextToken")
        if not token:
            break
    identities = list(dict.fromkeys(existing))[:count]
    while len(identities) < count:
        identities.append(identity_client.get_id(IdentityPoolId=pool_id)["IdentityId"])
    return identities


def emulator_threshold(cognito_sync_endpoint: str | None) -> int:
    """The emulator's S3Url threshold (bytes), from its control endpoint."""
    from local.emulator.control import EmulatorControl, EmulatorControlError

    endpoint = cognito_sync_endpoint or os.environ.get("AWS_ENDPOINT_URL_COGNITO_SYNC")
    if not endpoint:
        raise SimulationError(
            "cannot tell the S3Url threshold: no emulator endpoint (set AWS_ENDPOINT_URL_COGNITO_SYNC) and no "
            "s3url_threshold_bytes given; against real AWS give --s3url-threshold 1048576"
        )
    try:
        return int(EmulatorControl(endpoint).settings()["s3url_threshold_bytes"])
    except EmulatorControlError as err:
        raise SimulationError(f"cannot read the S3Url threshold from the emulator: {err}") from err


def ensure_streaming(
    identity_pool_ids: list[str],
    *,
    stream_name: str,
    role_name: str = "cognito-streams-publish",
    shards: int = 1,
    aws_endpoint: str | None = None,
    cognito_sync_endpoint: str | None = None,
    region: str | None = None,
) -> str:
    """Make Cognito Streams publish these pools to ``stream_name``: create the stream and the publish
    role when missing, then enable streaming (keeping each pool's PushSync). Returns the role ARN.

    For benchmarks and tests; the pipeline's ``cognito_streams_configure`` DAG does this in production.
    """
    session = boto3.session.Session(region_name=region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    kinesis = session.client("kinesis", endpoint_url=aws_endpoint)
    iam = session.client("iam", endpoint_url=aws_endpoint)
    sync = session.client("cognito-sync", endpoint_url=cognito_sync_endpoint)
    try:
        kinesis.describe_stream_summary(StreamName=stream_name)
    except ClientError as err:
        if _code(err) != "ResourceNotFoundException":
            raise
        kinesis.create_stream(StreamName=stream_name, ShardCount=shards)
        kinesis.get_waiter("stream_exists").wait(StreamName=stream_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "cognito-sync.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    try:
        role_arn = str(iam.get_role(RoleName=role_name)["Role"]["Arn"])
    except ClientError as err:
        if _code(err) not in ("NoSuchEntity", "NoSuchEntityException"):
            raise
        role_arn = str(iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"])
        stream_arn = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamARN"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["kinesis:PutRecord", "kinesis:PutRecords"], "Resource": stream_arn}
            ],
        }
        iam.put_role_policy(RoleName=role_name, PolicyName="cognito-streams-publish", PolicyDocument=json.dumps(policy))
    for pool_id in identity_pool_ids:
        current = sync.get_identity_pool_configuration(IdentityPoolId=pool_id)
        kwargs: dict[str, Any] = {
            "IdentityPoolId": pool_id,
            "CognitoStreams": {"StreamName": stream_name, "RoleArn": role_arn, "StreamingStatus": "ENABLED"},
        }
        if current.get("PushSync"):
            kwargs["PushSync"] = current["PushSync"]
        sync.set_identity_pool_configuration(**kwargs)
    return role_arn


# -- values -------------------------------------------------------------------------------------------
def _value(rng: random.Random, dataset: str, key: str, previous: str | None) -> str:
    """A plausible new value for ``dataset.key`` (JSON where apps would store JSON)."""
    if dataset == "app_prefs":
        return {
            "theme": lambda: rng.choice(THEMES),
            "language": lambda: rng.choice(LANGUAGES),
            "notifications": lambda: rng.choice(("on", "off", "mentions")),
            "sound_volume": lambda: str(rng.randint(0, 100)),
            "font_scale": lambda: f"{rng.choice((0.85, 1.0, 1.15, 1.3)):.2f}",
            "last_tab": lambda: rng.choice(("home", "shop", "friends", "settings")),
        }[key]()
    if dataset == "game_state":
        number = int(previous) if previous is not None and previous.isdigit() else 0
        return {
            "level": lambda: str(number + rng.randint(0, 2) or 1),
            "coins": lambda: str(max(0, number + rng.randint(-200, 900))),
            "xp": lambda: str(number + rng.randint(10, 500)),
            "checkpoint": lambda: f"world-{rng.randint(1, 9)}/stage-{rng.randint(1, 12)}",
            "lives": lambda: str(rng.randint(0, 5)),
            "last_played_at": lambda: (
                f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
                f"{rng.randint(0, 59):02d}:00Z"
            ),
        }[key]()
    if dataset == "player_profile":
        return {
            "display_name": lambda: rng.choice(NAMES),
            "avatar": lambda: f"avatars/{rng.randint(1, 400)}.png",
            "country": lambda: rng.choice(COUNTRIES),
            "bio": lambda: rng.choice(("", "Speedrunner.", "Here for the quests ⚔️", "Line one\nline two", "ñ∂ 𝄞 ok")),
            "title": lambda: rng.choice(("Rookie", "Veteran", "Legend", "Collector")),
        }[key]()
    if dataset == "achievements":
        return json.dumps({"unlocked_at": 1_780_000_000_000 + rng.randint(0, 10**10), "tier": rng.randint(1, 3)})
    if dataset == "inventory":
        return json.dumps({"qty": rng.randint(1, 99), "rarity": rng.choice(("common", "rare", "epic")), "slot": key})
    raise ValueError(f"no values for dataset {dataset!r}")


def large_value(rng: random.Random, threshold_bytes: int, max_raw_bytes: int) -> str:
    """A saved-game document (JSON text) whose JSON-escaped form, inside a stream record, is more
    than ``threshold_bytes``, while its raw UTF-8 size stays within ``max_raw_bytes``."""
    target = threshold_bytes + 1024  # clear of the record's other fields, whatever the ids and dates
    tiles = []
    size = 2
    while size < target:
        tile = f'{{"x":{rng.randint(0, 999)},"y":{rng.randint(0, 999)},"t":"{rng.choice(("grass", "rock", "water"))}"}}'
        tiles.append(tile)
        size += len(tile) + 1 + tile.count('"')  # escaped quotes double
    text = "[" + ",".join(tiles) + "]"
    if len(text.encode()) > max_raw_bytes:
        raise SimulationError(
            f"a value above the S3Url threshold ({threshold_bytes} bytes) does not fit the dataset limit "
            f"({max_raw_bytes} bytes); lower the emulator's s3url_threshold_bytes or set large_share to 0"
        )
    return text


# -- one device ---------------------------------------------------------------------------------------
@dataclass
class _LocalDataset:
    sync_count: int = 0
    values: dict[str, str] = field(default_factory=dict)  # live keys
    counts: dict[str, int] = field(default_factory=dict)  # key -> last known server sync count


class _Device:
    """A device's local copy of one identity's datasets, synced as the Mobile SDK does."""

    def __init__(self, sync: Any, pool_id: str, identity_id: str, device_id: str, stats: SimulationStats) -> None:
        self.sync = sync
        self.pool_id = pool_id
        self.identity_id = identity_id
        self.device_id = device_id
        self.stats = stats
        self.local: dict[str, _LocalDataset] = {}
        #: Whether the other device's crossing edit (in the last push) created the dataset.
        self.other_created = False

    def pull(self, dataset: str) -> tuple[str, int, bool]:
        """ListRecords since the local sync count, all pages; merge. Returns (session token, the
        dataset's sync count, whether the dataset exists)."""
        local = self.local.setdefault(dataset, _LocalDataset())
        kwargs: dict[str, Any] = {
            "IdentityPoolId": self.pool_id,
            "IdentityId": self.identity_id,
            "DatasetName": dataset,
            "LastSyncCount": local.sync_count,
        }
        while True:
            page = self.sync.list_records(**kwargs)
            self.stats.list_records_calls += 1
            if page.get("DatasetDeletedAfterRequestedSyncCount"):
                # Deleted (and maybe re-created) since this device last synced: start over from 0.
                local = self.local[dataset] = _LocalDataset()
                kwargs = {k: v for k, v in kwargs.items() if k not in ("NextToken", "SyncSessionToken")}
                kwargs["LastSyncCount"] = 0
                continue
            for record in page.get("Records", []):
                key = record["Key"]
                local.counts[key] = record["SyncCount"]
                if "Value" in record and record["Value"] is not None:
                    local.values[key] = record["Value"]
                else:
                    local.values.pop(key, None)
            if not page.get("NextToken"):
                local.sync_count = max(local.sync_count, page.get("DatasetSyncCount", 0))
                return page["SyncSessionToken"], int(page.get("DatasetSyncCount", 0)), bool(page.get("DatasetExists"))
            kwargs["NextToken"] = page["NextToken"]
            kwargs["SyncSessionToken"] = page["SyncSessionToken"]

    def push(self, dataset: str, changes: dict[str, str | None], interfere: _Device | None = None) -> bool:
        """Sync ``changes`` (value, or None to remove) to the server, merging and retrying on
        conflicts. ``interfere`` edits the same keys between our pull and push (once). Returns
        whether the dataset was created by this push."""
        for _attempt in range(CONFLICT_RETRIES + 1):
            token, server_count, existed = self.pull(dataset)
            local = self.local[dataset]
            if interfere is not None:
                self.other_created = interfere.push(
                    dataset, {k: v if v is not None else "other-device" for k, v in changes.items()}
                )
                interfere = None
            patches = [
                {
                    "Op": "replace" if value is not None else "remove",
                    "Key": key,
                    **({"Value": value} if value is not None else {}),
                    "SyncCount": local.counts.get(key, 0),
                    "DeviceLastModifiedDate": time.time(),
                }
                for key, value in changes.items()
            ]
            try:
                answer = self.sync.update_records(
                    IdentityPoolId=self.pool_id,
                    IdentityId=self.identity_id,
                    DatasetName=dataset,
                    DeviceId=self.device_id,
                    RecordPatches=patches,
                    SyncSessionToken=token,
                )
            except ClientError as err:
                self.stats.update_records_calls += 1
                if _code(err) != "ResourceConflictException":
                    raise
                self.stats.conflicts += 1
                continue
            self.stats.update_records_calls += 1
            new_count = server_count
            for record in answer.get("Records", []):
                local.counts[record["Key"]] = record["SyncCount"]
                new_count = max(new_count, record["SyncCount"])
                if "Value" in record and record["Value"] is not None:
                    local.values[record["Key"]] = record["Value"]
                else:
                    local.values.pop(record["Key"], None)
            # As the SDK: advance the local sync count only when nobody else wrote in between.
            if new_count == server_count + 1:
                local.sync_count = new_count
            return not existed
        raise SimulationError(
            f"UpdateRecords of {dataset} for {self.identity_id} still conflicted after {CONFLICT_RETRIES} merges"
        )

    def delete(self, dataset: str) -> bool:
        """DeleteDataset; False when it was already gone."""
        try:
            self.sync.delete_dataset(IdentityPoolId=self.pool_id, IdentityId=self.identity_id, DatasetName=dataset)
        except ClientError as err:
            if _code(err) != "ResourceNotFoundException":
                raise
            self.local.pop(dataset, None)
            return False
        self.local.pop(dataset, None)
        return True


# -- one user -----------------------------------------------------------------------------------------
class _User:
    """One identity: its random generator, a main device, and a second one for crossing edits."""

    def __init__(
        self, sync: Any, pool_id: str, identity_id: str, rng: random.Random, stats: SimulationStats, streams: bool
    ) -> None:
        self.pool_id = pool_id
        self.identity_id = identity_id
        self.rng = rng
        self.stats = stats
        self.streams = streams
        tag = identity_id.rsplit(":", 1)[-1][:8]
        self.phone = _Device(sync, pool_id, identity_id, f"phone-{tag}", stats)
        self.tablet = _Device(sync, pool_id, identity_id, f"tablet-{tag}", stats)

    def session(self, budget: int, cfg: SimulationConfig, threshold: int, max_dataset_bytes: int) -> int:
        """One sync session of at most ``budget`` changes; returns the changes made."""
        rng = self.rng
        roll = rng.random()
        if roll < cfg.delete_share:
            candidates = [d for d in DELETABLE if self.phone.local.get(d) and self.phone.local[d].values]
            if candidates:
                dataset = rng.choice(sorted(candidates))
                if self.phone.delete(dataset):
                    self.stats.dataset_deletes += 1
                    self.stats.by_dataset[dataset] = self.stats.by_dataset.get(dataset, 0) + 1
                    self.stats.stream_records_expected += int(self.streams)
                    return 1
                return 0
        if roll < cfg.delete_share + cfg.large_share:
            value = large_value(rng, threshold, max_dataset_bytes - len(LARGE_KEY))
            created = self.phone.push(LARGE_DATASET, {LARGE_KEY: value})
            self.stats.large_updates += 1
            self.stats.stream_records_expected_s3url += int(self.streams)
            self._count(LARGE_DATASET, {LARGE_KEY: value}, created)
            return 1
        dataset = rng.choices(list(DATASET_WEIGHTS), weights=list(DATASET_WEIGHTS.values()))[0]
        local = self.phone.local.get(dataset, _LocalDataset())
        keys = rng.sample(DATASETS[dataset], k=min(budget, rng.randint(1, 4)))
        changes: dict[str, str | None] = {}
        for key in keys:
            if key in local.values and rng.random() < cfg.remove_share:
                changes[key] = None
            else:
                changes[key] = _value(rng, dataset, key, local.values.get(key))
        # The second device's crossing edit is a sync of its own: only when the budget has room for it.
        crossing = rng.random() < cfg.conflict_share and budget >= 2 * len(changes)
        created = self.phone.push(dataset, changes, self.tablet if crossing else None)
        if crossing:
            self._count(dataset, {k: "other-device" for k in changes}, self.phone.other_created)
        self._count(dataset, changes, created)
        return len(changes) * (2 if crossing else 1)

    def _count(self, dataset: str, changes: dict[str, str | None], created: bool) -> None:
        removes = sum(1 for v in changes.values() if v is None)
        self.stats.removes += removes
        self.stats.replaces += len(changes) - removes
        self.stats.syncs += 1
        self.stats.stream_records_expected += int(self.streams)
        self.stats.dataset_creations += int(created)
        self.stats.by_dataset[dataset] = self.stats.by_dataset.get(dataset, 0) + len(changes)


# -- the run ------------------------------------------------------------------------------------------
def _streaming_pools(sync: Any, pool_ids: tuple[str, ...]) -> set[str]:
    enabled = set()
    for pool_id in pool_ids:
        streams = sync.get_identity_pool_configuration(IdentityPoolId=pool_id).get("CognitoStreams") or {}
        if streams.get("StreamingStatus") == "ENABLED":
            enabled.add(pool_id)
    return enabled


def _emulator_limit(cfg: SimulationConfig) -> int:
    endpoint = cfg.cognito_sync_endpoint or os.environ.get("AWS_ENDPOINT_URL_COGNITO_SYNC")
    if not endpoint:
        return 1_048_576
    from local.emulator.control import EmulatorControl, EmulatorControlError

    try:
        return int(EmulatorControl(endpoint).settings()["max_dataset_bytes"])
    except EmulatorControlError:
        return 1_048_576  # not the emulator (real AWS): Cognito's documented 1 MB


@dataclass(frozen=True)
class _Plan:
    """What every worker needs (picklable, for worker processes)."""

    config: SimulationConfig
    threshold: int
    max_dataset_bytes: int
    streaming: frozenset[str]


#: One worker's share: its users (pool, identity, generator seed) and how many changes it makes.
_Slot = tuple[list[tuple[str, str, str]], int]


def _run_slots(plan: _Plan, slots: list[_Slot], stop: threading.Event | None = None) -> list[SimulationStats]:
    """Run one thread per slot in this process; returns each slot's counts."""
    config = plan.config
    stop = stop or threading.Event()
    results = [SimulationStats() for _ in slots]
    failures: list[str] = []
    rate = config.trickle_rate / len(slots) if config.trickle_rate else None

    def work(w: int) -> None:
        own_sync = _clients(config)[0]
        stats = results[w]
        users, budget = slots[w]
        mine = [_User(own_sync, p, i, random.Random(seed), stats, p in plan.streaming) for p, i, seed in users]
        made = 0
        t0 = time.perf_counter()
        while not stop.is_set() and (rate is not None or made < budget):
            for user in mine:
                if stop.is_set() or (rate is None and made >= budget):
                    break
                try:
                    made += user.session(
                        budget - made if rate is None else 4, config, plan.threshold, plan.max_dataset_bytes
                    )
                except (ClientError, BotoCoreError, SimulationError) as err:
                    if rate is None:
                        failures.append(f"{user.identity_id}: {err}")
                        stop.set()
                        return
                    # Trickling for a long-running demo: wait out an emulator restart instead of dying.
                    log.warning("worker %d: %s; retrying in 5 s", w, err)
                    stop.wait(5.0)
                    continue
                if rate is not None:
                    ahead = made / rate - (time.perf_counter() - t0)
                    if ahead > 0 and stop.wait(ahead):
                        break

    threads = [threading.Thread(target=work, args=(w,), name=f"sim-{w}", daemon=True) for w in range(len(slots))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        made = sum(r.replaces + r.removes + r.dataset_deletes for r in results)
        raise SimulationError(f"the simulation stopped after {made} changes: {failures[0]}")
    return results


def _run_processes(plan: _Plan, slots: list[_Slot], processes: int) -> list[SimulationStats]:
    """Spread the slots over worker processes (``python -c`` children, so nothing of the caller's
    main module runs again); each gets its plan as JSON on stdin and answers its counts on stdout."""
    config = {**asdict(plan.config), "identity_pool_ids": list(plan.config.identity_pool_ids)}
    payloads = [
        json.dumps(
            {
                "config": config,
                "threshold": plan.threshold,
                "max_dataset_bytes": plan.max_dataset_bytes,
                "streaming": sorted(plan.streaming),
                "slots": slots[p::processes],
            }
        )
        for p in range(processes)
    ]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", "from local.simulator import _worker_entry; _worker_entry()"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in payloads
    ]
    outputs: list[tuple[str, str]] = [("", "")] * len(children)

    def talk(i: int) -> None:
        outputs[i] = children[i].communicate(payloads[i])

    talkers = [threading.Thread(target=talk, args=(i,)) for i in range(len(children))]
    for t in talkers:
        t.start()
    for t in talkers:
        t.join()
    failed = [(c.returncode, err) for c, (_, err) in zip(children, outputs, strict=True) if c.returncode != 0]
    if failed:
        code, err = failed[0]
        raise SimulationError(f"a simulator worker process failed (exit {code}): {err.strip()[-2000:]}")
    return [SimulationStats(**stats) for out, _ in outputs for stats in json.loads(out)]


def _worker_entry() -> None:
    """A worker process: its plan as JSON on stdin, its counts as JSON on stdout."""
    raw = json.loads(sys.stdin.read())
    config = SimulationConfig(**{**raw["config"], "identity_pool_ids": tuple(raw["config"]["identity_pool_ids"])})
    plan = _Plan(config, raw["threshold"], raw["max_dataset_bytes"], frozenset(raw["streaming"]))
    slots: list[_Slot] = [([(p, i, seed) for p, i, seed in users], budget) for users, budget in raw["slots"]]
    try:
        results = _run_slots(plan, slots)
    except SimulationError as err:
        print(err, file=sys.stderr)
        sys.exit(2)
    json.dump([asdict(r) for r in results], sys.stdout)


def simulate(config: SimulationConfig, stop: threading.Event | None = None) -> SimulationStats:
    """Run the simulation; returns the counts. In trickle mode, runs until ``stop`` is set.

    ``config.processes`` > 1 spreads the worker threads over that many processes (boto3 spends about
    2 ms of CPU per call: one process saturates one core); trickle mode always uses one process.
    """
    started = time.perf_counter()
    sync, identity = _clients(config)
    threshold = config.s3url_threshold_bytes or (
        emulator_threshold(config.cognito_sync_endpoint) if config.large_share else 0
    )
    plan = _Plan(
        config, threshold, _emulator_limit(config), frozenset(_streaming_pools(sync, config.identity_pool_ids))
    )
    users: list[tuple[str, str, str]] = []
    for p, pool_id in enumerate(config.identity_pool_ids):
        for i, identity_id in enumerate(ensure_identities(identity, pool_id, config.identities_per_pool)):
            users.append((pool_id, identity_id, f"{config.seed}:{p}:{i}"))
    processes = 1 if config.trickle_rate else config.processes
    count = min(config.workers * processes, len(users))
    slots: list[_Slot] = [
        (users[s::count], config.changes // count + (1 if s < config.changes % count else 0)) for s in range(count)
    ]
    log.info(
        "simulating %s over %d identities in %d pools with %d workers in %d process(es)",
        f"{config.trickle_rate} changes/s" if config.trickle_rate else f"{config.changes} changes",
        len(users),
        len(config.identity_pool_ids),
        count,
        processes,
    )
    results = _run_slots(plan, slots, stop) if processes == 1 else _run_processes(plan, slots, processes)
    total = SimulationStats(pools=len(config.identity_pool_ids), identities=len(users))
    for part in results:
        total.merge(part)
    total.changes = total.replaces + total.removes + total.dataset_deletes
    total.elapsed_seconds = time.perf_counter() - started
    log.info("simulation done: %s", json.dumps(total.as_dict(), ensure_ascii=False))
    return total


# -- command line -------------------------------------------------------------------------------------
def _pools_from_env() -> list[str]:
    raw = os.environ.get("AIRFLOW_VAR_COGNITO_PIPELINE")
    if not raw:
        return []
    try:
        return list(json.loads(raw).get("identity_pool_ids") or [])
    except ValueError:
        return []


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m local.simulator",
        description="Simulate app users syncing Cognito Sync datasets (through boto3, as the mobile SDKs do).",
    )
    parser.add_argument(
        "--pool-id",
        action="append",
        default=[],
        help="identity pool to use (repeat for several); default: identity_pool_ids of AIRFLOW_VAR_COGNITO_PIPELINE",
    )
    parser.add_argument("--identities", type=int, default=20, help="identities per pool (default 20)")
    parser.add_argument("--changes", type=int, default=1000, help="record changes to make (default 1000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent worker threads per process (default 4)")
    parser.add_argument("--processes", type=int, default=1, help="processes to spread the workers over (default 1)")
    parser.add_argument("--large-share", type=float, default=0.01, help="share of S3Url-sized updates (0.01)")
    parser.add_argument("--remove-share", type=float, default=0.1, help="share of key removes (0.1)")
    parser.add_argument("--delete-share", type=float, default=0.02, help="share of dataset deletes (0.02)")
    parser.add_argument("--conflict-share", type=float, default=0.02, help="share of crossing edits (0.02)")
    parser.add_argument("--s3url-threshold", type=int, help="bytes; default: ask the emulator")
    parser.add_argument("--trickle", action="store_true", help="a few changes per second until stopped")
    parser.add_argument("--rate", type=float, default=2.0, help="changes per second in --trickle mode (2)")
    parser.add_argument(
        "--ensure-streaming",
        metavar="STREAM",
        help="first create STREAM and the publish role if missing and enable Cognito Streams on the pools",
    )
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)

    pools = args.pool_id or _pools_from_env()
    try:
        if not pools:
            raise SimulationError(
                "no identity pool: pass --pool-id, or `source .local/stack.env` (it sets AIRFLOW_VAR_COGNITO_PIPELINE)"
            )
        config = SimulationConfig(
            identity_pool_ids=tuple(pools),
            identities_per_pool=args.identities,
            changes=args.changes,
            seed=args.seed,
            workers=args.workers,
            processes=args.processes,
            large_share=args.large_share,
            remove_share=args.remove_share,
            delete_share=args.delete_share,
            conflict_share=args.conflict_share,
            s3url_threshold_bytes=args.s3url_threshold,
            trickle_rate=args.rate if args.trickle else None,
        )
        if args.ensure_streaming:
            ensure_streaming(list(pools), stream_name=args.ensure_streaming)
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stats = simulate(config, stop)
    except SimulationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(stats.as_dict(), ensure_ascii=False, indent=2))
    else:
        print(
            f"{stats.changes} changes ({stats.replaces} replaces, {stats.removes} removes, "
            f"{stats.dataset_deletes} dataset deletes) in {stats.syncs} syncs over {stats.identities} identities; "
            f"{stats.large_updates} large, {stats.conflicts} conflicts retried; "
            f"{stats.stream_records_expected} stream records expected; {stats.changes_per_second:,.0f} changes/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
