"""Cognito Streams as the emulator does it: the exact Kinesis records (inline, S3Url with an expiring
presigned URL, key remove, dataset delete), streaming turning DISABLED when the stream is deleted or
the role's trust policy is wrong, and bulk publish with its one-in-progress and 24-hour rules.

Only boto3 (and urllib for the presigned URLs) talks to the emulator; the control client moves the
clock, changes settings and waits for the publisher (``flush``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.emulator.control import EmulatorControl

pytestmark = pytest.mark.integration

TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "cognito-sync.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
RECORD_FIELDS = [
    "identityPoolId",
    "identityId",
    "dataSetName",
    "operation",
    "kinesisSyncRecords",
    "lastModifiedDate",
    "kinesisSyncRecordsURL",
    "payloadType",
    "syncCount",
]
ELEMENT_FIELDS = ["key", "value", "syncCount", "lastModifiedDate", "deviceLastModifiedDate", "op"]


@pytest.fixture
def ctl(emulator: str) -> Iterator[EmulatorControl]:
    control = EmulatorControl(emulator)
    before = control.settings()
    yield control
    control.update_settings(**before)
    control.clear_faults()
    control.set_clock_offset(0)


@pytest.fixture
def cs(emulator: str, aws: Callable[[str], Any]) -> Any:
    return aws("cognito-sync")


class Streaming:
    """A fresh pool with an identity, streaming ENABLED to its own Kinesis stream and role."""

    def __init__(self, aws: Callable[[str], Any], cs: Any, ctl: EmulatorControl) -> None:
        self.aws, self.cs, self.ctl = aws, cs, ctl
        suffix = uuid.uuid4().hex[:10]
        identity = aws("cognito-identity")
        self.pool = identity.create_identity_pool(IdentityPoolName=f"s_{suffix}", AllowUnauthenticatedIdentities=True)[
            "IdentityPoolId"
        ]
        self.identity = identity.get_id(IdentityPoolId=self.pool)["IdentityId"]
        self.stream = f"stream-{suffix}"
        self.kinesis = aws("kinesis")
        self.kinesis.create_stream(StreamName=self.stream, ShardCount=1)
        self.role_name = f"publish-{suffix}"
        self.role_arn = aws("iam").create_role(RoleName=self.role_name, AssumeRolePolicyDocument=json.dumps(TRUST))[
            "Role"
        ]["Arn"]
        self.enable()

    def enable(self) -> dict[str, Any]:
        return dict(
            self.cs.set_identity_pool_configuration(
                IdentityPoolId=self.pool,
                CognitoStreams={"StreamName": self.stream, "RoleArn": self.role_arn, "StreamingStatus": "ENABLED"},
            )
        )

    def put(self, dataset: str, patches: list[dict[str, Any]], identity: str | None = None) -> dict[str, Any]:
        who = identity or self.identity
        token = self.cs.list_records(IdentityPoolId=self.pool, IdentityId=who, DatasetName=dataset)["SyncSessionToken"]
        return dict(
            self.cs.update_records(
                IdentityPoolId=self.pool,
                IdentityId=who,
                DatasetName=dataset,
                SyncSessionToken=token,
                RecordPatches=patches,
            )
        )

    def records(self) -> list[tuple[str, dict[str, Any]]]:
        """(partition key, decoded data) of every record on the stream, after the publisher is idle."""
        self.ctl.flush()
        out = []
        for shard in self.kinesis.list_shards(StreamName=self.stream)["Shards"]:
            iterator = self.kinesis.get_shard_iterator(
                StreamName=self.stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                page = self.kinesis.get_records(ShardIterator=iterator, Limit=10_000)
                out += [(r["PartitionKey"], json.loads(r["Data"])) for r in page["Records"]]
                if not page["Records"]:
                    break
                iterator = page.get("NextShardIterator")
        return out

    def configuration(self) -> dict[str, Any]:
        return dict(self.cs.get_identity_pool_configuration(IdentityPoolId=self.pool).get("CognitoStreams") or {})


@pytest.fixture
def streaming(aws: Callable[[str], Any], cs: Any, ctl: EmulatorControl) -> Streaming:
    return Streaming(aws, cs, ctl)


def test_an_update_is_one_inline_record_in_the_documented_format(streaming: Streaming) -> None:
    # GIVEN streaming ENABLED
    # WHEN a device syncs two keys with its own modification date
    answer = streaming.cs.update_records(
        IdentityPoolId=streaming.pool,
        IdentityId=streaming.identity,
        DatasetName="game_state",
        SyncSessionToken=streaming.cs.list_records(
            IdentityPoolId=streaming.pool, IdentityId=streaming.identity, DatasetName="game_state"
        )["SyncSessionToken"],
        RecordPatches=[
            {"Op": "replace", "Key": "level", "Value": "12", "SyncCount": 0, "DeviceLastModifiedDate": 1424801824.101},
            {
                "Op": "replace",
                "Key": "coins",
                "Value": "4500 🪙",
                "SyncCount": 0,
                "DeviceLastModifiedDate": 1424801824.101,
            },
        ],
    )
    # THEN exactly one record reaches the stream, field for field as the AWS documentation shows
    [(key, record)] = streaming.records()
    assert key == f"{streaming.identity}/game_state"
    assert list(record) == RECORD_FIELDS
    stamp = record["lastModifiedDate"]
    assert record == {
        "identityPoolId": streaming.pool,
        "identityId": streaming.identity,
        "dataSetName": "game_state",
        "operation": "replace",
        "kinesisSyncRecords": [
            {
                "key": "level",
                "value": "12",
                "syncCount": 1,
                "lastModifiedDate": stamp,
                "deviceLastModifiedDate": 1424801824101,
                "op": "replace",
            },
            {
                "key": "coins",
                "value": "4500 🪙",
                "syncCount": 1,
                "lastModifiedDate": stamp,
                "deviceLastModifiedDate": 1424801824101,
                "op": "replace",
            },
        ],
        "lastModifiedDate": stamp,
        "kinesisSyncRecordsURL": None,
        "payloadType": "Inline",
        "syncCount": 1,
    }
    assert all(list(e) == ELEMENT_FIELDS for e in record["kinesisSyncRecords"])
    # AND the date is the one the API reports, in epoch milliseconds
    assert round(answer["Records"][0]["LastModifiedDate"].timestamp() * 1000) == stamp


def test_a_key_remove_and_a_dataset_delete(streaming: Streaming) -> None:
    # GIVEN a dataset with two keys
    streaming.put(
        "app_prefs",
        [
            {"Op": "replace", "Key": "theme", "Value": "dark", "SyncCount": 0},
            {"Op": "replace", "Key": "lang", "Value": "fr", "SyncCount": 0},
        ],
    )
    # WHEN a key is removed, then the dataset is deleted, then written again
    streaming.put("app_prefs", [{"Op": "remove", "Key": "theme", "SyncCount": 1}])
    streaming.cs.delete_dataset(IdentityPoolId=streaming.pool, IdentityId=streaming.identity, DatasetName="app_prefs")
    streaming.put("app_prefs", [{"Op": "replace", "Key": "lang", "Value": "ja", "SyncCount": 0}])
    records = [r for _, r in streaming.records()]
    # THEN four records, in order, with strictly increasing dates
    assert [(r["operation"], r["syncCount"]) for r in records] == [
        ("replace", 1),
        ("replace", 2),
        ("remove", 2),
        ("replace", 1),
    ]
    dates = [r["lastModifiedDate"] for r in records]
    assert dates == sorted(dates) and len(set(dates)) == 4
    # The remove: op remove, value null
    [removed] = records[1]["kinesisSyncRecords"]
    assert (removed["key"], removed["value"], removed["op"], removed["syncCount"]) == ("theme", None, "remove", 2)
    # The delete: operation remove, no records, inline, the dataset's last sync count
    assert list(records[2]) == RECORD_FIELDS
    assert records[2]["kinesisSyncRecords"] == [] and records[2]["payloadType"] == "Inline"
    assert records[2]["kinesisSyncRecordsURL"] is None
    # The re-created dataset's counts start over
    assert records[3]["kinesisSyncRecords"][0]["syncCount"] == 1


def test_a_large_update_goes_as_s3url_with_an_expiring_presigned_url(streaming: Streaming) -> None:
    # GIVEN the old 50 KB threshold and URLs that expire after 2 seconds
    streaming.ctl.update_settings(s3url_threshold_bytes=50 * 1024, presigned_url_expiry_seconds=2)
    big = '{"tiles": "' + "é" * 30_000 + '"}'  # 60 KB of UTF-8 with quotes to escape
    # WHEN a sync is larger than that
    streaming.put(
        "save_game",
        [
            {"Op": "replace", "Key": "snapshot", "Value": big, "SyncCount": 0},
            {"Op": "replace", "Key": "slot", "Value": "1", "SyncCount": 0},
        ],
    )
    [(_, record)] = streaming.records()
    # THEN the record carries a presigned URL instead of the elements
    assert list(record) == RECORD_FIELDS
    assert record["payloadType"] == "S3Url"
    assert record["kinesisSyncRecords"] is None
    url = record["kinesisSyncRecordsURL"]
    assert parse_qs(urlparse(url).query)["X-Amz-Expires"] == ["2"]
    # AND the URL's body is the JSON array of the elements
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert [(e["key"], e["value"], e["syncCount"], e["op"]) for e in body] == [
        ("snapshot", big, 1, "replace"),
        ("slot", "1", 1, "replace"),
    ]
    assert all(list(e) == ELEMENT_FIELDS for e in body)
    # AND once it expires, the URL no longer gives the payload
    time.sleep(3.5)
    with pytest.raises(urllib.error.HTTPError) as expired:
        urllib.request.urlopen(url, timeout=10)
    assert expired.value.code in (403, 404)


def test_streaming_turns_disabled_when_the_stream_is_deleted(streaming: Streaming) -> None:
    # GIVEN streaming that works
    streaming.put("d", [{"Op": "replace", "Key": "k", "Value": "1", "SyncCount": 0}])
    assert len(streaming.records()) == 1
    # WHEN the stream is deleted and a device syncs
    streaming.kinesis.delete_stream(StreamName=streaming.stream)
    answer = streaming.put("d", [{"Op": "replace", "Key": "k", "Value": "2", "SyncCount": 1}])
    streaming.ctl.flush()
    # THEN the update itself succeeded, and streaming is DISABLED with a reason
    assert answer["Records"][0]["SyncCount"] == 2
    config = streaming.configuration()
    assert config["StreamingStatus"] == "DISABLED"
    assert (config["StreamName"], config["RoleArn"]) == (streaming.stream, streaming.role_arn)
    reason = streaming.ctl.pool(streaming.pool)["configuration"]["CognitoStreams"]["DisabledReason"]
    assert streaming.stream in reason and "does not exist" in reason
    # AND boto3 users can read DisabledReason from the raw answer (botocore's model lacks the member)
    assert (
        _with_disabled_reason(streaming.cs).get_identity_pool_configuration(IdentityPoolId=streaming.pool)[
            "CognitoStreams"
        ]["DisabledReason"]
        == reason
    )
    # AND bulk publish is refused while streaming is off
    with pytest.raises(ClientError) as refused:
        streaming.cs.bulk_publish(IdentityPoolId=streaming.pool)
    assert refused.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "DISABLED" in refused.value.response["Error"]["Message"]
    # AND re-enabling fails until the stream exists again, then works and clears the reason
    with pytest.raises(ClientError) as still:
        streaming.enable()
    assert still.value.response["Error"]["Code"] == "InvalidParameterException"
    streaming.kinesis.create_stream(StreamName=streaming.stream, ShardCount=1)
    streaming.enable()
    assert "DisabledReason" not in streaming.ctl.pool(streaming.pool)["configuration"]["CognitoStreams"]
    streaming.put("d", [{"Op": "replace", "Key": "k", "Value": "3", "SyncCount": 2}])
    assert [r["kinesisSyncRecords"][0]["value"] for _, r in streaming.records()] == ["3"]


def test_streaming_turns_disabled_when_the_trust_policy_no_longer_allows_cognito(streaming: Streaming) -> None:
    # GIVEN streaming that works, and role checks not cached
    streaming.ctl.update_settings(role_check_cache_seconds=0)
    streaming.put("d", [{"Op": "replace", "Key": "k", "Value": "1", "SyncCount": 0}])
    assert len(streaming.records()) == 1
    # WHEN the role's trust policy is changed to another service
    wrong = {**TRUST, "Statement": [{**TRUST["Statement"][0], "Principal": {"Service": "ec2.amazonaws.com"}}]}  # type: ignore[dict-item]
    streaming.aws("iam").update_assume_role_policy(RoleName=streaming.role_name, PolicyDocument=json.dumps(wrong))
    streaming.put("d", [{"Op": "replace", "Key": "k", "Value": "2", "SyncCount": 1}])
    streaming.ctl.flush()
    # THEN streaming is DISABLED with the reason, and only the first change reached the stream
    assert streaming.configuration()["StreamingStatus"] == "DISABLED"
    reason = streaming.ctl.pool(streaming.pool)["configuration"]["CognitoStreams"]["DisabledReason"]
    assert streaming.role_arn in reason and "trust policy" in reason
    assert len(streaming.records()) == 1
    # AND re-enabling with the role still wrong is refused as Cognito cannot assume it
    with pytest.raises(ClientError) as refused:
        streaming.enable()
    assert refused.value.response["Error"]["Code"] == "InvalidConfigurationException"


def test_bulk_publish_rules_in_progress_and_24_hours(streaming: Streaming) -> None:
    cs, pool = streaming.cs, streaming.pool
    # GIVEN two identities' datasets, one key removed, and a bulk publish that takes 2 seconds
    other = streaming.aws("cognito-identity").get_id(IdentityPoolId=pool)["IdentityId"]
    streaming.put("game", [{"Op": "replace", "Key": "level", "Value": "1", "SyncCount": 0}])
    streaming.put("prefs", [{"Op": "replace", "Key": "a", "Value": "x", "SyncCount": 0}])
    streaming.put("prefs", [{"Op": "remove", "Key": "a", "SyncCount": 1}])
    streaming.put("game", [{"Op": "replace", "Key": "level", "Value": "9", "SyncCount": 0}], identity=other)
    live = len(streaming.records())
    streaming.ctl.update_settings(bulk_publish_min_seconds=2)
    assert cs.get_bulk_publish_details(IdentityPoolId=pool)["BulkPublishStatus"] == "NOT_STARTED"
    # WHEN a bulk publish starts
    assert cs.bulk_publish(IdentityPoolId=pool)["IdentityPoolId"] == pool
    details = cs.get_bulk_publish_details(IdentityPoolId=pool)
    # THEN it is IN_PROGRESS with a start time, and a second request is a DuplicateRequestException
    assert details["BulkPublishStatus"] == "IN_PROGRESS" and "BulkPublishStartTime" in details
    assert "BulkPublishCompleteTime" not in details
    with pytest.raises(ClientError) as duplicate:
        cs.bulk_publish(IdentityPoolId=pool)
    assert duplicate.value.response["Error"]["Code"] == "DuplicateRequestException"
    assert duplicate.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    details = _wait_for_end(cs, pool)
    # THEN it SUCCEEDED, with its complete time
    assert details["BulkPublishStatus"] == "SUCCEEDED"
    assert details["BulkPublishCompleteTime"] >= details["BulkPublishStartTime"]
    # AND the stream got one record per dataset with its current state (removed keys as op remove)
    bulk = [r for _, r in streaming.records()[live:]]
    assert sorted((r["identityId"] == other, r["dataSetName"], r["syncCount"]) for r in bulk) == [
        (False, "game", 1),
        (False, "prefs", 2),
        (True, "game", 1),
    ]
    prefs = next(r for r in bulk if r["dataSetName"] == "prefs")
    assert prefs["kinesisSyncRecords"] == [
        {
            "key": "a",
            "value": None,
            "syncCount": 2,
            "lastModifiedDate": prefs["lastModifiedDate"],
            "deviceLastModifiedDate": prefs["kinesisSyncRecords"][0]["deviceLastModifiedDate"],
            "op": "remove",
        }
    ]
    # AND within 24 hours of that success another one is AlreadyStreamedException, after them it is allowed
    streaming.ctl.update_settings(bulk_publish_min_seconds=0)
    streaming.ctl.advance_clock(hours=23)
    with pytest.raises(ClientError) as again:
        cs.bulk_publish(IdentityPoolId=pool)
    assert again.value.response["Error"]["Code"] == "AlreadyStreamedException"
    streaming.ctl.advance_clock(hours=1, seconds=5)
    cs.bulk_publish(IdentityPoolId=pool)
    assert _wait_for_end(cs, pool)["BulkPublishStatus"] == "SUCCEEDED"


def test_a_failed_bulk_publish_reports_why_and_does_not_count_for_24_hours(streaming: Streaming) -> None:
    cs, pool = streaming.cs, streaming.pool
    streaming.put("a", [{"Op": "replace", "Key": "k", "Value": "1", "SyncCount": 0}])
    streaming.put("b", [{"Op": "replace", "Key": "k", "Value": "1", "SyncCount": 0}])
    live = len(streaming.records())
    # GIVEN the next bulk publish made to fail after one dataset
    streaming.ctl.fail_next_bulk_publish("Kinesis throughput exceeded (injected)", after_datasets=1)
    # WHEN it runs
    cs.bulk_publish(IdentityPoolId=pool)
    details = _wait_for_end(cs, pool)
    # THEN it is FAILED with the message and no complete time; one dataset had been published
    assert details["BulkPublishStatus"] == "FAILED"
    assert details["FailureMessage"] == "Kinesis throughput exceeded (injected)"
    assert "BulkPublishCompleteTime" not in details
    assert len(streaming.records()) - live == 1
    # AND a new one may start at once, and succeeds
    cs.bulk_publish(IdentityPoolId=pool)
    assert _wait_for_end(cs, pool)["BulkPublishStatus"] == "SUCCEEDED"


def test_bulk_publish_fails_and_streaming_turns_off_when_the_stream_is_gone(streaming: Streaming) -> None:
    cs, pool = streaming.cs, streaming.pool
    streaming.put("a", [{"Op": "replace", "Key": "k", "Value": "1", "SyncCount": 0}])
    streaming.ctl.flush()
    streaming.kinesis.delete_stream(StreamName=streaming.stream)
    cs.bulk_publish(IdentityPoolId=pool)
    details = _wait_for_end(cs, pool)
    assert details["BulkPublishStatus"] == "FAILED"
    assert streaming.stream in details["FailureMessage"]
    assert streaming.configuration()["StreamingStatus"] == "DISABLED"


def test_bulk_publish_sends_large_datasets_as_s3url(streaming: Streaming) -> None:
    streaming.ctl.update_settings(s3url_threshold_bytes=4096, bulk_publish_min_seconds=0)
    streaming.put("save", [{"Op": "replace", "Key": "blob", "Value": "x" * 5000, "SyncCount": 0}])
    streaming.put("small", [{"Op": "replace", "Key": "k", "Value": "v", "SyncCount": 0}])
    live = len(streaming.records())
    streaming.cs.bulk_publish(IdentityPoolId=streaming.pool)
    assert _wait_for_end(streaming.cs, streaming.pool)["BulkPublishStatus"] == "SUCCEEDED"
    bulk = {r["dataSetName"]: r for _, r in streaming.records()[live:]}
    assert bulk["small"]["payloadType"] == "Inline"
    assert bulk["save"]["payloadType"] == "S3Url"
    with urllib.request.urlopen(bulk["save"]["kinesisSyncRecordsURL"], timeout=10) as response:
        assert json.loads(response.read())[0]["value"] == "x" * 5000


def _wait_for_end(cs: Any, pool: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        details = dict(cs.get_bulk_publish_details(IdentityPoolId=pool))
        if details["BulkPublishStatus"] in ("SUCCEEDED", "FAILED") or time.monotonic() > deadline:
            return details
        time.sleep(0.2)


def _with_disabled_reason(client: Any) -> Any:
    """Teach a boto3 client to keep CognitoStreams.DisabledReason: the AWS API reference documents
    the member, botocore's service model does not, so the parser drops it. The raw body has it."""

    def keep(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        if http_response.status_code != 200:
            return
        streams = json.loads(http_response.content).get("CognitoStreams") or {}
        if "DisabledReason" in streams and "CognitoStreams" in parsed:
            parsed["CognitoStreams"]["DisabledReason"] = streams["DisabledReason"]

    client.meta.events.register("after-call.cognito-sync.GetIdentityPoolConfiguration", keep)
    return client


# -- property: the stream and the state follow Cognito's rules for any sequence of syncs ------------------
_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"),
            st.sampled_from(["a", "b"]),
            st.dictionaries(
                st.sampled_from(["k1", "k2", "k3"]),
                st.one_of(st.none(), st.text(alphabet='xyzé🚀"\\\n', max_size=6)),
                min_size=1,
                max_size=3,
            ),
        ),
        st.tuples(st.just("delete"), st.sampled_from(["a", "b"]), st.just({})),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_any_sequence_of_syncs_streams_exactly_the_state(
    aws: Callable[[str], Any], cs: Any, ctl: EmulatorControl, ops: list[tuple[str, str, dict[str, str | None]]]
) -> None:
    # GIVEN a fresh streaming pool, and a reference model of Cognito's rules: a sync gives every key it
    # touches the dataset's next sync count; a delete drops the dataset, and counts start over
    streaming = Streaming(aws, cs, ctl)
    model: dict[str, tuple[int, dict[str, tuple[str | None, int]]]] = {}
    streamed = 0
    # WHEN the operations run (each put with the sync counts the model says are current)
    for op, dataset, changes in ops:
        count, keys = model.get(dataset, (0, {}))
        if op == "delete":
            if dataset not in model:
                continue
            cs.delete_dataset(IdentityPoolId=streaming.pool, IdentityId=streaming.identity, DatasetName=dataset)
            del model[dataset]
        else:
            patches = [
                {"Op": "remove", "Key": k, "SyncCount": keys.get(k, (None, 0))[1]}
                if v is None
                else {"Op": "replace", "Key": k, "Value": v, "SyncCount": keys.get(k, (None, 0))[1]}
                for k, v in changes.items()
            ]
            streaming.put(dataset, patches)
            model[dataset] = (count + 1, {**keys, **{k: (v, count + 1) for k, v in changes.items()}})
        streamed += 1
    # THEN the emulator's state is the model's
    exported = {
        d["dataSetName"]: (d["syncCount"], {r["key"]: (r["value"], r["syncCount"]) for r in d["records"]})
        for d in ctl.export(streaming.pool)["datasets"]
    }
    assert exported == model
    # AND the stream has one record per operation, and replaying it gives the same state
    records = [r for _, r in streaming.records()]
    assert len(records) == streamed
    replayed: dict[str, dict[str, tuple[str | None, int]]] = {}
    for record in records:
        if record["operation"] == "remove":
            replayed.pop(record["dataSetName"], None)
        else:
            replayed.setdefault(record["dataSetName"], {}).update(
                {e["key"]: (e["value"], e["syncCount"]) for e in record["kinesisSyncRecords"]}
            )
    assert replayed == {name: keys for name, (_, keys) in model.items()}
