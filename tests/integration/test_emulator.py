"""The Cognito Sync emulator answers plain boto3 ``cognito-sync`` calls as AWS does: each operation,
its pagination, sessions and sync counts, and each error with its type and HTTP status.

Every test works in its own identity pool (created in moto's Cognito Identity), so tests never see
each other's data; settings and the clock are put back after each test.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local.emulator.control import EmulatorControl, EmulatorControlError

pytestmark = pytest.mark.integration

TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "cognito-sync.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


@pytest.fixture
def ctl(emulator: str) -> Iterator[EmulatorControl]:
    """The control client; settings, faults and the clock are restored afterwards."""
    control = EmulatorControl(emulator)
    before = control.settings()
    yield control
    control.update_settings(**before)
    control.clear_faults()
    control.set_clock_offset(0)


@pytest.fixture
def cs(emulator: str, aws: Callable[[str], Any]) -> Any:
    """boto3's cognito-sync client, on the session's emulator."""
    return aws("cognito-sync")


@pytest.fixture
def pool(aws: Callable[[str], Any]) -> str:
    """A fresh identity pool in Cognito Identity (moto)."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    return str(
        aws("cognito-identity").create_identity_pool(IdentityPoolName=name, AllowUnauthenticatedIdentities=True)[
            "IdentityPoolId"
        ]
    )


@pytest.fixture
def identity(aws: Callable[[str], Any], pool: str) -> str:
    return str(aws("cognito-identity").get_id(IdentityPoolId=pool)["IdentityId"])


def error_of(call: Callable[[], Any]) -> tuple[str, int, str]:
    """(error code, HTTP status, message) of a call that must fail."""
    with pytest.raises(ClientError) as info:
        call()
    response = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def put(cs: Any, pool: str, identity: str, dataset: str, patches: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    """ListRecords for a token, then UpdateRecords (the SDK's sequence)."""
    token = cs.list_records(IdentityPoolId=pool, IdentityId=identity, DatasetName=dataset)["SyncSessionToken"]
    return dict(
        cs.update_records(
            IdentityPoolId=pool,
            IdentityId=identity,
            DatasetName=dataset,
            SyncSessionToken=token,
            RecordPatches=patches,
            **kw,
        )
    )


def test_update_then_list_records_round_trip(cs: Any, pool: str, identity: str) -> None:
    # GIVEN an identity with no data: ListRecords says the dataset does not exist yet, and opens a session
    first = cs.list_records(IdentityPoolId=pool, IdentityId=identity, DatasetName="game_state")
    assert (first["Records"], first["DatasetSyncCount"], first["DatasetExists"]) == ([], 0, False)
    assert first["DatasetDeletedAfterRequestedSyncCount"] is False
    # WHEN the device sends two new keys (sync count 0) with its session token
    answer = cs.update_records(
        IdentityPoolId=pool,
        IdentityId=identity,
        DatasetName="game_state",
        DeviceId="phone-1",
        SyncSessionToken=first["SyncSessionToken"],
        RecordPatches=[
            {"Op": "replace", "Key": "level", "Value": "12", "SyncCount": 0},
            {"Op": "replace", "Key": "coins", "Value": "4500", "SyncCount": 0},
        ],
    )
    # THEN both keys get the dataset's new sync count 1, by that device
    assert [(r["Key"], r["Value"], r["SyncCount"], r["LastModifiedBy"]) for r in answer["Records"]] == [
        ("level", "12", 1, "phone-1"),
        ("coins", "4500", 1, "phone-1"),
    ]
    listed = cs.list_records(IdentityPoolId=pool, IdentityId=identity, DatasetName="game_state")
    assert listed["DatasetExists"] is True
    assert listed["DatasetSyncCount"] == 1
    assert listed["LastModifiedBy"] == "phone-1"
    assert {r["Key"]: r["Value"] for r in listed["Records"]} == {"level": "12", "coins": "4500"}
    assert listed["Count"] == 2
    # AND the next change of one key raises that key's sync count only
    put(cs, pool, identity, "game_state", [{"Op": "replace", "Key": "level", "Value": "13", "SyncCount": 1}])
    counts = {
        r["Key"]: r["SyncCount"]
        for r in cs.list_records(IdentityPoolId=pool, IdentityId=identity, DatasetName="game_state")["Records"]
    }
    assert counts == {"level": 2, "coins": 1}


def test_stale_sync_count_is_a_conflict_and_changes_nothing(cs: Any, pool: str, identity: str) -> None:
    # GIVEN a key at sync count 2
    put(cs, pool, identity, "prefs", [{"Op": "replace", "Key": "theme", "Value": "dark", "SyncCount": 0}])
    put(cs, pool, identity, "prefs", [{"Op": "replace", "Key": "theme", "Value": "light", "SyncCount": 1}])
    # WHEN a device that saw count 1 writes it (and a new key in the same call)
    code, status, message = error_of(
        lambda: put(
            cs,
            pool,
            identity,
            "prefs",
            [
                {"Op": "replace", "Key": "theme", "Value": "solarized", "SyncCount": 1},
                {"Op": "replace", "Key": "font", "Value": "big", "SyncCount": 0},
            ],
        )
    )
    # THEN ResourceConflictException (409) names the key; nothing of the call was applied
    assert (code, status) == ("ResourceConflictException", 409)
    assert "theme" in message
    records = cs.list_records(IdentityPoolId=pool, IdentityId=identity, DatasetName="prefs")
    assert {r["Key"]: r["Value"] for r in records["Records"]} == {"theme": "light"}
    assert records["DatasetSyncCount"] == 2
    # AND a count the server never issued (ahead of it) conflicts too
    code, _, _ = error_of(
        lambda: put(cs, pool, identity, "prefs", [{"Op": "replace", "Key": "theme", "Value": "x", "SyncCount": 7}])
    )
    assert code == "ResourceConflictException"


def test_list_records_pages_and_last_sync_count(cs: Any, pool: str, identity: str) -> None:
    # GIVEN 25 keys written in sync 1, then 3 of them changed in sync 2
    put(
        cs,
        pool,
        identity,
        "inv",
        [{"Op": "replace", "Key": f"k{i:02d}", "Value": str(i), "SyncCount": 0} for i in range(25)],
    )
    put(
        cs,
        pool,
        identity,
        "inv",
        [{"Op": "replace", "Key": f"k{i:02d}", "Value": "x", "SyncCount": 1} for i in (3, 7, 20)],
    )
    # WHEN listed 10 at a time, passing NextToken and the session token along
    seen: list[tuple[str, int]] = []
    kwargs: dict[str, Any] = {"IdentityPoolId": pool, "IdentityId": identity, "DatasetName": "inv", "MaxResults": 10}
    pages = 0
    while True:
        page = cs.list_records(**kwargs)
        pages += 1
        assert page["Count"] == len(page["Records"]) <= 10
        seen += [(r["Key"], r["SyncCount"]) for r in page["Records"]]
        if "NextToken" not in page:
            break
        kwargs.update(NextToken=page["NextToken"], SyncSessionToken=page["SyncSessionToken"])
    # THEN every key comes once, by sync count then key
    assert pages == 3
    assert len(seen) == 25 and len(set(seen)) == 25
    assert seen == sorted(seen, key=lambda kv: (kv[1], kv[0]))
    # AND LastSyncCount=1 returns only what changed after sync 1
    since = cs.list_records(IdentityPoolId=pool, IdentityId=identity, DatasetName="inv", LastSyncCount=1)
    assert [r["Key"] for r in since["Records"]] == ["k03", "k07", "k20"]
    assert since["DatasetSyncCount"] == 2
    assert (
        cs.list_records(IdentityPoolId=pool, IdentityId=identity, DatasetName="inv", LastSyncCount=2)["Records"] == []
    )


def test_removed_keys_are_listed_without_value_and_leave_the_counts(cs: Any, pool: str, identity: str) -> None:
    # GIVEN two keys
    put(
        cs,
        pool,
        identity,
        "game",
        [
            {"Op": "replace", "Key": "coins", "Value": "4500", "SyncCount": 0},
            {"Op": "replace", "Key": "level", "Value": "3", "SyncCount": 0},
        ],
    )
    # WHEN one is removed
    answer = put(cs, pool, identity, "game", [{"Op": "remove", "Key": "coins", "SyncCount": 1}])
    # THEN it comes back with its new sync count and no value, to devices that sync after it
    assert answer["Records"][0]["Key"] == "coins" and "Value" not in answer["Records"][0]
    changed = cs.list_records(IdentityPoolId=pool, IdentityId=identity, DatasetName="game", LastSyncCount=1)["Records"]
    assert [(r["Key"], r.get("Value"), r["SyncCount"]) for r in changed] == [("coins", None, 2)]
    # AND the dataset counts only the live key
    dataset = cs.describe_dataset(IdentityPoolId=pool, IdentityId=identity, DatasetName="game")["Dataset"]
    assert dataset["NumRecords"] == 1
    assert dataset["DataStorage"] == len("level") + len("3")
    # AND the key can be written again from its removal's count
    again = put(cs, pool, identity, "game", [{"Op": "replace", "Key": "coins", "Value": "1", "SyncCount": 2}])
    assert again["Records"][0]["SyncCount"] == 3


def test_session_tokens_are_required_and_checked(cs: Any, ctl: EmulatorControl, pool: str, identity: str) -> None:
    other_dataset_token = cs.list_records(IdentityPoolId=pool, IdentityId=identity, DatasetName="other")[
        "SyncSessionToken"
    ]
    patches = [{"Op": "replace", "Key": "k", "Value": "v", "SyncCount": 0}]

    def update(token: str) -> Any:
        return cs.update_records(
            IdentityPoolId=pool, IdentityId=identity, DatasetName="mine", SyncSessionToken=token, RecordPatches=patches
        )

    # A token of another dataset, a forged one, and an expired one are all refused
    code, status, message = error_of(lambda: update(other_dataset_token))
    assert (code, status) == ("InvalidParameterException", 400) and "another identity or dataset" in message
    code, _, message = error_of(lambda: update("forged.token"))
    assert code == "InvalidParameterException" and "ListRecords" in message
    token = cs.list_records(IdentityPoolId=pool, IdentityId=identity, DatasetName="mine")["SyncSessionToken"]
    ctl.advance_clock(hours=2)  # past session_token_ttl_seconds (1 h)
    code, _, message = error_of(lambda: update(token))
    assert code == "InvalidParameterException" and "expired" in message


def test_datasets_list_describe_delete_and_recreate(cs: Any, pool: str, identity: str) -> None:
    # GIVEN three datasets
    for name in ("alpha", "beta", "gamma"):
        put(cs, pool, identity, name, [{"Op": "replace", "Key": "k", "Value": name, "SyncCount": 0}])
    put(cs, pool, identity, "beta", [{"Op": "replace", "Key": "k", "Value": "b2", "SyncCount": 1}])
    # WHEN listed two at a time
    page1 = cs.list_datasets(IdentityPoolId=pool, IdentityId=identity, MaxResults=2)
    page2 = cs.list_datasets(IdentityPoolId=pool, IdentityId=identity, MaxResults=2, NextToken=page1["NextToken"])
    # THEN all come, by name, described
    assert [d["DatasetName"] for d in page1["Datasets"] + page2["Datasets"]] == ["alpha", "beta", "gamma"]
    assert "NextToken" not in page2 and page1["Count"] == 2
    beta = cs.describe_dataset(IdentityPoolId=pool, IdentityId=identity, DatasetName="beta")["Dataset"]
    assert beta["NumRecords"] == 1 and beta["DataStorage"] == 3 and beta["IdentityId"] == identity
    assert beta["CreationDate"] < beta["LastModifiedDate"]
    # WHEN beta is deleted
    deleted = cs.delete_dataset(IdentityPoolId=pool, IdentityId=identity, DatasetName="beta")["Dataset"]
    # THEN the answer describes it as it was, and it is gone
    assert deleted["DatasetName"] == "beta" and deleted["NumRecords"] == 1
    code, status, _ = error_of(
        lambda: cs.describe_dataset(IdentityPoolId=pool, IdentityId=identity, DatasetName="beta")
    )
    assert (code, status) == ("ResourceNotFoundException", 404)
    code, _, _ = error_of(lambda: cs.delete_dataset(IdentityPoolId=pool, IdentityId=identity, DatasetName="beta"))
    assert code == "ResourceNotFoundException"
    assert [d["DatasetName"] for d in cs.list_datasets(IdentityPoolId=pool, IdentityId=identity)["Datasets"]] == [
        "alpha",
        "gamma",
    ]
    # AND a device that had synced it is told to drop its copy
    stale = cs.list_records(IdentityPoolId=pool, IdentityId=identity, DatasetName="beta", LastSyncCount=2)
    assert stale["DatasetExists"] is False and stale["DatasetDeletedAfterRequestedSyncCount"] is True
    fresh = cs.list_records(IdentityPoolId=pool, IdentityId=identity, DatasetName="beta")
    assert fresh["DatasetDeletedAfterRequestedSyncCount"] is False
    # AND writing it again creates it anew: sync counts start over
    again = put(cs, pool, identity, "beta", [{"Op": "replace", "Key": "k", "Value": "new", "SyncCount": 0}])
    assert again["Records"][0]["SyncCount"] == 1
    assert cs.list_records(IdentityPoolId=pool, IdentityId=identity, DatasetName="beta")["DatasetSyncCount"] == 1


def test_usage_of_pools_and_identities(cs: Any, aws: Callable[[str], Any], pool: str, identity: str) -> None:
    # GIVEN a pool with one identity's data and a second, empty identity
    put(cs, pool, identity, "a", [{"Op": "replace", "Key": "key", "Value": "12345", "SyncCount": 0}])
    put(cs, pool, identity, "b", [{"Op": "replace", "Key": "k", "Value": "v", "SyncCount": 0}])
    empty = aws("cognito-identity").get_id(IdentityPoolId=pool)["IdentityId"]
    # THEN the pool's usage counts its sync sessions (one per ListRecords without a token) and storage
    usage = cs.describe_identity_pool_usage(IdentityPoolId=pool)["IdentityPoolUsage"]
    assert usage["IdentityPoolId"] == pool
    assert usage["SyncSessionsCount"] == 2
    assert usage["DataStorage"] == len("key12345") + len("kv")
    assert usage["LastModifiedDate"]
    # (every page: the session's emulator holds the pools of every test before this one, often more than 60)
    listed, token = [], None
    while True:
        page = cs.list_identity_pool_usage(MaxResults=60, **({"NextToken": token} if token else {}))
        listed += [u for u in page["IdentityPoolUsages"] if u["IdentityPoolId"] == pool]
        token = page.get("NextToken")
        if not token:
            break
    assert listed == [usage]
    # AND each identity's usage
    mine = cs.describe_identity_usage(IdentityPoolId=pool, IdentityId=identity)["IdentityUsage"]
    assert (mine["DatasetCount"], mine["DataStorage"], mine["IdentityPoolId"]) == (2, 10, pool)
    theirs = cs.describe_identity_usage(IdentityPoolId=pool, IdentityId=empty)["IdentityUsage"]
    assert (theirs["DatasetCount"], theirs["DataStorage"]) == (0, 0) and "LastModifiedDate" not in theirs


def test_list_identity_pool_usage_pages(cs: Any, aws: Callable[[str], Any], pool: str) -> None:
    for i in range(3):  # enough pools for pages of 2
        aws("cognito-identity").create_identity_pool(IdentityPoolName=f"page_{i}", AllowUnauthenticatedIdentities=True)
    seen: list[str] = []
    kwargs: dict[str, Any] = {"MaxResults": 2}
    while True:
        page = cs.list_identity_pool_usage(**kwargs)
        assert page["MaxResults"] == 2 and page["Count"] == len(page["IdentityPoolUsages"]) <= 2
        seen += [u["IdentityPoolId"] for u in page["IdentityPoolUsages"]]
        if "NextToken" not in page:
            break
        kwargs["NextToken"] = page["NextToken"]
    assert pool in seen and len(seen) == len(set(seen)) >= 4


def test_configuration_round_trip_keeps_what_is_sent(
    cs: Any, aws: Callable[[str], Any], pool: str, ctl: EmulatorControl
) -> None:
    # GIVEN a pool never configured
    assert cs.get_identity_pool_configuration(IdentityPoolId=pool).keys() >= {"IdentityPoolId"}
    assert "CognitoStreams" not in cs.get_identity_pool_configuration(IdentityPoolId=pool)
    stream = f"cfg-{uuid.uuid4().hex[:8]}"
    aws("kinesis").create_stream(StreamName=stream, ShardCount=1)
    role = aws("iam").create_role(RoleName=f"cfg-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=json.dumps(TRUST))
    push = {"ApplicationArns": ["arn:aws:sns:us-east-1:123456789012:app/GCM/demo"], "RoleArn": role["Role"]["Arn"]}
    streams = {"StreamName": stream, "RoleArn": role["Role"]["Arn"], "StreamingStatus": "ENABLED"}
    # WHEN configured with both PushSync and CognitoStreams
    answer = cs.set_identity_pool_configuration(IdentityPoolId=pool, PushSync=push, CognitoStreams=streams)
    # THEN both are kept as given
    assert answer["PushSync"] == push and answer["CognitoStreams"] == streams
    got = cs.get_identity_pool_configuration(IdentityPoolId=pool)
    assert got["PushSync"] == push and got["CognitoStreams"] == streams
    # AND a write without PushSync clears it: callers must read-modify-write to keep it
    cs.set_identity_pool_configuration(IdentityPoolId=pool, CognitoStreams={**streams, "StreamingStatus": "DISABLED"})
    got = cs.get_identity_pool_configuration(IdentityPoolId=pool)
    assert "PushSync" not in got and got["CognitoStreams"]["StreamingStatus"] == "DISABLED"
    assert ctl.pool(pool)["configuration"]["CognitoStreams"]["StreamName"] == stream


def test_enabling_checks_the_stream_and_the_role(cs: Any, aws: Callable[[str], Any], pool: str) -> None:
    stream = f"chk-{uuid.uuid4().hex[:8]}"
    good = aws("iam").create_role(RoleName=f"good-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=json.dumps(TRUST))
    ec2_trust = {**TRUST, "Statement": [{**TRUST["Statement"][0], "Principal": {"Service": "ec2.amazonaws.com"}}]}  # type: ignore[dict-item]
    bad = aws("iam").create_role(RoleName=f"bad-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=json.dumps(ec2_trust))

    def enable(role_arn: str, stream_name: str = stream) -> Any:
        return cs.set_identity_pool_configuration(
            IdentityPoolId=pool,
            CognitoStreams={"StreamName": stream_name, "RoleArn": role_arn, "StreamingStatus": "ENABLED"},
        )

    # A stream that does not exist
    code, status, message = error_of(lambda: enable(good["Role"]["Arn"]))
    assert (code, status) == ("InvalidParameterException", 400) and stream in message
    aws("kinesis").create_stream(StreamName=stream, ShardCount=1)
    # A role Cognito Sync may not assume, and a role that does not exist
    code, status, message = error_of(lambda: enable(bad["Role"]["Arn"]))
    assert (code, status) == ("InvalidConfigurationException", 400) and "cognito-sync.amazonaws.com" in message
    code, _, message = error_of(lambda: enable("arn:aws:iam::123456789012:role/no-such-role"))
    assert code == "InvalidConfigurationException" and "does not exist" in message
    # ENABLED without a role
    code, _, message = error_of(
        lambda: cs.set_identity_pool_configuration(
            IdentityPoolId=pool, CognitoStreams={"StreamName": stream, "StreamingStatus": "ENABLED"}
        )
    )
    assert code == "InvalidParameterException" and "RoleArn" in message
    # And with both right, it is enabled
    assert enable(good["Role"]["Arn"])["CognitoStreams"]["StreamingStatus"] == "ENABLED"


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda cs, p, i: cs.describe_identity_pool_usage(IdentityPoolId="not-a-pool-id"), "InvalidParameterException"),
        (lambda cs, p, i: cs.list_datasets(IdentityPoolId=p, IdentityId="bad id"), "InvalidParameterException"),
        (
            lambda cs, p, i: cs.list_records(IdentityPoolId=p, IdentityId=i, DatasetName="no spaces allowed"),
            "InvalidParameterException",
        ),
        (
            lambda cs, p, i: cs.list_records(IdentityPoolId=p, IdentityId=i, DatasetName="d", MaxResults=5000),
            "InvalidParameterException",
        ),
        (
            lambda cs, p, i: cs.set_identity_pool_configuration(
                IdentityPoolId=p, CognitoStreams={"RoleArn": "arn:aws:iam::123456789012:user/x", "StreamName": "s"}
            ),
            "InvalidParameterException",
        ),
        (
            lambda cs, p, i: cs.set_identity_pool_configuration(
                IdentityPoolId=p, PushSync={"ApplicationArns": ["arn:aws:sns:us-east-1:1:topic"]}
            ),
            "InvalidParameterException",
        ),
        (
            lambda cs, p, i: cs.get_identity_pool_configuration(
                IdentityPoolId="us-east-1:00000000-0000-0000-0000-000000000000"
            ),
            "ResourceNotFoundException",
        ),
        (
            lambda cs, p, i: cs.list_records(
                IdentityPoolId=p, IdentityId="us-east-1:00000000-0000-0000-0000-000000000000", DatasetName="d"
            ),
            "ResourceNotFoundException",
        ),
        (
            lambda cs, p, i: cs.describe_dataset(IdentityPoolId=p, IdentityId=i, DatasetName="never_written"),
            "ResourceNotFoundException",
        ),
        (
            lambda cs, p, i: cs.bulk_publish(IdentityPoolId="eu-west-1:00000000-0000-0000-0000-000000000000"),
            "ResourceNotFoundException",
        ),
        (
            lambda cs, p, i: cs.register_device(IdentityPoolId=p, IdentityId=i, Platform="GCM", Token="t"),
            "NotImplementedException",
        ),
    ],
)
def test_errors_have_the_aws_type_and_status(cs: Any, pool: str, identity: str, call: Any, expected: str) -> None:
    statuses = {
        "InvalidParameterException": 400,
        "ResourceNotFoundException": 404,
        "NotImplementedException": 501,
    }
    code, status, message = error_of(lambda: call(cs, pool, identity))
    assert (code, status) == (expected, statuses[expected])
    assert message  # every error says what was wrong


def test_bad_patches_are_invalid_parameters(cs: Any, pool: str, identity: str) -> None:
    def bad(patches: list[dict[str, Any]]) -> str:
        code, status, message = error_of(lambda: put(cs, pool, identity, "d", patches))
        assert (code, status) == ("InvalidParameterException", 400)
        return message

    assert "1024" in bad([{"Op": "replace", "Key": "k" * 1025, "Value": "v", "SyncCount": 0}])
    assert "1048575" in bad([{"Op": "replace", "Key": "big", "Value": "v" * 1_048_576, "SyncCount": 0}])
    assert "twice" in bad([{"Op": "replace", "Key": "k", "Value": "1", "SyncCount": 0}] * 2)
    assert "needs a string Value" in bad([{"Op": "replace", "Key": "k", "SyncCount": 0}])


def test_limits_are_limit_exceeded(cs: Any, pool: str, identity: str) -> None:
    def one(name: str) -> Any:
        return put(cs, pool, identity, name, [{"Op": "replace", "Key": "k", "Value": "v", "SyncCount": 0}])

    # 20 datasets per identity
    for i in range(20):
        one(f"ds{i:02d}")
    code, status, message = error_of(lambda: one("ds20"))
    assert (code, status) == ("LimitExceededException", 400) and "20" in message
    # 1024 records per dataset
    code, _, message = error_of(
        lambda: put(
            cs,
            pool,
            identity,
            "ds00",
            [{"Op": "replace", "Key": f"r{i}", "Value": "v", "SyncCount": 0} for i in range(1024)],
        )
    )
    assert code == "LimitExceededException" and "1025" in message
    # 1 MB per dataset
    half = "x" * 600_000
    code, _, message = error_of(
        lambda: put(
            cs,
            pool,
            identity,
            "ds01",
            [
                {"Op": "replace", "Key": "a", "Value": half, "SyncCount": 0},
                {"Op": "replace", "Key": "b", "Value": half, "SyncCount": 0},
            ],
        )
    )
    assert code == "LimitExceededException" and "1048576" in message


def test_throttling_is_answered_429_and_retried_by_botocore(cs: Any, ctl: EmulatorControl, pool: str) -> None:
    # GIVEN the next two requests throttled
    ctl.throttle_next_requests(2)
    # WHEN a call is made with botocore's default retries
    answer = cs.describe_identity_pool_usage(IdentityPoolId=pool)
    # THEN it succeeds on the third attempt
    assert answer["ResponseMetadata"]["RetryAttempts"] == 2
    # AND without retries the caller sees the 429 itself
    ctl.throttle_next_requests(1)
    once = boto3.client("cognito-sync", endpoint_url=ctl.endpoint, config=Config(retries={"total_max_attempts": 1}))
    code, status, _ = error_of(lambda: once.describe_identity_pool_usage(IdentityPoolId=pool))
    assert (code, status) == ("TooManyRequestsException", 429)


def test_control_endpoints_refuse_bad_input_with_a_reason(ctl: EmulatorControl) -> None:
    with pytest.raises(EmulatorControlError, match="s3url_threshold_bytes"):
        ctl.update_settings(s3url_threshold_bytes=5_000_000)
    with pytest.raises(EmulatorControlError, match="unknown faults"):
        ctl._call("POST", "faults", {"explode": True})
    with pytest.raises(EmulatorControlError, match="exactly one"):
        ctl._call("POST", "clock", {"offset_ms": 1, "now_ms": 2})
    with pytest.raises(EmulatorControlError, match="404"):
        ctl._call("GET", "nothing-here")
    health = ctl.health()
    assert health["status"] == "ok" and health["service"] == "cognito-sync-emulator"
    moved = ctl.advance_clock(hours=1)
    assert 3_599_000 <= moved["offset_ms"] <= 3_601_000
    assert abs(ctl.set_clock(1_000_000_000_000)["now_ms"] - 1_000_000_000_000) < 5_000


def test_above_the_configured_call_rate_the_answer_is_too_many_requests(
    cs: Any, ctl: EmulatorControl, pool: str
) -> None:
    once = boto3.client("cognito-sync", endpoint_url=ctl.endpoint, config=Config(retries={"total_max_attempts": 1}))
    # GIVEN no rate limit (the default): a burst of calls all answer
    assert ctl.settings()["rate_limit_calls_per_second"] == 0
    for _ in range(20):
        once.describe_identity_pool_usage(IdentityPoolId=pool)
    # GIVEN a limit of one call per 10 s with a burst of 2 (slow enough that no token comes back meanwhile)
    ctl.update_settings(rate_limit_calls_per_second=0.1, rate_limit_burst=2)
    outcomes = []
    for _ in range(5):
        try:
            once.describe_identity_pool_usage(IdentityPoolId=pool)
            outcomes.append("ok")
        except ClientError as err:
            outcomes.append(f"{err.response['Error']['Code']} {err.response['ResponseMetadata']['HTTPStatusCode']}")
    # THEN two answer and the rest are throttled as AWS throttles: TooManyRequestsException, HTTP 429
    assert outcomes == ["ok", "ok", *["TooManyRequestsException 429"] * 3]
    assert ctl.stats()["counters"]["errors.DescribeIdentityPoolUsage.TooManyRequestsException"] >= 3
    # AND the control routes are never limited
    assert ctl.health()["status"] == "ok"


def test_the_date_header_follows_the_emulators_clock(cs: Any, ctl: EmulatorControl, pool: str) -> None:
    from email.utils import parsedate_to_datetime

    # GIVEN the emulator's clock moved a day ahead
    ctl.advance_clock(hours=24)
    # WHEN it answers THEN its Date says its time (as its dates in answers do), not the host's
    answer = cs.describe_identity_pool_usage(IdentityPoolId=pool)
    date = parsedate_to_datetime(answer["ResponseMetadata"]["HTTPHeaders"]["date"]).timestamp() * 1000
    assert abs(date - ctl.clock()["now_ms"]) < 60_000
