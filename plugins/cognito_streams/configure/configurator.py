"""Keep Cognito Streams configured: the Kinesis stream, the publish role, each pool's settings.

The adapter half of ``cognito_streams_configure``: AWS calls through the Amazon provider's hooks,
decisions from the pure core (``core.configure.streams_config``, ``core.configure.iam``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook
from botocore.exceptions import ClientError

from cognito_streams.core.configure.iam import (
    PUBLISH_ACTIONS,
    RoleArn,
    RoleDocuments,
    boundary_breadth,
    boundary_problems,
    publish_role_policy,
    publish_role_problems,
    publish_role_trust_policy,
    stream_arn,
    trust_conditions,
    trust_drift,
)
from cognito_streams.core.configure.streams_config import PoolAction, PoolPlan, plan_pool, reshard_steps
from cognito_streams.hooks.cognito_sync import CognitoSyncHook
from cognito_streams.settings import PipelineSettings

log = logging.getLogger(__name__)

PUBLISH_POLICY_NAME = "cognito-streams-publish"
#: New IAM roles take a few seconds to become assumable; Cognito then answers
#: InvalidConfigurationException. Retry that long, no longer.
ROLE_PROPAGATION_SECONDS = 60.0


class ConfigurationError(RuntimeError):
    """Something the pipeline cannot fix by itself; the message says what to do."""


@dataclass
class StreamReport:
    """What ``ensure_stream`` found and did."""

    stream_name: str
    stream_arn: str | None
    action: str  # created | unchanged | resharded | shard_count_differs
    open_shards: int
    wanted_shards: int
    problems: list[str] = field(default_factory=list)


@dataclass
class RoleReport:
    """What ``ensure_publish_role`` found and did."""

    role_arn: str
    action: str  # created | updated | unchanged | drifted | validated | invalid
    #: invalid: why it cannot serve; drifted: what differs and is not repaired; updated: what was rewritten.
    problems: list[str] = field(default_factory=list)
    #: What does not stop publishing but an operator should know (a role without its boundary, ...).
    warnings: list[str] = field(default_factory=list)


@dataclass
class PoolReport:
    """What happened to one pool."""

    identity_pool_id: str
    action: str
    reasons: list[str]
    needs_backfill: bool = False


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


class StreamsConfigurator:
    """Applies the settings to AWS, idempotently; every method returns a report for the logs."""

    def __init__(self, settings: PipelineSettings) -> None:
        self.settings = settings
        self.kinesis = KinesisHook(aws_conn_id=settings.aws_conn_id).conn
        self.iam = AwsBaseHook(aws_conn_id=settings.aws_conn_id, client_type="iam").conn
        self.cognito = CognitoSyncHook(aws_conn_id=settings.aws_conn_id)
        self.region = self.kinesis.meta.region_name
        self.role = RoleArn.parse(settings.publish_role_arn)

    # -- the stream -------------------------------------------------------------------------
    def _describe(self) -> dict[str, Any] | None:
        try:
            return dict(
                self.kinesis.describe_stream_summary(StreamName=self.settings.stream_name)["StreamDescriptionSummary"]
            )
        except ClientError as err:
            if _code(err) == "ResourceNotFoundException":
                return None
            raise

    def _wait_active(self, timeout: float = 300.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            summary = self._describe()
            if summary is not None and summary["StreamStatus"] == "ACTIVE":
                return summary
            if time.monotonic() > deadline:
                state = summary["StreamStatus"] if summary else "missing"
                raise ConfigurationError(
                    f"Kinesis stream {self.settings.stream_name} is still {state} after {timeout:.0f} s"
                )
            time.sleep(1.0)

    def ensure_stream(self, *, reshard: bool = False) -> StreamReport:
        """The stream exists, ACTIVE, with the configured shard count (created if missing; resharded
        only when ``reshard`` asks for it, else a differing count is reported)."""
        name, wanted = self.settings.stream_name, self.settings.stream_shards
        summary = self._describe()
        if summary is not None and summary["StreamStatus"] == "DELETING":
            log.warning("stream %s is being deleted; waiting, then creating it again", name)
            while self._describe() is not None:
                time.sleep(1.0)
            summary = None
        action = "unchanged"
        if summary is None:
            log.info("creating Kinesis stream %s with %d shard(s)", name, wanted)
            self.kinesis.create_stream(
                StreamName=name, ShardCount=wanted, StreamModeDetails={"StreamMode": "PROVISIONED"}
            )
            action = "created"
        summary = self._wait_active()
        shards = int(summary.get("OpenShardCount", 0))
        problems: list[str] = []
        on_demand = (summary.get("StreamModeDetails") or {}).get("StreamMode") == "ON_DEMAND"
        if action == "unchanged" and on_demand:
            # Kinesis sizes an on-demand stream itself and refuses UpdateShardCount on it.
            problems.append(
                f"stream {name} is ON_DEMAND ({shards} open shard(s) now): Kinesis scales it, stream_shards "
                "does not apply and reshard is ignored"
            )
            log.info("%s", problems[-1])
        elif action == "unchanged" and shards != wanted:
            if reshard:
                summary = self._reshard(shards, wanted)
                shards = int(summary.get("OpenShardCount", 0))
                action = "resharded"
            else:
                action = "shard_count_differs"
                problems.append(
                    f"stream {name} has {shards} open shard(s), stream_shards says {wanted}; left as is: trigger "
                    "cognito_streams_configure with reshard=true to change it, or set stream_shards to "
                    f"{shards} in the cognito_pipeline Variable"
                )
                log.warning("%s", problems[-1])
        return StreamReport(name, summary.get("StreamARN"), action, shards, wanted, problems)

    def _reshard(self, current: int, wanted: int) -> dict[str, Any]:
        """UpdateShardCount in steps Kinesis accepts (at most double or half each), waiting for
        ACTIVE after each; a refusal (the daily scaling quota, an on-demand stream) says what to do."""
        name = self.settings.stream_name
        steps = reshard_steps(current, wanted)
        log.info(
            "resharding %s from %d to %d shards (UNIFORM_SCALING) in %d step(s): %s",
            name,
            current,
            wanted,
            len(steps),
            " -> ".join(str(s) for s in [current, *steps]),
        )
        summary: dict[str, Any] = {}
        for target in steps:
            try:
                self.kinesis.update_shard_count(StreamName=name, TargetShardCount=target, ScalingType="UNIFORM_SCALING")
            except ClientError as err:
                raise ConfigurationError(
                    f"Kinesis refused to reshard stream {name} to {target} shard(s) (on the way from {current} "
                    f"to stream_shards={wanted}): {_code(err)}: {err.response.get('Error', {}).get('Message', err)}. "
                    "Kinesis allows at most double or half the open shards per step, a limited number of scaling "
                    "operations per 24 hours and none on on-demand streams: rerun with reshard=true later, or set "
                    "stream_shards in the cognito_pipeline Variable to the stream's current count"
                ) from err
            summary = self._wait_active()
        return summary

    def target_stream_arn(self) -> str:
        """The stream's ARN as the publish role's policy names it."""
        return stream_arn(self.role.partition, self.region, self.role.account_id, self.settings.stream_name)

    def stream_problems(self) -> list[str]:
        """Why Cognito could not publish to the stream now (empty: it can)."""
        summary = self._describe()
        if summary is None:
            return [f"Kinesis stream {self.settings.stream_name} does not exist"]
        if summary["StreamStatus"] not in ("ACTIVE", "UPDATING"):
            return [f"Kinesis stream {self.settings.stream_name} is {summary['StreamStatus']}"]
        return []

    # -- the publish role -------------------------------------------------------------------
    def _read_policy(self, arn: str) -> tuple[dict[str, Any] | None, str]:
        """A managed policy's default version, or None and why not (missing, or not readable by the
        worker: its policy reads only AWS managed policies and the publish role's boundary)."""
        try:
            meta = self.iam.get_policy(PolicyArn=arn)["Policy"]
            version = self.iam.get_policy_version(PolicyArn=arn, VersionId=meta["DefaultVersionId"])
        except ClientError as err:
            code = _code(err)
            if code in ("NoSuchEntity", "NoSuchEntityException"):
                return None, "does not exist"
            if code in ("AccessDenied", "AccessDeniedException"):
                return None, "the worker may not read it (AccessDenied)"
            raise
        return _document(version["PolicyVersion"]["Document"]), ""

    def _role_documents(self) -> RoleDocuments | None:
        try:
            role = self.iam.get_role(RoleName=self.role.name)["Role"]
        except ClientError as err:
            if _code(err) in ("NoSuchEntity", "NoSuchEntityException"):
                return None
            raise
        docs = RoleDocuments(_document(role["AssumeRolePolicyDocument"]))
        for name in self.iam.list_role_policies(RoleName=self.role.name)["PolicyNames"]:
            docs.policies.append(
                _document(self.iam.get_role_policy(RoleName=self.role.name, PolicyName=name)["PolicyDocument"])
            )
        for attached in self.iam.list_attached_role_policies(RoleName=self.role.name)["AttachedPolicies"]:
            document, why = self._read_policy(attached["PolicyArn"])
            if document is None:
                docs.unreadable[attached["PolicyArn"]] = why
            else:
                docs.policies.append(document)
        boundary = (role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
        if boundary:
            docs.boundary_arn = str(boundary)
            docs.boundary, _ = self._read_policy(docs.boundary_arn)
        return docs

    def _problems(self, docs: RoleDocuments) -> list[str]:
        return publish_role_problems(
            docs.trust,
            docs.policies,
            self.target_stream_arn(),
            unreadable=docs.unreadable,
            boundary_arn=docs.boundary_arn,
            boundary=docs.boundary,
        )

    def _trust_conditions(self) -> dict[str, dict[str, Any]]:
        return trust_conditions(
            self.settings.publish_role_trust_condition,
            partition=self.role.partition,
            account_id=self.role.account_id,
            identity_pool_ids=self.settings.identity_pool_ids,
        )

    def role_problems(self) -> list[str]:
        """Why the publish role cannot serve (empty: it can)."""
        docs = self._role_documents()
        if docs is None:
            missing = f"role {self.role.name} does not exist in account {self.role.account_id}"
            if self.settings.manage_publish_role:
                return [missing]
            return [
                f"{missing}, and manage_publish_role is false so the pipeline does not create it: create it "
                "(trusted by cognito-sync.amazonaws.com, kinesis:PutRecord/PutRecords on the stream; README, "
                "'IAM'), fix publish_role_arn, or set manage_publish_role to true in the cognito_pipeline Variable"
            ]
        return self._problems(docs)

    def ensure_publish_role(self) -> RoleReport:
        """Create the role when the settings say we manage it, or validate it; never rewrite its trust.

        The pipeline creates the role with its permissions boundary and trust (the worker may not change
        a trust policy afterwards: a changed trust is reported, not repaired) and rewrites only the
        role's own inline permissions policy, only on a role that has the boundary (the worker's IAM
        policy allows nothing else; README, "IAM")."""
        arn = self.settings.publish_role_arn
        docs = self._role_documents()
        conditions = self._trust_conditions()
        if not self.settings.manage_publish_role:
            if docs is None:
                return RoleReport(arn, "invalid", self.role_problems())
            problems = self._problems(docs)
            notes = trust_drift(docs.trust, conditions)
            for note in notes:
                log.warning("publish role %s (not managed by the pipeline): %s", arn, note)
            return RoleReport(arn, "invalid" if problems else "validated", problems, notes)
        boundary_arn = self.settings.boundary_arn
        policy = publish_role_policy(self.role.partition, self.region, self.role.account_id, self.settings.stream_name)
        if docs is None:
            return self._create_role(boundary_arn, conditions, policy)
        warnings: list[str] = []
        drift = trust_drift(docs.trust, conditions)
        bounded = docs.boundary_arn == boundary_arn
        not_bounded = (
            f"it has {'no permissions boundary' if docs.boundary_arn is None else 'the boundary ' + docs.boundary_arn}"
            f", not {boundary_arn}, and the pipeline may change only a role bounded by it: an administrator attaches "
            f"it (aws iam put-role-permissions-boundary --role-name {self.role.name} --permissions-boundary "
            f"{boundary_arn})"
        )
        if docs.boundary is not None and boundary_breadth(docs.boundary):
            warnings.append(
                f"its permissions boundary {docs.boundary_arn} allows more than {'/'.join(PUBLISH_ACTIONS)} "
                f"({', '.join(boundary_breadth(docs.boundary))}): it no longer bounds what the pipeline can give the "
                "role; create it from iam_cli's cognito-publish-role.boundary"
            )
        try:
            current_policy = _document(
                self.iam.get_role_policy(RoleName=self.role.name, PolicyName=PUBLISH_POLICY_NAME)["PolicyDocument"]
            )
        except ClientError as err:
            if _code(err) not in ("NoSuchEntity", "NoSuchEntityException"):
                raise
            current_policy = None
        changed = False
        if current_policy != policy and bounded:
            self.iam.put_role_policy(
                RoleName=self.role.name, PolicyName=PUBLISH_POLICY_NAME, PolicyDocument=orjson.dumps(policy).decode()
            )
            changed = True
            docs = self._role_documents() or docs
        elif current_policy != policy:
            drift.append(f"its inline policy {PUBLISH_POLICY_NAME} differs from the shipped one, and {not_bounded}")
        elif not bounded:
            warnings.append(f"{not_bounded}; until then a drift of its permissions cannot be repaired")
        for warning in warnings:
            log.warning("publish role %s: %s", arn, warning)
        problems = self._problems(docs)
        if problems:
            return RoleReport(arn, "invalid", problems + drift, warnings)
        if drift:
            log.error("publish role %s has drifted and the pipeline does not repair it: %s", arn, "; ".join(drift))
            return RoleReport(arn, "drifted", drift, warnings)
        if changed:
            log.warning("publish role %s had drifted; rewrote its permissions policy", arn)
            return RoleReport(arn, "updated", ["rewrote permissions policy"], warnings)
        return RoleReport(arn, "unchanged", [], warnings)

    def _create_role(
        self, boundary_arn: str, conditions: dict[str, dict[str, Any]], policy: dict[str, Any]
    ) -> RoleReport:
        arn = self.settings.publish_role_arn
        boundary, why = self._read_policy(boundary_arn)
        if boundary is None:
            return RoleReport(
                arn,
                "invalid",
                [
                    f"role {self.role.name} does not exist and cannot be created yet: its permissions boundary "
                    f"{boundary_arn} {why}. An administrator creates that managed policy from the "
                    "cognito-publish-role.boundary document of python -m cognito_streams.configure.iam_cli (the worker "
                    "may not create policies), or sets publish_role_boundary_arn to an existing one"
                ],
            )
        problems = boundary_problems(boundary_arn, boundary, self.target_stream_arn())
        if problems:
            # Created with this boundary, the role could never publish: say so before creating anything.
            return RoleReport(arn, "invalid", [f"role {self.role.name} not created: {p}" for p in problems])
        trust = publish_role_trust_policy(conditions)
        log.info(
            "creating publish role %s (trust: cognito-sync.amazonaws.com only%s; permissions boundary %s)",
            arn,
            f", with {', '.join(k for block in conditions.values() for k in block)}" if conditions else "",
            boundary_arn,
        )
        self.iam.create_role(
            RoleName=self.role.name,
            Path=self.role.path,
            AssumeRolePolicyDocument=orjson.dumps(trust).decode(),
            PermissionsBoundary=boundary_arn,
            Description="Lets Amazon Cognito Sync put records on the Cognito Streams Kinesis stream",
        )
        self.iam.put_role_policy(
            RoleName=self.role.name, PolicyName=PUBLISH_POLICY_NAME, PolicyDocument=orjson.dumps(policy).decode()
        )
        return RoleReport(arn, "created")

    # -- the pools --------------------------------------------------------------------------
    def plan(self, identity_pool_id: str, stream_problems: list[str], role_problems: list[str]) -> PoolPlan:
        """Read one pool's configuration and decide (pure decision in ``core.configure.streams_config``)."""
        try:
            current = self.cognito.get_configuration(identity_pool_id)
        except ClientError as err:
            if _code(err) == "ResourceNotFoundException":
                return PoolPlan(
                    PoolAction.FAIL,
                    [f"identity pool {identity_pool_id} does not exist (check identity_pool_ids in the settings)"],
                )
            raise
        return plan_pool(
            current,
            stream_name=self.settings.stream_name,
            role_arn=self.settings.publish_role_arn,
            stream_problems=stream_problems,
            role_problems=role_problems,
        )

    def apply(self, identity_pool_id: str, plan: PoolPlan) -> None:
        """Write the planned settings (read-modify-write: PushSync is sent back as read).

        Retries InvalidConfigurationException for a while: a role created moments ago is not yet
        assumable by Cognito (IAM is eventually consistent)."""
        assert plan.cognito_streams is not None  # noqa: S101 - only writing plans get here
        deadline = time.monotonic() + ROLE_PROPAGATION_SECONDS
        delay = 1.0
        while True:
            try:
                self.cognito.set_configuration(identity_pool_id, plan.cognito_streams, plan.push_sync)
                return
            except ClientError as err:
                if _code(err) != "InvalidConfigurationException" or time.monotonic() > deadline:
                    raise ConfigurationError(
                        f"SetIdentityPoolConfiguration refused for pool {identity_pool_id}: "
                        f"{err.response.get('Error', {}).get('Message', err)}"
                    ) from err
                log.info(
                    "pool %s: Cognito cannot use the role yet (IAM propagation); retrying in %.0f s",
                    identity_pool_id,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def configure_pools(self, pool_ids: list[str] | None = None) -> list[PoolReport]:
        """Plan and apply every pool; return one report each (failures included, not raised)."""
        stream_problems = self.stream_problems()
        role_problems = self.role_problems()
        reports = []
        for pool_id in pool_ids or self.settings.identity_pool_ids:
            plan = self.plan(pool_id, stream_problems, role_problems)
            if plan.writes:
                try:
                    self.apply(pool_id, plan)
                except ConfigurationError as err:
                    # Reported, not raised: the pools before it may have been re-enabled, and their
                    # backfill is asked for only from this run's reports (a retry finds them unchanged).
                    plan = PoolPlan(PoolAction.FAIL, [str(err), *plan.reasons])
            level = logging.ERROR if plan.action is PoolAction.FAIL else logging.INFO
            log.log(
                level,
                "pool %s: %s%s",
                pool_id,
                plan.action.value,
                f" ({'; '.join(plan.reasons)})" if plan.reasons else "",
            )
            reports.append(PoolReport(pool_id, plan.action.value, plan.reasons, plan.needs_backfill))
        return reports


def _document(value: Any) -> dict[str, Any]:
    """IAM returns policy documents as dicts (boto3 decodes them) or URL-encoded JSON strings."""
    if isinstance(value, dict):
        return value
    from urllib.parse import unquote

    return dict(orjson.loads(unquote(str(value))))


def summarize(reports: list[PoolReport]) -> dict[str, Any]:
    """Counts by action and the list of failures, for the task's return value."""
    counts: dict[str, int] = {}
    for r in reports:
        counts[r.action] = counts.get(r.action, 0) + 1
    return {
        "counts": counts,
        "pools": [asdict(r) for r in reports],
        "failed": [r.identity_pool_id for r in reports if r.action == PoolAction.FAIL.value],
        "needs_backfill": [r.identity_pool_id for r in reports if r.needs_backfill],
    }
