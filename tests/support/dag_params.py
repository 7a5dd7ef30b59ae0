"""Keeping ``dag.test()`` runs of one DAG object independent of each other's ``run_conf``.

``dag.test()`` runs tasks in the test's process, and Airflow's ``process_params`` resolves a run's
conf into the DAG's own ``Param`` objects (``Param.resolve`` keeps the value it validated): one
test's ``run_conf`` becomes the next test's defaults when the DAG object is shared (a module-scoped
fixture). A worker runs each task in a fresh process, so deployments are not affected.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any


def snapshot_params(dag: Any) -> Callable[[], None]:
    """Remember the values of the DAG's and its tasks' Params; the returned function puts them back."""
    holders = [dag.params, *(task.params for task in dag.tasks)]
    saved = [
        (holder.get_param(key), copy.deepcopy(holder.get_param(key).value)) for holder in holders for key in holder
    ]

    def restore() -> None:
        for param, value in saved:
            param.value = value

    return restore


def load_dag(dag_id: str) -> Any:
    """A fresh DAG object parsed from ``dags/<dag_id>.py`` (no import error), retries off: a test's
    failure must show at once, not after the retry delay."""
    from airflow.dag_processing.dagbag import DagBag

    from local.stack import REPO

    bag = DagBag(dag_folder=str(REPO / "dags" / f"{dag_id}.py"))
    assert bag.import_errors == {}
    dag = bag.get_dag(dag_id)
    for task in dag.tasks:
        task.retries = 0
    return dag
