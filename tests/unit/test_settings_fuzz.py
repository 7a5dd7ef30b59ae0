"""Settings fuzzing: every bad ``cognito_pipeline`` value gives one clear error that names the field
(``cognito_pipeline.<field>: <why> (got <value>)``), never a traceback from deep inside, and never a
silently accepted value that would fail later (in a COPY statement, an S3 key, a Kinesis call)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cognito_streams.settings import PipelineSettings, SettingsError, parse_settings

VALID: dict[str, Any] = {
    "identity_pool_ids": ["us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"],
    "stream_name": "cognito-sync-stream",
    "publish_role_arn": "arn:aws:iam::123456789012:role/cognito-streams-publish",
    "landing_bucket": "cognito-streams-landing",
    "copy_iam_role_arn": "arn:aws:iam::123456789012:role/cognito-streams-redshift-copy",
}
FIELDS = sorted(PipelineSettings.model_fields)
PROBLEM = re.compile(r"^  - cognito_pipeline\.(?P<field>[\w.()\s]+): (?P<why>.+)$")

#: Bad values per field: wrong types, out of range, malformed, and injection attempts.
INJECTIONS = [
    "x; drop table records; --",
    "x' or '1'='1",
    'x" or "1"="1',
    "x\nselect 1",
    "x\x00y",
    "../../etc",
    "a b",
    "ｓｅｌｅｃｔ",  # full-width look-alikes
]
BAD: dict[str, list[Any]] = {
    "identity_pool_ids": [[], "us-east-1:0f5b", ["not-a-pool"], ["us-east-1:0f5b", "us-east-1:0f5b"], [1], None,
                          ["us-east-1:" + "0" * 60], ["us-east-1:0f5b'; drop"]],
    "stream_name": ["", "a" * 129, "has space", "slash/name", 12, None, *INJECTIONS],
    "stream_shards": [0, -1, 501, "two", 1.5, True, None],
    "publish_role_arn": ["", "arn:aws:iam::12:role/x", "arn:aws:s3:::bucket", "role/x", 7, *INJECTIONS],
    "manage_publish_role": ["maybe", 2, [], None],
    "publish_role_boundary_arn": ["", "arn:aws:iam::123456789012:role/x", "arn:aws:iam::12:policy/x",
                                  "arn:aws:iam::123456789012:policy/x' --", 3, *INJECTIONS[:4]],
    "publish_role_trust_condition": ["source", "", True, 1, None],
    "aws_conn_id": ["", "a b", "x/y", 3, *INJECTIONS[:5]],
    "warehouse_conn_id": ["", "semi;colon", None],
    "landing_bucket": ["", "ab", "UPPER", "192.168.0.1", "a..b", "-start", "xn--punycode", "b" * 64, *INJECTIONS],
    "landing_prefix": ["", "a//b", "./x", "a/../b", "x" * 600, "with space", "quote'd", 'dq"x', "back\\slash",
                       "per%cent", "q?x", "h#x", "x\x00y", "x\ny", None, 3],
    "batch_max_records": [0, 5_000_001, -5, "many", 2.5],
    "batch_max_bytes": [0, 1023, 3 * 1024**3, "1MB"],
    "run_max_records": [0, -1, "all"],
    "run_max_seconds": [0, -1, 3601, "fast", None],
    "get_records_limit": [0, 10_001, "x"],
    "s3url_fetch_concurrency": [0, 257, "x"],
    "s3url_fetch_timeout_seconds": [0, 301, "x"],
    "s3url_fetch_retries": [-1, 11, 2.5],
    "value_max_bytes": [15, 65_536, "big"],
    "checkpoint_lease_seconds": [0, 86_401, "x"],
    "s3url_max_bytes": [1023, 1024**3 + 1, "x"],
    "s3url_allowed_hosts": ["host", ["has space"], ["http://scheme.example.com"], ["host:port"], [1], None,
                            ["host:123456"]],
    "s3url_allowed_networks": ["10.0.0.0/8", ["10.0.0.1/8"], ["not-a-network"], ["10.0.0.0/33"], [1], None],
    "landing_compression": ["gzip", "", 1, None],
    "warehouse_schema": ["", "Upper", "1starts_with_digit", "has-dash", "a" * 64, "select", "user", "table",
                         *INJECTIONS, None, 5],
    "copy_iam_role_arn": ["", "arn:aws:iam::123456789012:user/x", "arn:aws:iam::123456789012:role/x' --", 3],
    "load_max_files_per_batch": [0, 10_001, "x"],
    "min_load_interval_seconds": [-1, 3601, "often", True, None],
    "bulk_publish_timeout_seconds": [0, 7 * 86_400 + 1, "x"],
    "bulk_publish_poll_seconds": [0, 3601, "x"],
    "bulk_publish_clock_skew_seconds": [-1, 3601, "x", True, None],
    "reconcile_sample_size": [0, -3, "some"],
    "reconcile_max_mismatches": [-1, "none"],
    "reconcile_settle_seconds": [-1, 7 * 86_400 + 1, "x"],
    "reconcile_depth": ["keys", "", 1, None, True],
    "stall_alert_seconds": [0, 0.5, 7 * 86_400 + 1, "x", True],
}  # fmt: skip


def problems(err: SettingsError) -> list[tuple[str, str]]:
    """(field, why) of each problem line of the error."""
    lines = str(err).splitlines()
    assert lines[0].startswith("Variable cognito_pipeline has ") and "fix them in Admin > Variables" in lines[0]
    out = []
    for line in lines[1:]:
        match = PROBLEM.match(line)
        assert match, f"unreadable problem line: {line!r}"
        out.append((match["field"], match["why"]))
    return out


def test_every_field_has_bad_values_here() -> None:
    assert sorted(BAD) == FIELDS, sorted(set(FIELDS) ^ set(BAD))


def names(field: str, named: str, why: str) -> bool:
    """The problem line is about ``field`` (or one element of it, or a rule that names it)."""
    return named == field or named.startswith(f"{field}.") or (named == "(whole object)" and field in why)


@pytest.mark.parametrize(
    ("field", "value"),
    [(f, v) for f, values in BAD.items() for v in values],
    ids=[f"{f}={v!r}"[:60] for f, values in BAD.items() for v in values],
)
def test_a_bad_value_gives_one_error_naming_its_field(field: str, value: Any) -> None:
    # GIVEN a valid Variable with one field set to a bad value
    raw = {**VALID, field: value}
    # WHEN it is parsed  THEN one problem is reported, and it names the field
    with pytest.raises(SettingsError) as caught:
        parse_settings(raw)
    found = problems(caught.value)
    assert found and all(names(field, named, why) and len(why) > 15 for named, why in found), found
    assert len({named.split(".")[0] for named, _ in found}) == 1, found
    # AND the same text read as the Variable's JSON gives the same answer
    if value is not None and not isinstance(value, float):
        with pytest.raises(SettingsError) as from_json:
            parse_settings(json.dumps(raw))
        assert problems(from_json.value) == problems(caught.value)


def test_several_bad_fields_are_all_reported_at_once() -> None:
    raw = {**VALID, "stream_shards": 0, "warehouse_schema": "drop table", "landing_prefix": "a'b", "typo_field": 1}
    with pytest.raises(SettingsError) as caught:
        parse_settings(raw)
    named = sorted(field for field, _ in problems(caught.value))
    assert named == ["landing_prefix", "stream_shards", "typo_field", "warehouse_schema"]
    assert "unknown setting (a typo?)" in str(caught.value)


@pytest.mark.parametrize("missing", ["identity_pool_ids", "stream_name", "publish_role_arn", "landing_bucket"])
def test_a_missing_required_field_is_named(missing: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings({k: v for k, v in VALID.items() if k != missing})
    assert problems(caught.value) == [(missing, "required setting is missing")]


@pytest.mark.parametrize("text", ["", "{", "[]", "null", '"a string"', "42", "{'single': 'quotes'}", "\x00"])
def test_a_variable_that_is_not_a_json_object_says_so(text: str) -> None:
    with pytest.raises(SettingsError, match=r"Variable cognito_pipeline (is not valid JSON|must be a JSON object)"):
        parse_settings(text)


def test_cross_field_rules_name_both_fields() -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings({**VALID, "run_max_seconds": 600, "checkpoint_lease_seconds": 300})
    ((_, why),) = problems(caught.value)
    assert "checkpoint_lease_seconds" in why and "run_max_seconds" in why


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), json_values)
def test_any_value_in_any_field_is_accepted_or_refused_by_name(field: str, value: Any) -> None:
    raw = {**VALID, field: value}
    try:
        parsed = parse_settings(json.dumps(raw))
    except SettingsError as err:
        found = problems(err)
        assert found and all(names(field, named, why) for named, why in found), found
        return
    # Accepted values are safe where they are used: identifiers bare in SQL, prefixes in COPY, hosts in URLs.
    assert re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", parsed.warehouse_schema)
    assert re.fullmatch(r"[A-Za-z0-9!_.*()/=:,+@-]+", parsed.landing_prefix)
    assert re.fullmatch(r"[a-zA-Z0-9_.-]{1,128}", parsed.stream_name)
