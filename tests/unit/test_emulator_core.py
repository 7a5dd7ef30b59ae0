"""The emulator's pure parts: the stream record format, the trust policy check, input validation,
the clock and the runtime settings."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from local.emulator import stream_format, validation
from local.emulator.aws import trust_problem
from local.emulator.errors import ApiError
from local.emulator.publisher import PUT_RECORDS_MAX_BYTES, PUT_RECORDS_MAX_RECORDS, _chunks
from local.emulator.settings import Clock, EmulatorSettings, SettingsError

SAMPLES = Path("/work/shared/samples")
POOL = "us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"
IDENTITY = "us-east-1:7d3c9b1a-2e4f-4c5d-8a6b-0c1d2e3f4a5b"
SAMPLE_FIELDS = [
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


def _sample(name: str) -> dict[str, object]:
    path = SAMPLES / name
    if not path.exists():  # the samples live beside the repository on the build machine
        return {}
    return dict(json.loads(path.read_text()))


def test_inline_record_matches_the_documented_sample_field_for_field() -> None:
    # GIVEN the two-key sync of the documented sample
    expected = _sample("inline-replace.json") or None
    # WHEN the emulator encodes the same sync
    data = stream_format.inline_record(
        identity_pool_id=POOL,
        identity_id=IDENTITY,
        dataset_name="game_state",
        operation="replace",
        elements=[
            stream_format.element("level", "12", 7, 1424801824343, 1424801824101, "replace"),
            stream_format.element("coins", "4500", 7, 1424801824343, 1424801824101, "replace"),
        ],
        last_modified_ms=1424801824343,
        sync_count=7,
    )
    decoded = orjson.loads(data)
    # THEN the fields, their order and the element fields are those of the documentation
    assert list(decoded) == SAMPLE_FIELDS
    assert list(decoded["kinesisSyncRecords"][0]) == [
        "key",
        "value",
        "syncCount",
        "lastModifiedDate",
        "deviceLastModifiedDate",
        "op",
    ]
    if expected is not None:
        assert decoded == expected


def test_s3url_record_moves_the_elements_behind_the_url() -> None:
    # GIVEN an inline record
    data = stream_format.inline_record(
        identity_pool_id=POOL,
        identity_id=IDENTITY,
        dataset_name="app_prefs",
        operation="replace",
        elements=[stream_format.element("theme", "dark", 3, 1424802000000, 1424801999000, "replace")],
        last_modified_ms=1424802000000,
        sync_count=3,
    )
    # WHEN it is split for S3 and rebuilt with a URL
    record, body = stream_format.split_for_s3(data)
    out = orjson.loads(stream_format.s3url_record(record, "https://example/x?X-Amz-Expires=3600"))
    # THEN the body is the array of elements and the record says S3Url, with no inline elements
    assert orjson.loads(body) == [
        {
            "key": "theme",
            "value": "dark",
            "syncCount": 3,
            "lastModifiedDate": 1424802000000,
            "deviceLastModifiedDate": 1424801999000,
            "op": "replace",
        }
    ]
    assert list(out) == SAMPLE_FIELDS
    assert out["payloadType"] == "S3Url"
    assert out["kinesisSyncRecords"] is None
    assert out["kinesisSyncRecordsURL"] == "https://example/x?X-Amz-Expires=3600"
    sample = _sample("s3url.json")
    if sample:
        assert set(sample) == set(out)


def test_fits_inline_counts_the_partition_key_like_kinesis() -> None:
    key = stream_format.partition_key(IDENTITY, "game_state")
    assert key == f"{IDENTITY}/game_state"
    limit = 1000
    assert stream_format.fits_inline(b"x" * (limit - len(key)), key, limit)
    assert not stream_format.fits_inline(b"x" * (limit - len(key) + 1), key, limit)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "cognito-sync.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ]
            },
            None,
        ),
        (
            {
                "Statement": {
                    "Effect": "Allow",
                    "Principal": {"Service": ["lambda.amazonaws.com", "cognito-sync.amazonaws.com"]},
                    "Action": ["sts:*"],
                }
            },
            None,
        ),
        ({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*"}]}, None),
        (
            {
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ]
            },
            "does not let cognito-sync.amazonaws.com",
        ),
        (
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "cognito-sync.amazonaws.com"},
                        "Action": "sts:TagSession",
                    }
                ]
            },
            "does not let",
        ),
        (
            {
                "Statement": [
                    {"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"},
                    {"Effect": "Deny", "Principal": {"Service": "cognito-sync.amazonaws.com"}, "Action": "sts:*"},
                ]
            },
            "denies",
        ),
        ("%7B%22Statement%22%3A%20%5B%5D%7D", "does not let"),  # URL-encoded, as IAM sometimes returns it
        ("not json", "not valid JSON"),
    ],
)
def test_trust_policy_evaluation(document: object, problem: str | None) -> None:
    found = trust_problem(document)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (validation.identity_pool_id, "not-a-pool"),
        (validation.identity_pool_id, "us-east-1:" + "a" * 50),
        (validation.identity_pool_id, "us-east-1:XYZ"),
        (validation.identity_id, "us-east-1_abc"),
        (validation.dataset_name, "has space"),
        (validation.dataset_name, "x" * 129),
        (validation.dataset_name, "émoji"),
    ],
)
def test_bad_ids_and_names_are_invalid_parameters(check: object, value: str) -> None:
    with pytest.raises(ApiError) as err:
        check(value)  # type: ignore[operator]
    assert err.value.error_type == "InvalidParameterException"
    assert err.value.status == 400
    assert repr(value)[:20] in err.value.message


def test_good_ids_and_names_pass() -> None:
    assert validation.identity_pool_id(POOL) == POOL
    assert validation.identity_id(IDENTITY) == IDENTITY
    assert validation.dataset_name("game_state.v2:slot-1") == "game_state.v2:slot-1"
    assert validation.role_arn("arn:aws:iam::123456789012:role/path/pub", "RoleArn")


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::123456789012:user/someone",
        "arn:aws:iam:::role/no-account",
        "role/x",
        42,
        "arn:aws:s3:::bucket/x/y/z",
    ],
)
def test_bad_role_arns(arn: object) -> None:
    with pytest.raises(ApiError, match="not an IAM role ARN"):
        validation.role_arn(arn, "CognitoStreams.RoleArn")


def test_push_sync_checks_application_arns() -> None:
    good = {"ApplicationArns": ["arn:aws:sns:us-east-1:123456789012:app/GCM/my-app"], "RoleArn": None}
    assert validation.push_sync(good) == good
    with pytest.raises(ApiError, match="SNS platform application ARNs"):
        validation.push_sync({"ApplicationArns": ["arn:aws:sns:us-east-1:1:topic"]})
    with pytest.raises(ApiError, match="unknown members"):
        validation.push_sync({"Bogus": 1})


def test_clock_ticks_strictly_increase_even_when_moved_back() -> None:
    clock = Clock()
    first = [clock.tick() for _ in range(1000)]
    assert all(b > a for a, b in itertools.pairwise(first))
    clock.offset_ms = -3_600_000  # an hour back
    later = clock.tick()
    assert later > first[-1]
    assert clock.now_ms() < later  # the change stamps run ahead until the clock catches up


def test_settings_validate_every_field_and_name_it() -> None:
    settings = EmulatorSettings()
    assert settings.s3url_threshold_bytes == 1_048_576
    assert settings.max_datasets_per_identity == 20
    assert settings.max_records_per_dataset == 1024
    with pytest.raises(SettingsError) as err:
        settings.updated({"s3url_threshold_bytes": 2_000_000, "bulk_publish_min_seconds": -1})
    message = str(err.value)
    assert "s3url_threshold_bytes" in message and "bulk_publish_min_seconds" in message
    with pytest.raises(SettingsError, match="nope"):
        settings.updated({"nope": 1})
    assert settings.updated({"s3url_threshold_bytes": 51_200}).s3url_threshold_bytes == 51_200


@given(st.lists(st.integers(min_value=1, max_value=1_100_000), max_size=1200))
def test_put_records_chunks_respect_kinesis_limits_and_keep_order(sizes: list[int]) -> None:
    items = [(f"k{i}", b"x" * size) for i, size in enumerate(sizes)]
    chunks = _chunks(items)
    assert [item for chunk in chunks for item in chunk] == items
    for chunk in chunks:
        assert 1 <= len(chunk) <= PUT_RECORDS_MAX_RECORDS
        if len(chunk) > 1:
            assert sum(len(d) + len(k) for k, d in chunk) <= PUT_RECORDS_MAX_BYTES


def test_the_rate_limit_lets_a_burst_through_then_the_configured_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    from local.emulator import server
    from local.emulator.server import RateLimiter

    now = [100.0]
    monkeypatch.setattr(server.time, "monotonic", lambda: now[0])
    bucket = RateLimiter()
    # GIVEN no limit: every call goes through
    assert all(bucket.take(0, 10) for _ in range(1000))
    # GIVEN 2 calls/s with a burst of 3: three at once go, the fourth is throttled ...
    assert [bucket.take(2, 3) for _ in range(4)] == [True, True, True, False]
    # ... half a second later one more goes, and then none
    now[0] += 0.5
    assert [bucket.take(2, 3) for _ in range(2)] == [True, False]
    # ... and after a long pause the bucket holds a burst again, no more
    now[0] += 60
    assert [bucket.take(2, 3) for _ in range(4)] == [True, True, True, False]
    # WHEN the limit changes THEN it starts with a full bucket of the new burst
    assert [bucket.take(5, 1) for _ in range(2)] == [True, False]
