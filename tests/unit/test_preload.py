"""``cognito_streams.preload``: what the scheduler's forkserver imports once (``[scheduler] mp_start_method =
forkserver``, ``mp_forkserver_preload = airflow,cognito_streams.preload``) so that no task process imports it
on its start. Python's forkserver skips a preload module that fails to import without a word, and a new
import on a task's path would quietly cost every task again: both are caught here."""

from __future__ import annotations

import json
import subprocess
import sys

from local.stack import PRELOADED_LOCAL_WORKERS, REPO

# In a fresh process: the preload, then what a landing and a loading task process do on their start (parse
# their DAG file) and in their bodies (the lazy imports of the tasks modules), counting the modules that
# were not imported yet.
TASK_PATH = """
import gc, json, sys
import airflow
import cognito_streams.preload
frozen = gc.get_freeze_count()
before = set(sys.modules)
from airflow.dag_processing.dagbag import DagBag
bags = [DagBag(dag_folder=f"dags/{name}.py") for name in ("cognito_stream_to_s3", "cognito_s3_to_redshift")]
from cognito_streams.landing.runner import LandingContext, land_shard, plan_run
from cognito_streams.landing_zone import load
from cognito_streams.loading.pace import last_load_at, wait_for_load_slot
from cognito_streams.monitoring.samples import record_load
from cognito_streams.warehouse.connect import open_warehouse
from cognito_streams.warehouse.postgres import PostgresWarehouse
from cognito_streams.warehouse.redshift import RedshiftWarehouse
from cognito_streams.core.warm import cache_stats
new = sorted(m for m in set(sys.modules) - before if not m.startswith("unusual_prefix_"))
print(json.dumps({"frozen": frozen, "dags": [b.dag_ids for b in bags], "errors": [str(b.import_errors) for b in bags],
                  "new": new, "cache": cache_stats()}))
"""


def test_after_the_preload_a_task_imports_nothing_more_and_decodes_without_loading_the_parser() -> None:
    # GIVEN a process that imported what the stack's scheduler preloads, in its order
    assert PRELOADED_LOCAL_WORKERS["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"] == "airflow,cognito_streams.preload"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}:{REPO / 'plugins'}", "HOME": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", TASK_PATH], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = json.loads(proc.stdout.strip().splitlines()[-1])
    # WHEN a landing and a loading task parse their DAG files and import what their bodies use
    assert said["dags"] == [["cognito_stream_to_s3"], ["cognito_s3_to_redshift"]], said["errors"]
    # THEN nothing is imported again (a few tiny modules at most), the parser came loaded, and the preload froze
    # its objects out of the collector's reach (so a task's collections do not copy the shared pages)
    assert len(said["new"]) <= 3, said["new"]
    assert said["cache"]["cache_hits"] > 0 and said["cache"]["cache_misses"] == 0, said["cache"]
    assert said["frozen"] > 100_000, said["frozen"]
