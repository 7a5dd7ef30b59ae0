"""The Airflow UI plugin serves the pipeline-health report to signed-in users only."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def client():  # type: ignore[no-untyped-def]
    import cognito_streams_ui

    return TestClient(cognito_streams_ui.app), cognito_streams_ui


def test_signed_in_users_get_the_latest_report(client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    http, module = client
    from airflow.api_fastapi.core_api.security import get_user

    (tmp_path / "pipeline_health.html").write_text("<html><figure id='last-load'></figure></html>")
    monkeypatch.setenv("COGNITO_STREAMS_REPORT_DIR", str(tmp_path))
    module.app.dependency_overrides[get_user] = lambda: object()
    try:
        resp = http.get("/report")
    finally:
        module.app.dependency_overrides.clear()
    assert resp.status_code == 200
    assert "last-load" in resp.text


def test_without_a_report_it_says_how_to_make_one(client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    http, module = client
    from airflow.api_fastapi.core_api.security import get_user

    monkeypatch.setenv("COGNITO_STREAMS_REPORT_DIR", str(tmp_path))  # empty folder, and no Variable: no S3 report
    # (in a full run the session's Variable names a bucket where an earlier test wrote a report)
    monkeypatch.delenv("AIRFLOW_VAR_COGNITO_PIPELINE", raising=False)
    module.app.dependency_overrides[get_user] = lambda: object()
    try:
        resp = http.get("/report")
    finally:
        module.app.dependency_overrides.clear()
    assert resp.status_code == 404
    assert "cognito_reconcile" in resp.text


def test_anonymous_requests_are_refused(client) -> None:  # type: ignore[no-untyped-def]
    http, _ = client
    assert http.get("/report").status_code in (401, 403)


def test_airflow_loads_the_plugin_with_its_view() -> None:
    from airflow import plugins_manager

    assert plugins_manager.get_import_errors() == {}
    apps, _ = plugins_manager.get_fastapi_plugins()
    assert any(a["url_prefix"] == "/cognito-streams" for a in apps)
    (info,) = [p for p in plugins_manager.get_plugin_info() if p["name"] == "cognito_streams"]
    assert info["external_views"][0]["href"] == "/cognito-streams/report"
