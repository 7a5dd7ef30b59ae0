"""What a finished DAG run returned, read from Airflow's metadata DB (for ``dag.test()`` runs)."""

from __future__ import annotations

import json
from typing import Any


def return_values(run: Any) -> dict[str, Any]:
    """A run's return values by task id; a mapped task's as a list, one entry per map index."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(XComModel.task_id, XComModel.map_index, XComModel.value).where(
                XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id, XComModel.key == "return_value"
            )
        ).all()
    out: dict[str, Any] = {}
    for task_id, map_index, value in rows:
        value = json.loads(value) if isinstance(value, str) else value
        if map_index >= 0:
            out.setdefault(task_id, []).append(value)
        else:
            out[task_id] = value
    return out
