"""The bad-input corpus: malformed Cognito Streams records, each with what the landing must do with it.

It extends the landing engineer's list (``tests.landing_records.bad_records``: one record per
decode-level reason) with the hostile and odd inputs of issue 9: truncated JSON, huge arrays, deep
nesting, invalid surrogates, NUL bytes, wrong types, missing and extra fields, encodings. Most are
quarantined with a reason; a few are tolerated on purpose (unknown members are ignored, a large
sync lands whole) and must land.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.landing_records import SAMPLES, bad_records, change, dumps, record

GOOD = SAMPLES["inline-replace"]
AT = 1424801824343
# Fragments of the sample to rewrite (each occurs once, or its first occurrence is meant).
LEVEL_VALUE = b'"12"'
TOP_DATE = b'"lastModifiedDate": 1424801824343, "kinesisSyncRecordsURL"'
IDENTITY = b'"identityId": "us-east-1:7d3c9b1a-2e4f-4c5d-8a6b-0c1d2e3f4a5b"'


@dataclass(frozen=True)
class BadCase:
    """One input and its fate: quarantined with ``reason`` (whose detail contains ``detail``), or
    landed (``reason`` None) as ``rows`` change rows."""

    name: str
    raw: bytes
    reason: str | None
    detail: str = ""
    rows: int = 0


def _top(member: bytes, value: bytes) -> bytes:
    """The sample with one more top-level member."""
    return GOOD[:-1] + b", " + member + b": " + value + b"}"


def corpus() -> list[BadCase]:
    """Every case, the landing engineer's first."""
    cases = [BadCase(f"landing-list-{i:02d}-{reason}", raw, reason) for i, (reason, raw) in enumerate(bad_records())]
    deep = 100_000
    cases += [
        # truncated JSON, at every kind of place
        BadCase("truncated-after-brace", b"{", "invalid_json", "unexpected end"),
        BadCase("truncated-in-member-name", GOOD[:10], "invalid_json", "unexpected end"),
        BadCase("truncated-in-string", GOOD[: GOOD.index(LEVEL_VALUE) + 2], "invalid_json", "unexpected end"),
        BadCase("truncated-in-number", GOOD[: GOOD.index(b"1424801824101") + 5], "invalid_json", "unexpected end"),
        BadCase("truncated-in-array", GOOD[: GOOD.index(b"}, {") + 1], "invalid_json", "unexpected end"),
        BadCase("truncated-last-brace", GOOD[:-1], "invalid_json", "unexpected end"),
        BadCase("empty", b"", "invalid_json"),
        BadCase("whitespace-only", b"   \n  ", "invalid_json"),
        # huge arrays: a large sync is data (it lands whole); a huge array where a string belongs is not
        BadCase(
            "huge-sync-8000-keys", dumps(record([change(f"k{i}", "v", 1, AT) for i in range(8000)])), None, rows=8000
        ),
        BadCase(
            "huge-array-as-value",
            GOOD.replace(LEVEL_VALUE, b"[" + b",".join([b"1"] * 150_000) + b"]"),
            "bad_field_type",
            "value is a JSON array",
        ),
        BadCase("huge-array-of-one-key", dumps(record([change("same", "v", 1, AT)] * 5000)), "duplicate_keys"),
        # deep nesting: where a value belongs it is refused before any recursion; in an unknown member
        # it is ignored like the member itself
        BadCase(
            "deep-nesting-as-value", GOOD.replace(LEVEL_VALUE, b"[" * deep + b"]" * deep), "invalid_json", "depth limit"
        ),
        BadCase("deep-nesting-as-record", b"[" * deep + b"]" * deep, "invalid_json", "depth limit"),
        BadCase("deep-nesting-in-unknown-member", _top(b'"extra"', b"[" * deep + b"]" * deep), None, rows=2),
        # invalid surrogates
        BadCase("lone-high-surrogate-escape", GOOD.replace(LEVEL_VALUE, b'"\\ud800"'), "invalid_json", "surrogate"),
        BadCase("lone-low-surrogate-escape", GOOD.replace(LEVEL_VALUE, b'"\\udc00x"'), "invalid_json"),
        BadCase("surrogate-as-utf8-bytes", GOOD.replace(LEVEL_VALUE, b'"\xed\xa0\x80"'), "invalid_utf8"),
        BadCase("valid-surrogate-pair", GOOD.replace(LEVEL_VALUE, b'"\\ud83d\\ude00"'), None, rows=2),
        # NUL: raw it is not JSON; escaped it is JSON text no warehouse column can hold as it is: Cognito
        # accepts it in values and keys, so they land in a reversible form (core/values.py); an id never
        # has it (Cognito's shape)
        BadCase("nul-raw-in-string", GOOD.replace(LEVEL_VALUE, b'"1\x002"'), "invalid_json", "control character"),
        BadCase("nul-after-document", GOOD + b"\x00", "invalid_json", "after document"),
        BadCase("nul-only", b"\x00" * 16, "invalid_json"),
        BadCase("nul-escaped-in-value", GOOD.replace(LEVEL_VALUE, b'"1\\u00002"'), None, rows=2),
        BadCase("nul-escaped-in-key", GOOD.replace(b'"key": "level"', b'"key": "le\\u0000vel"'), None, rows=2),
        BadCase(
            "nul-escaped-in-identity",
            GOOD.replace(IDENTITY, b'"identityId": "us-east-1:\\u0000"'),
            "invalid_identifier",
            "identityId is not an identity id",
        ),
        # wrong types
        BadCase("value-is-a-number", GOOD.replace(LEVEL_VALUE, b"12"), "bad_field_type", "value is a JSON integer"),
        BadCase("value-is-an-object", GOOD.replace(LEVEL_VALUE, b'{"a": 1}'), "bad_field_type"),
        BadCase("value-is-true", GOOD.replace(LEVEL_VALUE, b"true"), "bad_field_type"),
        BadCase(
            "date-is-a-string",
            GOOD.replace(TOP_DATE, b'"lastModifiedDate": "2015-02-24", "kinesisSyncRecordsURL"'),
            "bad_field_type",
            "lastModifiedDate",
        ),
        BadCase(
            "date-in-seconds-float",
            GOOD.replace(TOP_DATE, b'"lastModifiedDate": 1424801824.3, "kinesisSyncRecordsURL"'),
            "bad_field_type",
        ),
        BadCase(
            "date-beyond-9999",
            GOOD.replace(TOP_DATE, b'"lastModifiedDate": 999999999999999, "kinesisSyncRecordsURL"'),
            "bad_field_type",
            "between 1970 and 9999",
        ),
        BadCase(
            "date-negative",
            GOOD.replace(TOP_DATE, b'"lastModifiedDate": -5, "kinesisSyncRecordsURL"'),
            "bad_field_type",
        ),
        BadCase("sync-count-exponent", GOOD.replace(b'"syncCount": 7}', b'"syncCount": 1e3}'), "bad_field_type"),
        BadCase(
            "records-is-an-object",
            GOOD.replace(b'"kinesisSyncRecords": [{', b'"kinesisSyncRecords": {"x": {', 1).replace(
                b'"op": "replace"}], "lastModified', b'"op": "replace"}}, "lastModified'
            ),
            "invalid_json",
        ),
        BadCase("records-is-a-string", dumps({**_sample(), "kinesisSyncRecords": "level=12"}), "bad_field_type"),
        BadCase("records-hold-a-number", dumps({**_sample(), "kinesisSyncRecords": [1, 2]}), "bad_field_type"),
        BadCase("record-is-an-array", b"[" + GOOD + b"]", "not_an_object"),
        BadCase("pool-is-a-number", dumps({**_sample(), "identityPoolId": 12}), "bad_field_type"),
        BadCase("op-is-a-number", GOOD.replace(b'"op": "replace"', b'"op": 1', 1), "bad_field_type"),
        # missing fields
        BadCase("no-top-date", GOOD.replace(TOP_DATE, b'"kinesisSyncRecordsURL"'), "missing_field", "lastModifiedDate"),
        BadCase("no-element-op", GOOD.replace(b', "op": "replace"}', b"}", 1), "missing_field", ".op is missing"),
        BadCase(
            "no-element-key",
            dumps(
                {**_sample(), "kinesisSyncRecords": [{k: v for k, v in change("k", "v", 1, AT).items() if k != "key"}]}
            ),
            "missing_field",
            ".key",
        ),
        BadCase("null-element", dumps({**_sample(), "kinesisSyncRecords": [None]}), "missing_field", "is null"),
        BadCase(
            "s3url-without-url",
            GOOD.replace(b'"payloadType": "Inline"', b'"payloadType": "S3Url"'),
            "missing_field",
            "kinesisSyncRecordsURL",
        ),
        BadCase("empty-object", b"{}", "missing_field"),
        # extra fields: Cognito may add members; unknown ones are ignored, whatever their type
        BadCase("extra-top-level-members", _top(b'"newField"', b'{"a": [1, 2, {"b": null}]}'), None, rows=2),
        BadCase(
            "extra-element-member", GOOD.replace(b'"op": "replace"}', b'"op": "replace", "ttl": 3600}', 1), None, rows=2
        ),
        # encodings and framing
        BadCase("utf8-bom", b"\xef\xbb\xbf" + GOOD, "invalid_json", "BOM"),
        BadCase("latin1-value", GOOD.replace(LEVEL_VALUE, b'"caf\xe9"'), "invalid_utf8"),
        BadCase("utf16-record", GOOD.decode().encode("utf-16"), "invalid_utf8"),
        BadCase("control-char-in-string", GOOD.replace(LEVEL_VALUE, b'"1\x012"'), "invalid_json"),
        BadCase("newlines-between-members", GOOD.replace(b", ", b",\n"), None, rows=2),
        BadCase("two-documents", GOOD + b"\n" + GOOD, "invalid_json"),
        BadCase("kpl-magic-then-garbage", b"\xf3\x89\x9a\xc2" + b"\x00garbage" * 8, "kpl_bad_aggregate"),
        # semantics that look odd but are Cognito's
        BadCase(
            "remove-operation-with-records",
            GOOD.replace(b'"operation": "replace"', b'"operation": "remove"'),
            None,
            rows=2,
        ),
        BadCase("key-of-1024-characters", dumps(record([change("k" * 1024, "v", 1, AT)])), None, rows=1),
        # longer than Cognito allows (and than the warehouse's columns: such a row would fail every load)
        BadCase(
            "key-of-5000-characters",
            dumps(record([change("k" * 5000, "v", 1, AT)])),
            "bad_field_type",
            ".key is longer than 1024",
        ),
        BadCase(
            "identity-id-too-long",
            dumps(record([change("k", "v", 1, AT)], identity="us-east-1:" + "a" * 300)),
            "invalid_identifier",
            "identityId is not an identity id",
        ),
        BadCase(
            "pool-id-too-long",
            dumps(record([change("k", "v", 1, AT)], pool="us-east-1:" + "0" * 100)),
            "invalid_identifier",
            "identityPoolId is not an identity pool id",
        ),
        BadCase(
            "dataset-name-too-long",
            dumps(record([change("k", "v", 1, AT)], dataset="d" * 129)),
            "invalid_identifier",
            "dataset name is not a dataset name",
        ),
        BadCase(
            "long-identity-and-bad-op",
            dumps(record([change("k", "v", 1, AT, op="upsert")], identity="x" * 500)),
            "invalid_identifier",
            "identityId is not an identity id",
        ),
        # Redshift's VARCHAR counts bytes: within Cognito's lengths in characters, but not its shapes
        # (its \w is ASCII), and wider in bytes than the warehouse's columns
        BadCase(
            "identity-id-of-40-three-byte-characters",
            dumps(record([change("k", "v", 1, AT)], identity="us-east-1:" + "\u20ac" * 40)),
            "invalid_identifier",
            "identityId is not an identity id",
        ),
        BadCase(
            "identity-region-of-letters-beyond-ascii",
            dumps(record([change("k", "v", 1, AT)], identity="\u00e9\u00e9:0f5b2a4e")),
            "invalid_identifier",
            "identityId is not an identity id",
        ),
        BadCase(
            "dataset-name-of-100-two-byte-characters",
            dumps(record([change("k", "v", 1, AT)], dataset="\u00e9" * 100)),
            "invalid_identifier",
            "dataset name is not a dataset name",
        ),
        BadCase(
            "dataset-name-with-a-space",
            dumps(record([change("k", "v", 1, AT)], dataset="game state")),
            "invalid_identifier",
            "dataset name is not a dataset name",
        ),
        # valid ids, but not of a configured pool, or an identity of another region than its pool
        BadCase(
            "pool-not-configured",
            dumps(record([change("k", "v", 1, AT)], pool="us-east-1:00000000-0000-0000-0000-000000000000")),
            "unknown_identity_pool",
            "not one of the configured",
        ),
        BadCase(
            "identity-of-another-region",
            dumps(record([change("k", "v", 1, AT)], identity="eu-west-1:7d3c9b1a-2e4f-4c5d-8a6b-0c1d2e3f4a5b")),
            "identity_region_mismatch",
            "region of identityId",
        ),
    ]
    return cases


def _sample() -> dict[str, object]:
    import orjson

    return dict(orjson.loads(GOOD))
