"""``make redshift-check``'s plumbing, with the same entry point pointed at the Redshift emulator: it reads its
connection and S3 location from the environment, migrates, lands one batch with the landing DAG's code, COPYs and
merges it through RedshiftSQLHook, reads it back, runs the checks and drops what it made; it names what is missing,
and a failing step, with its error, and still cleans up. (Against a real cluster it is run by hand: README.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import replace
from typing import Any

import pytest

from local.redshift.logread import log_size, read_emulator_log
from local.stack import REPO, Stack, warehouse_connection
from tests.support.warehouse import landing_prefix, pipeline_settings, redshift_admin

pytestmark = pytest.mark.integration


def run_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``make redshift-check``'s command, with ``env`` over this process's environment (the stack's endpoints)."""
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)]), **env}
    return subprocess.run(
        [sys.executable, "-m", "cognito_streams.redshift_check"],
        cwd=REPO, env=full, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.fixture
def check_env(stack: Stack, redshift_emulator: Any) -> dict[str, str]:
    """The variables a user sets, pointed at the local stack: the emulator as the cluster, the stack's bucket and
    COPY role."""
    conn = warehouse_connection(replace(stack.cfg, warehouse="redshift"))
    return {
        "AIRFLOW_CONN_REDSHIFT_CHECK": json.dumps(conn),
        "REDSHIFT_CHECK_S3_PREFIX": f"s3://{stack.cfg.landing_bucket}/{landing_prefix('check')}",
        "REDSHIFT_CHECK_COPY_ROLE_ARN": str(pipeline_settings().copy_iam_role_arn),
        "REDSHIFT_CHECK_SCHEMA": f"cognito_check_{uuid.uuid4().hex[:8]}",
    }


def schema_exists(name: str) -> bool:
    with redshift_admin() as admin:
        row = admin.execute("select count(*) from pg_namespace where nspname = %s", (name,)).fetchone()
    return bool(row and row[0])


def objects_under(aws: Any, bucket: str, prefix: str) -> list[str]:
    listed = aws("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def test_the_check_passes_on_the_emulator_and_leaves_nothing(check_env: dict[str, str], stack: Stack, aws: Any) -> None:
    log_from = log_size(stack.redshift.log_file)
    # WHEN the check runs against the emulator as it would against a cluster
    proc = run_check(check_env)
    # THEN every step passed, in order
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for step in (
        "[1/6] Connecting to 127.0.0.1", "[2/6] Landing one batch", "[3/6] Loading it: COPY", "[4/6] Reading the rows",
        "[5/6] Data-quality checks", "[6/6] Dropping schema",
    ):  # fmt: skip
        assert step in out, out
    assert "7 records: 6 landed, 1 quarantined" in out
    assert "1424801824343 ms read back exactly" in out
    assert out.rstrip().endswith("passed on this Redshift.")
    # AND it went through redshift-connector and the emulator's COPY from S3
    log = read_emulator_log(stack.redshift.log_file, log_from)
    assert log.redshift_connector_sessions >= 1 and log.copies and log.copies_failed == []
    # AND nothing of it is left: its schema is dropped, its objects deleted
    assert not schema_exists(check_env["REDSHIFT_CHECK_SCHEMA"])
    assert objects_under(aws, stack.cfg.landing_bucket, landing_prefix("check") + "/") == []


def test_missing_variables_are_named_with_what_they_are() -> None:
    proc = run_check({k: "" for k in ("AIRFLOW_CONN_REDSHIFT_CHECK", "REDSHIFT_CHECK_S3_PREFIX")})
    assert proc.returncode == 2
    err = proc.stderr
    assert "make redshift-check needs these environment variables (README, 'Checking against a real Redshift')" in err
    assert "AIRFLOW_CONN_REDSHIFT_CHECK: the cluster's or workgroup's connection, conn_type redshift" in err
    assert "REDSHIFT_CHECK_S3_PREFIX: s3://<bucket>/<prefix>" in err
    assert "REDSHIFT_CHECK_COPY_ROLE_ARN: arn:aws:iam::<account>:role/<role>" in err


def test_a_connection_that_is_not_redshift_is_refused(check_env: dict[str, str], stack: Stack) -> None:
    postgres = json.dumps(warehouse_connection(stack.cfg))
    proc = run_check({**check_env, "AIRFLOW_CONN_REDSHIFT_CHECK": postgres})
    assert proc.returncode == 2
    assert "connection redshift_check has conn_type 'postgres'; this check is for Amazon Redshift" in proc.stderr


def test_a_failing_step_is_named_with_its_error_and_the_check_still_cleans_up(
    check_env: dict[str, str], stack: Stack, aws: Any
) -> None:
    # GIVEN a COPY role that does not exist (the cluster cannot assume it)
    role = "arn:aws:iam::123456789012:role/not-a-copy-role"
    # WHEN the check runs
    proc = run_check({**check_env, "REDSHIFT_CHECK_COPY_ROLE_ARN": role})
    # THEN it fails at the load, with Redshift's error naming the role, and drops what it made
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[3/6] Loading it" in proc.stdout and "[4/6]" not in proc.stdout
    assert "FAILED:" in proc.stderr and f"Not authorized to get credentials of role {role}" in proc.stderr
    assert "[6/6] Dropping schema" in proc.stdout
    assert not schema_exists(check_env["REDSHIFT_CHECK_SCHEMA"])
    assert objects_under(aws, stack.cfg.landing_bucket, landing_prefix("check") + "/") == []
