"""Airflow UI plugin: the pipeline-health report inside the Airflow UI (Browse > Pipeline health).

A small FastAPI app mounted on the API server at ``/cognito-streams`` serves the latest report that
``cognito_reconcile.write_report`` wrote to the landing bucket (or, locally, to
``COGNITO_STREAMS_REPORT_DIR``). Only signed-in Airflow users can read it. The report holds counts,
identity ids and sync counts, never record values.
"""

from __future__ import annotations

import logging
import os
from html import escape
from pathlib import Path

from airflow.api_fastapi.core_api.security import GetUserDep
from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

log = logging.getLogger(__name__)

REPORT_NAME = "pipeline_health.html"
NO_REPORT = """<!doctype html><html><body style="font-family: system-ui, sans-serif">
<h1>No pipeline-health report yet</h1>
<p>It is written by the <code>write_report</code> task of the <code>cognito_reconcile</code> DAG (daily).
Trigger that DAG to write one now.</p><p style="color:#666">{why}</p></body></html>"""

app = FastAPI(title="cognito-streams", description="The cognito-streams pipeline-health report")


def _from_s3() -> str:
    """The latest report from the landing bucket (settings from the ``cognito_pipeline`` Variable)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk import Variable

    from cognito_streams.report import report_key
    from cognito_streams.settings import VARIABLE_NAME, parse_settings

    settings = parse_settings(Variable.get(VARIABLE_NAME))
    s3 = S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()
    body = s3.get_object(Bucket=settings.landing_bucket, Key=report_key(settings))["Body"].read()
    return bytes(body).decode("utf-8")


@app.get("/report", response_class=HTMLResponse)
def report(user: GetUserDep) -> HTMLResponse:
    """The latest pipeline-health report (signed-in users only)."""
    local = os.environ.get("COGNITO_STREAMS_REPORT_DIR")
    if local and (Path(local) / REPORT_NAME).is_file():
        return HTMLResponse((Path(local) / REPORT_NAME).read_text(encoding="utf-8"))
    try:
        return HTMLResponse(_from_s3())
    except Exception as err:  # noqa: BLE001 - shown to the user as the reason there is no report
        log.info("no pipeline-health report to show: %s", err)
        return HTMLResponse(NO_REPORT.format(why=escape(f"({type(err).__name__}: {str(err)[:300]})")), status_code=404)


class CognitoStreamsPlugin(AirflowPlugin):
    """Registers the report app and its entry in the UI's Browse menu."""

    name = "cognito_streams"
    fastapi_apps = [{"app": app, "url_prefix": "/cognito-streams", "name": "cognito-streams report"}]
    external_views = [
        {
            "name": "Pipeline health",
            "href": "/cognito-streams/report",
            "destination": "nav",
            "category": "browse",
            "url_route": "pipeline-health",
        }
    ]
