"""The IAM documents we ship grant exactly their list, on exactly their resources, under exactly their
conditions.

moto evaluates no IAM condition, so the documents are proven statically here, with the
condition-aware evaluator of ``core.configure.iam`` (:func:`gates`: every statement that could apply to an
action on a resource, with its condition; :func:`decide`: IAM's answer for a request context). Which
actions take which resources and condition keys comes from AWS's Service Authorization Reference
(Amazon Cognito Sync, Amazon Cognito Identity, IAM).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from cognito_streams.core.configure.iam import (
    DEFAULT_BOUNDARY_NAME,
    Decision,
    allows,
    condition_holds,
    decide,
    gates,
    shipped_policies,
    trust_drift,
    trust_problems,
    trusts_service,
)

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/app/cognito-streams-publish"
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/{DEFAULT_BOUNDARY_NAME}"
STREAM_ARN = f"arn:aws:kinesis:eu-west-1:{ACCOUNT}:stream/sync-stream"
POOLS = ["eu-west-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f", "us-east-1:11111111-2222-3333-4444-555555555555"]
OTHER_POOL = "eu-west-1:99999999-8888-7777-6666-555555555555"


def render(**overrides: Any) -> dict[str, dict[str, Any]]:
    values: dict[str, Any] = {
        "partition": "aws",
        "region": "eu-west-1",
        "account_id": ACCOUNT,
        "stream_name": "sync-stream",
        "bucket": "landing-bucket",
        "prefix": "cognito-streams",
        "publish_role_arn": ROLE,
        "identity_pool_ids": POOLS,
    }
    return shipped_policies(**{**values, **overrides})


@pytest.fixture(scope="module")
def policies() -> dict[str, dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def worker(policies: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Everything the Airflow worker may hold: its policy and the opt-in role management policy."""
    return [policies["airflow-worker.policy"], policies["airflow-worker-manage-publish-role.policy"]]


def _grants(doc: dict[str, Any]) -> set[tuple[str, str]]:
    out = set()
    for stmt in doc["Statement"]:
        assert stmt["Effect"] == "Allow", "shipped policies only allow"
        assert "NotAction" not in stmt and "NotResource" not in stmt, "shipped policies name what they grant"
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        resources = stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]]
        out |= {(a, r) for a in actions for r in resources}
    return out


def sync_pool(pool: str) -> str:
    region = pool.split(":")[0]
    return f"arn:aws:cognito-sync:{region}:{ACCOUNT}:identitypool/{pool}"


def test_no_wildcard_actions_anywhere(policies: dict[str, dict[str, Any]]) -> None:
    for name, doc in policies.items():
        if name.endswith(".trust"):
            continue
        for action, _ in _grants(doc):
            assert "*" not in action, f"{name} grants a wildcard action {action}"


def test_publish_role_grants_exactly_put_on_the_one_stream(policies: dict[str, dict[str, Any]]) -> None:
    for name in ("cognito-publish-role.policy", "cognito-publish-role.boundary"):
        assert _grants(policies[name]) == {("kinesis:PutRecord", STREAM_ARN), ("kinesis:PutRecords", STREAM_ARN)}
    assert trusts_service(policies["cognito-publish-role.trust"], "cognito-sync.amazonaws.com")
    assert not trusts_service(policies["cognito-publish-role.trust"], "ec2.amazonaws.com")
    assert trust_problems(policies["cognito-publish-role.trust"]) == []


def test_redshift_copy_role_reads_the_landing_prefix_only(policies: dict[str, dict[str, Any]]) -> None:
    doc = policies["redshift-copy-role.policy"]
    assert _grants(doc) == {
        ("s3:GetObject", "arn:aws:s3:::landing-bucket/cognito-streams/*"),
        ("s3:ListBucket", "arn:aws:s3:::landing-bucket"),
    }
    listing = next(s for s in doc["Statement"] if s["Action"] == "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["cognito-streams/*"]}}
    assert not allows([doc], "s3:PutObject", "arn:aws:s3:::landing-bucket/cognito-streams/x")
    assert not allows([doc], "s3:GetObject", "arn:aws:s3:::landing-bucket/other/x")
    assert trusts_service(policies["redshift-copy-role.trust"], "redshift.amazonaws.com")


def test_airflow_worker_grants_nothing_beyond_its_list(policies: dict[str, dict[str, Any]]) -> None:
    grants = _grants(policies["airflow-worker.policy"])
    assert {a for a, _ in grants} == {
        "kinesis:DescribeStreamSummary",
        "kinesis:DescribeStream",
        "kinesis:ListShards",
        "kinesis:GetShardIterator",
        "kinesis:GetRecords",
        "kinesis:CreateStream",
        "kinesis:UpdateShardCount",
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "cognito-sync:GetIdentityPoolConfiguration",
        "cognito-sync:SetIdentityPoolConfiguration",
        "cognito-sync:BulkPublish",
        "cognito-sync:GetBulkPublishDetails",
        "cognito-sync:ListDatasets",
        "cognito-sync:DescribeDataset",
        "cognito-sync:ListRecords",
        "cognito-identity:ListIdentities",
        "iam:GetRole",
        "iam:ListRolePolicies",
        "iam:GetRolePolicy",
        "iam:ListAttachedRolePolicies",
        "iam:GetPolicy",
        "iam:GetPolicyVersion",
        "iam:PassRole",
    }
    # Kinesis on the one stream only, S3 on the landing prefix only, no deletes anywhere.
    assert {r for a, r in grants if a.startswith("kinesis:")} == {STREAM_ARN}
    assert {r for a, r in grants if a in ("s3:GetObject", "s3:PutObject")} == {
        "arn:aws:s3:::landing-bucket/cognito-streams/*"
    }
    assert not any("Delete" in a for a, _ in grants)
    assert {r for a, r in grants if a == "iam:PassRole"} == {ROLE}
    doc = policies["airflow-worker.policy"]
    assert not allows([doc], "kinesis:DeleteStream", STREAM_ARN)
    assert not allows([doc], "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin")


# Resource types from the Service Authorization Reference: Cognito Sync's identitypool actions,
# its dataset actions (arn ...:identitypool/<pool>/identity/<id>/dataset/<name>), Cognito Identity's
# ListIdentities (identitypool).
POOL_ACTIONS = (
    "cognito-sync:GetIdentityPoolConfiguration",
    "cognito-sync:SetIdentityPoolConfiguration",
    "cognito-sync:BulkPublish",
    "cognito-sync:GetBulkPublishDetails",
)
DATASET_ACTIONS = ("cognito-sync:ListDatasets", "cognito-sync:DescribeDataset", "cognito-sync:ListRecords")


def test_cognito_permissions_are_scoped_to_the_configured_pools(policies: dict[str, dict[str, Any]]) -> None:
    doc = policies["airflow-worker.policy"]
    grants = _grants(doc)
    # The resources are exactly the configured pools' ARNs, each in its own region.
    assert {r for a, r in grants if a in POOL_ACTIONS} == {sync_pool(p) for p in POOLS}
    assert {r for a, r in grants if a in DATASET_ACTIONS} == {f"{sync_pool(p)}/identity/*" for p in POOLS}
    assert {r for a, r in grants if a == "cognito-identity:ListIdentities"} == {
        f"arn:aws:cognito-identity:{p.split(':')[0]}:{ACCOUNT}:identitypool/{p}" for p in POOLS
    }
    for pool in POOLS:
        dataset = f"{sync_pool(pool)}/identity/{pool.split(':')[0]}:abc/dataset/prefs"
        assert all(allows([doc], a, sync_pool(pool)) for a in POOL_ACTIONS)
        assert all(allows([doc], a, dataset) for a in DATASET_ACTIONS)
    # Another pool of the account, or the same pool id in another account, is out of reach.
    other = sync_pool(OTHER_POOL)
    assert not any(allows([doc], a, other) for a in POOL_ACTIONS)
    assert not any(allows([doc], a, f"{other}/identity/x/dataset/y") for a in DATASET_ACTIONS)
    assert not allows([doc], "cognito-sync:BulkPublish", sync_pool(POOLS[0]).replace(ACCOUNT, "210987654321"))
    assert not allows(
        [doc], "cognito-identity:ListIdentities", f"arn:aws:cognito-identity:eu-west-1:{ACCOUNT}:identitypool/x"
    )
    # Nothing the pipeline does not call (ListIdentityPoolUsage would list every pool of the account).
    assert not allows([doc], "cognito-sync:ListIdentityPoolUsage", "*")


def test_the_worker_reads_only_aws_managed_policies_and_the_boundary(policies: dict[str, dict[str, Any]]) -> None:
    doc = policies["airflow-worker.policy"]
    for action in ("iam:GetPolicy", "iam:GetPolicyVersion"):
        assert {r for a, r in _grants(doc) if a == action} == {"arn:aws:iam::aws:policy/*", BOUNDARY}
        assert allows([doc], action, "arn:aws:iam::aws:policy/AmazonKinesisFullAccess")
        assert allows([doc], action, BOUNDARY)
        assert not allows([doc], action, f"arn:aws:iam::{ACCOUNT}:policy/payroll-admins")
    named = render(boundary_arn=f"arn:aws:iam::{ACCOUNT}:policy/team/publish-bound")["airflow-worker.policy"]
    assert allows([named], "iam:GetPolicy", f"arn:aws:iam::{ACCOUNT}:policy/team/publish-bound")
    assert not allows([named], "iam:GetPolicy", BOUNDARY)


def test_rendering_needs_the_pools() -> None:
    with pytest.raises(ValueError, match="identity_pool_ids is empty"):
        render(identity_pool_ids=[])


# -- the condition-aware proof of the role management policy --------------------------------------

OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/admin"
#: Actions that let a holder widen a role's permissions, its trust or its boundary, or act as it.
DANGEROUS = (
    "iam:CreateRole",
    "iam:PutRolePolicy",
    "iam:AttachRolePolicy",
    "iam:UpdateAssumeRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:DeleteRolePermissionsBoundary",
    "iam:DeleteRolePolicy",
    "iam:DetachRolePolicy",
    "iam:UpdateRole",
    "iam:TagRole",
    "iam:CreatePolicy",
    "iam:CreatePolicyVersion",
    "iam:SetDefaultPolicyVersion",
    "iam:PassRole",
    "sts:AssumeRole",
)
RESOURCES = (ROLE, OTHER_ROLE, BOUNDARY, f"arn:aws:iam::{ACCOUNT}:policy/other", "*")
#: What each gated action's condition must be, exactly (nothing else may allow a dangerous action).
EXPECTED_GATES = {
    ("iam:CreateRole", ROLE): {"StringEquals": {"iam:PermissionsBoundary": BOUNDARY}},
    ("iam:PutRolePolicy", ROLE): {"StringEquals": {"iam:PermissionsBoundary": BOUNDARY}},
    ("iam:PassRole", ROLE): {"StringEquals": {"iam:PassedToService": "cognito-sync.amazonaws.com"}},
}


def test_every_dangerous_action_is_absent_or_gated_by_its_condition(worker: list[dict[str, Any]]) -> None:
    for action, resource in itertools.product(DANGEROUS, RESOURCES):
        found = [(g.effect, g.condition) for g in gates(worker, action, resource)]
        expected = EXPECTED_GATES.get((action, resource))
        # THEN only the expected statement applies, with exactly its condition; nothing unconditional
        assert found == ([("Allow", expected)] if expected else []), (action, resource, found)


def test_the_role_can_be_created_and_its_policy_put_only_with_the_boundary(worker: list[dict[str, Any]]) -> None:
    for action in ("iam:CreateRole", "iam:PutRolePolicy"):
        # No boundary, another boundary, a look-alike: denied. The shipped boundary: allowed.
        assert decide(worker, action, ROLE, {}) is Decision.IMPLICIT_DENY
        assert decide(worker, action, ROLE, {"iam:PermissionsBoundary": f"{BOUNDARY}-wide"}) is Decision.IMPLICIT_DENY
        admin = "arn:aws:iam::aws:policy/AdministratorAccess"
        assert decide(worker, action, ROLE, {"iam:PermissionsBoundary": admin}) is Decision.IMPLICIT_DENY
        assert decide(worker, action, ROLE, {"iam:PermissionsBoundary": BOUNDARY}) is Decision.ALLOW
        # Never on another role, whatever the boundary.
        assert decide(worker, action, OTHER_ROLE, {"iam:PermissionsBoundary": BOUNDARY}) is Decision.IMPLICIT_DENY
    # The trust policy is written at creation only: no action changes it afterwards.
    context = {"iam:PermissionsBoundary": BOUNDARY}
    assert decide(worker, "iam:UpdateAssumeRolePolicy", ROLE, context) is Decision.IMPLICIT_DENY
    assert decide(worker, "iam:DeleteRolePermissionsBoundary", ROLE, context) is Decision.IMPLICIT_DENY
    # PassRole only to Cognito Sync.
    assert decide(worker, "iam:PassRole", ROLE, {"iam:PassedToService": "lambda.amazonaws.com"}) is (
        Decision.IMPLICIT_DENY
    )
    assert decide(worker, "iam:PassRole", ROLE, {"iam:PassedToService": "cognito-sync.amazonaws.com"}) is (
        Decision.ALLOW
    )


#: Condition keys each action supports (Service Authorization Reference). A key the action does not
#: support is never in the request: a positive condition on it would deny always, a negated one allow.
SUPPORTED_KEYS = {
    "iam:CreateRole": {"iam:permissionsboundary", "aws:requesttag/${tagkey}", "aws:tagkeys"},
    "iam:PutRolePolicy": {"iam:permissionsboundary"},
    "iam:PassRole": {"iam:passedtoservice", "iam:associatedresourcearn"},
    "s3:ListBucket": {"s3:prefix", "s3:delimiter", "s3:max-keys"},
}


def test_every_condition_uses_a_key_its_actions_support(policies: dict[str, dict[str, Any]]) -> None:
    for name, doc in policies.items():
        if name.endswith(".trust"):
            continue
        for stmt in doc["Statement"]:
            for block in (stmt.get("Condition") or {}).values():
                actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
                for action in actions:
                    assert {k.lower() for k in block} <= SUPPORTED_KEYS[action], (name, action, block)


def test_the_evaluator_reads_conditions_as_iam_does() -> None:
    # A key absent from the request fails a positive operator, passes a negated one and IfExists.
    assert not condition_holds({"StringEquals": {"k": "v"}}, {})
    assert condition_holds({"StringNotEquals": {"k": "v"}}, {})
    assert condition_holds({"StringEqualsIfExists": {"k": "v"}}, {})
    assert condition_holds({"Null": {"k": "true"}}, {}) and not condition_holds({"Null": {"k": "false"}}, {})
    # Values of one key are alternatives; keys and operators must all hold; keys are case-insensitive.
    assert condition_holds({"StringEquals": {"K": ["a", "b"]}}, {"k": "b"})
    assert not condition_holds({"StringEquals": {"k": "a"}, "StringLike": {"j": "x*"}}, {"k": "a", "j": "y"})
    assert condition_holds({"ArnLike": {"k": "arn:aws:iam::*:policy/b*"}}, {"k": "arn:aws:iam::1:policy/bx"})
    assert not condition_holds({"StringLike": {"k": "a[bc]"}}, {"k": "ab"})  # '[' is no wildcard in IAM
    with pytest.raises(ValueError, match="not supported"):
        condition_holds({"ForAnyValue:StringEquals": {"k": "v"}}, {"k": "v"})
    # An explicit Deny whose condition holds beats an Allow.
    docs = [
        {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]},
        {"Statement": [{"Effect": "Deny", "NotAction": "s3:Get*", "Resource": "*", "Condition": {"Bool": {"b": "1"}}}]},
    ]
    assert decide(docs, "s3:PutObject", "x", {"b": "1"}) is Decision.EXPLICIT_DENY
    assert decide(docs, "s3:GetObject", "x", {"b": "1"}) is Decision.ALLOW
    assert decide(docs, "s3:PutObject", "x", {"b": "0"}) is Decision.ALLOW


# -- the publish role's trust ---------------------------------------------------------------------

CONFUSED_DEPUTY = {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def test_a_wildcard_principal_is_refused() -> None:
    for principal in ("*", {"AWS": "*"}, {"Service": "cognito-sync.amazonaws.com", "AWS": ["*"]}):
        trust = {"Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}]}
        problems = trust_problems(trust)
        assert problems and "any principal ('*')" in problems[0], principal


def test_stricter_conditions_are_valid_and_not_drift() -> None:
    # GIVEN Cognito Sync trusted only from this account (condition added by hand, or by the setting)
    trust = render(trust_condition="source_account")["cognito-publish-role.trust"]
    (stmt,) = trust["Statement"]
    assert stmt["Condition"] == CONFUSED_DEPUTY
    # THEN it serves, is what the setting asks for, and is no drift without the setting either
    assert trust_problems(trust) == []
    assert trust_drift(trust, CONFUSED_DEPUTY) == []
    assert trust_drift(trust, {}) == []
    # A Deny that narrows further is fine too.
    deny = {"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole", "Condition": {"Bool": {"aws:x": "1"}}}
    assert trust_problems({"Statement": [stmt, deny]}) == []


def test_source_arn_names_each_configured_pool() -> None:
    (stmt,) = render(trust_condition="source_arn")["cognito-publish-role.trust"]["Statement"]
    assert stmt["Condition"] == {
        **CONFUSED_DEPUTY,
        "ArnLike": {"aws:SourceArn": sorted(sync_pool(p) for p in POOLS)},
    }


def test_drift_names_other_principals_and_a_missing_opt_in_condition() -> None:
    plain = render()["cognito-publish-role.trust"]
    assert trust_drift(plain, CONFUSED_DEPUTY) == [
        "its trust policy lacks the condition publish_role_trust_condition asks for: StringEquals aws:sourceaccount "
        f"['{ACCOUNT}'] (the pipeline never rewrites a trust policy: add it by hand)"
    ]
    worker_too = {
        "Statement": [
            *plain["Statement"],
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/airflow"}, "Action": "sts:*"},
        ]
    }
    assert trust_problems(worker_too) == []  # it still serves...
    (drift,) = trust_drift(worker_too, {})  # ...but is reported
    assert f"AWS:arn:aws:iam::{ACCOUNT}:role/airflow" in drift


def test_the_cli_renders_every_document_from_the_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from cognito_streams.configure.iam_cli import main

    settings = {
        "identity_pool_ids": POOLS,
        "stream_name": "sync-stream",
        "publish_role_arn": ROLE,
        "landing_bucket": "landing-bucket",
        "publish_role_trust_condition": "source_account",
    }
    monkeypatch.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(settings))
    assert main(["--region", "eu-west-1"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert docs["cognito-publish-role.policy"]["Statement"][0]["Resource"] == STREAM_ARN
    assert docs["cognito-publish-role.trust"]["Statement"][0]["Condition"] == CONFUSED_DEPUTY
    assert set(docs) == {
        "cognito-publish-role.trust",
        "cognito-publish-role.policy",
        "cognito-publish-role.boundary",
        "redshift-copy-role.trust",
        "redshift-copy-role.policy",
        "airflow-worker.policy",
        "airflow-worker-manage-publish-role.policy",
    }
    assert docs == render(trust_condition="source_account")


def test_the_cli_names_a_bad_setting(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from cognito_streams.configure.iam_cli import main

    monkeypatch.setattr(sys, "stdin", io.StringIO('{"stream_name": "x"}'))
    assert main(["--settings", "-", "--region", "us-east-1"]) == 2
    assert "cognito_pipeline.identity_pool_ids: required setting is missing" in capsys.readouterr().err


def test_the_local_stack_creates_the_default_boundary_by_its_name() -> None:
    from local.stack import PUBLISH_BOUNDARY_NAME

    assert PUBLISH_BOUNDARY_NAME == DEFAULT_BOUNDARY_NAME


def test_the_loader_may_write_its_load_manifests_and_redshift_read_them(policies) -> None:  # type: ignore[no-untyped-def]
    # The loader writes one combined COPY manifest per stage table per load under <prefix>/load-manifests/
    # (core/load_plan.load_manifest_name); the worker may write there but delete nothing, and the COPY role reads it.
    from cognito_streams.core.loading.plan import LOAD_MANIFESTS, load_manifest_name

    key = f"cognito-streams/{LOAD_MANIFESTS}/{load_manifest_name('stg_changes', ['s3://landing-bucket/a.parquet'])}"
    arn = f"arn:aws:s3:::landing-bucket/{key}"
    worker = policies["airflow-worker.policy"]
    assert allows([worker], "s3:PutObject", arn)
    assert not allows([worker], "s3:DeleteObject", arn)
    assert allows([policies["redshift-copy-role.policy"]], "s3:GetObject", arn)
