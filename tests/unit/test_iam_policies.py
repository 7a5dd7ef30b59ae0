"""The IAM documents we ship grant exactly their list, on exactly their resources."""

from __future__ import annotations

import pytest

from cognito_streams.core.iam import allows, shipped_policies, trusts_service

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/app/cognito-streams-publish"
STREAM_ARN = f"arn:aws:kinesis:eu-west-1:{ACCOUNT}:stream/sync-stream"


@pytest.fixture(scope="module")
def policies() -> dict:  # type: ignore[type-arg]
    return shipped_policies(
        partition="aws",
        region="eu-west-1",
        account_id=ACCOUNT,
        stream_name="sync-stream",
        bucket="landing-bucket",
        prefix="cognito-streams",
        publish_role_arn=ROLE,
    )


def _grants(doc: dict) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    out = set()
    for stmt in doc["Statement"]:
        assert stmt["Effect"] == "Allow", "shipped policies only allow"
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        resources = stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]]
        out |= {(a, r) for a in actions for r in resources}
    return out


def test_no_wildcard_actions_anywhere(policies) -> None:  # type: ignore[no-untyped-def]
    for name, doc in policies.items():
        if name.endswith(".trust"):
            continue
        for action, _ in _grants(doc):
            assert "*" not in action, f"{name} grants a wildcard action {action}"


def test_publish_role_grants_exactly_put_on_the_one_stream(policies) -> None:  # type: ignore[no-untyped-def]
    assert _grants(policies["cognito-publish-role.policy"]) == {
        ("kinesis:PutRecord", STREAM_ARN),
        ("kinesis:PutRecords", STREAM_ARN),
    }
    assert trusts_service(policies["cognito-publish-role.trust"], "cognito-sync.amazonaws.com")
    assert not trusts_service(policies["cognito-publish-role.trust"], "ec2.amazonaws.com")


def test_redshift_copy_role_reads_the_landing_prefix_only(policies) -> None:  # type: ignore[no-untyped-def]
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


def test_airflow_worker_grants_nothing_beyond_its_list(policies) -> None:  # type: ignore[no-untyped-def]
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
        "cognito-sync:ListIdentityPoolUsage",
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
    assert {r for a, r in grants if a == "iam:PassRole"} == {f"arn:aws:iam::{ACCOUNT}:role/app/cognito-streams-publish"}
    doc = policies["airflow-worker.policy"]
    assert not allows([doc], "kinesis:DeleteStream", STREAM_ARN)
    assert not allows([doc], "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin")


def test_role_management_is_a_separate_opt_in_policy(policies) -> None:  # type: ignore[no-untyped-def]
    assert _grants(policies["airflow-worker-manage-publish-role.policy"]) == {
        (a, f"arn:aws:iam::{ACCOUNT}:role/app/cognito-streams-publish")
        for a in ("iam:CreateRole", "iam:PutRolePolicy", "iam:UpdateAssumeRolePolicy")
    }


def test_the_cli_renders_every_document_from_the_settings(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json

    from cognito_streams.iam_cli import main

    settings = {
        "identity_pool_ids": ["us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"],
        "stream_name": "sync-stream",
        "publish_role_arn": ROLE,
        "landing_bucket": "landing-bucket",
    }
    monkeypatch.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(settings))
    assert main(["--region", "eu-west-1"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert docs["cognito-publish-role.policy"]["Statement"][0]["Resource"] == STREAM_ARN
    assert set(docs) == {
        "cognito-publish-role.trust",
        "cognito-publish-role.policy",
        "redshift-copy-role.trust",
        "redshift-copy-role.policy",
        "airflow-worker.policy",
        "airflow-worker-manage-publish-role.policy",
    }


def test_the_cli_names_a_bad_setting(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import io
    import sys

    from cognito_streams.iam_cli import main

    monkeypatch.setattr(sys, "stdin", io.StringIO('{"stream_name": "x"}'))
    assert main(["--settings", "-", "--region", "us-east-1"]) == 2
    assert "cognito_pipeline.identity_pool_ids: required setting is missing" in capsys.readouterr().err


def test_the_loader_may_write_its_load_manifests_and_redshift_read_them(policies) -> None:  # type: ignore[no-untyped-def]
    # The loader writes one combined COPY manifest per stage table per load under <prefix>/load-manifests/
    # (core/load_plan.load_manifest_name); the worker may write there but delete nothing, and the COPY role reads it.
    from cognito_streams.core.load_plan import LOAD_MANIFESTS, load_manifest_name

    key = f"cognito-streams/{LOAD_MANIFESTS}/{load_manifest_name('stg_changes', ['s3://landing-bucket/a.parquet'])}"
    arn = f"arn:aws:s3:::landing-bucket/{key}"
    worker = policies["airflow-worker.policy"]
    assert allows([worker], "s3:PutObject", arn)
    assert not allows([worker], "s3:DeleteObject", arn)
    assert allows([policies["redshift-copy-role.policy"]], "s3:GetObject", arn)
