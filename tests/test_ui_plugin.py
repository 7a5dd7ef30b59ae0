"""The Airflow UI plugin: the live health page and its JSON, to users who may read the pipeline's DAGs
only, under a strict Content-Security-Policy, never from stored HTML."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import cognito_streams_ui as ui
import pytest
from fastapi.testclient import TestClient


class FakeAuthManager:
    """Answers the DAG-read question the way a deployment's auth manager would, and remembers it."""

    def __init__(self, allowed: bool) -> None:
        self.allowed = allowed
        self.asked: list[Any] = []

    def batch_is_authorized_dag(self, requests: list[Any], *, user: Any) -> bool:
        self.asked.extend(requests)
        return self.allowed


@pytest.fixture
def http() -> Iterator[TestClient]:
    ui.CACHE.clear()
    yield TestClient(ui.app)
    ui.app.dependency_overrides.clear()
    ui.CACHE.clear()


def signed_in(monkeypatch: pytest.MonkeyPatch, *, may_read_dags: bool) -> FakeAuthManager:
    from airflow.api_fastapi.core_api.security import get_user

    manager = FakeAuthManager(may_read_dags)
    ui.app.dependency_overrides[get_user] = lambda: object()
    monkeypatch.setattr("airflow.api_fastapi.app.get_auth_manager", lambda: manager)
    return manager


@pytest.mark.parametrize("path", ["/health", "/api/health"])
def test_without_sign_in_the_page_and_the_json_answer_401_with_the_csp(http: TestClient, path: str) -> None:
    resp = http.get(path)
    assert resp.status_code == 401
    assert resp.headers["content-security-policy"] == ui.CSP


@pytest.mark.parametrize("path", ["/health", "/api/health"])
def test_a_user_who_may_not_read_the_dags_gets_403(
    http: TestClient, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    manager = signed_in(monkeypatch, may_read_dags=False)
    monkeypatch.setattr(ui, "compute", lambda hours: pytest.fail("no numbers for a user who may not read them"))
    resp = http.get(path)
    assert resp.status_code == 403 and "cognito_stream_to_s3" in resp.json()["detail"]
    assert resp.headers["content-security-policy"] == ui.CSP
    # every DAG of the pipeline was asked about, for reading
    assert sorted(r["details"].id for r in manager.asked) == sorted(ui.PIPELINE_DAGS)
    assert {r["method"] for r in manager.asked} == {"GET"}


def test_a_reader_gets_the_live_json_computed_once_per_cache_time(
    http: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed_in(monkeypatch, may_read_dags=True)
    calls: list[float] = []

    def compute(hours: float) -> dict[str, Any]:
        calls.append(hours)
        return {"generated_at": "2026-11-25T20:40:00.000Z", "stalled": False, "hours": hours}

    monkeypatch.setattr(ui, "compute", compute)
    first, second = http.get("/api/health"), http.get("/api/health")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == {"generated_at": "2026-11-25T20:40:00.000Z", "stalled": False, "hours": 24}
    assert calls == [24.0]  # the second came from the cache
    assert http.get("/api/health?hours=6").json()["hours"] == 6 and calls == [24.0, 6.0]
    assert first.headers["content-security-policy"] == ui.CSP and first.headers["cache-control"] == "no-store"
    assert http.get("/api/health?hours=0").status_code == 422


def test_when_the_sources_cannot_be_read_the_json_says_why(http: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    signed_in(monkeypatch, may_read_dags=True)

    def broken(hours: float) -> dict[str, Any]:
        raise RuntimeError("Variable cognito_pipeline is not set")

    monkeypatch.setattr(ui, "compute", broken)
    resp = http.get("/api/health")
    assert resp.status_code == 503 and "cognito_pipeline is not set" in resp.json()["error"]


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.in_script = False
        self.attributes: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attributes += [(tag, k, v) for k, v in attrs]
        if tag == "script":
            self.scripts.append(dict(attrs))
            self.in_script = True

    def handle_endtag(self, tag: str) -> None:
        self.in_script = self.in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self.in_script and data.strip():
            self.inline.append(data)


def test_the_page_is_a_static_shell_with_no_inline_code(http: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    signed_in(monkeypatch, may_read_dags=True)
    resp = http.get("/health")
    assert resp.status_code == 200 and resp.headers["content-security-policy"] == ui.CSP
    markup = _Markup()
    markup.feed(resp.text)
    # the script comes from this app; nothing inline that the CSP would have to allow
    assert markup.scripts == [{"src": "static/health.js", "defer": None}] and markup.inline == []
    assert not [a for a in markup.attributes if a[1].startswith("on") or a[1] == "style"]
    assert "script-src 'self'" in ui.CSP and "'unsafe-inline'" not in ui.CSP and "frame-ancestors 'self'" in ui.CSP
    for chart in ("freshness", "lag", "backlog", "throughput", "rejects", "load_duration"):
        assert f'id="chart-{chart}"' in resp.text


def test_the_script_and_style_are_served_and_put_data_in_the_page_as_text_only(http: TestClient) -> None:
    js = http.get("/static/health.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert http.get("/static/health.css").headers["content-type"].startswith("text/css")
    assert http.get("/static/secrets.txt").status_code == 404
    # data from the warehouse (pool ids, failure messages) never becomes markup
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function", js.text)
    assert "http://" not in js.text.replace("http://www.w3.org/2000/svg", "")  # no CDN, no other origin


def test_the_old_report_address_points_to_the_live_page(http: TestClient) -> None:
    resp = http.get("/report", follow_redirects=False)
    assert resp.status_code == 308 and resp.headers["location"] == "health"


def test_airflow_loads_the_plugin_with_its_view() -> None:
    from airflow import plugins_manager

    assert plugins_manager.get_import_errors() == {}
    apps, _ = plugins_manager.get_fastapi_plugins()
    assert any(a["url_prefix"] == "/cognito-streams" for a in apps)
    (info,) = [p for p in plugins_manager.get_plugin_info() if p["name"] == "cognito_streams"]
    assert info["external_views"][0]["href"] == "/cognito-streams/health"
