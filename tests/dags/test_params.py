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
    "cognito_pipeline_health",
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
        ("cognito_stream_to_s3", {"shards": ["shard0"]}, "shards"),
        # A replay_from that is not a timestamp stalled the pipeline for ~12 minutes (retried in plan_shards).
        ("cognito_stream_to_s3", {"replay_from": "five minutes ago"}, "replay_from"),
        # RFC 3339 needs the offset: a bare time is ambiguous, refused rather than guessed.
        ("cognito_stream_to_s3", {"replay_from": "2026-11-25T08:00:00"}, "replay_from"),
        ("cognito_stream_to_s3", {"replay_from": "2026-11-25"}, "replay_from"),
        ("cognito_s3_to_redshift", {"from_day": "2026-3-1"}, "from_day"),
        ("cognito_s3_to_redshift", {"to_day": "yesterday"}, "to_day"),
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


@pytest.mark.parametrize("value", ["2026-11-25T08:00:00Z", "2026-11-25T10:00:00+02:00", "2026-11-25T08:00:00.250Z"])
def test_replay_from_takes_rfc3339_with_an_offset(dags: dict[str, Any], value: str) -> None:
    from cognito_streams.landing.tasks import parse_replay_from

    assert validated(dags["cognito_stream_to_s3"], {"replay_from": value})["replay_from"] == value
    assert parse_replay_from(value) is not None  # and the task reads what the form accepted
    assert "offset" in dags["cognito_stream_to_s3"].params.get_param("replay_from").description


def test_the_replay_from_pattern_holds_without_a_date_time_format_checker(dags: dict[str, Any]) -> None:
    """jsonschema checks ``date-time`` only when rfc3339-validator is installed; the pattern does not depend
    on it."""
    import jsonschema

    schema = dags["cognito_stream_to_s3"].params.get_param("replay_from").schema
    jsonschema.validate("2026-11-25T08:00:00Z", schema)  # no format checker at all
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("five minutes ago", schema)


@pytest.mark.integration
def test_a_reversed_day_range_fails_the_first_task_at_once_without_retry(
    dags: dict[str, Any], stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """from_day after to_day was retried three times (2-minute backoff) while the run held the loader's
    only run slot. Now: the first task fails once, with the message, and nothing else runs."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.state import DagRunState

    from local.stack import REPO
    from tests.support.dag_params import snapshot_params

    # the DAG as deployed, retries included
    dag = DagBag(dag_folder=str(REPO / "dags" / "cognito_s3_to_redshift.py")).get_dag("cognito_s3_to_redshift")
    restore = snapshot_params(dag)
    try:
        run = dag.test(run_conf={"from_day": "2026-03-02", "to_day": "2026-03-01"})
    finally:
        restore()
    assert run.state == DagRunState.FAILED
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    first = tis["check_params"]
    assert first.state == "failed" and first.try_number == 1 and first.max_tries == 0
    assert tis["load_batches"].state == "upstream_failed" and tis["rebuild_state"].state == "upstream_failed"
    out = capsys.readouterr().out
    assert "from_day 2026-03-02 is after to_day 2026-03-01; swap them" in out
