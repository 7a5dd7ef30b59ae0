"""Cognito Streams records for the landing tests and benchmarks: the real samples, builders of valid
records, one bad record of each kind the decoder must quarantine, and a Kinesis writer.

Field names and layout follow /work/shared/samples (copied into SAMPLES below so the tests do not
depend on a path outside the repository).
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from typing import Any

import orjson

POOL = "us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"
IDENTITY = "us-east-1:7d3c9b1a-2e4f-4c5d-8a6b-0c1d2e3f4a5b"


def with_records_pool(pool_ids: list[str]) -> list[str]:
    """``identity_pool_ids`` plus the pool of these records: the landing rejects records of a pool that is
    not configured (``unknown_identity_pool``), and the stack's own pools are made up at its start."""
    return [*pool_ids, POOL] if POOL not in pool_ids else list(pool_ids)


#: The shared samples, verbatim (one Kinesis record's data each).
SAMPLES: dict[str, bytes] = {
    "inline-replace": b'{"identityPoolId": "us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f", "identityId": '
    b'"us-east-1:7d3c9b1a-2e4f-4c5d-8a6b-0c1d2e3f4a5b", "dataSetName": "game_state", "operation": "replace", '
    b'"kinesisSyncRecords": [{"key": "level", "value": "12", "syncCount": 7, "lastModifiedDate": 1424801824343, '
    b'"deviceLastModifiedDate": 1424801824101, "op": "replace"}, {"key": "coins", "value": "4500", "syncCount": 7, '
    b'"lastModifiedDate": 1424801824343, "deviceLastModifiedDate": 1424801824101, "op": "replace"}], '
    b'"lastModifiedDate": 1424801824343, "kinesisSyncRecordsURL": null, "payloadType": "Inline", "syncCount": 7}',
    "inline-remove": b'{"identityPoolId": "us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f", "identityId": '
    b'"us-east-1:7d3c9b1a-2e4f-4c5d-8a6b-0c1d2e3f4a5b", "dataSetName": "game_state", "operation": "replace", '
    b'"kinesisSyncRecords": [{"key": "coins", "value": null, "syncCount": 8, "lastModifiedDate": 1424801899000, '
    b'"deviceLastModifiedDate": 1424801898000, "op": "remove"}], "lastModifiedDate": 1424801899000, '
    b'"kinesisSyncRecordsURL": null, "payloadType": "Inline", "syncCount": 8}',
    "dataset-remove": b'{"identityPoolId": "us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f", "identityId": '
    b'"us-east-1:7d3c9b1a-2e4f-4c5d-8a6b-0c1d2e3f4a5b", "dataSetName": "app_prefs", "operation": "remove", '
    b'"kinesisSyncRecords": [], "lastModifiedDate": 1424803000000, "kinesisSyncRecordsURL": null, '
    b'"payloadType": "Inline", "syncCount": 4}',
    "s3url": b'{"identityPoolId": "us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f", "identityId": '
    b'"us-east-1:7d3c9b1a-2e4f-4c5d-8a6b-0c1d2e3f4a5b", "dataSetName": "app_prefs", "operation": "replace", '
    b'"kinesisSyncRecords": null, "lastModifiedDate": 1424802000000, "kinesisSyncRecordsURL": '
    b'"https://cognito-sync-streams.s3.amazonaws.com/us-east-1%3A0f5b/payload-0001?X-Amz-Algorithm=AWS4-HMAC-SHA256'
    b'&X-Amz-Expires=3600&X-Amz-Signature=REDACTED", "payloadType": "S3Url", "syncCount": 3}',
    "s3url-body": b'[{"key": "theme", "value": "dark", "syncCount": 3, "lastModifiedDate": 1424802000000, '
    b'"deviceLastModifiedDate": 1424801999000, "op": "replace"}, {"key": "layout", "value": "<a value of about 1 MB '
    b'in real payloads>", "syncCount": 3, "lastModifiedDate": 1424802000000, "deviceLastModifiedDate": 1424801999000, '
    b'"op": "replace"}]',
}


def change(key: str, value: str | None, sync_count: int, at: int, op: str = "replace") -> dict[str, Any]:
    """One element of kinesisSyncRecords."""
    return {
        "key": key,
        "value": value,
        "syncCount": sync_count,
        "lastModifiedDate": at,
        "deviceLastModifiedDate": at - 100,
        "op": op,
    }


def record(
    changes: list[dict[str, Any]] | None,
    *,
    pool: str = POOL,
    identity: str = IDENTITY,
    dataset: str = "game_state",
    operation: str = "replace",
    sync_count: int = 1,
    at: int = 1424801824343,
    url: str | None = None,
    dataset_field: str = "dataSetName",
) -> dict[str, Any]:
    """A Cognito Streams record (as a dict, in Cognito's field order)."""
    return {
        "identityPoolId": pool,
        "identityId": identity,
        dataset_field: dataset,
        "operation": operation,
        "kinesisSyncRecords": changes,
        "lastModifiedDate": at,
        "kinesisSyncRecordsURL": url,
        "payloadType": "S3Url" if url else "Inline",
        "syncCount": sync_count,
    }


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes."""
    return orjson.dumps(obj)


def seed_records(n: int, seed: int = 0) -> list[bytes]:
    """``n`` valid records of about 1 KB, shaped like app data in Cognito Sync: 3-9 keys per sync,
    mostly short values (numbers, words, flags), some longer text with escapes and non-ASCII."""
    rnd = random.Random(seed)
    words = ["dark", "light", "en-US", "fr-FR", "true", "false", "easy", "hard", "level-7", "sword", "shield"]
    alphabet = string.ascii_letters + string.digits + ' "\\/éü€'

    def value() -> str | None:
        roll = rnd.random()
        if roll < 0.4:
            return str(rnd.randint(0, 10 ** rnd.randint(1, 7)))
        if roll < 0.75:
            return rnd.choice(words)
        if roll < 0.97:
            return "".join(rnd.choices(alphabet, k=rnd.randint(20, 160)))
        return None

    out = []
    for i in range(n):
        at = 1_700_000_000_000 + i * 1000
        changes = []
        for j in range(rnd.randint(3, 8)):
            op = "remove" if rnd.random() < 0.05 else "replace"
            changes.append(
                change(f"key_{j}_{rnd.randint(0, 40)}", value() if op == "replace" else None, i % 97 + 1, at, op=op)
            )
        out.append(
            dumps(
                record(
                    changes,
                    identity=f"us-east-1:7d3c9b1a-2e4f-4c5d-8a6b-{i % 5000:012d}",
                    dataset=f"dataset_{i % 7}",
                    sync_count=i % 97 + 1,
                    at=at,
                )
            )
        )
    return out


#: One bad record per decode-level reject reason: (reason, raw bytes).
def bad_records() -> list[tuple[str, bytes]]:
    """A record of each kind the issue lists (Kinesis-level; S3Url failures are tested apart)."""
    good = SAMPLES["inline-replace"]
    return [
        ("invalid_json", good[: len(good) // 2]),
        ("invalid_json", b"not json at all"),
        ("invalid_json", b'{"identityPoolId": "p", "identityId": tru}'),
        ("invalid_utf8", good.replace(b'"12"', b'"\xff\xfe12"')),
        ("not_an_object", b'["identityPoolId", "identityId"]'),
        ("not_an_object", b'"just a string"'),
        ("not_an_object", b"42"),
        ("not_an_object", b"null"),
        ("missing_field", good.replace(b'"identityId": "us-east-1:7d3c9b1a-2e4f-4c5d-8a6b-0c1d2e3f4a5b", ', b"")),
        ("missing_field", good.replace(b'"identityPoolId": "us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f", ', b"")),
        ("missing_field", good.replace(b'"dataSetName": "game_state", ', b"")),
        (
            "missing_field",
            good.replace(b'"identityId": "us-east-1:7d3c9b1a-2e4f-4c5d-8a6b-0c1d2e3f4a5b"', b'"identityId": ""'),
        ),
        ("bad_field_type", good.replace(b'"syncCount": 7}', b'"syncCount": "7"}')),
        ("bad_field_type", good.replace(b'"syncCount": 7}', b'"syncCount": 7.5}')),
        (
            "bad_field_type",
            good.replace(
                b'"syncCount": 7, "lastModifiedDate": 1424801824343, "deviceLast',
                b'"syncCount": true, "lastModifiedDate": 1424801824343, "deviceLast',
                1,
            ),
        ),
        ("bad_field_type", good.replace(b'"syncCount": 7}', b'"syncCount": 99999999999999999999}')),
        ("bad_field_type", good.replace(b'"syncCount": 7}', b'"syncCount": -3}')),
        (
            "bad_field_type",
            good.replace(b'"identityId": "us-east-1:7d3c9b1a-2e4f-4c5d-8a6b-0c1d2e3f4a5b"', b'"identityId": 12345'),
        ),
        ("unknown_op", good.replace(b'"op": "replace"', b'"op": "upsert"', 1)),
        ("unknown_op", good.replace(b'"operation": "replace"', b'"operation": "merge"')),
        ("unknown_payload_type", good.replace(b'"payloadType": "Inline"', b'"payloadType": "Kinesis"')),
        (
            "duplicate_keys",
            good.replace(b'"dataSetName": "game_state", ', b'"dataSetName": "game_state", "dataSetName": "other", '),
        ),
        ("duplicate_keys", good.replace(b'"key": "level", ', b'"key": "level", "key": "xp", ')),
        ("duplicate_keys", good.replace(b'"key": "coins"', b'"key": "level"')),
        (
            "duplicate_keys",
            good.replace(b'"dataSetName": "game_state"', b'"dataSetName": "game_state", "datasetName": "other"'),
        ),
        # 40 three-byte characters: 41 characters (within Cognito's 55) but 130 bytes, and not Cognito's shape
        ("invalid_identifier", good.replace(IDENTITY.encode(), ("us-east-1:" + "\u20ac" * 40).encode())),
        ("invalid_identifier", good.replace(b'"game_state"', b'"game state"')),
    ]


def put_records(
    kinesis: Any, stream: str, data: list[bytes], partition_keys: list[str] | None = None
) -> list[dict[str, Any]]:
    """PutRecords in calls of 500; returns each record's ``{"ShardId", "SequenceNumber"}``."""
    out: list[dict[str, Any]] = []
    keys = partition_keys or [f"pk-{i}" for i in range(len(data))]
    for lo in range(0, len(data), 500):
        entries = [
            {"Data": d, "PartitionKey": k} for d, k in zip(data[lo : lo + 500], keys[lo : lo + 500], strict=True)
        ]
        response = kinesis.put_records(StreamName=stream, Records=entries)
        if response.get("FailedRecordCount"):
            raise RuntimeError(f"put_records failed for {response['FailedRecordCount']} record(s)")
        out.extend(response["Records"])
    return out


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of ``size``."""
    for lo in range(0, len(items), size):
        yield items[lo : lo + size]
