"""``cognito_reconcile``'s Params for manual runs: a value the settings would refuse is refused when
the run is triggered, naming the Param (the UI and the API validate a run's conf against them)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.dag]


@pytest.fixture(scope="module")
def dag(airflow_db: None) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "cognito_reconcile.py"))
    assert bag.import_errors == {}
    return bag.get_dag("cognito_reconcile")


def validated(dag: Any, conf: dict[str, Any]) -> dict[str, Any]:
    """The run's params as Airflow validates a triggered run's conf (on a copy: the DAG's stay as they are)."""
    params = copy.deepcopy(dag.params)
    params.update(conf)
    return dict(params.validate())


def test_a_settle_time_beyond_the_settings_bound_is_refused_naming_the_param(dag: Any) -> None:
    """A settle time of years made every change 'in flight': nothing was judged and the run passed."""
    from airflow.sdk.exceptions import ParamValidationError

    # GIVEN the setting's bound, 7 days  WHEN a run asks for one second more  THEN it is refused, by name
    with pytest.raises(ParamValidationError, match="settle_seconds"):
        validated(dag, {"settle_seconds": 7 * 86_400 + 1})
    # AND the bound itself, like the other Params' odd but valid values, is accepted
    ok = validated(dag, {"settle_seconds": 7 * 86_400, "sample_size": 1, "max_mismatches": 0, "depth": "datasets"})
    assert ok["settle_seconds"] == 7 * 86_400


@pytest.mark.parametrize(
    ("conf", "name"),
    [
        ({"sample_size": 0}, "sample_size"),
        ({"settle_seconds": -1}, "settle_seconds"),
        ({"max_mismatches": -1}, "max_mismatches"),
        ({"depth": "keys"}, "depth"),
        ({"identity_pool_ids": "us-east-1:one"}, "identity_pool_ids"),
    ],
)
def test_bad_values_are_refused_naming_the_param(dag: Any, conf: dict[str, Any], name: str) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=name):
        validated(dag, conf)
