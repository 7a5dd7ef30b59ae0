"""Runtime settings of the emulator (changed through ``POST /_emulator/settings``, persisted)
and its movable clock."""

from __future__ import annotations

import time
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: The Kinesis record limit, and Cognito's documented threshold for S3Url payloads (1 MB).
KINESIS_RECORD_MAX_BYTES = 1_048_576


class EmulatorSettings(BaseModel):
    """What a test may change at run time; defaults are AWS's documented values where AWS has one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: An update whose record (data + partition key) is larger goes out as ``S3Url``.
    s3url_threshold_bytes: Annotated[int, Field(ge=256, le=KINESIS_RECORD_MAX_BYTES)] = KINESIS_RECORD_MAX_BYTES
    #: Lifetime of the presigned URL in an ``S3Url`` record (the object is deleted when it ends).
    presigned_url_expiry_seconds: Annotated[int, Field(ge=1, le=7 * 86_400)] = 3600
    #: A bulk publish stays IN_PROGRESS at least this long (AWS takes minutes; tests want seconds).
    bulk_publish_min_seconds: Annotated[float, Field(ge=0, le=86_400)] = 1.0
    #: Datasets a bulk publish puts on the stream per second; 0 means as fast as Kinesis takes them.
    bulk_publish_datasets_per_second: Annotated[float, Field(ge=0)] = 0.0
    #: The publisher waits up to this long for more records before a PutRecords that is not full
    #: (batching under load; Cognito's own delivery delay is far longer). 0 sends at once.
    publish_linger_ms: Annotated[int, Field(ge=0, le=5000)] = 20
    #: How long a SyncSessionToken from ListRecords stays valid (emulator clock).
    session_token_ttl_seconds: Annotated[float, Field(gt=0, le=86_400)] = 3600.0
    #: How long a successful check of the publish role (IAM trust policy + STS AssumeRole) is reused.
    role_check_cache_seconds: Annotated[float, Field(ge=0, le=3600)] = 5.0
    #: How long "this identity pool exists" (Cognito Identity DescribeIdentityPool) is reused.
    pool_cache_seconds: Annotated[float, Field(ge=0, le=3600)] = 5.0
    #: Cognito Sync's limits (AWS docs: 20 datasets per identity, 1024 records and 1 MB per dataset).
    max_datasets_per_identity: Annotated[int, Field(ge=1, le=10_000)] = 20
    max_records_per_dataset: Annotated[int, Field(ge=1, le=100_000)] = 1024
    max_dataset_bytes: Annotated[int, Field(ge=1024, le=64 * 1024**2)] = 1_048_576
    #: Cognito Sync API calls per second above which the answer is TooManyRequestsException (HTTP 429), as
    #: a token bucket holding ``rate_limit_burst`` calls. AWS documents the exception, not the rate: 0 (the
    #: default) never throttles; tests and the snapshot benchmark turn it on to exercise the back-off.
    rate_limit_calls_per_second: Annotated[float, Field(ge=0, le=1_000_000)] = 0.0
    rate_limit_burst: Annotated[int, Field(ge=1, le=1_000_000)] = 10
    #: Bucket (in moto) holding the S3Url payloads; created when first needed.
    payload_bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")] = (
        "cognito-sync-emulator-payloads"
    )

    def updated(self, changes: dict[str, Any]) -> EmulatorSettings:
        """A copy with ``changes`` applied and validated (raises :class:`SettingsError`)."""
        try:
            return EmulatorSettings.model_validate({**self.model_dump(), **changes})
        except ValidationError as err:
            raise SettingsError(describe_validation_error(err)) from None


class SettingsError(ValueError):
    """A control request with a bad value; the message names each field and what is allowed."""


def describe_validation_error(err: ValidationError) -> str:
    """One line per bad field: ``name: what is wrong (got value)``."""
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(body)"
        parts.append(f"{where}: {item['msg']} (got {item.get('input')!r})")
    return "; ".join(parts)


class Clock:
    """The emulator's clock: the real time plus a movable offset, in epoch milliseconds.

    :meth:`tick` hands out change timestamps that strictly increase across the whole emulator, so no
    two changes ever tie; when changes come faster than one per millisecond, or after the clock was
    moved back, timestamps run ahead of :meth:`now_ms` until it catches up. Callers hold the
    emulator's lock.
    """

    def __init__(self, offset_ms: int = 0, last_ms: int = 0) -> None:
        self.offset_ms = offset_ms
        self.last_ms = last_ms

    def now_ms(self) -> int:
        """Epoch milliseconds on the emulator's clock."""
        return time.time_ns() // 1_000_000 + self.offset_ms

    def tick(self) -> int:
        """A change timestamp: ``now_ms()``, or one more than the previous one if that is later."""
        stamp = max(self.now_ms(), self.last_ms + 1)
        self.last_ms = stamp
        return stamp
