"""The AWS side of the emulator, reached through boto3 at ``--aws-endpoint`` (moto locally).

- Cognito Identity owns identity pools and identities (as in AWS): lookups are cached briefly so
  that a request costs no extra round trip in the steady state.
- The publish role is checked as Cognito would need it: it exists in IAM, its trust policy lets
  ``cognito-sync.amazonaws.com`` call ``sts:AssumeRole`` (moto's STS does not check trust, so the
  document is evaluated here), then STS AssumeRole gives the credentials Kinesis is called with.
- Kinesis PutRecords and S3 payload objects with presigned GET URLs.

Every client is created once and shared by all threads (botocore clients are thread-safe).
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from local.emulator.errors import ApiError, internal, not_found

log = logging.getLogger(__name__)

COGNITO_SYNC_PRINCIPAL = "cognito-sync.amazonaws.com"
ROLE_SESSION_NAME = "CognitoSyncStreams"


def error_code(err: ClientError) -> str:
    """The AWS error code of a ``ClientError``."""
    return str(err.response.get("Error", {}).get("Code", ""))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _policy(document: Any) -> dict[str, Any]:
    """IAM gives the trust policy as a dict (boto3 decodes it) or as URL-encoded JSON text."""
    if isinstance(document, dict):
        return document
    return dict(orjson.loads(unquote(str(document))))


def trust_problem(document: Any, principal: str = COGNITO_SYNC_PRINCIPAL) -> str | None:
    """Why ``principal`` may not assume a role with this trust policy (None: it may).

    Allow/Deny, Action/NotAction with wildcards and Principal (``*``, ``Service``) are evaluated;
    Condition blocks are taken as satisfied (what the emulator cannot know: source account, ...).
    """
    try:
        statements = [s for s in _as_list(_policy(document).get("Statement")) if isinstance(s, dict)]
    except (ValueError, TypeError) as err:
        return f"its trust policy is not valid JSON ({err})"

    def action_matches(stmt: dict[str, Any]) -> bool:
        if "NotAction" in stmt:
            return not any(fnmatch.fnmatchcase("sts:assumerole", str(a).lower()) for a in _as_list(stmt["NotAction"]))
        return any(fnmatch.fnmatchcase("sts:assumerole", str(a).lower()) for a in _as_list(stmt.get("Action")))

    def principal_matches(stmt: dict[str, Any]) -> bool:
        who = stmt.get("Principal")
        if who == "*":
            return True
        if isinstance(who, dict):
            return principal in _as_list(who.get("Service")) or "*" in _as_list(who.get("AWS"))
        return False

    relevant = [s for s in statements if action_matches(s) and principal_matches(s)]
    if any(s.get("Effect") == "Deny" for s in relevant):
        return f"its trust policy denies {principal} sts:AssumeRole"
    if not any(s.get("Effect") == "Allow" for s in relevant):
        return f"its trust policy does not let {principal} call sts:AssumeRole"
    return None


@dataclass
class _RoleCheck:
    checked_at: float  # monotonic; reused while younger than the cache setting *now* (it may change)
    problem: str | None
    kinesis: Any  # a Kinesis client with the role's credentials, when the role works


class AwsGateway:
    """Shared boto3 clients and the caches in front of them."""

    def __init__(self, endpoint: str, region: str) -> None:
        self.endpoint = endpoint
        self.region = region
        self._session = boto3.session.Session(region_name=region)
        self._config = Config(
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=64,
            connect_timeout=5,
            read_timeout=60,
        )
        self.identity = self._client("cognito-identity")
        self.iam = self._client("iam")
        self.sts = self._client("sts")
        self.kinesis = self._client("kinesis")
        self.s3 = self._client(
            "s3", config=self._config.merge(Config(signature_version="s3v4", s3={"addressing_style": "path"}))
        )
        self._pools: dict[str, float] = {}  # pool id -> monotonic time it was last found to exist
        self._identities: dict[str, set[str]] = {}
        self._identity_refreshed: dict[str, float] = {}  # pool id -> monotonic start of the last refresh
        self._identity_locks: dict[str, threading.Lock] = {}
        self._roles: dict[str, _RoleCheck] = {}
        self._lock = threading.Lock()
        self._buckets: set[str] = set()

    def _client(self, service: str, config: Config | None = None, **credentials: str) -> Any:
        return self._session.client(service, endpoint_url=self.endpoint, config=config or self._config, **credentials)

    def _unreachable(self, what: str, err: Exception) -> ApiError:
        return internal(f"the emulator could not reach {what} at {self.endpoint}: {err}")

    def forget(self) -> None:
        """Drop every cache (after a reset)."""
        with self._lock:
            self._pools.clear()
            self._identities.clear()
            self._identity_refreshed.clear()
            self._roles.clear()

    # -- Cognito Identity -----------------------------------------------------------------------
    def ensure_pool(self, pool_id: str, cache_seconds: float) -> None:
        """Raise ResourceNotFoundException unless Cognito Identity has this pool."""
        now = time.monotonic()
        if pool_id in self._pools and now - self._pools[pool_id] < cache_seconds:
            return
        try:
            self.identity.describe_identity_pool(IdentityPoolId=pool_id)
        except ClientError as err:
            if error_code(err) == "ResourceNotFoundException":
                self._pools.pop(pool_id, None)
                raise not_found(
                    f"Identity pool {pool_id} does not exist (Cognito Identity in {self.region} does not know it); "
                    "create it with cognito-identity CreateIdentityPool or check the id"
                ) from None
            raise self._unreachable("Cognito Identity", err) from err
        except BotoCoreError as err:
            raise self._unreachable("Cognito Identity", err) from err
        self._pools[pool_id] = now

    def ensure_identity(self, pool_id: str, identity_id: str) -> None:
        """Raise ResourceNotFoundException unless the identity belongs to the pool.

        Known identities are kept; an unknown one triggers one ListIdentities of the pool (shared by
        concurrent requests), so an identity made by GetId a moment ago is found.
        """
        if identity_id in self._identities.get(pool_id, ()):
            return
        asked_at = time.monotonic()
        with self._lock:
            lock = self._identity_locks.setdefault(pool_id, threading.Lock())
        with lock:
            if (
                identity_id not in self._identities.get(pool_id, ())
                and self._identity_refreshed.get(pool_id, -1) < asked_at
            ):
                self._identity_refreshed[pool_id] = time.monotonic()
                self._identities[pool_id] = self._list_identities(pool_id)
        if identity_id not in self._identities.get(pool_id, ()):
            raise not_found(
                f"Identity {identity_id} does not exist in identity pool {pool_id}; "
                "get one with cognito-identity GetId for this pool"
            )

    def _list_identities(self, pool_id: str) -> set[str]:
        found: set[str] = set()
        token: str | None = None
        try:
            while True:
                page = self.identity.list_identities(
                    IdentityPoolId=pool_id, MaxResults=60, **({"NextToken": token} if token else {})
                )
                found.update(i["IdentityId"] for i in page.get("Identities", []))
                token = page.get("NextToken")
                if not token:
                    return found
        except (ClientError, BotoCoreError) as err:
            raise self._unreachable("Cognito Identity (ListIdentities)", err) from err

    def list_pool_ids(self) -> list[str]:
        """Every identity pool of the account in this region (for ListIdentityPoolUsage)."""
        pools: list[str] = []
        token: str | None = None
        try:
            while True:
                page = self.identity.list_identity_pools(MaxResults=60, **({"NextToken": token} if token else {}))
                pools.extend(p["IdentityPoolId"] for p in page.get("IdentityPools", []))
                token = page.get("NextToken")
                if not token:
                    return sorted(set(pools))
        except (ClientError, BotoCoreError) as err:
            raise self._unreachable("Cognito Identity (ListIdentityPools)", err) from err

    # -- IAM / STS: the publish role -------------------------------------------------------------
    def role_problem(self, role_arn: str, cache_seconds: float, *, fresh: bool = False) -> str | None:
        """Why Cognito Sync cannot assume ``role_arn`` now (None: it can). Checks are reused for
        ``cache_seconds`` unless ``fresh``. Raises InternalErrorException when IAM cannot be reached."""
        now = time.monotonic()
        cached = self._roles.get(role_arn)
        if cached is not None and now - cached.checked_at < cache_seconds and not fresh:
            return cached.problem
        problem, client = self._check_role(role_arn)
        self._roles[role_arn] = _RoleCheck(now, problem, client)
        return problem

    def kinesis_for_role(self, role_arn: str) -> Any:
        """The Kinesis client holding the role's assumed credentials (after :meth:`role_problem`)."""
        cached = self._roles.get(role_arn)
        if cached is None or cached.kinesis is None:
            raise RuntimeError(f"role {role_arn} was not checked successfully before use")
        return cached.kinesis

    def _check_role(self, role_arn: str) -> tuple[str | None, Any]:
        name = role_arn.rsplit("/", 1)[-1]
        try:
            role = self.iam.get_role(RoleName=name)["Role"]
        except ClientError as err:
            if error_code(err) in ("NoSuchEntity", "NoSuchEntityException"):
                return f"the role {role_arn} does not exist", None
            raise self._unreachable("IAM", err) from err
        except BotoCoreError as err:
            raise self._unreachable("IAM", err) from err
        if role.get("Arn") != role_arn:
            return f"the role {role_arn} does not exist (IAM has {role.get('Arn')} under that name)", None
        problem = trust_problem(role.get("AssumeRolePolicyDocument"))
        if problem:
            return f"Cognito Sync cannot assume the role {role_arn}: {problem}", None
        try:
            creds = self.sts.assume_role(RoleArn=role_arn, RoleSessionName=ROLE_SESSION_NAME)["Credentials"]
        except ClientError as err:
            return f"STS AssumeRole of {role_arn} failed: {err}", None
        except BotoCoreError as err:
            raise self._unreachable("STS", err) from err
        client = self._client(
            "kinesis",
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )
        return None, client

    # -- Kinesis ---------------------------------------------------------------------------------
    def stream_problem(self, stream_name: str) -> str | None:
        """Why records cannot go to the stream now (None: it is ACTIVE or UPDATING)."""
        try:
            summary = self.kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
        except ClientError as err:
            if error_code(err) == "ResourceNotFoundException":
                return f"the Kinesis stream {stream_name} does not exist in {self.region}"
            raise self._unreachable("Kinesis", err) from err
        except BotoCoreError as err:
            raise self._unreachable("Kinesis", err) from err
        status = summary.get("StreamStatus")
        if status not in ("ACTIVE", "UPDATING"):
            return f"the Kinesis stream {stream_name} is {status}"
        return None

    # -- S3 payloads -----------------------------------------------------------------------------
    def put_payload(self, bucket: str, key: str, body: bytes, expiry_seconds: int) -> str:
        """Store an S3Url payload and return its presigned GET URL."""
        if bucket not in self._buckets:
            try:
                self.s3.create_bucket(Bucket=bucket)
            except ClientError as err:
                if error_code(err) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
            self._buckets.add(bucket)
        self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
        return str(
            self.s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=int(expiry_seconds)
            )
        )

    def delete_payload(self, bucket: str, key: str) -> None:
        """Delete a payload object whose URL expired (missing is fine)."""
        try:
            self.s3.delete_object(Bucket=bucket, Key=key)
        except ClientError as err:
            if error_code(err) not in ("NoSuchKey", "NoSuchBucket", "404"):
                raise
