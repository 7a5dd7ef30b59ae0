"""Input checks with the model's patterns and lengths, and Cognito Sync's documented limits.

Every check raises :class:`~local.emulator.errors.ApiError` with the error type AWS uses and a
message naming the parameter, the value and what is allowed.
"""

from __future__ import annotations

import re
from typing import Any

from local.emulator.errors import ApiError, invalid

# Patterns and lengths from the botocore model (shapes IdentityPoolId, IdentityId, DatasetName,
# AssumeRoleArn, ApplicationArn, StreamName, RecordKey, RecordValue, DeviceId).
ID_RE = re.compile(r"^[\w-]+:[0-9a-f-]+$")
ID_MAX = 55
DATASET_NAME_RE = re.compile(r"^[a-zA-Z0-9_.:-]+$")
DATASET_NAME_MAX = 128
ROLE_ARN_RE = re.compile(r"^arn:aws:iam::\d+:role/.*$")
ROLE_ARN_MIN, ROLE_ARN_MAX = 20, 2048
APPLICATION_ARN_RE = re.compile(r"^arn:aws:sns:[-0-9a-z]+:\d+:app/[A-Z_]+/[a-zA-Z0-9_.-]+$")
STREAM_NAME_MAX = 128
RECORD_KEY_MAX = 1024
RECORD_VALUE_MAX = 1_048_575
DEVICE_ID_MAX = 256
STREAMING_STATUSES = ("ENABLED", "DISABLED")
OPERATIONS = ("replace", "remove")


def identity_pool_id(value: str) -> str:
    """An identity pool id (``<region>:<guid>``, at most 55 characters)."""
    if not (1 <= len(value) <= ID_MAX) or not ID_RE.match(value):
        raise invalid(
            f"IdentityPoolId {value!r} is not valid: expected <region>:<guid> such as "
            "us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f (pattern [\\w-]+:[0-9a-f-]+, at most 55 characters)"
        )
    return value


def identity_id(value: str) -> str:
    """An identity id (``<region>:<guid>``, at most 55 characters)."""
    if not (1 <= len(value) <= ID_MAX) or not ID_RE.match(value):
        raise invalid(
            f"IdentityId {value!r} is not valid: expected <region>:<guid> as Cognito Identity's GetId returns it "
            "(pattern [\\w-]+:[0-9a-f-]+, at most 55 characters)"
        )
    return value


def dataset_name(value: str) -> str:
    """A dataset name: 1-128 characters of a-z A-Z 0-9 _ . : -."""
    if not (1 <= len(value) <= DATASET_NAME_MAX) or not DATASET_NAME_RE.match(value):
        raise invalid(
            f"DatasetName {value!r} is not valid: 1 to {DATASET_NAME_MAX} characters of a-z, A-Z, 0-9, "
            "'_', '.', ':' and '-'"
        )
    return value


def role_arn(value: Any, field: str) -> str:
    """An IAM role ARN (``arn:aws:iam::<account>:role/<name>``, 20-2048 characters)."""
    if not isinstance(value, str) or not (ROLE_ARN_MIN <= len(value) <= ROLE_ARN_MAX) or not ROLE_ARN_RE.match(value):
        raise invalid(
            f"{field} {value!r} is not an IAM role ARN: expected arn:aws:iam::<account id>:role/<name> "
            f"({ROLE_ARN_MIN} to {ROLE_ARN_MAX} characters)"
        )
    return value


def stream_name(value: Any) -> str:
    """A Kinesis stream name as CognitoStreams takes it (1-128 characters)."""
    if not isinstance(value, str) or not (1 <= len(value) <= STREAM_NAME_MAX):
        raise invalid(f"CognitoStreams.StreamName {value!r} is not valid: 1 to {STREAM_NAME_MAX} characters")
    return value


def push_sync(value: Any) -> dict[str, Any] | None:
    """``PushSync``: ApplicationArns (SNS platform application ARNs) and RoleArn, kept as given."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("PushSync must be an object with ApplicationArns and RoleArn")
    unknown = set(value) - {"ApplicationArns", "RoleArn"}
    if unknown:
        raise invalid(f"PushSync has unknown members {sorted(unknown)}; allowed: ApplicationArns, RoleArn")
    arns = value.get("ApplicationArns")
    if arns is not None:
        if not isinstance(arns, list) or not all(isinstance(a, str) for a in arns):
            raise invalid("PushSync.ApplicationArns must be a list of SNS platform application ARNs")
        bad = [a for a in arns if not APPLICATION_ARN_RE.match(a)]
        if bad:
            raise invalid(
                f"PushSync.ApplicationArns {bad!r} are not SNS platform application ARNs "
                "(arn:aws:sns:<region>:<account>:app/<PLATFORM>/<name>)"
            )
    if value.get("RoleArn") is not None:
        role_arn(value["RoleArn"], "PushSync.RoleArn")
    return dict(value)


def integer(value: Any, field: str, *, minimum: int, maximum: int | None = None) -> int:
    """A whole number in range (query strings arrive as text)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise invalid(f"{field} {value!r} is not a whole number") from None
    if isinstance(value, float) and value != number:
        raise invalid(f"{field} {value!r} is not a whole number")
    if number < minimum or (maximum is not None and number > maximum):
        allowed = f"{minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise invalid(f"{field} {number} is out of range ({allowed})")
    return number


def device_id(value: Any) -> str | None:
    """``DeviceId``: 1-256 characters, or absent."""
    if value is None:
        return None
    if not isinstance(value, str) or not (1 <= len(value) <= DEVICE_ID_MAX):
        raise invalid(f"DeviceId must be 1 to {DEVICE_ID_MAX} characters")
    return value


def require_object(body: Any, operation: str) -> dict[str, Any]:
    """A JSON request body must be an object."""
    if not isinstance(body, dict):
        raise ApiError("InvalidParameterException", f"{operation} expects a JSON object as its request body")
    return body
