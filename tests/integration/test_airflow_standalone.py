"""``make up``'s Airflow: standalone serves the UI and API, its health says healthy, our DAGs and the
report plugin are there, and ``down`` stops it all."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from local.stack import OUR_DAGS, Stack
from tests.conftest import make_stack_config

pytestmark = pytest.mark.integration


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=90) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_airflow_standalone_is_healthy_with_our_dags_and_plugin_then_stops(tmp_path: Path) -> None:
    stack = Stack(make_stack_config(tmp_path / "state"))
    try:
        stack.up(migrate=True, emulator=False)
        stack.airflow_up(alive=False)
        base = f"http://{stack.cfg.host}:{stack.cfg.airflow_port}"
        status, body = _get(f"{base}/api/v2/monitor/health")
        health = json.loads(body)
        assert status == 200
        assert health["metadatabase"]["status"] == "healthy"
        assert health["scheduler"]["status"] == "healthy"
        token = stack.airflow._token()
        # The dag-processor parses our DAG files (unpause waits for that and then succeeds).
        assert sorted(stack.airflow.unpause(OUR_DAGS)) == sorted(OUR_DAGS)  # in the order they were parsed
        status, body = _get(f"{base}/api/v2/importErrors", token)
        assert status == 200 and json.loads(body)["total_entries"] == 0, body
        # The report plugin answers signed-in users (no report yet: its explanation page).
        status, body = _get(f"{base}/cognito-streams/report", token)
        assert status == 404 and b"cognito_reconcile" in body
        assert _get(f"{base}/cognito-streams/report")[0] in (401, 403)
    finally:
        stack.down()
    assert stack.listening_ports() == []
