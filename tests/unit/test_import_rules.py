"""The import rules of docs/architecture.md.

- ``core`` imports no adapter (no Airflow, boto3, botocore, aiobotocore, database driver) and nothing of
  ``cognito_streams`` outside ``core``; the features (``configure``, ``bulk_publish``, ``landing``,
  ``loading``, ``reconcile``, ``snapshot``, ``report``) import each other only through the shared parts
  or ``core``: import-linter's contracts in pyproject.toml (``[tool.importlinter]``).
- A DAG file imports only its own feature and shared parts; the UI plugin only the report and shared
  parts: checked here on the files' syntax trees (they are no package import-linter could read).

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

#: Which features each DAG runs. cognito_reconcile also writes the report once it has reconciled.
DAG_FEATURES = {
    "cognito_streams_configure": {"configure"},
    "cognito_bulk_publish": {"bulk_publish"},
    "cognito_stream_to_s3": {"landing"},
    "cognito_s3_to_redshift": {"loading"},
    "cognito_reconcile": {"reconcile", "report"},
    "cognito_snapshot": {"snapshot"},
    "cognito_pipeline_health": {"report"},
}


def our_imports(source: str) -> list[str]:
    """Every ``cognito_streams...`` module a source imports, at any depth (task bodies import lazily)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "cognito_streams"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cognito_streams":
            if node.module == "cognito_streams":
                found += [f"cognito_streams.{a.name}" for a in node.names]
            else:
                found.append(node.module)
    return found


def refused(source: str, allowed_features: set[str]) -> list[str]:
    """The imports of ``source`` that are neither a shared part nor one of ``allowed_features``."""
    allowed = set(SHARED) | allowed_features
    return [m for m in our_imports(source) if m.split(".")[1] not in allowed]


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
def test_a_dag_file_imports_only_its_feature_and_shared_parts(dag_file: Path) -> None:
    assert dag_file.stem in DAG_FEATURES, f"{dag_file.name}: say which feature it runs in DAG_FEATURES"
    source = dag_file.read_text()
    assert our_imports(source), f"{dag_file.name} imports nothing of cognito_streams: is the check reading it?"
    assert refused(source, DAG_FEATURES[dag_file.stem]) == []


def test_a_dag_file_importing_another_feature_or_core_is_refused() -> None:
    source = (ROOT / "dags" / "cognito_stream_to_s3.py").read_text()
    assert refused(source + "\nfrom cognito_streams.loading.tasks import load\n", {"landing"}) == [
        "cognito_streams.loading.tasks"
    ]
    assert refused(source + "\ndef f():\n    from cognito_streams.core import decode\n", {"landing"}) == [
        "cognito_streams.core"
    ]
    assert refused(source + "\nfrom cognito_streams import reconcile\n", {"landing"}) == ["cognito_streams.reconcile"]


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
