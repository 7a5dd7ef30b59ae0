"""The local stack starts, answers, is idempotent, reports busy ports clearly and stops cleanly."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import psycopg
import pytest

from local.procs import StackError
from local.stack import Stack, StackConfig, stack_environment
from tests.conftest import REPO, make_stack_config

pytestmark = pytest.mark.integration


def _env_from_file(path: Path) -> dict[str, str]:
    """Source stack.env in a real shell and read back what it exported."""
    out = subprocess.run(
        ["bash", "-c", f"set -a; source {path}; env -0"], capture_output=True, check=True
    ).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def test_stack_up_answers_is_idempotent_and_down_leaves_no_listener(tmp_path: Path) -> None:
    cfg = make_stack_config(tmp_path / "state")
    stack = Stack(cfg)
    try:
        stack.up(migrate=False)
        pids_first = {s.name: s.pid() for s in stack.services()}
        stack.up(migrate=False)  # a second `stack-up` changes nothing
        assert {s.name: s.pid() for s in stack.services()} == pids_first
        assert all(pid is not None for pid in pids_first.values())

        env = _env_from_file(cfg.env_file)
        for key in (
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_COGNITO_SYNC",
            "AIRFLOW_CONN_AWS_DEFAULT",
            "AIRFLOW_CONN_REDSHIFT_DEFAULT",
            "AIRFLOW_VAR_COGNITO_PIPELINE",
            "AIRFLOW_HOME",
            "AIRFLOW__CORE__DAGS_FOLDER",
            "AIRFLOW__CORE__PLUGINS_FOLDER",
        ):
            assert env.get(key), f"stack.env does not export {key}"

        session = boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )
        kinesis = session.client("kinesis", endpoint_url=env["AWS_ENDPOINT_URL"])
        kinesis.create_stream(StreamName="stack-test", ShardCount=1)
        assert (
            kinesis.describe_stream_summary(StreamName="stack-test")["StreamDescriptionSummary"]["OpenShardCount"] == 1
        )
        s3 = session.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
        s3.create_bucket(Bucket="stack-test-bucket")
        s3.put_object(Bucket="stack-test-bucket", Key="k", Body=b"v")
        assert s3.get_object(Bucket="stack-test-bucket", Key="k")["Body"].read() == b"v"
        # The landing bucket and the identity pool exist already.
        assert cfg.landing_bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}

        with psycopg.connect(env["CS_WAREHOUSE_DSN"]) as conn:
            assert conn.execute("select current_database(), split_part(version(), ' ', 2)").fetchone()[0] == "warehouse"
            assert conn.execute("show server_version_num").fetchone()[0].startswith("16")
    finally:
        stack.down()
    assert stack.listening_ports() == []
    assert all(s.pid() is None for s in stack.services())


def test_busy_port_names_the_port_and_the_setting(tmp_path: Path) -> None:
    cfg = make_stack_config(tmp_path / "state")
    with socket.socket() as squatter:
        squatter.bind((cfg.host, cfg.moto_port))
        squatter.listen()
        stack = Stack(cfg)
        with pytest.raises(StackError) as err:
            stack.up(migrate=False)
        stack.down()
    message = str(err.value)
    assert str(cfg.moto_port) in message
    assert "CS_MOTO_PORT" in message


def test_cli_reports_a_busy_port_without_a_traceback(tmp_path: Path) -> None:
    cfg = make_stack_config(tmp_path / "state")
    with socket.socket() as squatter:
        squatter.bind((cfg.host, cfg.pg_port))
        squatter.listen()
        proc = subprocess.run(
            [sys.executable, "-m", "local.stack", "up", "--no-migrate"],
            cwd=REPO,
            env={
                "PATH": "/usr/bin:/bin",
                "CS_STATE_DIR": str(cfg.state_dir),
                "CS_MOTO_PORT": str(cfg.moto_port),
                "CS_PG_PORT": str(cfg.pg_port),
                "CS_EMULATOR_PORT": str(cfg.emulator_port),
                "CS_REDSHIFT_PORT": str(cfg.redshift_port),
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
    subprocess.run(
        [sys.executable, "-m", "local.stack", "down"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "CS_STATE_DIR": str(cfg.state_dir), "CS_MOTO_PORT": str(cfg.moto_port)},
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert f"port {cfg.pg_port}" in proc.stderr
    assert "CS_PG_PORT" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_warehouse_setting_picks_redshift_default_and_a_wrong_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"CS_WAREHOUSE='mysql'.*postgres, redshift"):
        StackConfig.from_env({"CS_WAREHOUSE": "mysql"})
    assert StackConfig.from_env({"CS_WAREHOUSE": "redshift", "CS_REDSHIFT_PORT": "45999"}).redshift_port == 45999
    default = json.loads(stack_environment(make_stack_config(tmp_path), ["pool"])["AIRFLOW_CONN_REDSHIFT_DEFAULT"])
    assert default["conn_type"] == "postgres"
    cfg = make_stack_config(tmp_path, warehouse="redshift")
    conn = json.loads(stack_environment(cfg, ["pool"])["AIRFLOW_CONN_REDSHIFT_DEFAULT"])
    assert conn == {
        "conn_type": "redshift", "host": cfg.host, "port": cfg.redshift_port, "login": "awsuser",
        "password": "Emulator-Passw0rd", "schema": "dev", "extra": {"ssl": False},
    }  # fmt: skip


def test_a_busy_redshift_port_names_its_setting(tmp_path: Path) -> None:
    cfg = make_stack_config(tmp_path / "state")
    with socket.socket() as squatter:
        squatter.bind((cfg.host, cfg.redshift_port))
        squatter.listen()
        with pytest.raises(StackError, match=f"port {cfg.redshift_port} .*CS_REDSHIFT_PORT"):
            Stack(cfg).redshift.check_port()
