"""The demo's flow at small scale inside ``make test``, on both warehouses (the PostgreSQL stand-in, and the Redshift
emulator: ``CS_WAREHOUSE=redshift``): the whole pipeline end to end (configure, simulate, bulk publish, land, load,
reconcile, report) ends with 0 mismatches and a complete report, and on Redshift the emulator's log shows
redshift-connector and the COPYs it ran; then a tampered warehouse (``records`` and ``datasets``, put back after
each test) is caught by ``cognito_reconcile`` with the right kind for each change, at both depths, and makes the
demo exit 1; the queries of the docs run on the loaded warehouse, through the emulator's gate on Redshift."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cognito_streams.core.report.html import CHART_IDS
from tests.conftest import WAREHOUSES, warehouse_env
from tests.support.warehouse import admin_dsn, landing_prefix

pytestmark = [pytest.mark.integration, pytest.mark.dag]


@pytest.fixture(scope="module", params=WAREHOUSES)
def flow(
    request: pytest.FixtureRequest,
    stack: Any,
    emulator: str,
    aws: Any,
    airflow_db: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """Run the demo flow once per warehouse on its own pool, stream, landing prefix and warehouse schema."""
    with warehouse_env(stack, request.param):
        yield from _flow(request.param, stack, aws, tmp_path_factory)


def _flow(warehouse: str, stack: Any, aws: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
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
        "landing_prefix": landing_prefix(f"demo-flow/{suffix}"),
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
            "warehouse": warehouse,
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


RECORD_COLUMNS = (
    "identity_pool_id, identity_id, dataset_name, record_key, op, record_value, value_bytes, is_value_cut, "
    "value_ref, sync_count, last_modified_at, device_last_modified_at, is_deleted, updated_at"
)
KEY = "identity_id = %s and dataset_name = %s and record_key = %s"
DATASET = "identity_id = %s and dataset_name = %s"


@contextmanager
def tampering(schema: str) -> Iterator[psycopg.Connection]:
    """A connection to tamper with ``records`` and ``datasets``; both are put back afterwards, so each
    test starts from the demo's exact warehouse."""
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        for table in ("records", "datasets"):
            conn.execute(f"create temporary table saved_{table} as select * from {schema}.{table}")
        try:
            yield conn
        finally:
            for table in ("records", "datasets"):
                conn.execute(f"delete from {schema}.{table}")
                conn.execute(f"insert into {schema}.{table} select * from saved_{table}")
                conn.execute(f"drop table saved_{table}")


def _found(conn: psycopg.Connection, schema: str, run_id: str) -> dict[tuple[Any, ...], str]:
    return {
        (i, d, k): kind
        for i, d, k, kind in conn.execute(
            f"select identity_id, dataset_name, record_key, kind from {schema}.reconciliation_results "
            "where run_id = %s",
            (run_id,),
        ).fetchall()
    }


def _live_keys(conn: psycopg.Connection, schema: str, n: int) -> list[tuple[Any, ...]]:
    rows = conn.execute(
        f"select r.identity_id, r.dataset_name, r.record_key from {schema}.records r "
        f"join {schema}.datasets d using (identity_pool_id, identity_id, dataset_name) "
        "where not r.is_deleted and not r.is_value_cut and not d.is_deleted "
        "order by r.identity_id, r.dataset_name, r.record_key"
    ).fetchall()
    # One key per dataset: tampering with two keys of one dataset would tell nothing more.
    seen: dict[tuple[Any, Any], tuple[Any, ...]] = {}
    for row in rows:
        seen.setdefault((row[0], row[1]), tuple(row))
    assert len(seen) >= n, f"the flow made {len(seen)} datasets with live keys; {n} needed"
    return list(seen.values())[:n]


def test_tampering_is_found_with_the_right_kind(flow: dict[str, Any]) -> None:
    from airflow.utils.state import DagRunState

    schema = flow["schema"]
    with tampering(schema) as conn:
        # GIVEN a warehouse where a row was deleted, a value changed, a tombstone undone, a tombstone
        # removed, and a row added that Cognito does not have
        live = _live_keys(conn, schema, 3)
        removed = conn.execute(
            f"select r.identity_id, r.dataset_name, r.record_key from {schema}.records r "
            f"join {schema}.datasets d using (identity_pool_id, identity_id, dataset_name) "
            "where r.is_deleted and r.op = 'remove' and not d.is_deleted "
            "order by r.identity_id, r.dataset_name, r.record_key limit 2"
        ).fetchall()
        assert len(removed) == 2, "the flow made too few removed keys to tamper with"
        conn.execute(f"delete from {schema}.records where {KEY}", live[0])  # a row deleted
        conn.execute(f"update {schema}.records set record_value = 'tampered' where {KEY}", live[1])  # a value changed
        conn.execute(f"update {schema}.records set is_deleted = false where {KEY}", removed[0])  # a tombstone undone
        conn.execute(f"delete from {schema}.records where {KEY}", removed[1])  # a tombstone removed
        extra = (live[2][0], live[2][1], "tampered-extra-key")
        conn.execute(
            f"insert into {schema}.records ({RECORD_COLUMNS}) select {RECORD_COLUMNS.replace('record_key', '%s')} "
            f"from {schema}.records where {KEY}",
            (extra[2], *live[2]),
        )  # a live row Cognito does not have

        # WHEN cognito_reconcile runs
        run, out = _run_reconcile(flow)

        # THEN each change is found once, with its kind, and the run is red (above max_mismatches 0)
        assert run.state == DagRunState.FAILED
        assert _found(conn, schema, run.run_id) == {
            live[0]: "missing",
            live[1]: "stale_value",
            tuple(removed[0]): "wrong_delete_state",
            tuple(removed[1]): "missing",
            extra: "extra",
        }
        assert _one(
            conn, f"select mismatches, extra, passed from {schema}.reconciliation_runs where run_id = %s", run.run_id
        ) == (5, 1, False)
        assert out["reconcile"]["by_kind"] == {
            "missing": 2,
            "extra": 1,
            "stale_value": 1,
            "wrong_delete_state": 1,
            "unknown_identity": 0,
        }
        # The report was still written, showing the mismatches.
        assert "5 mismatch(es)" in Path(flow["result"].report_path).read_text()


def test_a_tampered_datasets_row_is_found(flow: dict[str, Any]) -> None:
    schema = flow["schema"]
    with tampering(schema) as conn:
        # GIVEN datasets rows with a wrong live count, a wrong last change, a delete Cognito never made,
        # a row removed, and a live row for a dataset Cognito does not have
        ds = [k[:2] for k in _live_keys(conn, schema, 4)]
        conn.execute(f"update {schema}.datasets set live_record_count = live_record_count + 1 where {DATASET}", ds[0])
        conn.execute(
            f"update {schema}.datasets set last_modified_at = last_modified_at - interval '1 second' where {DATASET}",
            ds[1],
        )
        conn.execute(f"update {schema}.datasets set is_deleted = true where {DATASET}", ds[2])
        conn.execute(f"delete from {schema}.datasets where {DATASET}", ds[3])
        ghost = (ds[0][0], "tampered_dataset")
        conn.execute(
            f"insert into {schema}.datasets (identity_pool_id, identity_id, dataset_name, last_sync_count, "
            "last_modified_at, is_deleted, live_record_count, updated_at) "
            f"select identity_pool_id, identity_id, %s, 1, last_modified_at, false, 1, updated_at "
            f"from {schema}.datasets where {DATASET}",
            (ghost[1], *ds[0]),
        )

        # WHEN cognito_reconcile runs
        run, out = _run_reconcile(flow)

        # THEN each dataset is found at the dataset level (no record_key) with its kind; the records,
        # untouched, agree; the dataset Cognito did not list was asked for by DescribeDataset
        assert _found(conn, schema, run.run_id) == {
            (*ds[0], None): "stale_value",
            (*ds[1], None): "stale_value",
            (*ds[2], None): "wrong_delete_state",
            (*ds[3], None): "missing",
            (*ghost, None): "extra",
        }
        details = dict(
            conn.execute(
                f"select dataset_name, detail from {schema}.reconciliation_results where run_id = %s and kind = %s",
                (run.run_id, "stale_value"),
            ).fetchall()
        )
        assert "live_record_count" in details[ds[0][1]] and "last_modified_at" in details[ds[1][1]]
        assert out["reconcile"]["datasets_described"] == 1


def test_depth_datasets_lists_only_the_datasets_that_differ(flow: dict[str, Any]) -> None:
    from airflow.utils.state import DagRunState

    schema = flow["schema"]
    # GIVEN the demo's exact warehouse
    # WHEN reconciled at depth datasets
    run, out = _run_reconcile(flow, depth="datasets")
    # THEN every dataset is settled by its description alone, and nothing differs
    summary = out["reconcile"]
    assert run.state == DagRunState.SUCCESS and summary["mismatches"] == 0
    assert summary["depth"] == "datasets"
    assert summary["datasets_screened"] == summary["datasets_checked"] > 0
    assert summary["keys_checked"] == 0

    with tampering(schema) as conn:
        # GIVEN a value of another length, a datasets row's count, and a value of the same length changed
        longer, count, same_length = _live_keys(conn, schema, 3)
        conn.execute(f"update {schema}.records set record_value = record_value || 'x' where {KEY}", longer)
        conn.execute(f"update {schema}.records set value_bytes = value_bytes + 1 where {KEY}", longer)
        conn.execute(
            f"update {schema}.datasets set live_record_count = live_record_count + 1 where {DATASET}", count[:2]
        )
        conn.execute(
            f"update {schema}.records set record_value = repeat('z', length(record_value)) where {KEY}", same_length
        )
        run, out = _run_reconcile(flow, depth="datasets")
        # THEN the first two are found (their datasets are listed record by record), the third is
        # not: what depth datasets cannot see, and why depth records is the default
        assert _found(conn, schema, run.run_id) == {longer: "stale_value", (*count[:2], None): "stale_value"}
        assert out["reconcile"]["datasets_screened"] == out["reconcile"]["datasets_checked"] - 2
        run, out = _run_reconcile(flow)  # depth records
        assert _found(conn, schema, run.run_id) == {
            longer: "stale_value",
            (*count[:2], None): "stale_value",
            same_length: "stale_value",
        }


def test_describe_dataset_answers_the_model_and_agrees_with_list_datasets(flow: dict[str, Any], aws: Any) -> None:
    """What reconciliation reads from DescribeDataset: the emulator answers botocore's ``Dataset``
    shape exactly (no member missing, none added), with the values ListDatasets gives."""
    import botocore.session
    import orjson

    cs = aws("cognito-sync")
    raw: list[bytes] = []
    cs.meta.events.register(
        "after-call.cognito-sync.DescribeDataset", lambda http_response, **_: raw.append(http_response.content)
    )
    model = botocore.session.get_session().get_service_model("cognito-sync")
    members = set(model.shape_for("Dataset").members)
    # GIVEN one identity of the flow
    with psycopg.connect(admin_dsn()) as conn:
        (identity,) = _one(conn, f"select min(identity_id) from {flow['schema']}.datasets where not is_deleted")
    listed = cs.list_datasets(IdentityPoolId=flow["pool_id"], IdentityId=identity)["Datasets"]
    assert listed
    for entry in listed:
        # WHEN each of its datasets is described
        described = cs.describe_dataset(
            IdentityPoolId=flow["pool_id"], IdentityId=identity, DatasetName=entry["DatasetName"]
        )["Dataset"]
        # THEN the answer is the model's shape, equal to the listing's entry
        assert set(orjson.loads(raw[-1])["Dataset"]) == members
        assert described == entry
    # AND a dataset that does not exist is ResourceNotFoundException (what proves a dataset gone)
    with pytest.raises(cs.exceptions.ResourceNotFoundException):
        cs.describe_dataset(IdentityPoolId=flow["pool_id"], IdentityId=identity, DatasetName="never_written")


def test_no_value_derived_text_is_stored_logged_or_reported(
    flow: dict[str, Any], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Issue 18, item 10: a stale_value mismatch kept a 48-bit SHA-256 prefix of both values in
    reconciliation_results, the task log and the report; a short value is found back by dictionary."""
    import logging

    from tests.unit.test_reconcile_core import value_derived_texts

    schema = flow["schema"]
    log_start = Path(flow["runner"].log_file).stat().st_size
    capfd.readouterr()
    with tampering(schema) as conn, caplog.at_level(logging.INFO):
        # GIVEN a live value replaced by a short secret-looking one
        (key,) = _live_keys(conn, schema, 1)
        (original,) = _one(conn, f"select record_value from {schema}.records where {KEY}", *key)
        conn.execute(f"update {schema}.records set record_value = 'pin-4711' where {KEY}", key)
        # WHEN cognito_reconcile runs
        run, _ = _run_reconcile(flow)
        # THEN the mismatch is found and described by lengths; no trace of either value anywhere
        assert _found(conn, schema, run.run_id) == {key: "stale_value"}
        (detail,) = _one(conn, f"select detail from {schema}.reconciliation_results where run_id = %s", run.run_id)
    assert f"value differs (warehouse 8 bytes, Cognito {len(original.encode())} bytes)" in detail
    report = Path(flow["result"].report_path).read_text()
    # Every log of the run: the records this process logged, what the task runner wrote out, the log file.
    out, err = capfd.readouterr()
    log = "\n".join(
        [caplog.text, out, err, Path(flow["runner"].log_file).read_bytes()[log_start:].decode(errors="replace")]
    )
    assert "value differs (warehouse 8 bytes" in log  # the mismatch was logged...
    # 10 hex digits: logs are full of ids in hex, where a given 8-digit piece turns up by chance now and then;
    # a value itself only from 8 characters (the demo's own values can be a digit, found anywhere).
    for text in [t for t in value_derived_texts("pin-4711", original, width=10) if len(t) >= 8]:
        for where, content in (("reconciliation_results", detail), ("log", log), ("report", report)):
            assert text not in content, f"{where} holds {text!r}, derived from a value"  # ...without values


def test_an_identity_cognito_does_not_know_is_reported_and_the_others_are_still_compared(
    flow: dict[str, Any],
) -> None:
    """Issue 18, item 15: ListDatasets answers ResourceNotFoundException for an identity Cognito does
    not know (the emulator, as AWS, checks identities against Cognito Identity), and reconciliation used
    to fail on it, on every run. moto has no DeleteIdentities: the identity here is one that never was."""
    import uuid as uuid_

    from airflow.utils.state import DagRunState

    schema = flow["schema"]
    with tampering(schema) as conn:
        # GIVEN the warehouse holds the datasets of an identity Cognito has never heard of (copied from a
        # real one), and one real key's value changed
        live = _live_keys(conn, schema, 2)
        source = live[0][0]
        ghost = f"{flow['pool_id'].split(':')[0]}:{uuid_.uuid4()}"
        for table in ("datasets", "records"):
            columns = [
                c
                for (c,) in conn.execute(
                    "select column_name from information_schema.columns where table_schema = %s and table_name = %s "
                    "order by ordinal_position",
                    (schema, table),
                ).fetchall()
            ]
            listed = ", ".join(columns)
            chosen = ", ".join("%s" if c == "identity_id" else c for c in columns)
            conn.execute(
                f"insert into {schema}.{table} ({listed}) select {chosen} from {schema}.{table} where identity_id = %s",
                (ghost, source),
            )
        copied = conn.execute(
            f"select dataset_name from {schema}.datasets where identity_id = %s and not is_deleted", (ghost,)
        ).fetchall()
        assert copied
        conn.execute(f"update {schema}.records set record_value = 'tampered' where {KEY}", live[1])
        # WHEN cognito_reconcile runs
        run, out = _run_reconcile(flow)
        # THEN the reconcile task succeeded: the unknown identity is its own kind, one per live dataset,
        # and the other identities were still compared (the changed value is found)
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert states["reconcile"] == "success" and run.state == DagRunState.FAILED  # red: mismatches
        summary = out["reconcile"]
        assert summary["unknown_identities"] == 1
        assert summary["by_kind"]["unknown_identity"] == len(copied)
        found = _found(conn, schema, run.run_id)
        assert {k: v for k, v in found.items() if k[0] == ghost} == {
            (ghost, name, None): "unknown_identity" for (name,) in copied
        }
        assert found[live[1]] == "stale_value"
        assert _one(
            conn,
            f"select unknown_identity, mismatches from {schema}.reconciliation_runs where run_id = %s",
            run.run_id,
        ) == (len(copied), len(copied) + 1)


def test_the_demo_exits_non_zero_on_a_mismatch(flow: dict[str, Any], stack: Any, capsys: Any) -> None:
    from local.demo import DemoResult, conclude, reconcile_step

    # GIVEN the demo's own result: 0 mismatches, exit code 0
    assert conclude(flow["result"], stack.cfg) == 0
    assert "OK: the warehouse matches Cognito Sync exactly." in capsys.readouterr().out
    with tampering(flow["schema"]) as conn:
        # GIVEN a warehouse with one value changed
        (key,) = _live_keys(conn, flow["schema"], 1)
        conn.execute(f"update {flow['schema']}.records set record_value = 'tampered' where {KEY}", key)
        # WHEN the demo's reconciliation step runs and the demo concludes
        result = DemoResult()
        with _pipeline_variable(flow):
            reconcile_step(flow["runner"], result)
        code = conclude(result, stack.cfg)
    # THEN it exits 1 and says how many mismatches, of which kind, and where to look
    assert code == 1
    err = capsys.readouterr().err
    assert "FAILED: 1 mismatch(es) between the warehouse and Cognito Sync (1 stale_value)" in err
    assert result.reconciliation["run_id"] in err


def test_the_printed_psql_command_works(stack: Any) -> None:
    from local.demo import warehouse_shell

    # GIVEN the command the demo prints, and a shell with no psql on its PATH
    command = f"{warehouse_shell(stack.cfg)} -tAc 'select 41 + 1'"
    # WHEN run
    proc = subprocess.run(
        ["/bin/bash", "-c", command],
        env={"PATH": "/nonexistent", "HOME": os.environ.get("HOME", "/")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    # THEN it reaches the warehouse
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "42"


@contextmanager
def _pipeline_variable(flow: dict[str, Any]) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(flow["variable"]))
        mp.setenv("COGNITO_STREAMS_REPORT_DIR", str(Path(flow["result"].report_path).parent))
        yield


def _run_reconcile(flow: dict[str, Any], depth: str = "records") -> tuple[Any, dict[str, Any]]:
    """One cognito_reconcile run on the flow's pool and schema; a red run is returned, not raised."""
    with _pipeline_variable(flow):
        return flow["runner"].run(
            "cognito_reconcile",
            {"settle_seconds": 0, "depth": depth},
            allowed_failures=frozenset({"check_mismatches"}),
        )


DOCS = Path(__file__).resolve().parents[2] / "docs"


def doc_queries(doc: str) -> list[str]:
    """The ```sql blocks of a doc, in order."""
    return re.findall(r"```sql\n(.*?)```", (DOCS / doc).read_text(), flags=re.DOTALL)


#: Every SQL block of the docs analysts and operators read: (doc, block number from 1, text).
DOC_QUERIES = [(doc, n, sql) for doc in ("analysts.md", "operations.md") for n, sql in enumerate(doc_queries(doc), 1)]


@pytest.mark.parametrize(("doc", "at_least"), [("analysts.md", 8), ("operations.md", 5)])
def test_the_docs_hold_their_queries(doc: str, at_least: int) -> None:
    assert len(doc_queries(doc)) >= at_least


@pytest.mark.parametrize(("doc", "n", "sql"), DOC_QUERIES, ids=[f"{doc}#{n}" for doc, n, _ in DOC_QUERIES])
def test_the_queries_in_the_docs_run(flow: dict[str, Any], doc: str, n: int, sql: str) -> None:
    """Each ready query of docs/analysts.md and alert query of docs/operations.md runs as written on the loaded
    warehouse: on Redshift through the emulator (redshift-connector, the driver of the Redshift dialect analysts
    use), so that a query Redshift would refuse fails here."""
    text = sql.replace("cognito_sync.", f"{flow['schema']}.")
    if flow["warehouse"] == "redshift":
        from tests.support.warehouse import redshift_connect

        conn = redshift_connect()
        try:
            cur = conn.cursor()
            cur.execute(text)
            cur.fetchall()
        finally:
            conn.close()
    else:
        with psycopg.connect(os.environ["CS_WAREHOUSE_DSN"]) as pg:
            pg.execute(text).fetchall()


def test_on_redshift_the_emulators_log_shows_redshift_connector_and_the_copies(flow: dict[str, Any]) -> None:
    """The acceptance of issue 17 for ``CS_WAREHOUSE=redshift make demo``: what ran, ran through redshift-connector,
    and the loads were the emulator's server-side COPYs from S3 (the demo's verdict checks the same)."""
    result = flow["result"]
    if flow["warehouse"] == "postgres":
        # The stand-in's demo reads no emulator log.
        assert result.warehouse == "postgres" and result.redshift_log is None
        return
    log = result.redshift_log
    assert result.warehouse == "redshift" and log is not None
    assert log.problems() == []
    assert log.redshift_connector_sessions >= 5  # at least one per DAG
    assert any(client.startswith("Redshift Python Driver 2.2.0") for client in log.clients)
    assert log.copies and log.copies_failed == [] and log.refused == []
    assert all("format as parquet manifest" in statement for _, statement in log.copies)
    # every change row staged came through those COPYs
    assert (
        sum(rows for rows, statement in log.copies if "copy stg_changes" in statement)
        == result.loading["change_rows_staged"]
    )
