"""The Cognito Streams record: what one sync puts on the Kinesis stream (pure functions).

Field names and their order follow the AWS documentation of Cognito Streams and the samples in
``/work/shared/samples/``::

    {"identityPoolId", "identityId", "dataSetName", "operation", "kinesisSyncRecords",
     "lastModifiedDate", "kinesisSyncRecordsURL", "payloadType", "syncCount"}

with each element of ``kinesisSyncRecords``::

    {"key", "value", "syncCount", "lastModifiedDate", "deviceLastModifiedDate", "op"}

Dates are epoch milliseconds. ``payloadType`` is ``Inline`` (the elements are in the record) or
``S3Url`` (``kinesisSyncRecords`` is null and ``kinesisSyncRecordsURL`` is a presigned GET URL whose
body is the JSON array of the elements).
"""

from __future__ import annotations

from typing import Any

import orjson

OPERATION_REPLACE = "replace"
OPERATION_REMOVE = "remove"
PAYLOAD_INLINE = "Inline"
PAYLOAD_S3URL = "S3Url"


def element(
    key: str, value: str | None, sync_count: int, last_modified_ms: int, device_last_modified_ms: int, op: str
) -> dict[str, Any]:
    """One change of one key, as an element of ``kinesisSyncRecords``."""
    return {
        "key": key,
        "value": value,
        "syncCount": sync_count,
        "lastModifiedDate": last_modified_ms,
        "deviceLastModifiedDate": device_last_modified_ms,
        "op": op,
    }


def inline_record(
    *,
    identity_pool_id: str,
    identity_id: str,
    dataset_name: str,
    operation: str,
    elements: list[dict[str, Any]],
    last_modified_ms: int,
    sync_count: int,
) -> bytes:
    """The record's data with the elements inline (``payloadType: Inline``), JSON-encoded."""
    return orjson.dumps(
        {
            "identityPoolId": identity_pool_id,
            "identityId": identity_id,
            "dataSetName": dataset_name,
            "operation": operation,
            "kinesisSyncRecords": elements,
            "lastModifiedDate": last_modified_ms,
            "kinesisSyncRecordsURL": None,
            "payloadType": PAYLOAD_INLINE,
            "syncCount": sync_count,
        }
    )


def split_for_s3(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Take an inline record apart: (the record without its elements, the JSON array of elements)."""
    record = orjson.loads(data)
    body = orjson.dumps(record.get("kinesisSyncRecords") or [])
    return record, body


def s3url_record(record: dict[str, Any], url: str) -> bytes:
    """The same record with its elements behind ``url`` (``payloadType: S3Url``)."""
    out = dict(record)
    out["kinesisSyncRecords"] = None
    out["kinesisSyncRecordsURL"] = url
    out["payloadType"] = PAYLOAD_S3URL
    return orjson.dumps(out)


def partition_key(identity_id: str, dataset_name: str) -> str:
    """Stable per identity and dataset, so one dataset's syncs stay in order on one shard."""
    return f"{identity_id}/{dataset_name}"


def fits_inline(data: bytes, key: str, threshold_bytes: int) -> bool:
    """Kinesis counts the data and the partition key against its 1 MiB record limit; so does the
    threshold (``s3url_threshold_bytes``)."""
    return len(data) + len(key.encode()) <= threshold_bytes
