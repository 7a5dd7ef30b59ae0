"""Secrets never reach the logs: a full run of the pipeline (``local.demo.run_demo``: configure, app
activity, bulk publish, landing with S3Url payloads, loading, reconciliation, report) with known
secret-looking credentials and record values, whose every log line is then searched."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.emulator.control import EmulatorControl
from local.stack import LOCAL_ACCOUNT_ID, Stack
from tests.support.warehouse import connect, drop_schema

pytestmark = [pytest.mark.integration, pytest.mark.dag]

#: Look like real AWS keys; moto takes any.
ACCESS_KEY_ID = "AKIAZZSECURITYTEST01"
SECRET_ACCESS_KEY = "zzSecretAccessKey/ForTheLogTest+0123456789abcd"
SIGNED_URL_PARTS = ("X-Amz-Signature", "X-Amz-Credential", "Signature=", "X-Amz-Security-Token")


@pytest.fixture
def s3url_threshold(emulator: str) -> Iterator[int]:
    """Records over 2 KB go as S3Url payloads, so the run fetches presigned URLs."""
    ctl = EmulatorControl(emulator)
    before = ctl.settings()["s3url_threshold_bytes"]
    ctl.update_settings(s3url_threshold_bytes=2048)
    try:
        yield 2048
    finally:
        ctl.update_settings(s3url_threshold_bytes=before)


def secret_values(aws: Any, pool_id: str, marker: str) -> None:
    """An app stores secret-looking values: one inline, one large enough to travel as S3Url."""
    sync = aws("cognito-sync")
    identity = aws("cognito-identity").get_id(IdentityPoolId=pool_id)["IdentityId"]
    for dataset, value in (("account", f"{marker}-inline"), ("save_game", f"{marker}-large " + "x" * 4000)):
        token = sync.list_records(IdentityPoolId=pool_id, IdentityId=identity, DatasetName=dataset)["SyncSessionToken"]
        sync.update_records(
            IdentityPoolId=pool_id,
            IdentityId=identity,
            DatasetName=dataset,
            SyncSessionToken=token,
            RecordPatches=[{"Op": "replace", "Key": "password", "Value": value, "SyncCount": 0}],
        )


def test_a_full_run_logs_no_credentials_presigned_urls_or_values(
    stack: Stack,
    emulator: str,
    aws: Any,
    airflow_db: None,
    s3url_threshold: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from local.demo import DemoConfig, run_demo

    suffix = uuid.uuid4().hex[:8]
    marker = f"zz-secret-value-{suffix}"
    # GIVEN a pipeline of its own, AWS credentials that look real, and apps storing secret-looking values
    pool_id = aws("cognito-identity").create_identity_pool(
        IdentityPoolName=f"security_logs_{suffix}", AllowUnauthenticatedIdentities=True
    )["IdentityPoolId"]
    variable = {
        **json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"]),
        "identity_pool_ids": [pool_id],
        "stream_name": f"security-logs-{suffix}",
        "stream_shards": 1,
        "publish_role_arn": f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:role/security-logs-{suffix}",
        "landing_prefix": f"security-logs/{suffix}",
        "warehouse_schema": f"security_logs_{suffix}",
        "bulk_publish_poll_seconds": 0.5,
    }
    monkeypatch.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(variable))
    connection = {"conn_type": "aws", "login": ACCESS_KEY_ID, "password": SECRET_ACCESS_KEY,
                  "extra": {"region_name": stack.cfg.region}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    secret_values(aws, pool_id, marker)
    logs_before = time.time()
    try:
        # WHEN the whole demo flow runs (its DAG runs' output goes to the demo log)
        result = run_demo(
            stack, DemoConfig(identities=4, changes=40, large_share=0.1, seed=7, quiet=True), env=dict(os.environ)
        )
        # THEN it worked: the values reached the warehouse, S3Url payloads were fetched, nothing mismatches
        assert result.mismatches == 0
        with connect() as conn:
            stored = conn.execute(
                f"select count(*) from {variable['warehouse_schema']}.records where record_value like %s",
                (f"{marker}%",),
            ).fetchone()
        assert stored is not None and stored[0] == 2
    finally:
        drop_schema(variable["warehouse_schema"])
    captured = capfd.readouterr()
    texts = {
        "demo log": (stack.cfg.log_dir / "demo.log").read_text(errors="replace"),
        "python logging": caplog.text,
        "stdout": captured.out,
        "stderr": captured.err,
    }
    for path in Path(os.environ["AIRFLOW_HOME"]).rglob("*.log"):
        if path.stat().st_mtime >= logs_before:
            texts[str(path)] = path.read_text(errors="replace")
    everything = "\n".join(texts.values())
    assert "S3Url payload(s):" in everything and "fetched, 0 failed" in everything, "no S3Url payload was fetched"
    # AND no log holds a record value, the secret key, the access key id, or any part of a signed URL
    for secret in (marker, SECRET_ACCESS_KEY, ACCESS_KEY_ID, *SIGNED_URL_PARTS):
        leaks = {name: text.count(secret) for name, text in texts.items() if secret in text}
        assert not leaks, f"{secret!r} found in {leaks}"
