"""Planning one pool's Cognito Streams settings, and the IAM checks behind it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cognito_streams.core.configure.iam import (
    RoleArn,
    allows,
    publish_role_boundary,
    publish_role_policy,
    publish_role_problems,
    publish_role_trust_policy,
    stream_arn,
    trusts_service,
)
from cognito_streams.core.configure.streams_config import PoolAction, plan_pool, reshard_steps

ROLE = "arn:aws:iam::123456789012:role/cognito-streams-publish"
STREAM = "cognito-sync-stream"
PUSH = {
    "ApplicationArns": ["arn:aws:sns:us-east-1:123456789012:app/GCM/x"],
    "RoleArn": "arn:aws:iam::123456789012:role/push",
}


def config(
    stream: str | None = STREAM, role: str | None = ROLE, status: str = "ENABLED", reason: str | None = None, push=PUSH
):  # type: ignore[no-untyped-def]
    streams = {"StreamName": stream, "RoleArn": role, "StreamingStatus": status}
    if reason:
        streams["DisabledReason"] = reason
    out = {"IdentityPoolId": "us-east-1:x", "CognitoStreams": {k: v for k, v in streams.items() if v is not None}}
    if push:
        out["PushSync"] = push
    return out


def plan(current, stream_problems=(), role_problems=()):  # type: ignore[no-untyped-def]
    return plan_pool(
        current,
        stream_name=STREAM,
        role_arn=ROLE,
        stream_problems=list(stream_problems),
        role_problems=list(role_problems),
    )


def test_fresh_pool_is_configured_and_push_sync_kept() -> None:
    p = plan({"IdentityPoolId": "us-east-1:x", "PushSync": PUSH})
    assert p.action is PoolAction.CONFIGURE
    assert p.cognito_streams == {"StreamName": STREAM, "RoleArn": ROLE, "StreamingStatus": "ENABLED"}
    assert p.push_sync == PUSH


def test_right_pool_is_left_alone() -> None:
    p = plan(config())
    assert p.action is PoolAction.UNCHANGED
    assert not p.writes


def test_other_stream_or_role_is_repaired_with_the_drift_named() -> None:
    p = plan(config(stream="old-stream", role="arn:aws:iam::123456789012:role/old"))
    assert p.action is PoolAction.REPAIR
    assert any("old-stream" in r for r in p.reasons)
    assert any("role/old" in r for r in p.reasons)
    assert p.push_sync == PUSH


def test_disabled_by_cognito_is_reenabled_when_fixed_and_asks_for_a_backfill() -> None:
    p = plan(config(status="DISABLED", reason="Kinesis stream not found"))
    assert p.action is PoolAction.REENABLE
    assert p.needs_backfill
    assert "Kinesis stream not found" in p.reasons[0]


def test_disabled_and_still_broken_fails_with_both_reasons() -> None:
    p = plan(config(status="DISABLED", reason="cannot assume role"), role_problems=["role does not exist"])
    assert p.action is PoolAction.FAIL
    text = " ".join(p.reasons)
    assert "cannot assume role" in text
    assert "role does not exist" in text


def test_enabled_but_stream_gone_fails_before_cognito_notices() -> None:
    p = plan(config(), stream_problems=["stream cognito-sync-stream does not exist"])
    assert p.action is PoolAction.FAIL


def test_disabled_by_hand_without_reason_is_a_repair() -> None:
    p = plan(config(status="DISABLED"))
    assert p.action is PoolAction.REPAIR
    assert p.needs_backfill


def test_role_arn_parsing() -> None:
    assert RoleArn.parse("arn:aws:iam::123456789012:role/a/b/name") == RoleArn("aws", "123456789012", "/a/b/", "name")
    assert RoleArn.parse(ROLE).path == "/"
    with pytest.raises(ValueError, match="not an IAM role ARN"):
        RoleArn.parse("arn:aws:iam::123456789012:user/bob")


def test_shipped_publish_policies_are_least_privilege_and_pass_our_check() -> None:
    arn = stream_arn("aws", "us-east-1", "123456789012", STREAM)
    policy = publish_role_policy("aws", "us-east-1", "123456789012", STREAM)
    trust = publish_role_trust_policy()
    assert publish_role_problems(trust, [policy], arn) == []
    # Nothing beyond the list: exactly two actions on exactly one resource.
    (stmt,) = policy["Statement"]
    assert sorted(stmt["Action"]) == ["kinesis:PutRecord", "kinesis:PutRecords"]
    assert stmt["Resource"] == arn
    assert not allows([policy], "kinesis:DeleteStream", arn)
    assert not allows([policy], "kinesis:PutRecord", stream_arn("aws", "us-east-1", "123456789012", "other"))
    (trust_stmt,) = trust["Statement"]
    assert trust_stmt["Principal"] == {"Service": "cognito-sync.amazonaws.com"}


def test_role_checks_find_a_wrong_trust_and_a_missing_permission() -> None:
    arn = stream_arn("aws", "us-east-1", "123456789012", STREAM)
    wrong_trust = {
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    }
    read_only = {"Statement": [{"Effect": "Allow", "Action": "kinesis:Get*", "Resource": "*"}]}
    problems = publish_role_problems(wrong_trust, [read_only], arn)
    assert len(problems) == 2
    assert "trust policy" in problems[0]
    assert "kinesis:PutRecord" in problems[1]


def test_wildcards_and_denies_are_honoured() -> None:
    arn = stream_arn("aws", "us-east-1", "123456789012", STREAM)
    broad = {"Statement": [{"Effect": "Allow", "Action": "kinesis:*", "Resource": "arn:aws:kinesis:*:*:stream/*"}]}
    deny = {"Statement": [{"Effect": "Deny", "Action": "kinesis:PutRecords", "Resource": "*"}]}
    assert allows([broad], "kinesis:PutRecord", arn)
    assert not allows([broad, deny], "kinesis:PutRecords", arn)
    as_text = (
        '{"Statement": {"Effect": "Allow", "Principal": {"Service": ["cognito-sync.amazonaws.com"]}, '
        '"Action": ["sts:AssumeRole"]}}'
    )
    assert trusts_service(as_text)


def test_a_wildcard_principal_cannot_serve_even_with_the_service_named() -> None:
    arn = stream_arn("aws", "us-east-1", "123456789012", STREAM)
    policy = publish_role_policy("aws", "us-east-1", "123456789012", STREAM)
    for principal in ("*", {"AWS": "*", "Service": "cognito-sync.amazonaws.com"}):
        trust = {"Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}]}
        # WHEN the role is checked THEN it is refused: anyone could put records on the stream
        problems = publish_role_problems(trust, [policy], arn)
        assert any("any principal ('*')" in p for p in problems), (principal, problems)


def test_a_stricter_trust_is_valid() -> None:
    arn = stream_arn("aws", "us-east-1", "123456789012", STREAM)
    policy = publish_role_policy("aws", "us-east-1", "123456789012", STREAM)
    trust = publish_role_trust_policy({"StringEquals": {"aws:SourceAccount": "123456789012"}})
    assert publish_role_problems(trust, [policy], arn) == []


def test_the_boundary_must_allow_publishing_and_be_readable() -> None:
    arn = stream_arn("aws", "us-east-1", "123456789012", STREAM)
    policy = publish_role_policy("aws", "us-east-1", "123456789012", STREAM)
    trust = publish_role_trust_policy()
    bound = "arn:aws:iam::123456789012:policy/b"
    right = publish_role_boundary("aws", "us-east-1", "123456789012", STREAM)
    other = publish_role_boundary("aws", "us-east-1", "123456789012", "another-stream")
    assert publish_role_problems(trust, [policy], arn, boundary_arn=bound, boundary=right) == []
    (problem,) = publish_role_problems(trust, [policy], arn, boundary_arn=bound, boundary=other)
    assert f"permissions boundary {bound} does not allow kinesis:PutRecord, kinesis:PutRecords" in problem
    (problem,) = publish_role_problems(trust, [policy], arn, boundary_arn=bound, boundary=None)
    assert "cannot be read by the worker" in problem and "publish_role_boundary_arn" in problem


def test_an_unreadable_attached_policy_is_named_only_when_the_grant_is_not_proven() -> None:
    arn = stream_arn("aws", "us-east-1", "123456789012", STREAM)
    policy = publish_role_policy("aws", "us-east-1", "123456789012", STREAM)
    trust = publish_role_trust_policy()
    hidden = {"arn:aws:iam::123456789012:policy/team": "the worker may not read it (AccessDenied)"}
    assert publish_role_problems(trust, [policy], arn, unreadable=hidden) == []
    (problem,) = publish_role_problems(trust, [], arn, unreadable=hidden)
    assert "not readable: arn:aws:iam::123456789012:policy/team: the worker may not read it" in problem


@given(current=st.integers(1, 10_000), wanted=st.integers(1, 10_000))
def test_reshard_steps_reach_the_target_within_kinesis_limits(current: int, wanted: int) -> None:
    # GIVEN any current and wanted shard counts WHEN planning the UpdateShardCount calls
    steps = reshard_steps(current, wanted)
    # THEN they end at the target, each at most double / at least half the count before it
    # (Kinesis refuses more), moving one way only, doubling or halving until the last step
    assert steps[-1:] == ([wanted] if current != wanted else [])
    before = current
    for step in steps:
        assert step != before
        assert step <= 2 * before and 2 * step >= before
        assert (step > before) == (wanted > current)
        before = step
    assert all(s in (2 * b, -(-b // 2)) for b, s in zip([current, *steps], steps[:-1], strict=False))


def test_reshard_steps_examples() -> None:
    assert reshard_steps(2, 2) == []
    assert reshard_steps(1, 3) == [2, 3]
    assert reshard_steps(1, 500) == [2, 4, 8, 16, 32, 64, 128, 256, 500]
    assert reshard_steps(5, 1) == [3, 2, 1]
    with pytest.raises(ValueError, match="at least 1"):
        reshard_steps(0, 2)
