"""Airflow UI plugin: live pipeline health inside the Airflow UI (Browse > Pipeline health).

A small FastAPI app mounted on the API server at ``/cognito-streams``:

- ``/cognito-streams/health``: the page. A static HTML shell; its script (``static/health.js``, served
  by this app, no CDN) fetches the JSON below, draws the charts as SVG itself, and refreshes every
  30 seconds while the page is open.
- ``/cognito-streams/api/health``: the same numbers as JSON for monitoring tools (fields:
  docs/operations.md, "Pipeline health"). Computed live from the warehouse, the checkpoints and a
  peek at Kinesis (``cognito_streams.report.gather``), cached ``CACHE_SECONDS``; never from stored HTML.

Both answer 401 without a signed-in user (Airflow's JWT cookie or a bearer token) and 403 to a user
who may not read every DAG of the pipeline (the auth manager's ``is_authorized_dag``). Every answer
carries a strict Content-Security-Policy: scripts and styles from this app only, no inline code.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
from airflow.api_fastapi.core_api.security import GetUserDep
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

log = logging.getLogger(__name__)

#: The DAGs whose read access the page needs (it shows what they do).
PIPELINE_DAGS = (
    "cognito_streams_configure",
    "cognito_bulk_publish",
    "cognito_stream_to_s3",
    "cognito_s3_to_redshift",
    "cognito_reconcile",
    "cognito_pipeline_health",
)
#: A page refreshing every 30 s in several browsers costs one computation per this many seconds.
CACHE_SECONDS = 15.0
STATIC = Path(__file__).resolve().parent / "cognito_streams" / "report" / "static"

#: No inline script or style, nothing from another origin; framed only by the Airflow UI itself.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

app = FastAPI(title="cognito-streams", description="Live health of the cognito-streams pipeline")


@app.middleware("http")
async def _security_headers(request: Request, call_next: Any) -> Response:
    response: Response = await call_next(request)
    response.headers.update(SECURITY_HEADERS)
    return response


def pipeline_reader(user: GetUserDep) -> Any:
    """The signed-in user (401 without one), if they may read every DAG of the pipeline (else 403)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    teams = _team_names()
    requests: list[Any] = [
        {"method": "GET", "details": DagDetails(id=dag_id, team_name=teams.get(dag_id))} for dag_id in PIPELINE_DAGS
    ]
    if not get_auth_manager().batch_is_authorized_dag(requests, user=user):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "Forbidden: the pipeline-health page needs read access to the DAGs " + ", ".join(PIPELINE_DAGS),
        )
    return user


def _team_names() -> dict[str, str | None]:
    """Each DAG's team (multi-team deployments); empty when the metadata DB has none."""
    from airflow.models.dag import DagModel

    try:
        return DagModel.get_dag_id_to_team_name_mapping(list(PIPELINE_DAGS))
    except Exception as err:  # noqa: BLE001 - without teams the check is made without them (single-team)
        log.debug("no team names for the pipeline's DAGs: %s", err)
        return {}


ReaderDep = Annotated[Any, Depends(pipeline_reader)]


class _Cache:
    """The last JSON per window, kept ``CACHE_SECONDS``; one computation at a time per window."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[float, tuple[float, dict[str, Any]]] = {}

    def get(self, hours: float) -> dict[str, Any]:
        with self.lock:
            hit = self.entries.get(hours)
            if hit and time.monotonic() < hit[0]:
                return hit[1]
            payload = compute(hours)
            self.entries[hours] = (time.monotonic() + CACHE_SECONDS, payload)
            return payload

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


CACHE = _Cache()


def compute(hours: float) -> dict[str, Any]:
    """The health JSON, live (settings from the ``cognito_pipeline`` Variable, the DAGs' connections)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from cognito_streams.hooks.kinesis_reader import KinesisReaderHook
    from cognito_streams.report.gather import gather
    from cognito_streams.settings import load_settings
    from cognito_streams.warehouse.connect import open_warehouse

    settings = load_settings()
    s3 = S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()
    kinesis = KinesisReaderHook(aws_conn_id=settings.aws_conn_id)
    with open_warehouse(settings) as warehouse:
        return gather(settings, warehouse, s3, kinesis, window_hours=hours).as_dict()


def _json(payload: dict[str, Any], status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(payload),
        status_code=status_code,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


@app.get("/api/health")
def api_health(
    _: ReaderDep, hours: Annotated[float, Query(gt=0, le=24 * 14, description="Chart window, hours")] = 24
) -> Response:
    """The pipeline's health as JSON (signed-in users who may read the pipeline's DAGs)."""
    try:
        payload = CACHE.get(float(hours))
    except Exception as err:  # noqa: BLE001 - the settings or connections are unusable: say which
        log.warning("pipeline health unavailable: %s", err)
        return _json({"error": f"{type(err).__name__}: {str(err)[:500]}", "stalled": None}, 503)
    return _json(payload)


@app.get("/health", response_class=HTMLResponse)
def health_page(_: ReaderDep) -> HTMLResponse:
    """The page: a static shell, filled by ``static/health.js`` from ``api/health``."""
    return HTMLResponse((STATIC / "health.html").read_text(encoding="utf-8"), headers={"Cache-Control": "no-store"})


@app.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    """The page's script and style (no data in them)."""
    files = {"health.js": "text/javascript", "health.css": "text/css"}
    if name not in files:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not found")
    return FileResponse(STATIC / name, media_type=files[name], headers={"Cache-Control": "max-age=300"})


@app.get("/report")
def old_report() -> RedirectResponse:
    """The old report's address: the live page replaced it."""
    return RedirectResponse("health", status_code=status.HTTP_308_PERMANENT_REDIRECT)


class CognitoStreamsPlugin(AirflowPlugin):
    """Registers the health app and its entry in the UI's Browse menu."""

    name = "cognito_streams"
    fastapi_apps = [{"app": app, "url_prefix": "/cognito-streams", "name": "cognito-streams health"}]
    external_views = [
        {
            "name": "Pipeline health",
            "href": "/cognito-streams/health",
            "destination": "nav",
            "category": "browse",
            "url_route": "pipeline-health",
        }
    ]
