"""The demo's flow at small scale inside ``make test``: the whole pipeline end to end (configure,
simulate, bulk publish, land, load, reconcile, report) ends with 0 mismatches and a complete report;
then a tampered warehouse is caught by ``cognito_reconcile`` with the right kind for each change."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cognito_streams.core.report_html import CHART_IDS

pytestmark = [pytest.mark.integration, pytest.mark.dag]


@pytest.fixture(scope="module")
def flow(
    stack: Any, emulator: str, aws: Any, airflow_db: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Run the demo flow once on its own pool, stream, landing prefix and warehouse schema."""
    from local.demo import DagRunner, DemoConfig, run_demo

    suffix = uuid.uuid4().hex[:8]
    pool_id = aws("cognito-identity").create_identity_pool(
        IdentityPoolName=f"demo_flow_{suffix}", AllowUnauthenticatedIdentities=True
    )["IdentityPoolId"]
    report_dir = tmp_path_factory.mktemp("report")
    variable = {
        **json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"]),
        "identity_pool_ids": [pool_id],
        "stream_name": f"demo-flow-{suffix}",
        "landing_prefix": f"demo-flow/{suffix}",
        "warehouse_schema": f"demo_{suffix}",
        "publish_role_arn": f"arn:aws:iam::123456789012:role/demo-flow-{suffix}",
        "bulk_publish_poll_seconds": 0.5,
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(variable))
        mp.setenv("COGNITO_STREAMS_REPORT_DIR", str(report_dir))
        config = DemoConfig(
            identities=12, changes=240, large_share=0.03, remove_share=0.3, delete_share=0.04, seed=7, quiet=True
        )
        result = run_demo(stack, config, env=dict(os.environ))
        yield {
            "result": result,
            "variable": variable,
            "schema": variable["warehouse_schema"],
            "pool_id": pool_id,
            "runner": DagRunner(stack.cfg.log_dir / "test-demo-flow.log"),
        }


def test_the_whole_pipeline_ends_exact(flow: dict[str, Any]) -> None:
    result = flow["result"]
    assert result.simulated["changes"] == 240
    assert result.landing["read"] == result.landing["landed"] + result.landing["rejected"]
    assert result.landing["read"] > 0
    assert result.loading["duplicates_absorbed"] > 0, "the bulk publish resends every dataset: duplicates must occur"
    assert result.reconciliation["identities"] == 12
    assert result.reconciliation["keys_checked"] > 0
    assert result.mismatches == 0


class _Figures(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.figures: set[str] = set()
        self.svgs = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "figure":
            self.figures.add(dict(attrs).get("id") or "")
        if tag == "svg":
            self.svgs += 1


def test_the_report_renders_with_every_chart(flow: dict[str, Any]) -> None:
    path = flow["result"].report_path
    assert path is not None and Path(path).is_file()
    html = Path(path).read_text()
    parser = _Figures()
    parser.feed(html)
    assert set(CHART_IDS) <= parser.figures
    assert parser.svgs >= 5
    assert "0 mismatch(es)" in html
    assert "no data yet" not in html.split('id="changes-per-hour"')[1].split("</figure>")[0]


def _one(conn: psycopg.Connection, sql: str, *params: Any) -> tuple[Any, ...]:
    row = conn.execute(sql, params).fetchone()
    assert row is not None, sql
    return tuple(row)


def test_tampering_is_found_with_the_right_kind(flow: dict[str, Any]) -> None:
    from airflow.utils.state import DagRunState

    schema = flow["schema"]
    key_cols = "identity_id, dataset_name, record_key"
    with psycopg.connect(os.environ["CS_WAREHOUSE_DSN"], autocommit=True) as conn:
        live = conn.execute(
            f"select {key_cols} from {schema}.records where not is_deleted and not is_value_cut "
            f"order by {key_cols} limit 2"
        ).fetchall()
        removed = conn.execute(
            f"select r.identity_id, r.dataset_name, r.record_key from {schema}.records r "
            f"join {schema}.datasets d using (identity_pool_id, identity_id, dataset_name) "
            f"where r.is_deleted and r.op = 'remove' and not d.is_deleted order by {key_cols} limit 2"
        ).fetchall()
        assert len(live) == 2 and len(removed) == 2, "the flow made too few live or removed keys to tamper with"
        where = "identity_id = %s and dataset_name = %s and record_key = %s"
        conn.execute(f"delete from {schema}.records where {where}", live[0])  # a row deleted
        conn.execute(f"update {schema}.records set record_value = 'tampered' where {where}", live[1])  # a value changed
        conn.execute(f"update {schema}.records set is_deleted = false where {where}", removed[0])  # a tombstone undone
        conn.execute(f"delete from {schema}.records where {where}", removed[1])  # a tombstone removed

        run, _ = _run_reconcile(flow)
        assert run.state == DagRunState.FAILED  # above max_mismatches (0): red
        found = {
            (i, d, k): kind
            for i, d, k, kind in conn.execute(
                f"select identity_id, dataset_name, record_key, kind from {schema}.reconciliation_results "
                "where run_id = %s",
                (run.run_id,),
            ).fetchall()
        }
        assert found == {
            tuple(live[0]): "missing",
            tuple(live[1]): "stale_value",
            tuple(removed[0]): "wrong_delete_state",
            tuple(removed[1]): "missing",
        }
        assert _one(
            conn, f"select mismatches, passed from {schema}.reconciliation_runs where run_id = %s", run.run_id
        ) == (4, False)
        # The report was still written, showing the mismatches.
        assert "4 mismatch(es)" in Path(flow["result"].report_path).read_text()


def _run_reconcile(flow: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from datetime import UTC, datetime

    runner = flow["runner"]
    dag = runner.dags["cognito_reconcile"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(flow["variable"]))
        mp.setenv("COGNITO_STREAMS_REPORT_DIR", str(Path(flow["result"].report_path).parent))
        run = dag.test(logical_date=datetime.now(UTC), run_conf={"settle_seconds": 0})
    return run, {}


def test_the_analysts_queries_in_the_docs_run(flow: dict[str, Any]) -> None:
    """docs/analysts.md's ready queries run as written on the loaded warehouse."""
    import re

    text = (Path(__file__).resolve().parents[2] / "docs" / "analysts.md").read_text()
    queries = re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)
    assert len(queries) >= 8
    with psycopg.connect(os.environ["CS_WAREHOUSE_DSN"]) as conn:
        for query in queries:
            conn.execute(query.replace("cognito_sync.", f"{flow['schema']}.")).fetchall()
