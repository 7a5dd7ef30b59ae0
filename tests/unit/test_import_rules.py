"""The import rules of docs/architecture.md.

- ``core`` imports no adapter (no Airflow, boto3, botocore, aiobotocore, database driver) and nothing of
  ``cognito_streams`` outside ``core``; the features (``configure``, ``bulk_publish``, ``landing``,
  ``loading``, ``reconcile``, ``snapshot``, ``report``) import each other only through the shared parts
  or ``core``: import-linter's contracts in pyproject.toml (``[tool.importlinter]``).
- A DAG file is wiring: it imports only its feature's ``tasks`` module (the task bodies), ``assets`` and
  ``dag_defaults``; besides, the bulk publish DAG its feature's operator and the landing DAG ``landing.mode``
  (its schedule, read at parse time). One exception: ``cognito_reconcile`` also writes the report after
  reconciling, so it imports ``reconcile.tasks`` and ``report.tasks``. The UI plugin imports only the
  report and shared parts. Both checked here on the files' syntax trees (they are no package import-linter
  could read).

Each rule is also shown to fail: the contracts on a copy of the package with one bad import added, the DAG
check on a DAG file's text with one.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"

FEATURES = ("configure", "bulk_publish", "landing", "loading", "reconcile", "snapshot", "report")
SHARED = ("settings", "alerts", "assets", "dag_defaults", "hooks", "warehouse", "landing_zone", "monitoring")

#: What a DAG file may import of cognito_streams besides DAG_SHARED: its feature's task module (and an
#: operator or parse-time schedule of that feature). cognito_reconcile is the one DAG of two features: it
#: also writes the report once it has reconciled.
DAG_MODULES = {
    "cognito_streams_configure": {"configure.tasks"},
    "cognito_bulk_publish": {"bulk_publish.tasks", "bulk_publish.operator"},
    "cognito_stream_to_s3": {"landing.tasks", "landing.mode"},
    "cognito_s3_to_redshift": {"loading.tasks"},
    "cognito_reconcile": {"reconcile.tasks", "report.tasks"},
    "cognito_snapshot": {"snapshot.tasks"},
    "cognito_pipeline_health": {"report.tasks"},
}
#: The shared parts a DAG file wires with: the Assets between the DAGs, every DAG's defaults.
DAG_SHARED = ("assets", "dag_defaults")


def our_imports(source: str) -> list[str]:
    """Every ``cognito_streams...`` module a source imports, at any depth (task bodies import lazily).

    ``from package import name`` counts as importing ``package.name`` (``from cognito_streams.landing import
    tasks`` imports the module ``landing.tasks``, not all of ``landing``)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "cognito_streams"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cognito_streams":
            if (PLUGINS / node.module.replace(".", "/")).is_dir():
                found += [f"{node.module}.{a.name}" for a in node.names]
            else:
                found.append(node.module)
    return found


def refused(source: str, allowed_features: set[str]) -> list[str]:
    """The imports of ``source`` that are neither a shared part nor one of ``allowed_features``."""
    allowed = set(SHARED) | allowed_features
    return [m for m in our_imports(source) if m.split(".")[1] not in allowed]


def refused_in_dag(source: str, dag_id: str) -> list[str]:
    """The imports of a DAG file's ``source`` that are not in DAG_MODULES[dag_id] or DAG_SHARED (a module or
    a name in one: ``dag_defaults.user_errors`` is ``dag_defaults``)."""
    allowed = {f"cognito_streams.{m}" for m in (*DAG_MODULES[dag_id], *DAG_SHARED)}
    return [m for m in our_imports(source) if not any(m == a or m.startswith(a + ".") for a in allowed)]


def lint_imports(plugins: Path) -> subprocess.CompletedProcess[str]:
    """import-linter with pyproject.toml's contracts on the package under ``plugins``."""
    env = {**os.environ, "PYTHONPATH": str(plugins)}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
            "--config",
            str(ROOT / "pyproject.toml"),
            "--no-cache",
            "--no-logo",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_contracts_are_kept() -> None:
    run = lint_imports(PLUGINS)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "BROKEN" not in run.stdout and "2 kept, 0 broken" in run.stdout, run.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "contract"),
    [
        ("core/bulk_publish.py", "import boto3", "core imports no adapter"),
        ("core/reconcile.py", "from airflow.sdk import Variable", "core imports no adapter"),
        (
            "core/landing/shards.py",
            "from cognito_streams.settings import PipelineSettings",
            "features, then shared parts",
        ),
        ("landing/runner.py", "from cognito_streams.loading.tasks import load", "features, then shared parts"),
        (
            "snapshot/walker.py",
            "from cognito_streams.reconcile.reconciler import Reconciler",
            "features, then shared parts",
        ),
    ],
)
def test_a_bad_import_breaks_a_contract(tmp_path: Path, module: str, bad_import: str, contract: str) -> None:
    # GIVEN a copy of the package with one import that the rules forbid, inside a function as our lazy ones are
    shutil.copytree(
        PLUGINS / "cognito_streams", tmp_path / "cognito_streams", ignore=shutil.ignore_patterns("__pycache__")
    )
    path = tmp_path / "cognito_streams" / module
    path.write_text(path.read_text() + f"\n\ndef _bad() -> None:\n    {bad_import}  # noqa\n")
    # WHEN the contracts are checked THEN the run fails, naming the broken contract and the module
    run = lint_imports(tmp_path)
    assert run.returncode != 0, run.stdout
    broken = [line for line in run.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), run.stdout
    assert "cognito_streams." + module.removesuffix(".py").replace("/", ".") in run.stdout, run.stdout


@pytest.mark.parametrize("dag_file", sorted((ROOT / "dags").glob("*.py")), ids=lambda p: p.stem)
def test_a_dag_file_imports_only_its_task_module_and_shared_wiring(dag_file: Path) -> None:
    assert dag_file.stem in DAG_MODULES, f"{dag_file.name}: say what it may import in DAG_MODULES"
    source = dag_file.read_text()
    assert our_imports(source), f"{dag_file.name} imports nothing of cognito_streams: is the check reading it?"
    assert refused_in_dag(source, dag_file.stem) == [], (
        f"{dag_file.name}: a task body that opens the warehouse, a hook or the settings belongs in its "
        "feature's tasks module (docs/architecture.md, 'The direction of imports')"
    )


def test_only_cognito_reconcile_runs_two_features() -> None:
    features = {dag: {m.split(".")[0] for m in modules} for dag, modules in DAG_MODULES.items()}
    assert {dag for dag, f in features.items() if len(f) > 1} == {"cognito_reconcile"}
    assert features["cognito_reconcile"] == {"reconcile", "report"}


@pytest.mark.parametrize(
    ("dag_id", "bad_import", "reported"),
    [
        # another feature's task module
        ("cognito_stream_to_s3", "from cognito_streams.loading.tasks import load", "cognito_streams.loading.tasks"),
        # core, lazily in a task body
        (
            "cognito_stream_to_s3",
            "def f():\n    from cognito_streams.core import decode",
            "cognito_streams.core.decode",
        ),
        # a whole feature package
        ("cognito_stream_to_s3", "from cognito_streams import reconcile", "cognito_streams.reconcile"),
        # the own feature's adapters other than its task module
        ("cognito_stream_to_s3", "from cognito_streams.landing import runner", "cognito_streams.landing.runner"),
        (
            "cognito_reconcile",
            "from cognito_streams.reconcile.reconciler import Reconciler",
            "cognito_streams.reconcile.reconciler",
        ),
        # shared parts a task body opens: they belong in the task module
        (
            "cognito_s3_to_redshift",
            "def f():\n    from cognito_streams.settings import load_settings",
            "cognito_streams.settings",
        ),
        (
            "cognito_pipeline_health",
            "from cognito_streams.warehouse.connect import open_warehouse",
            "cognito_streams.warehouse.connect",
        ),
        (
            "cognito_reconcile",
            "from cognito_streams.hooks.kinesis_reader import KinesisReaderHook",
            "cognito_streams.hooks.kinesis_reader",
        ),
        (
            "cognito_stream_to_s3",
            "from cognito_streams.monitoring import metrics",
            "cognito_streams.monitoring.metrics",
        ),
        # the exception of cognito_reconcile is its own: the health DAG may not import reconcile
        ("cognito_pipeline_health", "from cognito_streams.reconcile import tasks", "cognito_streams.reconcile.tasks"),
        # an extra of one DAG is not every DAG's
        (
            "cognito_s3_to_redshift",
            "from cognito_streams.landing.mode import DEFAULT_SCHEDULE",
            "cognito_streams.landing.mode",
        ),
    ],
)
def test_a_dag_file_importing_more_than_its_wiring_is_refused(dag_id: str, bad_import: str, reported: str) -> None:
    source = (ROOT / "dags" / f"{dag_id}.py").read_text()
    assert refused_in_dag(source + "\n" + bad_import + "\n", dag_id) == [reported]


def test_the_ui_plugin_imports_only_the_report_and_shared_parts() -> None:
    assert refused((PLUGINS / "cognito_streams_ui.py").read_text(), {"report"}) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("cognito_streams.triggers.bulk_publish.BulkPublishTrigger", "cognito_streams.bulk_publish.trigger"),
        ("cognito_streams.triggers.records_waiting.RecordsWaitingTrigger", "cognito_streams.landing.trigger"),
    ],
)
def test_a_trigger_serialized_before_the_move_still_loads(old: str, new: str) -> None:
    """The triggerer imports a deferred task's (or an AssetWatcher's) trigger by the classpath stored in
    Airflow's database: the paths of the layout before the package per feature must still resolve."""
    from airflow._shared.module_loading import import_string  # what the triggerer uses

    cls = import_string(old)
    assert cls.__module__ == new
