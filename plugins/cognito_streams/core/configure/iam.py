"""IAM policy documents and the static checks we run on roles and on our own documents (pure: no boto3).

The documents are JSON templates shipped in ``cognito_streams/iam/`` with ``${Name}`` placeholders,
so what the pipeline creates and what the README shows are the same text. A placeholder standing
alone as a list element (``["${CognitoSyncPoolArns}"]``) takes a list of values.

Two evaluators live here:

- :func:`allows` answers "may these policies do this action on this resource", conditions aside:
  what the publish role check needs (a role's policies grant ``kinesis:PutRecord`` or they do not).
- :func:`decide` and :func:`gates` are condition-aware: :func:`gates` lists, for an action and a
  resource, every statement that could apply with its ``Condition`` block, and :func:`decide`
  evaluates them against a request context. moto evaluates no IAM condition, so the tests prove the
  shipped documents with these (``tests/unit/test_iam_policies.py``).
"""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import orjson

COGNITO_SYNC_PRINCIPAL = "cognito-sync.amazonaws.com"
PUBLISH_ACTIONS = ("kinesis:PutRecord", "kinesis:PutRecords")
ROLE_ARN_PARTS = re.compile(r"^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):role/(?P<path_and_name>.+)$")
#: The publish role's permissions boundary, unless ``publish_role_boundary_arn`` names another one:
#: a customer managed policy the account's administrator creates from ``cognito-publish-role.boundary``.
DEFAULT_BOUNDARY_NAME = "cognito-streams-publish-boundary"
_LIST_MARK = "@@list:"


class TrustCondition(enum.StrEnum):
    """Opt-in conditions in the publish role's trust policy against the confused deputy
    (setting ``publish_role_trust_condition``). Whether Cognito Sync sends these keys when it
    assumes the role is not documented: a condition it does not satisfy makes it turn streaming
    DISABLED. Verify on your account first (docs/operations.md, "Security")."""

    NONE = "none"
    SOURCE_ACCOUNT = "source_account"  # aws:SourceAccount = the role's account
    SOURCE_ARN = "source_arn"  # and aws:SourceArn = one of the configured pools


@dataclass(frozen=True)
class RoleArn:
    """An IAM role ARN split into the parts the IAM API wants."""

    partition: str
    account_id: str
    path: str  # "/" or "/some/path/"
    name: str

    @classmethod
    def parse(cls, arn: str) -> RoleArn:
        """Split ``arn``; raises ValueError for anything that is not a role ARN."""
        match = ROLE_ARN_PARTS.match(arn)
        if not match:
            raise ValueError(f"{arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
        *path_parts, name = match["path_and_name"].split("/")
        path = "/" + "/".join(path_parts) + "/" if path_parts else "/"
        return cls(match["partition"], match["account"], path, name)

    @property
    def arn(self) -> str:
        """The ARN again."""
        return f"arn:{self.partition}:iam::{self.account_id}:role{self.path}{self.name}"


def stream_arn(partition: str, region: str, account_id: str, stream_name: str) -> str:
    """The ARN of a Kinesis data stream."""
    return f"arn:{partition}:kinesis:{region}:{account_id}:stream/{stream_name}"


def default_boundary_arn(publish_role_arn: str) -> str:
    """The permissions boundary the pipeline puts on the publish role it creates, unless the setting
    ``publish_role_boundary_arn`` names another: ``policy/cognito-streams-publish-boundary`` in the
    role's account."""
    role = RoleArn.parse(publish_role_arn)
    return f"arn:{role.partition}:iam::{role.account_id}:policy/{DEFAULT_BOUNDARY_NAME}"


def pool_region(identity_pool_id: str) -> str:
    """The region an identity pool lives in: the part of its id before the colon."""
    return identity_pool_id.split(":", 1)[0]


def cognito_sync_pool_arn(partition: str, account_id: str, identity_pool_id: str) -> str:
    """The ``identitypool`` resource of Cognito Sync (Service Authorization Reference)."""
    return f"arn:{partition}:cognito-sync:{pool_region(identity_pool_id)}:{account_id}:identitypool/{identity_pool_id}"


def cognito_identity_pool_arn(partition: str, account_id: str, identity_pool_id: str) -> str:
    """The ``identitypool`` resource of Cognito Identity."""
    region = pool_region(identity_pool_id)
    return f"arn:{partition}:cognito-identity:{region}:{account_id}:identitypool/{identity_pool_id}"


# -- templates -------------------------------------------------------------------------------------


def load_template(name: str, **values: str | Sequence[str]) -> dict[str, Any]:
    """Render ``cognito_streams/iam/<name>.json``; every ``${Placeholder}`` must be given. A list value
    replaces a list element that is exactly its placeholder by all its items."""
    text = resources.files("cognito_streams").joinpath("iam", f"{name}.json").read_text()
    scalars = {k: v for k, v in values.items() if isinstance(v, str)}
    lists = {k: list(v) for k, v in values.items() if not isinstance(v, str)}
    rendered = string.Template(text).substitute(scalars, **{k: f"{_LIST_MARK}{k}" for k in lists})
    return dict(_expand_lists(orjson.loads(rendered), lists))


def _expand_lists(node: Any, lists: Mapping[str, list[str]]) -> Any:
    if isinstance(node, dict):
        return {k: _expand_lists(v, lists) for k, v in node.items()}
    if isinstance(node, list):
        out: list[Any] = []
        for item in node:
            if isinstance(item, str) and item.startswith(_LIST_MARK):
                out += lists[item.removeprefix(_LIST_MARK)]
            else:
                out.append(_expand_lists(item, lists))
        return out
    if isinstance(node, str) and node.startswith(_LIST_MARK):
        raise ValueError(f"list placeholder {node.removeprefix(_LIST_MARK)} used outside a list")
    return node


def trust_conditions(
    condition: TrustCondition | str, *, partition: str, account_id: str, identity_pool_ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The ``Condition`` block the setting ``publish_role_trust_condition`` asks for (empty: none)."""
    mode = TrustCondition(condition)
    if mode is TrustCondition.NONE:
        return {}
    out: dict[str, dict[str, Any]] = {"StringEquals": {"aws:SourceAccount": account_id}}
    if mode is TrustCondition.SOURCE_ARN:
        out["ArnLike"] = {
            "aws:SourceArn": sorted(cognito_sync_pool_arn(partition, account_id, p) for p in identity_pool_ids)
        }
    return out


def publish_role_trust_policy(conditions: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Trust policy: only the Cognito Sync service may assume the publish role (with ``conditions``,
    from :func:`trust_conditions`, only when they hold)."""
    doc = load_template("cognito-publish-role.trust")
    if conditions:
        for stmt in doc["Statement"]:
            stmt["Condition"] = {op: dict(block) for op, block in conditions.items()}
    return doc


def publish_role_policy(partition: str, region: str, account_id: str, stream_name: str) -> dict[str, Any]:
    """Permissions policy: PutRecord/PutRecords on the one stream, nothing else."""
    return load_template(
        "cognito-publish-role.policy", Partition=partition, Region=region, AccountId=account_id, StreamName=stream_name
    )


def publish_role_boundary(partition: str, region: str, account_id: str, stream_name: str) -> dict[str, Any]:
    """The permissions boundary of the publish role: at most PutRecord/PutRecords on the one stream,
    whatever policy is put on the role (what bounds ``manage_publish_role``)."""
    return load_template(
        "cognito-publish-role.boundary",
        Partition=partition,
        Region=region,
        AccountId=account_id,
        StreamName=stream_name,
    )


def shipped_policies(
    *,
    partition: str,
    region: str,
    account_id: str,
    stream_name: str,
    bucket: str,
    prefix: str,
    publish_role_arn: str,
    identity_pool_ids: Sequence[str],
    boundary_arn: str | None = None,
    trust_condition: TrustCondition | str = TrustCondition.NONE,
) -> dict[str, dict[str, Any]]:
    """Every IAM document the project ships, rendered for one deployment (README, "IAM")."""
    if not identity_pool_ids:
        raise ValueError("identity_pool_ids is empty: the worker's Cognito permissions are scoped to the pools")
    role = RoleArn.parse(publish_role_arn)
    boundary = boundary_arn or default_boundary_arn(publish_role_arn)
    common = {"Partition": partition, "Region": region, "AccountId": account_id}
    role_ref = {"PublishRolePathAndName": f"{role.path}{role.name}", "PublishRoleBoundaryArn": boundary}
    pools = sorted(identity_pool_ids)
    conditions = trust_conditions(
        trust_condition, partition=partition, account_id=account_id, identity_pool_ids=identity_pool_ids
    )
    return {
        "cognito-publish-role.trust": publish_role_trust_policy(conditions),
        "cognito-publish-role.policy": publish_role_policy(partition, region, account_id, stream_name),
        "cognito-publish-role.boundary": publish_role_boundary(partition, region, account_id, stream_name),
        "redshift-copy-role.trust": load_template("redshift-copy-role.trust"),
        "redshift-copy-role.policy": load_template(
            "redshift-copy-role.policy", Partition=partition, Bucket=bucket, Prefix=prefix
        ),
        "airflow-worker.policy": load_template(
            "airflow-worker.policy",
            **common,
            StreamName=stream_name,
            Bucket=bucket,
            Prefix=prefix,
            **role_ref,
            CognitoSyncPoolArns=[cognito_sync_pool_arn(partition, account_id, p) for p in pools],
            CognitoSyncIdentityArns=[f"{cognito_sync_pool_arn(partition, account_id, p)}/identity/*" for p in pools],
            CognitoIdentityPoolArns=[cognito_identity_pool_arn(partition, account_id, p) for p in pools],
        ),
        "airflow-worker-manage-publish-role.policy": load_template(
            "airflow-worker-manage-publish-role.policy", Partition=partition, AccountId=account_id, **role_ref
        ),
    }


# -- reading documents -----------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _statements(document: dict[str, Any] | str) -> list[dict[str, Any]]:
    if isinstance(document, str):
        document = orjson.loads(document)
    if not isinstance(document, dict):
        raise ValueError(f"an IAM policy document is a JSON object, not {type(document).__name__}")
    return [s for s in _as_list(document.get("Statement")) if isinstance(s, dict)]


@cache
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM's wildcards: ``*`` any run of characters (``/`` and ``:`` included), ``?`` one; nothing
    else is special (unlike fnmatch, ``[`` is a plain character)."""
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _like(value: str, pattern: str, *, ignore_case: bool = False) -> bool:
    return _glob(pattern, ignore_case).fullmatch(value) is not None


def _action_applies(stmt: Mapping[str, Any], action: str) -> bool:
    """Action names are case-insensitive; ``NotAction`` applies to every action it does not list."""
    if "NotAction" in stmt:
        return not any(_like(action, str(a), ignore_case=True) for a in _as_list(stmt["NotAction"]))
    return any(_like(action, str(a), ignore_case=True) for a in _as_list(stmt.get("Action")))


def _resource_applies(stmt: Mapping[str, Any], resource: str) -> bool:
    if "NotResource" in stmt:
        return not any(_like(resource, str(r)) for r in _as_list(stmt["NotResource"]))
    return any(_like(resource, str(r)) for r in _as_list(stmt.get("Resource")))


def allows(documents: Iterable[dict[str, Any] | str], action: str, resource: str) -> bool:
    """True when some Allow grants ``action`` on ``resource`` and no Deny takes it back (wildcards,
    NotAction and NotResource as IAM reads them; conditions are not evaluated)."""
    statements = [s for doc in documents for s in _statements(doc)]
    applying = [s for s in statements if _action_applies(s, action) and _resource_applies(s, resource)]
    # A Deny counts whatever its condition: this check must not call a role able to publish when it may not.
    if any(s.get("Effect") == "Deny" for s in applying):
        return False
    return any(s.get("Effect") == "Allow" for s in applying)


# -- the condition-aware evaluator -------------------------------------------------------------------


class Decision(enum.StrEnum):
    """IAM's answer for one request against a set of identity policies."""

    ALLOW = "allow"
    EXPLICIT_DENY = "explicit_deny"
    IMPLICIT_DENY = "implicit_deny"


@dataclass(frozen=True)
class Gate:
    """A statement that applies to an action on a resource, and the condition it needs (empty: none)."""

    sid: str
    effect: str
    condition: dict[str, dict[str, Any]] = field(default_factory=dict)


def gates(documents: Iterable[dict[str, Any] | str], action: str, resource: str) -> list[Gate]:
    """Every statement of ``documents`` whose action and resource apply, with its ``Condition`` block:
    an Allow with an empty condition is an unconditional grant."""
    out = []
    for doc in documents:
        for i, stmt in enumerate(_statements(doc)):
            if _action_applies(stmt, action) and _resource_applies(stmt, resource):
                condition = stmt.get("Condition") or {}
                out.append(Gate(str(stmt.get("Sid", f"#{i}")), str(stmt.get("Effect")), dict(condition)))
    return out


#: The condition operators the evaluator knows (with ``...IfExists``); anything else raises, so a
#: shipped document can never be proven with an operator read wrongly.
_OPERATORS = {
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
    "Bool",
    "Null",
}


def condition_holds(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str | Sequence[str]]) -> bool:
    """Whether a ``Condition`` block holds for a request context (condition keys -> value or values).

    Every operator and every key must hold (AND); a key's listed values are alternatives (OR). A key
    the request does not carry fails a positive operator, passes a negated one and ``...IfExists``,
    as IAM evaluates them. Multi-valued set operators (``ForAnyValue:``...) are not supported."""
    present = {k.lower(): [str(v)] if isinstance(v, str) else [str(x) for x in v] for k, v in context.items()}
    for operator, block in condition.items():
        base, if_exists = (operator[: -len("IfExists")], True) if operator.endswith("IfExists") else (operator, False)
        if base not in _OPERATORS:
            raise ValueError(f"condition operator {operator!r} is not supported by this evaluator")
        for key, expected in block.items():
            wanted = [str(v) for v in _as_list(expected)]
            values = present.get(key.lower())
            if base == "Null":
                if (values is None) != (wanted[0].lower() == "true"):
                    return False
                continue
            negated = "Not" in base
            if values is None:
                if if_exists or negated:
                    continue
                return False
            if base.startswith("Bool"):
                match = any(v.lower() == w.lower() for v in values for w in wanted)
            elif base in ("StringLike", "StringNotLike", "ArnLike", "ArnNotLike", "ArnEquals", "ArnNotEquals"):
                match = any(_like(v, w) for v in values for w in wanted)
            else:
                ignore_case = base.endswith("IgnoreCase")
                match = any((v.lower() == w.lower()) if ignore_case else v == w for v in values for w in wanted)
            if match == negated:
                return False
    return True


def decide(
    documents: Iterable[dict[str, Any] | str],
    action: str,
    resource: str,
    context: Mapping[str, str | Sequence[str]] | None = None,
) -> Decision:
    """IAM's decision for one request against identity policies: an explicit Deny whose condition
    holds wins, then an Allow whose condition holds, else implicitly denied."""
    applying = gates(documents, action, resource)
    held = [g for g in applying if condition_holds(g.condition, context or {})]
    if any(g.effect == "Deny" for g in held):
        return Decision.EXPLICIT_DENY
    if any(g.effect == "Allow" for g in held):
        return Decision.ALLOW
    return Decision.IMPLICIT_DENY


# -- the publish role --------------------------------------------------------------------------------


def _principals(stmt: Mapping[str, Any]) -> set[str]:
    """``Service:x`` / ``AWS:arn`` / ``Federated:x`` / ``*`` entries a statement names (an Allow with
    NotPrincipal names everyone else: ``*``)."""
    if "NotPrincipal" in stmt:
        return {"*"}
    who = stmt.get("Principal")
    if who == "*":
        return {"*"}
    out: set[str] = set()
    if isinstance(who, dict):
        for kind, values in who.items():
            for value in _as_list(values):
                out.add("*" if value == "*" and kind == "AWS" else f"{kind}:{value}")
    return out


def _assume_statements(document: dict[str, Any] | str) -> list[dict[str, Any]]:
    return [s for s in _statements(document) if s.get("Effect") == "Allow" and _action_applies(s, "sts:AssumeRole")]


def trusted_principals(document: dict[str, Any] | str) -> set[str]:
    """Everyone an Allow statement of a trust policy lets call ``sts:AssumeRole`` (conditions aside)."""
    return {p for s in _assume_statements(document) for p in _principals(s)}


def trusts_service(document: dict[str, Any] | str, service: str = COGNITO_SYNC_PRINCIPAL) -> bool:
    """True when an Allow statement names ``service`` for sts:AssumeRole and no unconditional Deny
    takes it back. Conditions are not evaluated: a stricter trust (``aws:SourceAccount``, ...) is
    valid. A wildcard principal is not trusting the service: it is refused by :func:`trust_problems`."""
    denied = any(
        s.get("Effect") == "Deny"
        and not s.get("Condition")
        and _action_applies(s, "sts:AssumeRole")
        and ({f"Service:{service}", "*"} & _principals(s))
        for s in _statements(document)
    )
    return not denied and f"Service:{service}" in trusted_principals(document)


def trust_problems(document: dict[str, Any] | str) -> list[str]:
    """Why a trust policy cannot serve the publish role (empty: it can). Conditions of any kind are
    accepted: they can only make the trust stricter."""
    problems = []
    if "*" in trusted_principals(document):
        problems.append(
            "its trust policy lets any principal ('*') assume it, so anyone could put records on the stream: trust "
            f"the service principal {COGNITO_SYNC_PRINCIPAL} only "
            "(python -m cognito_streams.configure.iam_cli renders it)"
        )
    if not trusts_service(document):
        problems.append(f"its trust policy does not let {COGNITO_SYNC_PRINCIPAL} assume it (sts:AssumeRole)")
    return problems


def trust_drift(document: dict[str, Any] | str, required: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """How a trust policy that can serve differs from what the pipeline would write, in ways it does
    not repair: other principals it trusts, and the opt-in ``required`` conditions missing from a
    statement that trusts Cognito Sync. Extra conditions are not drift."""
    drift = []
    others = sorted(trusted_principals(document) - {f"Service:{COGNITO_SYNC_PRINCIPAL}", "*"})
    if others:
        drift.append(
            f"its trust policy also lets {', '.join(others)} assume it: each of them can put records on the stream"
        )
    wanted = {
        (op, key.lower()): sorted(map(str, _as_list(v))) for op, block in required.items() for key, v in block.items()
    }
    for stmt in _assume_statements(document):
        if f"Service:{COGNITO_SYNC_PRINCIPAL}" not in _principals(stmt):
            continue
        have = {
            (op, key.lower()): sorted(map(str, _as_list(v)))
            for op, block in (stmt.get("Condition") or {}).items()
            for key, v in block.items()
        }
        missing = [f"{op} {key} {values}" for (op, key), values in wanted.items() if have.get((op, key)) != values]
        if missing:
            drift.append(
                "its trust policy lacks the condition publish_role_trust_condition asks for: "
                f"{'; '.join(missing)} (the pipeline never rewrites a trust policy: add it by hand)"
            )
            break
    return drift


@dataclass
class RoleDocuments:
    """What IAM shows of the publish role: its trust, the permission policies the worker could read,
    the attached policies it could not (with why), and its permissions boundary."""

    trust: dict[str, Any]
    policies: list[dict[str, Any]] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # policy ARN -> why
    boundary_arn: str | None = None
    boundary: dict[str, Any] | None = None  # None with boundary_arn set: could not be read


def boundary_problems(boundary_arn: str, boundary: dict[str, Any] | None, target_stream_arn: str) -> list[str]:
    """Why a permissions boundary stops the role from publishing, or cannot be checked."""
    if boundary is None:
        return [
            f"its permissions boundary {boundary_arn} cannot be read by the worker, so it cannot be checked: the "
            "worker may read the boundary named by publish_role_boundary_arn (default "
            f"policy/{DEFAULT_BOUNDARY_NAME}) and AWS managed policies; render the worker policy with "
            "python -m cognito_streams.configure.iam_cli after setting publish_role_boundary_arn"
        ]
    missing = [a for a in PUBLISH_ACTIONS if not allows([boundary], a, target_stream_arn)]
    if missing:
        return [f"its permissions boundary {boundary_arn} does not allow {', '.join(missing)} on {target_stream_arn}"]
    return []


def boundary_breadth(boundary: dict[str, Any]) -> list[str]:
    """Allow statements of a boundary that allow more than PutRecord/PutRecords (what would let the
    pipeline, managing the role, give it more): each as a short description."""
    wide = []
    for stmt in _statements(boundary):
        if stmt.get("Effect") != "Allow":
            continue
        actions = [str(a) for a in _as_list(stmt.get("Action"))]
        if "NotAction" in stmt or any(a not in PUBLISH_ACTIONS for a in actions):
            wide.append(str(stmt.get("Sid") or stmt.get("Action") or stmt.get("NotAction")))
    return wide


def publish_role_problems(
    trust_policy: dict[str, Any] | str,
    permission_policies: Iterable[dict[str, Any] | str],
    target_stream_arn: str,
    *,
    unreadable: Mapping[str, str] | None = None,
    boundary_arn: str | None = None,
    boundary: dict[str, Any] | None = None,
) -> list[str]:
    """Why a role cannot serve as the Cognito Streams publish role (empty list: it can).

    ``unreadable``: attached policies the worker could not read (ARN -> why), named when the
    readable ones do not grant the actions; ``boundary_arn``/``boundary``: the role's permissions
    boundary, if it has one (``boundary`` None when it could not be read)."""
    problems = trust_problems(trust_policy)
    policies = list(permission_policies)
    missing = [a for a in PUBLISH_ACTIONS if not allows(policies, a, target_stream_arn)]
    if missing:
        problem = f"its policies do not allow {', '.join(missing)} on {target_stream_arn}"
        if unreadable:
            listed = "; ".join(f"{arn}: {why}" for arn, why in sorted(unreadable.items()))
            problem += (
                f" as far as the worker can read them (not readable: {listed}); put the permission inline, as "
                "iam_cli's cognito-publish-role.policy, or let the worker read that policy"
            )
        problems.append(problem)
    if boundary_arn is not None:
        problems += boundary_problems(boundary_arn, boundary, target_stream_arn)
    return problems
