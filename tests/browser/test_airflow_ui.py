"""The Airflow UI in a real browser: headless Chromium (the system's, driven by Playwright) signs into the
Airflow that ``make up`` starts (stack, DAGs unpaused, the simulator trickling changes), opens the DAG
list, a grid, and Browse > Pipeline health, and checks that the charts are drawn from the live numbers,
that those numbers are the warehouse's, that the freshness chart moves as loads happen, and that the
page runs under its CSP without a violation. Screenshots go to ``test-output/browser/``.

``make test-browser`` runs it (not ``make test``: it needs Chromium; ``.ci/run`` installs it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from local.procs import free_port

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "test-output" / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
#: How long the live pipeline gets to land and load (it lands every minute under `make up`).
PIPELINE_TIMEOUT = 420.0


@dataclass
class Live:
    base: str
    password: str
    env: dict[str, str]
    pg_dsn: str


def _clean_env(state: Path) -> dict[str, str]:
    """The environment a developer's shell has for ``make up``: none of the test session's Airflow or AWS
    settings (the session's conftest points Airflow at a unit-test home)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "AWS_", "CS_")) and k not in ("PYTHONPATH", "COGNITO_STREAMS_REPORT_DIR")
    }
    env.update(
        {
            "CS_STATE_DIR": str(state),
            "CS_MOTO_PORT": str(free_port()),
            "CS_EMULATOR_PORT": str(free_port()),
            "CS_PG_PORT": str(free_port()),
            "CS_AIRFLOW_PORT": str(free_port()),
        }
    )
    return env


def _stack(command: str, env: dict[str, str], timeout: float = 600) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "local.stack", command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"local.stack {command} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set CHROMIUM=/path/to/chromium)")
    state = tmp_path_factory.mktemp("make-up")
    env = _clean_env(state)
    try:
        _stack("up", env)
        out = _stack("airflow-up", env)  # what `make up` runs: configure first, then unpause all, trickle
        password = json.loads((state / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        (OUT / "make-up.txt").parent.mkdir(parents=True, exist_ok=True)
        (OUT / "make-up.txt").write_text(out)
        yield Live(
            base=f"http://127.0.0.1:{env['CS_AIRFLOW_PORT']}",
            password=password,
            env=env,
            pg_dsn=f"host=127.0.0.1 port={env['CS_PG_PORT']} user=postgres dbname=warehouse",
        )
    finally:
        _stack("down", env, timeout=180)
        logs = state / "logs"
        if logs.is_dir():
            shutil.copytree(logs, OUT / "logs", dirs_exist_ok=True, ignore=shutil.ignore_patterns("postgres.log"))


@pytest.fixture(scope="module")
def browser(live: Live) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    shutil.rmtree(OUT / "screens", ignore_errors=True)
    (OUT / "screens").mkdir(parents=True)
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser: Any, live: Live) -> Iterator[Any]:
    """A signed-in page (through Airflow's own login form)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(f"{live.base}/")
    pg.wait_for_selector("input[name=username]")
    pg.fill("input[name=username]", "admin")
    pg.fill("input[name=password]", live.password)
    pg.click("button[type=submit]")
    pg.wait_for_url(lambda url: "/auth/login" not in url)
    yield pg
    context.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(OUT / "screens" / f"{name}.png"), full_page=True)


def wait_for(condition: Callable[[], Any], what: str, timeout: float = PIPELINE_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def health_json(page: Any, live: Live) -> dict[str, Any]:
    resp = page.request.get(f"{live.base}/cognito-streams/api/health")
    assert resp.status == 200, resp.text()
    return dict(resp.json())


def open_health(page: Any, live: Live) -> dict[str, Any]:
    """Open the page and return the very JSON document it rendered."""
    with page.expect_response(lambda r: "/cognito-streams/api/health" in r.url) as answer:
        page.goto(f"{live.base}/cognito-streams/health")
    doc = dict(answer.value.json())
    page.wait_for_selector("body[data-rendered]")
    return doc


def warehouse_last_load(live: Live, until: str) -> datetime | None:
    import psycopg

    at = datetime.fromisoformat(until.replace("Z", "+00:00")).replace(tzinfo=None)
    with psycopg.connect(live.pg_dsn) as conn:
        row = conn.execute("select max(loaded_at) from cognito_sync.loaded_batches where loaded_at <= %s", (at,))
        value = row.fetchone()[0]  # type: ignore[index]
    # the JSON gives times to the millisecond
    return None if value is None else value.replace(tzinfo=UTC, microsecond=value.microsecond // 1000 * 1000)


def _utc_text(iso: str) -> str:
    return iso.replace("T", " ").split(".")[0].rstrip("Z")


def test_the_dag_list_and_a_grid_show_the_pipeline(page: Any, live: Live) -> None:
    page.goto(f"{live.base}/dags")
    for dag_id in ("cognito_stream_to_s3", "cognito_s3_to_redshift", "cognito_pipeline_health"):
        page.get_by_text(dag_id, exact=True).first.wait_for()
    shot(page, "01-dag-list")
    page.goto(f"{live.base}/dags/cognito_stream_to_s3")
    page.get_by_text("cognito_stream_to_s3").first.wait_for()
    # the grid lists the DAG's tasks
    page.get_by_text("land_shard").first.wait_for()
    shot(page, "02-grid-cognito_stream_to_s3")


def test_pipeline_health_shows_live_numbers_that_match_the_warehouse_and_move(page: Any, live: Live) -> None:
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)

    # GIVEN the pipeline has landed and loaded twice (the trickle goes on)
    def two_loads() -> dict[str, Any] | None:
        doc = health_json(page, live)
        points = doc["charts"]["freshness"][1]["points"] if doc["charts"].get("freshness") else []
        return doc if doc["last_load_at"] and len(points) >= 2 else None

    wait_for(two_loads, "two loads with freshness")

    # WHEN the page opens from Browse > Pipeline health (Airflow frames it)
    page.goto(f"{live.base}/plugin/pipeline-health")
    frame = page.frame_locator("iframe[title='Pipeline health']")
    frame.locator("body[data-rendered]").wait_for()
    frame.locator("#chart-freshness svg path.line").first.wait_for()
    shot(page, "03-browse-pipeline-health")

    # THEN every chart is drawn from the JSON the page received, with its unit
    doc = open_health(page, live)
    for name in ("freshness", "lag", "backlog", "throughput"):
        figure = page.locator(f"#chart-{name}")
        expected = sum(len(s["points"]) for s in doc["charts"][name])
        assert int(figure.get_attribute("data-points")) == expected > 0, name
        assert figure.get_attribute("data-unit") == doc["charts"][name][0]["unit"]
        assert page.locator(f"#chart-{name} svg text").filter(has_text="UTC").count() == 1
    assert page.locator("#chart-freshness svg path.line").count() == 2  # p50 and p95
    assert page.locator("#chart-lag svg").get_attribute("aria-label").endswith("(s)")
    # the tiles are the JSON's numbers
    assert page.locator("#state").get_attribute("data-state") == doc["state"]
    assert page.locator('[data-field="backlog_batches"]').inner_text().startswith(str(doc["backlog_batches"]))
    assert _utc_text(doc["last_load_at"]) in page.locator('[data-field="last_load_at"]').inner_text()
    assert page.locator("#shards tbody tr").count() == len(doc["lag_seconds"]) == 2
    # ... and the JSON's are the warehouse's: its last load is the newest loaded_at when it was computed
    assert warehouse_last_load(live, doc["generated_at"]) == datetime.fromisoformat(
        doc["last_load_at"].replace("Z", "+00:00")
    )
    shot(page, "04-pipeline-health")

    # AND the freshness chart moves: a later load adds a point
    before = int(page.locator("#chart-freshness").get_attribute("data-points"))
    first_load = doc["last_load_at"]
    wait_for(lambda: health_json(page, live)["last_load_at"] != first_load, "another load")
    time.sleep(16)  # past the page's cache (15 s): the next answer is computed anew
    later = open_health(page, live)
    assert later["last_load_at"] != first_load
    assert int(page.locator("#chart-freshness").get_attribute("data-points")) > before
    shot(page, "05-pipeline-health-later")
    assert violations == []


def test_the_page_refuses_a_browser_that_is_not_signed_in(browser: Any, live: Live) -> None:
    context = browser.new_context()
    try:
        for path in ("/cognito-streams/health", "/cognito-streams/api/health"):
            resp = context.request.get(f"{live.base}{path}")
            assert resp.status == 401
            assert "script-src 'self'" in resp.headers["content-security-policy"]
    finally:
        context.close()
    with urllib.request.urlopen(f"{live.base}/api/v2/monitor/health", timeout=10) as resp:
        assert json.loads(resp.read())["scheduler"]["status"] == "healthy"
