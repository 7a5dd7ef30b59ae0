"""``make redshift-check``: the pipeline's Redshift path against a real cluster or Serverless workgroup (opt-in).

What the local Redshift emulator cannot prove (docs/redshift-emulator.md, "What it cannot tell you"), this shows on
the real thing, with the pipeline's own code: the ``Warehouse`` opened from an Airflow connection of type
``redshift`` through the Amazon provider's ``RedshiftSQLHook`` (redshift-connector), as the DAGs open it. In a schema
of its own, it

1. connects and runs the schema migrations (``sql/schema``: DISTKEY/SORTKEY, every table and view);
2. lands one small batch under the given S3 prefix with the landing DAG's decoder and writer (Parquet with the
   landing contract's types: INT64 TIMESTAMP(MICROS, UTC) among them; a COPY manifest; one quarantined record);
3. loads it as ``cognito_s3_to_redshift`` does: ``COPY ... FROM 's3://...manifest' IAM_ROLE ... FORMAT AS PARQUET
   MANIFEST`` into the stage, then the merge (temporary tables, window functions, both MERGEs);
4. reads the rows back and compares them with what the Parquet files hold, timestamps to the millisecond
   (whether Redshift's Parquet reader reads the landed timestamps right: issue 17, item 3);
5. runs the data-quality checks (``sql/checks.sql``);
6. drops its schema and deletes what it wrote to S3 (unless ``REDSHIFT_CHECK_KEEP=1``).

Environment (every variable is named in the error when it is missing; README, "Checking against a real Redshift"):

``AIRFLOW_CONN_REDSHIFT_CHECK``
    the connection ``redshift_check``, conn_type ``redshift`` (Airflow's JSON or URI form): host, port, database,
    user and password, or IAM authentication in the extra as the Amazon provider supports it.
``REDSHIFT_CHECK_S3_PREFIX``
    ``s3://bucket/prefix`` where the check writes its batch (a folder of its own below it, deleted afterwards): the
    COPY role must be able to read it, and the AWS credentials below to write, list and delete there.
``REDSHIFT_CHECK_COPY_ROLE_ARN``
    the IAM role the cluster assumes for COPY (associated with the cluster or workgroup).
``REDSHIFT_CHECK_AWS_CONN_ID`` (optional, default ``aws_default``)
    the Airflow connection for S3; without one, boto3's usual chain (environment, profile, instance role).
``REDSHIFT_CHECK_SCHEMA`` (optional)
    the schema to use (default ``cognito_check_<random>``); it must not exist yet.
``REDSHIFT_CHECK_KEEP`` (optional)
    ``1``: keep the schema and the S3 objects for inspection.

    PYTHONPATH=plugins python -m cognito_streams.redshift_check

Exit codes: 0 all steps passed; 1 a step failed (named, with its error); 2 a variable is missing or wrong.
"""

from __future__ import annotations

import io
import os
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

#: The connection id the check reads (``AIRFLOW_CONN_REDSHIFT_CHECK``).
CONN_ID = "redshift_check"
REQUIRED = {
    "AIRFLOW_CONN_REDSHIFT_CHECK": "the cluster's or workgroup's connection, conn_type redshift, e.g. "
    '\'{"conn_type": "redshift", "host": "<endpoint>", "port": 5439, "schema": "dev", "login": "<user>", '
    '"password": "<password>"}\'',
    "REDSHIFT_CHECK_S3_PREFIX": "s3://<bucket>/<prefix> where the check writes a small batch (the COPY role must read "
    "it; your AWS credentials write, list and delete there)",
    "REDSHIFT_CHECK_COPY_ROLE_ARN": "arn:aws:iam::<account>:role/<role> that the cluster assumes for COPY",
}
#: A made-up pool and identities of one region (the decoder checks that they belong together).
POOL = "us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"
IDENTITIES = ("us-east-1:7d3c9b1a-2e4f-4c5d-8a6b-0c1d2e3f4a5b", "us-east-1:7d3c9b1a-2e4f-4c5d-8a6b-0c1d2e3f4a5c")
STREAM = "redshift-check"
SHARD = "shardId-000000000000"
#: A lastModifiedDate with milliseconds: it must come back from Redshift exactly.
STAMP_MS = 1424801824343


class CheckFailedError(Exception):
    """A step failed; the message names it."""


class UsageError(Exception):
    """A variable is missing or wrong; the message says which and what it must be."""


@dataclass(frozen=True)
class CheckConfig:
    """What the environment gives the check."""

    bucket: str
    prefix: str
    copy_role_arn: str
    aws_conn_id: str
    schema: str
    keep: bool

    @classmethod
    def from_env(cls, env: dict[str, str]) -> CheckConfig:
        """Read and check the variables; :class:`UsageError` names every one missing or wrong."""
        missing = [f"  {name}: {what}" for name, what in REQUIRED.items() if not env.get(name)]
        if missing:
            raise UsageError(
                "make redshift-check needs these environment variables (README, 'Checking against a real "
                "Redshift'):\n" + "\n".join(missing)
            )
        url = env["REDSHIFT_CHECK_S3_PREFIX"].strip()
        if not url.startswith("s3://") or len(url) <= len("s3://"):
            raise UsageError(f"REDSHIFT_CHECK_S3_PREFIX={url!r} is not an s3://<bucket>/<prefix> URL")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        return cls(
            bucket=bucket,
            prefix=prefix.strip("/"),
            copy_role_arn=env["REDSHIFT_CHECK_COPY_ROLE_ARN"].strip(),
            aws_conn_id=env.get("REDSHIFT_CHECK_AWS_CONN_ID") or "aws_default",
            schema=env.get("REDSHIFT_CHECK_SCHEMA") or f"cognito_check_{uuid.uuid4().hex[:10]}",
            keep=env.get("REDSHIFT_CHECK_KEEP", "") == "1",
        )

    def settings(self, run: str) -> Any:
        """The pipeline settings of this check: its schema, its landing folder, the ``redshift_check``
        connection. The publish role is never used: any valid ARN of the COPY role's account will do."""
        from cognito_streams.settings import SettingsError, parse_settings

        account = self.copy_role_arn.split(":")[4] if self.copy_role_arn.count(":") >= 5 else "000000000000"
        landing_prefix = "/".join(p for p in (self.prefix, f"redshift-check-{run}") if p)
        try:
            return parse_settings(
                {
                    "identity_pool_ids": [POOL],
                    "stream_name": STREAM,
                    "publish_role_arn": f"arn:aws:iam::{account}:role/redshift-check-unused",
                    "landing_bucket": self.bucket,
                    "landing_prefix": landing_prefix,
                    "warehouse_schema": self.schema,
                    "copy_iam_role_arn": self.copy_role_arn,
                    "aws_conn_id": self.aws_conn_id,
                    "warehouse_conn_id": CONN_ID,
                }
            )
        except SettingsError as err:
            raise UsageError(f"the check's settings are not valid: {err}") from None


def cognito_records() -> list[bytes]:
    """A small history as Cognito Streams puts it on Kinesis: replaces (one value of three-byte characters), a
    remove, a dataset deleted and re-created with restarted sync counts, a resend, and one undecodable record."""
    import orjson

    def sync(
        identity: str, dataset: str, sync_count: int, at: int, changes: list[tuple[str, str | None, str]]
    ) -> bytes:
        return orjson.dumps(
            {
                "identityPoolId": POOL,
                "identityId": identity,
                "dataSetName": dataset,
                "operation": "replace",
                "kinesisSyncRecords": [
                    {"key": k, "value": v, "syncCount": sync_count, "lastModifiedDate": at,
                     "deviceLastModifiedDate": at - 250, "op": op}
                    for k, v, op in changes
                ],
                "lastModifiedDate": at,
                "kinesisSyncRecordsURL": None,
                "payloadType": "Inline",
                "syncCount": sync_count,
            }
        )  # fmt: skip

    first = sync(
        IDENTITIES[0], "game_state", 7, STAMP_MS,
        [("level", "12", "replace"), ("coins", "4500", "replace"), ("city", "Zürich ✓ 東京", "replace")],
    )  # fmt: skip
    deleted = orjson.dumps(
        {
            "identityPoolId": POOL, "identityId": IDENTITIES[1], "dataSetName": "app_prefs", "operation": "remove",
            "kinesisSyncRecords": [], "lastModifiedDate": STAMP_MS + 60_000, "kinesisSyncRecordsURL": None,
            "payloadType": "Inline", "syncCount": 2,
        }
    )  # fmt: skip
    return [
        first,
        sync(IDENTITIES[0], "game_state", 8, STAMP_MS + 55_000, [("coins", None, "remove")]),
        sync(IDENTITIES[1], "app_prefs", 1, STAMP_MS + 1_000, [("theme", "dark", "replace")]),
        deleted,
        sync(IDENTITIES[1], "app_prefs", 1, STAMP_MS + 120_000, [("theme", "light", "replace")]),
        first,  # a resend (bulk publish): absorbed by the merge
        b"{not json",  # quarantined with its raw bytes: the rejects COPY runs too
    ]


def land_batch(settings: Any, s3: Any) -> tuple[Any, str]:
    """Land :func:`cognito_records` as one batch with the landing DAG's decoder and writer; returns the descriptor
    and its URL."""
    from cognito_streams.core.decode import DecodeOptions, KinesisRecords, decode_records
    from cognito_streams.core.landing_format import LandingLayout
    from cognito_streams.landing_zone.writer import BatchRange, BatchWriter

    data = cognito_records()
    now = datetime.now(UTC)
    seqs = [f"4959{n:052d}" for n in range(1, len(data) + 1)]
    arrived = [int(now.timestamp() * 1000)] * len(data)
    writer = BatchWriter(s3, LandingLayout(settings.landing_bucket, settings.landing_prefix, settings.stream_name))
    span = BatchRange(SHARD, seqs[0], seqs[-1], now, now)
    options = DecodeOptions(
        stream_name=settings.stream_name,
        shard_id=SHARD,
        landed_file=writer.changes_url(span),
        value_ref=writer.value_url(SHARD),
        value_max_bytes=settings.value_max_bytes,
    )
    decoded = decode_records(KinesisRecords(data, seqs, arrived), options)
    if decoded.records_rejected != 1 or decoded.pending:
        raise CheckFailedError(
            f"the decoder quarantined {decoded.records_rejected} record(s) (1 expected) and left "
            f"{len(decoded.pending)} payload(s) to fetch (0 expected): the check's own records are wrong"
        )
    return writer.write(span, decoded, decoded.records_read, decoded.records_landed)


def landed_changes(s3: Any, url: str) -> list[Any]:
    """The rows of a landed changes file, as the pyarrow reader reads them (the reference)."""
    import pyarrow.parquet as pq

    from cognito_streams.core.state import Change

    bucket, key = url[len("s3://") :].split("/", 1)
    table = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    return [Change.from_row(row) for row in table.to_pylist()]


def compare_state(wh: Any, changes: list[Any]) -> list[str]:
    """What differs between the warehouse's ``records``/``datasets`` rows and the reference state of ``changes``
    (docs/semantics.md); empty when they agree."""
    from cognito_streams.core.sql_text import ReportingSql
    from cognito_streams.core.state import expected_state

    sql = ReportingSql(wh.schema, "redshift")
    want = expected_state(changes)
    with wh.transaction() as cur:
        cur.execute(sql.records_of_identities(len(IDENTITIES)), (POOL, *IDENTITIES))
        records: dict[tuple[str, ...], tuple[Any, ...]] = {tuple(r[0:3]): tuple(r[3:7]) for r in cur.fetchall()}
        cur.execute(sql.datasets_of_identities(len(IDENTITIES)), (POOL, *IDENTITIES))
        datasets: dict[tuple[str, ...], tuple[Any, ...]] = {tuple(r[0:2]): tuple(r[2:5]) for r in cur.fetchall()}
    expected_records: dict[tuple[str, ...], tuple[Any, ...]] = {
        (k[1], k[2], k[3]): (r.record_value, r.sync_count, r.last_modified_at, r.is_deleted)
        for k, r in want.records.items()
    }
    expected_datasets: dict[tuple[str, ...], tuple[Any, ...]] = {
        (k[1], k[2]): (d.last_modified_at, d.is_deleted, d.live_record_count) for k, d in want.datasets.items()
    }
    problems = []
    for what, got, expected in (("records", records, expected_records), ("datasets", datasets, expected_datasets)):
        for key in sorted(set(got) | set(expected)):
            if got.get(key) != expected.get(key):
                problems.append(
                    f"{what} {key}: Redshift has {got.get(key)}, the landed Parquet says {expected.get(key)}"
                )
    stamp = datetime(1970, 1, 1) + timedelta(milliseconds=STAMP_MS)
    level = records.get((IDENTITIES[0], "game_state", "level"))
    if level is None or level[2] != stamp:
        problems.append(
            f"last_modified_at of the key 'level' is {level[2] if level else None}, not {stamp} (lastModifiedDate "
            f"{STAMP_MS}): Redshift read the landed INT64 TIMESTAMP(MICROS, UTC) column wrong"
        )
    return problems


class Steps:
    """Numbered steps with timings on ``out``; the step that raises is named in the error."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total, self.n, self.out = total, 0, out
        self.current = ""
        self.t0 = time.monotonic()

    def start(self, text: str) -> None:
        self.n += 1
        self.current = text
        self.t0 = time.monotonic()
        print(f"[{self.n}/{self.total}] {text}", file=self.out, flush=True)

    def detail(self, text: str) -> None:
        print(f"      {text}", file=self.out, flush=True)

    def done(self) -> None:
        print(f"      ok ({time.monotonic() - self.t0:.1f} s)", file=self.out, flush=True)


def run_check(cfg: CheckConfig, out: TextIO = sys.stdout) -> None:
    """The check (module docstring); raises :class:`CheckFailedError` naming the step that failed."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk.bases.hook import BaseHook

    from cognito_streams.landing_zone import load as loader
    from cognito_streams.warehouse.connect import open_warehouse

    conn = BaseHook.get_connection(CONN_ID)
    if conn.conn_type != "redshift":
        raise UsageError(
            f"connection {CONN_ID} has conn_type {conn.conn_type!r}; this check is for Amazon Redshift: give it "
            "conn_type redshift"
        )
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    settings = cfg.settings(run_id)
    steps = Steps(6, out)
    s3 = S3Hook(aws_conn_id=cfg.aws_conn_id).get_conn()
    started = datetime.now(UTC)
    created = False
    try:
        try:
            steps.start(f"Connecting to {conn.host}:{conn.port or 5439}/{conn.schema} (RedshiftSQLHook) and migrating "
                        f"schema {cfg.schema}")  # fmt: skip
            with open_warehouse(settings) as wh:
                with wh.transaction() as cur:
                    cur.execute("select version()")
                    steps.detail(str(cur.fetchone()[0])[:160])
                    # Never work in (and then drop) a schema that holds anything already.
                    cur.execute("select count(*) from pg_namespace where nspname = %s", (cfg.schema,))
                    if cur.fetchone()[0]:
                        raise UsageError(f"schema {cfg.schema} exists already; the check makes and drops its own")
                created = True
                applied = wh.ensure_schema()
            steps.detail(f"applied {len(applied)} migration(s): {', '.join(applied)}")
            steps.done()

            steps.start(f"Landing one batch under s3://{settings.landing_bucket}/{settings.landing_prefix}/")
            descriptor, url = land_batch(settings, s3)
            steps.detail(
                f"{descriptor.kinesis_records_read} records: {descriptor.kinesis_records_landed} landed, "
                f"{descriptor.kinesis_records_rejected} quarantined; descriptor {url}"
            )
            steps.done()

            steps.start("Loading it: COPY ... FORMAT AS PARQUET MANIFEST with IAM_ROLE, then the merge")
            report = loader.load_landing_zone(settings)
            failed = getattr(report, "failed", None) or []
            if report.batches != 1 or failed:
                reasons = "; ".join(f"{f.descriptor_url}: {f.error_message}" for f in failed)
                raise CheckFailedError(
                    f"{report.batches} batch(es) loaded, 1 expected{': ' + reasons if reasons else ''}"
                )
            steps.detail(
                f"{report.rows_staged} change rows and {report.rejects_staged} reject(s) staged; "
                f"{report.merge.versions_inserted} versions, {report.merge.keys_changed} keys, "
                f"{report.merge.datasets_touched} datasets merged; COPY {report.stage_seconds:.1f} s"
            )
            steps.done()

            steps.start("Reading the rows back: the warehouse against the landed Parquet (timestamps included)")
            assert descriptor.changes is not None  # noqa: S101 - land_batch wrote changes
            with open_warehouse(settings) as wh:
                problems = compare_state(wh, landed_changes(s3, descriptor.changes.url))
            if problems:
                raise CheckFailedError("the warehouse differs from the landed data:\n  " + "\n  ".join(problems))
            steps.detail(f"every record and dataset row as the Parquet files say; {STAMP_MS} ms read back exactly")
            steps.done()

            steps.start("Data-quality checks (sql/checks.sql)")
            results = loader.check_quality(settings, since=started - timedelta(minutes=1))
            steps.detail(f"{len(results)} checks passed")
            steps.done()
        except (CheckFailedError, UsageError):
            raise
        except Exception as err:
            raise CheckFailedError(f"step {steps.n} ({steps.current}) failed: {type(err).__name__}: {err}") from err
    finally:
        if cfg.keep:
            print(f"[6/6] Kept schema {cfg.schema} and s3://{settings.landing_bucket}/{settings.landing_prefix}/ "
                  "(REDSHIFT_CHECK_KEEP=1)", file=out)  # fmt: skip
        else:
            steps.n = 5
            steps.start(f"Dropping schema {cfg.schema} and the check's S3 objects")
            _clean_up(settings, s3, steps, drop=created)


def _clean_up(settings: Any, s3: Any, steps: Steps, *, drop: bool) -> None:
    """Drop the schema and delete the objects; a failure here is reported, never raised over the check's own."""
    from cognito_streams.warehouse.connect import open_warehouse

    if drop:
        try:
            with open_warehouse(settings) as wh, wh.transaction() as cur:
                # The name was validated as an identifier by the warehouse (WarehouseSql); it cannot be bound.
                cur.execute(f"drop schema {wh.schema} cascade")
            steps.detail(f"dropped schema {settings.warehouse_schema}")
        except Exception as err:  # noqa: BLE001 - reported; the check's outcome stands
            steps.detail(f"could not drop schema {settings.warehouse_schema}: {err}; drop it by hand")
    prefix = settings.landing_prefix + "/"
    try:
        keys = [
            o["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.landing_bucket, Prefix=prefix)
            for o in page.get("Contents", [])
        ]
        for i in range(0, len(keys), 1000):
            s3.delete_objects(
                Bucket=settings.landing_bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]}
            )
        steps.detail(f"deleted {len(keys)} object(s) under s3://{settings.landing_bucket}/{prefix}")
    except Exception as err:  # noqa: BLE001 - reported; the check's outcome stands
        steps.detail(f"could not delete s3://{settings.landing_bucket}/{prefix}: {err}; delete it by hand")


def main(argv: list[str] | None = None, env: dict[str, str] | None = None, out: TextIO = sys.stdout) -> int:
    """Command line entry point (``make redshift-check``)."""
    if argv:
        print(__doc__, file=out)
        return 0 if argv[0] in ("-h", "--help") else 2
    try:
        cfg = CheckConfig.from_env(dict(os.environ if env is None else env))
        print(f"cognito-streams redshift-check: the Redshift path on connection {CONN_ID}, schema {cfg.schema}",
              file=out)  # fmt: skip
        run_check(cfg, out)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except CheckFailedError as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    print("OK: migrations, COPY from S3, merge, read-back and data-quality checks passed on this Redshift.", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
