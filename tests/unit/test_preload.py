"""``cognito_streams.preload``: what the scheduler's forkserver imports once (``[scheduler] mp_start_method =
forkserver``, ``mp_forkserver_preload = airflow,cognito_streams.preload``) so that no task process imports it
on its start. Python's forkserver skips a preload module that fails to import without a word, and a new
import on a task's path (a DAG file's, a task body's lazy one, the warehouse switch's) would quietly cost every
task again: both are caught here. What Airflow's own task runner imports before it parses the DAG file is not
simulated: the preload lists it from a task log, and the landing task's ``decoder preloaded`` line (asserted by
the standalone event-mode test) shows the preload ran."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from local.stack import PRELOADED_LOCAL_WORKERS, REPO

DAG_FILES = [REPO / "dags" / "cognito_stream_to_s3.py", REPO / "dags" / "cognito_s3_to_redshift.py"]
# The modules those DAGs' task bodies call into, and the warehouse switch they open the warehouse through.
TASK_MODULES = ["cognito_streams.landing.tasks", "cognito_streams.loading.tasks", "cognito_streams.warehouse.connect"]


def lazy_imports(path: Path) -> tuple[set[str], set[str]]:
    """The modules imported inside the functions of a source file (the imports a task makes when it runs), and
    the names imported from them that may be submodules (``from package import module``)."""
    modules: set[str] = set()
    maybe: set[str] = set()
    for func in ast.walk(ast.parse(path.read_text())):
        if isinstance(func, ast.FunctionDef):
            for node in ast.walk(func):
                if isinstance(node, ast.Import):
                    modules.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module:
                    modules.add(node.module)
                    maybe.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules, maybe


def task_path_script() -> str:
    """A fresh process: the preload as the stack's setting lists it, then what a landing and a loading task
    process do on their start (parse their DAG file) and in their bodies, counting the modules not imported yet."""
    preload = PRELOADED_LOCAL_WORKERS["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"].split(",")
    sources = DAG_FILES + [REPO / "plugins" / (m.replace(".", "/") + ".py") for m in TASK_MODULES]
    found = [lazy_imports(path) for path in sources]
    modules = sorted(set(TASK_MODULES).union(*(named for named, _ in found)))
    bodies = sorted(set(modules).union(*(maybe for _, maybe in found)))
    return f"""
import gc, importlib, importlib.util, json, sys
for name in {preload!r}:
    importlib.import_module(name)
frozen = gc.get_freeze_count()
before = set(sys.modules)
from airflow.dag_processing.dagbag import DagBag
bags = [DagBag(dag_folder=path) for path in {[str(p) for p in DAG_FILES]!r}]
def is_module(name):  # ``from package import name``: a submodule, or a class or function of the package
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent is a module, not a package
        return False
for name in {bodies!r}:
    if name in {modules!r} or is_module(name):
        importlib.import_module(name)
from cognito_streams.core.warm import cache_stats
new = sorted(m for m in set(sys.modules) - before if not m.startswith("unusual_prefix_"))
print(json.dumps({{"frozen": frozen, "dags": [b.dag_ids for b in bags], "errors": [str(b.import_errors) for b in bags],
                  "bodies": {len(bodies)}, "new": new, "cache": cache_stats()}}))
"""


def test_after_the_preload_a_task_imports_nothing_more_and_decodes_without_loading_the_parser() -> None:
    # GIVEN a process that imported what the stack's scheduler preloads, in its order
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}:{REPO / 'plugins'}", "HOME": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", task_path_script()], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = json.loads(proc.stdout.strip().splitlines()[-1])
    # WHEN a landing and a loading task parse their DAG files and import what their bodies use
    assert said["dags"] == [["cognito_stream_to_s3"], ["cognito_s3_to_redshift"]], said["errors"]
    assert said["bodies"] > 10, said  # the lazy imports were found (the runner, the loader, the drivers, ...)
    # THEN nothing is imported again (a few tiny modules at most), the parser came loaded, and the preload froze
    # its objects out of the collector's reach (so a task's collections do not copy the shared pages)
    assert len(said["new"]) <= 3, said["new"]
    assert said["cache"]["cache_hits"] > 0 and said["cache"]["cache_misses"] == 0, said["cache"]
    assert said["frozen"] > 100_000, said["frozen"]
