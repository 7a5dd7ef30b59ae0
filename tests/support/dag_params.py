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
