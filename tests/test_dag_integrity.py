"""Every DAG file imports cleanly, with no connection, variable or network, and follows the rules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DAG_FILES = sorted(p for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))
EXPECTED_DAG_IDS = {
    "cognito_streams_configure",
    "cognito_bulk_publish",
    "cognito_stream_to_s3",
    "cognito_s3_to_redshift",
    "cognito_reconcile",
    "cognito_pipeline_health",
}
#: Tasks that never retry, on purpose: each judges a user's input or this run's outcome (a retry cannot
#: change the answer, and would hold the DAG's one run slot while scheduled runs wait), or is a check
#: whose next run comes on schedule.
NO_RETRIES = {
    ("cognito_s3_to_redshift", "check_params"),
    ("cognito_stream_to_s3", "check_shards"),
    ("cognito_bulk_publish", "pools_to_publish"),
    ("cognito_reconcile", "check_mismatches"),
    ("cognito_pipeline_health", "check"),
}


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_every_dag_file_imports(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert DAG_FILES, "dags/ holds no DAG file"
    assert dagbag.import_errors == {}


def test_contract_dags_exist(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert set(dagbag.dag_ids) >= EXPECTED_DAG_IDS


def test_every_dag_has_tags_retries_and_docs(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and len(dag.doc_md.strip()) > 40, f"{dag_id} has no doc_md"
        for task in dag.tasks:
            if (dag_id, task.task_id) in NO_RETRIES:
                assert task.retries == 0, f"{dag_id}.{task.task_id} retries a verdict or a user's mistake"
            else:
                assert task.retries is not None and task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_no_dag_can_be_backfilled_and_none_is_tagged_so(dagbag) -> None:  # type: ignore[no-untyped-def]
    """None reads a fixed data interval: an Airflow backfill repeated "now" once per interval (3 landing runs
    at once, each landing whatever was new). Airflow refuses it in one line; nothing is tagged backfill."""
    from airflow.sdk.api.datamodels._generated import DagRunType

    for dag_id, dag in dagbag.dags.items():
        assert dag.allowed_run_types is not None, f"{dag_id} allows every run type"
        assert DagRunType.BACKFILL not in dag.allowed_run_types, f"{dag_id} can be backfilled"
        assert {DagRunType.MANUAL, DagRunType.OPERATOR_TRIGGERED} <= dag.allowed_run_types, dag_id
        assert "backfill" not in dag.tags, f"{dag_id} is tagged backfill"
        assert "replay_from" in dag.doc_md or "from_day" in dag.doc_md or "refused" in dag.doc_md, dag_id


def test_the_first_task_of_each_manual_run_checks_the_params_and_never_retries(dagbag) -> None:  # type: ignore[no-untyped-def]
    """A Param typo failed a task that was retried three times while the run held the only run slot:
    no landing or load for ~12 minutes. The task that checks a DAG's Params is its first and has no retry."""
    firsts = {
        "cognito_s3_to_redshift": "check_params",
        "cognito_bulk_publish": "pools_to_publish",
    }
    for dag_id, task_id in firsts.items():
        dag = dagbag.dags[dag_id]
        assert [t.task_id for t in dag.roots] == [task_id], dag_id
        assert dag.get_task(task_id).retries == 0


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_parsing_needs_no_settings_or_network(dag_file: Path, tmp_path: Path) -> None:
    """Parse each file in a clean interpreter with no connections, no Variable and no AWS endpoint:
    nothing at top level may read them."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_", "AWS_")) and k != "CS_WAREHOUSE_DSN"
    }
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/none.db",
            # Any AWS call would go here and fail loudly.
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")]),
        }
    )
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('dag_under_test', {str(dag_file)!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "from airflow.sdk import DAG\n"
        "assert any(isinstance(v, DAG) for v in vars(mod).values()), 'no DAG object at module level'\n"
        "assert 'pandas' not in sys.modules, 'DAG file imports pandas at parse time'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
