"""GetRecords' arrival times without botocore's per-record datetime parsing (a landing hot path)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import boto3

from cognito_streams.landing.reader import _epoch_ms
from cognito_streams.landing.runner import _arrival, raw_timestamps


def _get_records_body(arrived: list[float]) -> dict[str, object]:
    records = [
        {
            "SequenceNumber": str(10**20 + i),
            "ApproximateArrivalTimestamp": at,
            "Data": base64.b64encode(b'{"identityPoolId": "p"}').decode(),
            "PartitionKey": f"pk-{i}",
        }
        for i, at in enumerate(arrived)
    ]
    body = json.dumps({"Records": records, "NextShardIterator": "it", "MillisBehindLatest": 0}).encode()
    return {"body": body, "headers": {}, "status_code": 200}


def test_a_kinesis_client_returns_arrival_times_as_sent() -> None:
    # GIVEN a boto3 Kinesis client made to keep timestamps raw
    client = boto3.client("kinesis", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    assert raw_timestamps(client) is True
    # WHEN it parses a GetRecords response
    output = client.meta.service_model.operation_model("GetRecords").output_shape
    parsed = client._response_parser.parse(_get_records_body([1_700_000_000.123, 1_700_000_001.5]), output)
    # THEN arrival times are the epoch seconds Kinesis sent, and the reader turns them into the same
    # epoch milliseconds as it does datetimes
    arrived = [r["ApproximateArrivalTimestamp"] for r in parsed["Records"]]
    assert arrived == [1_700_000_000.123, 1_700_000_001.5]
    as_datetime = datetime.fromtimestamp(1_700_000_000.123, UTC)
    assert _epoch_ms(arrived[0]) == _epoch_ms(as_datetime) == 1_700_000_000_123
    assert parsed["Records"][0]["Data"] == b'{"identityPoolId": "p"}'


def test_arrival_accepts_both_forms() -> None:
    # GIVEN an arrival time as boto3's datetime and as raw epoch seconds THEN both give the same UTC time
    moment = datetime(2026, 11, 26, 8, 0, 0, 250_000, tzinfo=UTC)
    assert _arrival(moment) == _arrival(moment.timestamp()) == moment


def test_a_client_without_the_parser_attribute_is_left_alone() -> None:
    # GIVEN something that is not a botocore client THEN nothing is changed (the landing still works)
    assert raw_timestamps(object()) is False
