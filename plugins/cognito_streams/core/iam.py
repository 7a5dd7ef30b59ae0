"""IAM policy documents and the static checks we run on roles (pure: no boto3).

The documents are JSON templates shipped in ``cognito_streams/iam/`` with ``${Name}`` placeholders,
so what the pipeline creates and what the README shows are the same text.
"""

from __future__ import annotations

import fnmatch
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

COGNITO_SYNC_PRINCIPAL = "cognito-sync.amazonaws.com"
PUBLISH_ACTIONS = ("kinesis:PutRecord", "kinesis:PutRecords")
ROLE_ARN_PARTS = re.compile(r"^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):role/(?P<path_and_name>.+)$")


@dataclass(frozen=True)
class RoleArn:
    """An IAM role ARN split into the parts the IAM API wants."""

    partition: str
    account_id: str
    path: str  # "/" or "/some/path/"
    name: str

    @classmethod
    def parse(cls, arn: str) -> RoleArn:
        match = ROLE_ARN_PARTS.match(arn)
        if not match:
            raise ValueError(f"{arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
        *path_parts, name = match["path_and_name"].split("/")
        path = "/" + "/".join(path_parts) + "/" if path_parts else "/"
        return cls(match["partition"], match["account"], path, name)


def stream_arn(partition: str, region: str, account_id: str, stream_name: str) -> str:
    """The ARN of a Kinesis data stream."""
    return f"arn:{partition}:kinesis:{region}:{account_id}:stream/{stream_name}"


def load_template(name: str, **values: str) -> dict[str, Any]:
    """Render ``cognito_streams/iam/<name>.json``; every ``${Placeholder}`` must be given."""
    text = resources.files("cognito_streams").joinpath("iam", f"{name}.json").read_text()
    rendered = string.Template(text).substitute(values)
    return dict(orjson.loads(rendered))


def publish_role_trust_policy() -> dict[str, Any]:
    """Trust policy: only the Cognito Sync service may assume the publish role."""
    return load_template("cognito-publish-role.trust")


def publish_role_policy(partition: str, region: str, account_id: str, stream_name: str) -> dict[str, Any]:
    """Permissions policy: PutRecord/PutRecords on the one stream, nothing else."""
    return load_template(
        "cognito-publish-role.policy", Partition=partition, Region=region, AccountId=account_id, StreamName=stream_name
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _statements(document: dict[str, Any] | str) -> list[dict[str, Any]]:
    if isinstance(document, str):
        document = orjson.loads(document)
    assert isinstance(document, dict)  # noqa: S101 - IAM returns objects
    return [s for s in _as_list(document.get("Statement")) if isinstance(s, dict)]


def trusts_service(document: dict[str, Any] | str, service: str = COGNITO_SYNC_PRINCIPAL) -> bool:
    """True when an Allow statement lets ``service`` call sts:AssumeRole (conditions aside)."""
    for stmt in _statements(document):
        if stmt.get("Effect") != "Allow":
            continue
        actions = _as_list(stmt.get("Action"))
        if not any(fnmatch.fnmatchcase("sts:AssumeRole", a) for a in actions if isinstance(a, str)):
            continue
        principal = stmt.get("Principal")
        services = _as_list(principal.get("Service")) if isinstance(principal, dict) else []
        if service in services or principal == "*":
            return True
    return False


def allows(documents: Iterable[dict[str, Any] | str], action: str, resource: str) -> bool:
    """True when some Allow grants ``action`` on ``resource`` and no Deny takes it back
    (wildcards as IAM matches them; conditions and NotAction/NotResource are not evaluated)."""

    def matches(stmt: dict[str, Any]) -> bool:
        actions = [a for a in _as_list(stmt.get("Action")) if isinstance(a, str)]
        resources_ = [r for r in _as_list(stmt.get("Resource")) if isinstance(r, str)]
        return any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions) and any(
            fnmatch.fnmatchcase(resource, r) for r in resources_
        )

    statements = [s for doc in documents for s in _statements(doc)]
    if any(s.get("Effect") == "Deny" and matches(s) for s in statements):
        return False
    return any(s.get("Effect") == "Allow" and matches(s) for s in statements)


def publish_role_problems(
    trust_policy: dict[str, Any] | str, permission_policies: Iterable[dict[str, Any] | str], target_stream_arn: str
) -> list[str]:
    """Why a role cannot serve as the Cognito Streams publish role (empty list: it can)."""
    problems = []
    if not trusts_service(trust_policy):
        problems.append(f"its trust policy does not let {COGNITO_SYNC_PRINCIPAL} assume it (sts:AssumeRole)")
    policies = list(permission_policies)
    missing = [a for a in PUBLISH_ACTIONS if not allows(policies, a, target_stream_arn)]
    if missing:
        problems.append(f"its policies do not allow {', '.join(missing)} on {target_stream_arn}")
    return problems


def shipped_policies(
    *,
    partition: str,
    region: str,
    account_id: str,
    stream_name: str,
    bucket: str,
    prefix: str,
    publish_role_arn: str,
) -> dict[str, dict[str, Any]]:
    """Every IAM document the project ships, rendered for one deployment (README, "IAM")."""
    role = RoleArn.parse(publish_role_arn)
    common = {"Partition": partition, "Region": region, "AccountId": account_id}
    role_ref = {"PublishRolePathAndName": f"{role.path}{role.name}"}
    return {
        "cognito-publish-role.trust": publish_role_trust_policy(),
        "cognito-publish-role.policy": publish_role_policy(partition, region, account_id, stream_name),
        "redshift-copy-role.trust": load_template("redshift-copy-role.trust"),
        "redshift-copy-role.policy": load_template(
            "redshift-copy-role.policy", Partition=partition, Bucket=bucket, Prefix=prefix
        ),
        "airflow-worker.policy": load_template(
            "airflow-worker.policy", **common, StreamName=stream_name, Bucket=bucket, Prefix=prefix, **role_ref
        ),
        "airflow-worker-manage-publish-role.policy": load_template(
            "airflow-worker-manage-publish-role.policy", Partition=partition, AccountId=account_id, **role_ref
        ),
    }
