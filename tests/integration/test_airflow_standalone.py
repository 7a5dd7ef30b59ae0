"""``make up``'s Airflow: standalone serves the UI and API, its health says healthy, our DAGs and the
health plugin are there (page and JSON for signed-in users only, with the CSP), a Param typo is refused
when the run is triggered, a backfill is refused in one line, and ``down`` stops it all."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from local.stack import OUR_DAGS, Stack
from tests.conftest import make_stack_config

pytestmark = [pytest.mark.integration, pytest.mark.standalone]


def _call(
    url: str, token: str | None = None, body: dict[str, object] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=90) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    status, body, _ = _call(url, token)
    return status, body


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
        # The health page and its JSON answer signed-in users, under the CSP; 401 without sign-in.
        status, body, headers = _call(f"{base}/cognito-streams/health", token)
        assert status == 200 and b"static/health.js" in body
        assert "script-src 'self'" in headers["content-security-policy"]
        status, body, headers = _call(f"{base}/cognito-streams/api/health", token)
        assert status in (200, 503), body  # 503 names what is missing (no stream here: no emulator)
        assert "generated_at" in json.loads(body) or "error" in json.loads(body)
        assert "frame-ancestors 'self'" in headers["content-security-policy"]
        for path in ("/cognito-streams/health", "/cognito-streams/api/health"):
            assert _get(f"{base}{path}")[0] == 401
        # A replay_from that is not a timestamp is refused when the run is triggered (no run created).
        status, body, _ = _call(
            f"{base}/api/v2/dags/cognito_stream_to_s3/dagRuns",
            token,
            {"logical_date": None, "conf": {"replay_from": "five minutes ago"}},
        )
        assert status == 400 and b"replay_from" in body, body
        # Airflow refuses a backfill of the landing DAG in one line, in its own words.
        status, body, _ = _call(
            f"{base}/api/v2/backfills",
            token,
            {"dag_id": "cognito_stream_to_s3", "from_date": "2026-11-25T20:00:00Z", "to_date": "2026-11-25T20:02:00Z"},
        )
        assert status == 400 and b"does not allow backfill runs" in body, body
    finally:
        stack.down()
    assert stack.listening_ports() == []
