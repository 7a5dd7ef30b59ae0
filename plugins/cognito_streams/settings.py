"""The pipeline's settings: one typed object validated from the Airflow Variable ``cognito_pipeline``.

Every field has a default where one is safe; every bad value gives an error that names the field,
shows the value and says what is expected, all fields at once (not the first only).
Nothing here does I/O except :func:`load_settings`, which tasks call at run time.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cognito_streams.core.configure.iam import default_boundary_arn
from cognito_streams.core.sql_text import identifier_problem

VARIABLE_NAME = "cognito_pipeline"

# Formats from the AWS API references (Cognito Identity, Kinesis, IAM, S3) and Redshift's identifier rules.
POOL_ID_RE = re.compile(r"^[\w-]+:[0-9a-f-]+$")
STREAM_NAME_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,128}$")
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
POLICY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}|aws):policy/[\w+=,.@/-]{1,512}$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
#: Characters of a landing prefix: those of an S3 key that may stand between quotes in a COPY statement
#: (``core.sql_text.S3_URL_RE``).
PREFIX_RE = re.compile(r"[A-Za-z0-9!_.*()/=:,+@-]{1,512}")
CONN_ID_RE = re.compile(r"^[\w.-]{1,250}$")

#: Redshift's VARCHAR limit in bytes; values longer than this are cut and referenced.
REDSHIFT_VARCHAR_MAX_BYTES = 65_535


class SettingsError(ValueError):
    """The ``cognito_pipeline`` Variable is missing or invalid; the message lists every problem."""


class PipelineSettings(BaseModel):
    """Validated contents of the ``cognito_pipeline`` Airflow Variable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    # Sources ---------------------------------------------------------------------------
    identity_pool_ids: Annotated[list[str], Field(min_length=1, max_length=1000)]
    stream_name: str
    stream_shards: Annotated[int, Field(ge=1, le=500)] = 1
    publish_role_arn: str
    manage_publish_role: bool = False
    # The managed policy the publish role gets as its permissions boundary when the pipeline creates it
    # (manage_publish_role); default policy/cognito-streams-publish-boundary in the role's account.
    publish_role_boundary_arn: str | None = None
    # Opt-in confused-deputy conditions written into the publish role's trust policy when the pipeline
    # creates it, and checked (never rewritten) afterwards: core.configure.iam.TrustCondition. Verify on your
    # account first: a condition Cognito Sync does not satisfy turns streaming DISABLED.
    publish_role_trust_condition: Literal["none", "source_account", "source_arn"] = "none"
    aws_conn_id: str = "aws_default"
    warehouse_conn_id: str = "redshift_default"

    # Landing zone ----------------------------------------------------------------------
    landing_bucket: str
    landing_prefix: str = "cognito-streams"
    batch_max_records: Annotated[int, Field(ge=1, le=5_000_000)] = 100_000
    batch_max_bytes: Annotated[int, Field(ge=1024, le=2 * 1024**3)] = 64 * 1024**2
    run_max_records: Annotated[int, Field(ge=1)] = 1_000_000
    run_max_seconds: Annotated[float, Field(gt=0, le=3600)] = 120.0
    get_records_limit: Annotated[int, Field(ge=1, le=10_000)] = 10_000
    s3url_fetch_concurrency: Annotated[int, Field(ge=1, le=256)] = 16
    s3url_fetch_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    s3url_fetch_retries: Annotated[int, Field(ge=0, le=10)] = 3
    value_max_bytes: Annotated[int, Field(ge=16, le=REDSHIFT_VARCHAR_MAX_BYTES)] = REDSHIFT_VARCHAR_MAX_BYTES
    checkpoint_lease_seconds: Annotated[float, Field(gt=0, le=86_400)] = 900.0
    # Landing (issue 5): S3Url bodies larger than this are quarantined (s3url_bad_body); Cognito
    # datasets are at most 1 MB, so a much larger body is not a Cognito payload.
    s3url_max_bytes: Annotated[int, Field(ge=1024, le=1024**3)] = 64 * 1024**2
    # Extra hosts (``host`` or ``host:port``) whose S3Url payloads may be fetched besides
    # https://*.amazonaws.com and the S3 endpoint of aws_conn_id (e.g. a private S3 endpoint).
    s3url_allowed_hosts: list[str] = []
    # Networks (CIDR) a payload host not listed above may resolve to besides public addresses (issue
    # 18: private, loopback and link-local answers are refused), e.g. an S3 interface endpoint of the VPC
    # with private DNS: ["10.0.0.0/16"].
    s3url_allowed_networks: list[str] = []
    # Parquet compression of landed files (Redshift COPY reads both): zstd files are 40-44 % smaller
    # and 25-40 % slower to write than snappy (measured once by hand on the demo's files, docs/landing.md).
    landing_compression: Literal["zstd", "snappy"] = "snappy"

    # Warehouse ---------------------------------------------------------------------------
    warehouse_schema: str = "cognito_sync"
    copy_iam_role_arn: str | None = None
    load_max_files_per_batch: Annotated[int, Field(ge=1, le=10_000)] = 64
    #: The loader starts a load at most this often (Redshift serialises commits cluster-wide and AWS
    #: advises against many small ones); what lands meanwhile goes into the next load. 0: no pause.
    min_load_interval_seconds: Annotated[float, Field(ge=0, le=3600)] = 10.0

    # Bulk publish ------------------------------------------------------------------------
    bulk_publish_timeout_seconds: Annotated[float, Field(gt=0, le=7 * 86_400)] = 6 * 3600.0
    bulk_publish_poll_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # How far this worker's clock may be off Cognito's when telling this attempt's bulk publish from an
    # earlier one by its BulkPublishStartTime; AWS refuses requests signed ~15 minutes off (core.bulk_publish).
    bulk_publish_clock_skew_seconds: Annotated[float, Field(ge=0, le=3600)] = 900.0

    # Reconciliation ----------------------------------------------------------------------
    reconcile_sample_size: Annotated[int | None, Field(ge=1)] = None
    reconcile_max_mismatches: Annotated[int, Field(ge=0)] = 0
    #: Changes younger than this may still be on their way (Kinesis, landing, loading): not judged.
    reconcile_settle_seconds: Annotated[int, Field(ge=0, le=7 * 86_400)] = 900
    #: ``records``: list every dataset's records (finds every difference); ``datasets``: list only the
    #: datasets whose DescribeDataset summary differs from the warehouse (cheaper, sees less; core.reconcile).
    reconcile_depth: Literal["records", "datasets"] = "records"

    # Health --------------------------------------------------------------------------------
    #: A stall: records waiting in Kinesis, or landed and not loaded, for longer than this with no
    #: successful landing or load meanwhile (cognito_pipeline_health alerts; the UI shows it red).
    stall_alert_seconds: Annotated[float, Field(ge=1, le=7 * 86_400)] = 600.0

    # Snapshot (cognito_snapshot) ------------------------------------------------------------
    #: Identities per chunk: one durable cursor object each; the walk is mapped over the chunks (grouped into
    #: at most ``[core] max_map_length`` tasks).
    snapshot_chunk_identities: Annotated[int, Field(ge=1, le=100_000)] = 1000
    #: Identities per landed snapshot batch: the cursor moves after each, and a killed walk reads at most this
    #: many identities again.
    snapshot_batch_identities: Annotated[int, Field(ge=1, le=10_000)] = 200
    #: Identities a walk task reads from Cognito Sync at once (each read is a few sequential calls).
    snapshot_concurrency: Annotated[int, Field(ge=1, le=64)] = 8

    @field_validator(
        "stream_shards", "batch_max_records", "batch_max_bytes", "run_max_records", "run_max_seconds",
        "get_records_limit", "s3url_fetch_concurrency", "s3url_fetch_timeout_seconds", "s3url_fetch_retries",
        "value_max_bytes", "checkpoint_lease_seconds", "s3url_max_bytes", "load_max_files_per_batch",
        "bulk_publish_timeout_seconds", "bulk_publish_poll_seconds", "bulk_publish_clock_skew_seconds",
        "reconcile_sample_size", "reconcile_max_mismatches", "reconcile_settle_seconds", "stall_alert_seconds",
        "min_load_interval_seconds", "snapshot_chunk_identities", "snapshot_batch_identities", "snapshot_concurrency",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        # pydantic reads true as 1: a boolean where a number belongs is a mistake, not a count of one.
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is a boolean; give a number")
        return value

    @field_validator("identity_pool_ids")
    @classmethod
    def _pool_ids(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not (1 <= len(v) <= 55 and POOL_ID_RE.fullmatch(v))]
        if bad:
            raise ValueError(
                f"{bad!r} are not identity pool ids (expected <region>:<uuid>, e.g. us-east-1:0f5b2a4e-...)"
            )
        if len(set(value)) != len(value):
            raise ValueError("the same identity pool id is listed twice")
        return value

    @field_validator("stream_name")
    @classmethod
    def _stream_name(cls, value: str) -> str:
        if not STREAM_NAME_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a Kinesis stream name (1-128 characters of a-z A-Z 0-9 _ . -)")
        return value

    @field_validator("publish_role_arn", "copy_iam_role_arn")
    @classmethod
    def _role_arn(cls, value: str | None) -> str | None:
        if value is not None and not ROLE_ARN_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not an IAM role ARN (expected arn:aws:iam::<12-digit account>:role/<name>)")
        return value

    @field_validator("publish_role_boundary_arn")
    @classmethod
    def _policy_arn(cls, value: str | None) -> str | None:
        if value is not None and not POLICY_ARN_RE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an IAM managed policy ARN (expected arn:aws:iam::<12-digit account>:policy/<name>)"
            )
        return value

    @field_validator("landing_bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        is_ip = False
        try:
            ipaddress.ip_address(value)
            is_ip = True
        except ValueError:
            pass
        if not BUCKET_RE.fullmatch(value) or ".." in value or is_ip or value.startswith("xn--"):
            raise ValueError(
                f"{value!r} is not an S3 bucket name (3-63 characters: lower-case letters, digits, '.', '-', "
                "starting and ending with a letter or digit)"
            )
        return value

    @field_validator("landing_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        cleaned = value.strip("/")
        parts = cleaned.split("/") if cleaned else []
        if any(p in ("", ".", "..") for p in parts) or len(cleaned) > 512 or any(ord(c) < 32 for c in cleaned):
            raise ValueError(
                f"{value!r} is not a usable S3 key prefix (no empty, '.' or '..' parts, at most 512 chars)"
            )
        if not PREFIX_RE.fullmatch(cleaned):
            # The landed files' s3:// URLs go into Redshift COPY statements, which take no bound values.
            raise ValueError(
                f"{value!r} has characters a COPY statement cannot take; use letters, digits and !_.*()/=:,+@- only"
            )
        return cleaned

    @field_validator("warehouse_schema")
    @classmethod
    def _schema(cls, value: str) -> str:
        problem = identifier_problem(value)
        if problem is not None:
            raise ValueError(f"{value!r} is not a safe SQL identifier: {problem}; choose another schema name")
        return value

    @field_validator("aws_conn_id", "warehouse_conn_id")
    @classmethod
    def _conn_id(cls, value: str) -> str:
        if not CONN_ID_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not an Airflow connection id")
        return value

    @field_validator("s3url_allowed_hosts")
    @classmethod
    def _allowed_hosts(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not re.match(r"^[a-z0-9.-]{1,253}(:[0-9]{1,5})?$", v.lower())]
        if bad:
            raise ValueError(f"{bad!r} are not host or host:port values (e.g. s3.example.internal:9000)")
        return [v.lower() for v in value]

    @property
    def boundary_arn(self) -> str:
        """The publish role's permissions boundary: ``publish_role_boundary_arn`` or the default name."""
        return self.publish_role_boundary_arn or default_boundary_arn(self.publish_role_arn)

    @field_validator("s3url_allowed_networks")
    @classmethod
    def _allowed_networks(cls, value: list[str]) -> list[str]:
        bad = []
        for item in value:
            try:
                ipaddress.ip_network(item)
            except ValueError:
                bad.append(item)
        if bad:
            raise ValueError(f"{bad!r} are not networks in CIDR notation (e.g. 10.0.0.0/16, with no host bits set)")
        return [str(ipaddress.ip_network(item)) for item in value]

    @model_validator(mode="after")
    def _lease_outlives_task(self) -> PipelineSettings:
        if self.checkpoint_lease_seconds <= self.run_max_seconds:
            raise ValueError(
                f"checkpoint_lease_seconds ({self.checkpoint_lease_seconds}) must be longer than run_max_seconds "
                f"({self.run_max_seconds}): a landing task would lose its shard lease while still reading"
            )
        return self

    @model_validator(mode="after")
    def _batches_fit_runs(self) -> PipelineSettings:
        if self.batch_max_records > self.run_max_records:
            raise ValueError(
                f"batch_max_records ({self.batch_max_records}) is larger than run_max_records "
                f"({self.run_max_records}); a batch must fit in one run"
            )
        return self


def parse_settings(raw: Any) -> PipelineSettings:
    """Validate ``raw`` (a dict, or the Variable's JSON text) into :class:`PipelineSettings`.

    Raises :class:`SettingsError` listing every bad field as ``cognito_pipeline.<field>: <why>``.
    """
    if isinstance(raw, str | bytes):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise SettingsError(f"Variable {VARIABLE_NAME} is not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise SettingsError(
            f"Variable {VARIABLE_NAME} must be a JSON object, got {type(raw).__name__}; see README, 'Settings'"
        )
    try:
        return PipelineSettings.model_validate(raw)
    except ValidationError as err:
        raise SettingsError(_describe(err)) from None


def _describe(err: ValidationError) -> str:
    lines = [f"Variable {VARIABLE_NAME} has {err.error_count()} problem(s); fix them in Admin > Variables:"]
    for problem in err.errors(include_url=False):
        where = ".".join(str(p) for p in problem["loc"]) or "(whole object)"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown setting (a typo?); see README, 'Settings', for the names"
        elif problem["type"] == "missing":
            message = "required setting is missing"
        shown = problem.get("input")
        suffix = "" if problem["type"] in ("missing", "value_error") or shown is None else f" (got {shown!r})"
        lines.append(f"  - {VARIABLE_NAME}.{where}: {message}{suffix}")
    return "\n".join(lines)


def load_settings(name: str = VARIABLE_NAME) -> PipelineSettings:
    """Read and validate the Variable at task run time (never at DAG parse time)."""
    from airflow.sdk import Variable

    raw = Variable.get(name, default=None)
    if raw is None:
        raise SettingsError(
            f"Variable {name} is not set; create it (Admin > Variables, or env "
            f"AIRFLOW_VAR_{name.upper()}) as described in README, 'Settings'"
        )
    return parse_settings(raw)
