"""The DAGs' Params for manual runs: a value the settings would refuse, or that would make the run do
something else than asked, is refused when the run is triggered, naming the Param (the UI and the
API validate a run's conf against the Params; ``dag.test()`` does too), and a pool the settings do not
list fails the bulk publish and reconcile runs naming it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.support.dag_params import load_dag

pytestmark = [pytest.mark.dag]

DAG_IDS = [
    "cognito_reconcile",
    "cognito_bulk_publish",
    "cognito_stream_to_s3",
    "cognito_s3_to_redshift",
    "cognito_streams_configure",
    "cognito_snapshot",
]


@pytest.fixture(scope="module")
def dags(airflow_db: None) -> dict[str, Any]:
    return {dag_id: load_dag(dag_id) for dag_id in DAG_IDS}


def validated(dag: Any, conf: dict[str, Any]) -> dict[str, Any]:
    """The run's params as Airflow validates a triggered run's conf (on a copy: the DAG's stay as they are)."""
    params = copy.deepcopy(dag.params)
    params.update(conf)
    return dict(params.validate())


def test_a_settle_time_beyond_the_settings_bound_is_refused_naming_the_param(dags: dict[str, Any]) -> None:
    """A settle time of years made every change 'in flight': nothing was judged and the run passed."""
    from airflow.sdk.exceptions import ParamValidationError

    dag = dags["cognito_reconcile"]
    # GIVEN the setting's bound, 7 days  WHEN a run asks for one second more  THEN it is refused, by name
    with pytest.raises(ParamValidationError, match="settle_seconds"):
        validated(dag, {"settle_seconds": 7 * 86_400 + 1})
    # AND the bound itself, like the other Params' odd but valid values, is accepted
    ok = validated(dag, {"settle_seconds": 7 * 86_400, "sample_size": 1, "max_mismatches": 0, "depth": "datasets"})
    assert ok["settle_seconds"] == 7 * 86_400


@pytest.mark.parametrize(
    ("dag_id", "conf", "name"),
    [
        ("cognito_reconcile", {"sample_size": 0}, "sample_size"),
        ("cognito_reconcile", {"settle_seconds": -1}, "settle_seconds"),
        ("cognito_reconcile", {"max_mismatches": -1}, "max_mismatches"),
        ("cognito_reconcile", {"depth": "keys"}, "depth"),
        ("cognito_reconcile", {"identity_pool_ids": "us-east-1:one"}, "identity_pool_ids"),
        ("cognito_s3_to_redshift", {"mode": "reload"}, "mode"),
        ("cognito_s3_to_redshift", {"force": "yes"}, "force"),
        ("cognito_stream_to_s3", {"shards": "shardId-000000000000"}, "shards"),
        ("cognito_bulk_publish", {"wait_until_eligible": "true"}, "wait_until_eligible"),
        ("cognito_streams_configure", {"reshard": 1}, "reshard"),
        ("cognito_snapshot", {"identities": "some"}, "identities"),
        ("cognito_snapshot", {"identities": 0}, "identities"),
        ("cognito_snapshot", {"identities": []}, "identities"),
        ("cognito_snapshot", {"identities": ["not-an-identity"]}, "identities"),
        ("cognito_snapshot", {"export": "yes"}, "export"),
    ],
)
def test_bad_values_are_refused_naming_the_param(
    dags: dict[str, Any], dag_id: str, conf: dict[str, Any], name: str
) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=name):
        validated(dags[dag_id], conf)


@pytest.mark.parametrize(
    ("dag_id", "name", "value"),
    [
        ("cognito_reconcile", "identity_pool_ids", "us-east-1:11111111-1111-1111-1111-111111111111"),
        ("cognito_bulk_publish", "identity_pool_ids", "us-east-1:11111111-1111-1111-1111-111111111111"),
        ("cognito_stream_to_s3", "shards", "shardId-000000000000"),
        ("cognito_snapshot", "identity_pool_ids", "us-east-1:11111111-1111-1111-1111-111111111111"),
    ],
)
def test_a_list_naming_the_same_item_twice_is_refused(dags: dict[str, Any], dag_id: str, name: str, value: str) -> None:
    """A pool named twice ran two bulk publish tasks for it (one then waited on the other's publish)
    and counted it twice in the reconciliation's identity_pools; a shard twice was a typo unnoticed."""
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=name):
        validated(dags[dag_id], {name: [value, value]})
    assert validated(dags[dag_id], {name: [value]})[name] == [value]


def test_the_snapshot_takes_all_a_sample_size_or_a_list_of_identities(dags: dict[str, Any]) -> None:
    dag = dags["cognito_snapshot"]
    assert validated(dag, {})["identities"] == "all"
    assert validated(dag, {"identities": 250})["identities"] == 250
    ids = ["us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"]
    assert validated(dag, {"identities": ids, "export": True})["identities"] == ids


@pytest.mark.integration
@pytest.mark.parametrize(
    ("dag_id", "task_id"),
    [
        ("cognito_bulk_publish", "pools_to_publish"),
        ("cognito_reconcile", "reconcile"),
        ("cognito_snapshot", "check_params"),
    ],
)
def test_a_pool_not_in_the_settings_fails_the_run_naming_it(
    dags: dict[str, Any], stack: Any, dag_id: str, task_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pool the settings do not list is not the pipeline's: its stream, role and warehouse rows are not
    ours. Refused before anything is published or compared, never dropped from the run silently."""
    from airflow.utils.state import DagRunState

    from tests.support.dag_params import snapshot_params

    dag = dags[dag_id]
    stranger = "us-east-1:99999999-9999-9999-9999-999999999999"
    restore = snapshot_params(dag)
    try:
        # WHEN a manual run names a pool that is not in cognito_pipeline.identity_pool_ids
        run = dag.test(run_conf={"identity_pool_ids": [stranger]})
    finally:
        restore()
    # THEN the run is red at its first task, naming the param, the setting and the pool
    assert run.state == DagRunState.FAILED
    assert {ti.task_id: ti.state for ti in run.get_task_instances()}[task_id] == "failed"
    out = capsys.readouterr().out
    assert "identity_pool_ids param names pools" in out and "cognito_pipeline.identity_pool_ids" in out
    assert stranger in out
