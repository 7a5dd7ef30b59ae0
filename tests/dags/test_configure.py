"""``cognito_streams_configure`` with ``dag.test()`` against moto and the Cognito Sync emulator:
configure from nothing, a rerun changes nothing, a deleted stream is detected and repaired, a
disabled pool whose role is broken fails with its reason, a stream with another shard count is
reported and resharded only on request (never when on-demand), a publish role the pipeline does
not manage and that does not exist fails naming it and what to do, a pool Cognito refuses to
configure fails the run without costing the pools before it their backfill, and a failed step before
the pools makes check_pools say so."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cognito_streams.core.configure.iam import DEFAULT_BOUNDARY_NAME, publish_role_trust_policy
from local.dag_results import return_values
from tests.conftest import REPO
from tests.support.dag_params import load_dag, snapshot_params

pytestmark = [pytest.mark.dag, pytest.mark.integration]

PUSH_SYNC = {
    "ApplicationArns": ["arn:aws:sns:us-east-1:123456789012:app/GCM/demo"],
    "RoleArn": "arn:aws:iam::123456789012:role/push-sync",
}


@pytest.fixture(scope="module")
def dag(airflow_db: None) -> Any:
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    # The DAG it triggers must be known to Airflow, as the dag-processor would have made it.
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(DagBag(dag_folder=str(REPO / "dags" / "cognito_bulk_publish.py")), "dags-folder", None)
    return load_dag("cognito_streams_configure")


@pytest.fixture(autouse=True)
def default_params(dag: Any) -> Iterator[None]:
    """Each test starts from the DAG's default Params (see ``tests.support.dag_params``)."""
    restore = snapshot_params(dag)
    yield
    restore()


@pytest.fixture
def setup(stack: Any, emulator: str, aws: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A fresh pool (with PushSync set, which must survive), stream name and role name."""
    suffix = uuid.uuid4().hex[:8]
    pool_id = aws("cognito-identity").create_identity_pool(
        IdentityPoolName=f"configure_{suffix}", AllowUnauthenticatedIdentities=True
    )["IdentityPoolId"]
    aws("cognito-sync").set_identity_pool_configuration(IdentityPoolId=pool_id, PushSync=PUSH_SYNC)
    variable = {
        **json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"]),
        "identity_pool_ids": [pool_id],
        "stream_name": f"configure-{suffix}",
        "stream_shards": 2,
        "publish_role_arn": f"arn:aws:iam::123456789012:role/streams/publish-{suffix}",
        "manage_publish_role": True,
    }
    monkeypatch.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(variable))
    return {"pool_id": pool_id, "variable": variable, "suffix": suffix}


def app_syncs_one_key(aws: Any, pool_id: str) -> Any:
    """A new user of the pool writes one key, as an app does (list for a session token, then update)."""
    identity = aws("cognito-identity").get_id(IdentityPoolId=pool_id)["IdentityId"]
    sync = aws("cognito-sync")
    token = sync.list_records(IdentityPoolId=pool_id, IdentityId=identity, DatasetName="prefs")["SyncSessionToken"]
    sync.update_records(
        IdentityPoolId=pool_id,
        IdentityId=identity,
        DatasetName="prefs",
        SyncSessionToken=token,
        RecordPatches=[{"Op": "replace", "Key": "theme", "Value": "dark", "SyncCount": 0}],
    )
    return sync


def states(run: Any) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def test_configure_from_nothing_then_a_rerun_changes_nothing(
    airflow_db: None, dag: Any, setup: dict[str, Any], aws: Any
) -> None:
    from airflow.utils.state import DagRunState

    # GIVEN a pool with PushSync only, no stream, no role
    variable = setup["variable"]
    # WHEN the DAG runs
    first = dag.test()
    # THEN the stream exists with 2 shards, the role trusts Cognito Sync only, the pool streams, PushSync kept
    assert first.state == DagRunState.SUCCESS, states(first)
    out = return_values(first)
    assert out["ensure_stream"]["action"] == "created"
    assert out["ensure_publish_role"]["action"] == "created"
    assert out["configure_pools"]["counts"] == {"configure": 1}
    summary = aws("kinesis").describe_stream_summary(StreamName=variable["stream_name"])["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 2
    role = aws("iam").get_role(RoleName=f"publish-{setup['suffix']}")["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "cognito-sync.amazonaws.com"}
    # ... with its permissions boundary: what bounds the pipeline's CreateRole/PutRolePolicy (issue 18, item 7)
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == (
        f"arn:aws:iam::123456789012:policy/{DEFAULT_BOUNDARY_NAME}"
    )
    config = aws("cognito-sync").get_identity_pool_configuration(IdentityPoolId=setup["pool_id"])
    assert config["CognitoStreams"] == {
        "StreamName": variable["stream_name"],
        "RoleArn": variable["publish_role_arn"],
        "StreamingStatus": "ENABLED",
    }
    assert config["PushSync"] == PUSH_SYNC
    assert states(first)["backfill_reenabled_pools"] == "skipped"

    # WHEN it runs again THEN nothing is written: everything reports unchanged
    second = dag.test()
    assert second.state == DagRunState.SUCCESS, states(second)
    out = return_values(second)
    assert out["ensure_stream"]["action"] == "unchanged"
    assert out["ensure_publish_role"]["action"] == "unchanged"
    assert out["configure_pools"]["counts"] == {"unchanged": 1}


def test_a_deleted_stream_is_detected_repaired_and_backfilled(
    airflow_db: None, dag: Any, setup: dict[str, Any], aws: Any
) -> None:
    from airflow.utils.state import DagRunState

    from local.emulator.control import EmulatorControl

    ctl = EmulatorControl.from_env()
    assert dag.test().state == DagRunState.SUCCESS
    pool_id, stream_name = setup["pool_id"], setup["variable"]["stream_name"]
    # GIVEN the stream deleted while an app keeps syncing: Cognito turns streaming DISABLED
    aws("kinesis").delete_stream(StreamName=stream_name)
    sync = app_syncs_one_key(aws, pool_id)
    ctl.flush()
    disabled = sync.get_identity_pool_configuration(IdentityPoolId=pool_id)["CognitoStreams"]
    assert disabled["StreamingStatus"] == "DISABLED"
    # WHEN the DAG runs
    run = dag.test()
    # THEN the stream is created again, streaming re-enabled, and a bulk publish asked for the pool
    assert run.state == DagRunState.SUCCESS, states(run)
    out = return_values(run)
    assert out["ensure_stream"]["action"] == "created"
    (pool,) = out["configure_pools"]["pools"]
    assert pool["action"] == "reenable"
    assert any("DisabledReason" in r for r in pool["reasons"]), pool["reasons"]
    assert out["configure_pools"]["needs_backfill"] == [pool_id]
    assert out["pools_to_backfill"] == {
        "identity_pool_ids": [pool_id],
        "reason": "streaming was re-enabled by cognito_streams_configure",
    }
    assert states(run)["backfill_reenabled_pools"] == "success"
    assert (
        sync.get_identity_pool_configuration(IdentityPoolId=pool_id)["CognitoStreams"]["StreamingStatus"] == "ENABLED"
    )


def test_a_disabled_pool_with_a_broken_role_fails_with_its_reason(
    airflow_db: None, dag: Any, setup: dict[str, Any], aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.utils.state import DagRunState

    from local.emulator.control import EmulatorControl

    assert dag.test().state == DagRunState.SUCCESS
    pool_id = setup["pool_id"]
    # GIVEN the role is no longer ours to manage, and someone broke its trust policy
    variable = {**setup["variable"], "manage_publish_role": False}
    monkeypatch.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(variable))
    lambda_trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    aws("iam").update_assume_role_policy(RoleName=f"publish-{setup['suffix']}", PolicyDocument=json.dumps(lambda_trust))
    ctl = EmulatorControl.from_env()
    ctl.update_settings(role_check_cache_seconds=0)
    try:
        sync = app_syncs_one_key(aws, pool_id)
        ctl.flush()
    finally:
        ctl.update_settings(role_check_cache_seconds=5)
    assert (
        sync.get_identity_pool_configuration(IdentityPoolId=pool_id)["CognitoStreams"]["StreamingStatus"] == "DISABLED"
    )
    # WHEN the DAG runs
    run = dag.test()
    # THEN it fails, and the failing task says which pool, Cognito's reason and ours
    assert run.state == DagRunState.FAILED
    assert states(run)["check_pools"] == "failed"
    assert states(run)["configure_pools"] == "success"
    out = return_values(run)
    (pool,) = out["configure_pools"]["pools"]
    assert pool["action"] == "fail"
    text = " ".join(pool["reasons"])
    assert "DisabledReason" in text
    assert "trust policy does not let cognito-sync.amazonaws.com assume it" in text
    assert out["ensure_publish_role"]["action"] == "invalid"


def open_shards(aws: Any, stream_name: str) -> int:
    """Open shards as Kinesis lists them (not only the summary's count)."""
    shards = aws("kinesis").list_shards(StreamName=stream_name)["Shards"]
    return sum(1 for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"])


def test_a_stream_with_another_shard_count_is_reported_left_as_is_and_resharded_only_on_request(
    airflow_db: None,
    dag: Any,
    setup: dict[str, Any],
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """moto differs from Kinesis here: its UpdateShardCount is synchronous (the stream never shows
    UPDATING), ignores ScalingType and enforces none of Kinesis' limits (at most double or half the
    open shards per call, a few scalings per 24 hours). The steps that keep within the limits are
    tested as a pure function (tests/unit/test_streams_config.py); here, that they are all applied."""
    from airflow.utils.state import DagRunState

    # GIVEN the stream exists with 1 shard (made by hand), and the settings say 3
    stream_name = setup["variable"]["stream_name"]
    aws("kinesis").create_stream(StreamName=stream_name, ShardCount=1)
    monkeypatch.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps({**setup["variable"], "stream_shards": 3}))
    # WHEN the DAG runs without the reshard param
    with caplog.at_level(logging.INFO):
        first = dag.test()
    # THEN it says so (log and the task's result) and leaves the stream as is; the rest is configured
    assert first.state == DagRunState.SUCCESS, states(first)
    stream = return_values(first)["ensure_stream"]
    assert (stream["action"], stream["open_shards"], stream["wanted_shards"]) == ("shard_count_differs", 1, 3)
    (problem,) = stream["problems"]
    assert f"stream {stream_name} has 1 open shard(s), stream_shards says 3" in problem
    assert "reshard=true" in problem
    assert problem in caplog.text
    assert open_shards(aws, stream_name) == 1
    assert return_values(first)["configure_pools"]["counts"] == {"configure": 1}

    # WHEN it runs with reshard=true
    caplog.clear()
    with caplog.at_level(logging.INFO):
        second = dag.test(run_conf={"reshard": True})
    # THEN the stream gets 3 shards, in steps Kinesis accepts (at most doubling)
    assert second.state == DagRunState.SUCCESS, states(second)
    stream = return_values(second)["ensure_stream"]
    assert (stream["action"], stream["open_shards"], stream["problems"]) == ("resharded", 3, [])
    assert "in 2 step(s): 1 -> 2 -> 3" in caplog.text
    assert open_shards(aws, stream_name) == 3


def test_an_unmanaged_publish_role_that_does_not_exist_fails_naming_the_role_and_what_to_do(
    airflow_db: None,
    dag: Any,
    setup: dict[str, Any],
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from airflow.utils.state import DagRunState

    # GIVEN the settings name a publish role the pipeline does not manage, and nobody created it
    variable = {**setup["variable"], "manage_publish_role": False}
    monkeypatch.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(variable))
    role_name = f"publish-{setup['suffix']}"
    # WHEN the DAG runs
    run = dag.test()
    # THEN it fails, naming the role and what to do; it creates no role and leaves the pool unconfigured
    assert run.state == DagRunState.FAILED
    assert states(run)["check_pools"] == "failed"
    out = return_values(run)
    assert out["ensure_publish_role"]["action"] == "invalid"
    (problem,) = out["ensure_publish_role"]["problems"]
    assert f"role {role_name} does not exist in account 123456789012" in problem
    assert "manage_publish_role is false" in problem and "create it" in problem
    (pool,) = out["configure_pools"]["pools"]
    assert pool["action"] == "fail"
    # The task runner logs the failure, with the exception's message, to the captured output.
    assert f"- publish role {variable['publish_role_arn']}: {problem}" in capsys.readouterr().out
    with pytest.raises(aws("iam").exceptions.NoSuchEntityException):
        aws("iam").get_role(RoleName=role_name)
    config = aws("cognito-sync").get_identity_pool_configuration(IdentityPoolId=setup["pool_id"])
    assert config.get("CognitoStreams", {}).get("StreamingStatus") != "ENABLED"
    assert config["PushSync"] == PUSH_SYNC


def test_an_on_demand_stream_is_never_resharded(setup: dict[str, Any], aws: Any) -> None:
    from cognito_streams.configure.configurator import StreamsConfigurator
    from cognito_streams.settings import load_settings

    # GIVEN the stream exists in on-demand mode (moto gives it 4 shards), the settings say 2
    stream_name = setup["variable"]["stream_name"]
    aws("kinesis").create_stream(StreamName=stream_name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    # WHEN configure ensures the stream, even asked to reshard
    report = StreamsConfigurator(load_settings()).ensure_stream(reshard=True)
    # THEN it is left to Kinesis, and the report says why stream_shards does not apply
    assert report.action == "unchanged"
    (problem,) = report.problems
    assert f"stream {stream_name} is ON_DEMAND" in problem and "stream_shards does not apply" in problem
    summary = aws("kinesis").describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == report.open_shards != 2


def test_a_refused_reshard_says_what_to_do(setup: dict[str, Any], aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kinesis allows few scalings per 24 hours and answers LimitExceededException beyond; moto has no
    such quota, so the refusal is stubbed on the one call (the describe calls stay real)."""
    from botocore.exceptions import ClientError

    from cognito_streams.configure.configurator import ConfigurationError, StreamsConfigurator
    from cognito_streams.settings import load_settings

    # GIVEN a 1-shard stream, settings saying 2, and Kinesis refusing to scale it today
    stream_name = setup["variable"]["stream_name"]
    aws("kinesis").create_stream(StreamName=stream_name, ShardCount=1)
    configurator = StreamsConfigurator(load_settings())
    quota = "Rate exceeded for stream: the maximum number of UpdateShardCount calls per 24 hours is reached"

    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "LimitExceededException", "Message": quota}}, "UpdateShardCount")

    monkeypatch.setattr(configurator.kinesis, "update_shard_count", refuse)
    # WHEN it is asked to reshard THEN it fails naming the stream, the counts, Kinesis' reason and what to do
    with pytest.raises(ConfigurationError) as failure:
        configurator.ensure_stream(reshard=True)
    message = str(failure.value)
    assert f"Kinesis refused to reshard stream {stream_name} to 2 shard(s)" in message
    assert f"LimitExceededException: {quota}" in message
    assert "rerun with reshard=true later" in message and "stream_shards" in message
    assert open_shards(aws, stream_name) == 1


def test_a_pool_cognito_refuses_to_configure_does_not_cost_the_others_their_backfill(
    airflow_db: None,
    dag: Any,
    setup: dict[str, Any],
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One pool's refused SetIdentityPoolConfiguration used to fail configure_pools as a whole, after
    it had re-enabled the pools before it: their backfill was never asked for (on the retry and every
    later run they read as unchanged), and check_pools failed on a missing summary instead of the reason.
    Cognito's refusal is stubbed on that one pool's call (the emulator accepts any valid configuration)."""
    from airflow.utils.state import DagRunState
    from botocore.exceptions import ClientError

    from cognito_streams.configure import configurator
    from cognito_streams.hooks.cognito_sync import CognitoSyncHook
    from local.emulator.control import EmulatorControl

    # GIVEN pool A streaming, then disabled by Cognito (its stream was deleted while an app synced)
    assert dag.test().state == DagRunState.SUCCESS
    pool_a, stream_name = setup["pool_id"], setup["variable"]["stream_name"]
    aws("kinesis").delete_stream(StreamName=stream_name)
    app_syncs_one_key(aws, pool_a)
    EmulatorControl.from_env().flush()
    # AND a new pool B after it in the settings, whose configuration Cognito refuses
    pool_b = aws("cognito-identity").create_identity_pool(
        IdentityPoolName=f"configure_b_{setup['suffix']}", AllowUnauthenticatedIdentities=True
    )["IdentityPoolId"]
    monkeypatch.setenv(
        "AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps({**setup["variable"], "identity_pool_ids": [pool_a, pool_b]})
    )
    refusal = "Role cannot be assumed by Cognito Sync in this region"
    real_set = CognitoSyncHook.set_configuration

    def set_configuration(self: Any, identity_pool_id: str, *args: Any) -> Any:
        if identity_pool_id == pool_b:
            error = {"Error": {"Code": "InvalidConfigurationException", "Message": refusal}}
            raise ClientError(error, "SetIdentityPoolConfiguration")  # type: ignore[arg-type]
        return real_set(self, identity_pool_id, *args)

    monkeypatch.setattr(CognitoSyncHook, "set_configuration", set_configuration)
    monkeypatch.setattr(configurator, "ROLE_PROPAGATION_SECONDS", 0.0)
    # WHEN the DAG runs
    run = dag.test()
    # THEN it is red, check_pools naming pool B and Cognito's reason, yet pool A is re-enabled and backfilled
    assert run.state == DagRunState.FAILED, states(run)
    got = states(run)
    assert got["configure_pools"] == "success" and got["check_pools"] == "failed", got
    assert got["backfill_reenabled_pools"] == "success", got
    out = return_values(run)
    assert out["configure_pools"]["needs_backfill"] == [pool_a]
    assert out["configure_pools"]["failed"] == [pool_b]
    assert out["pools_to_backfill"]["identity_pool_ids"] == [pool_a]
    assert f"- pool {pool_b}: SetIdentityPoolConfiguration refused for pool {pool_b}: {refusal}" in (
        capsys.readouterr().out
    )
    config = aws("cognito-sync").get_identity_pool_configuration(IdentityPoolId=pool_a)["CognitoStreams"]
    assert config["StreamingStatus"] == "ENABLED"


def test_a_failed_step_before_the_pools_makes_check_pools_name_it(
    airflow_db: None,
    dag: Any,
    setup: dict[str, Any],
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """check_pools runs whatever happened upstream; with no summary it used to fail on a TypeError.
    The refusal of Kinesis (a scaling quota moto does not have) is stubbed on the one call."""
    from airflow.utils.state import DagRunState

    from cognito_streams.configure.configurator import ConfigurationError, StreamsConfigurator

    # GIVEN a stream with another shard count, and Kinesis refusing to reshard it today
    aws("kinesis").create_stream(StreamName=setup["variable"]["stream_name"], ShardCount=1)

    def refuse(self: Any, current: int, wanted: int) -> Any:
        raise ConfigurationError(f"Kinesis refused to reshard stream to {wanted} shard(s): LimitExceededException")

    monkeypatch.setattr(StreamsConfigurator, "_reshard", refuse)
    # WHEN the DAG runs with reshard=true
    run = dag.test(run_conf={"reshard": True})
    # THEN ensure_stream fails with Kinesis' reason and check_pools says the pools were not checked, and why
    assert run.state == DagRunState.FAILED
    got = states(run)
    assert got["ensure_stream"] == "failed" and got["configure_pools"] == "upstream_failed", got
    assert got["check_pools"] == "failed", got
    out = capsys.readouterr().out
    assert "TypeError" not in out
    assert "the pools were not checked: ensure_publish_role and configure_pools did not run or failed" in out
    assert "LimitExceededException" in out


# -- the publish role: created bounded, trust never rewritten (issue 18, items 7 and 8) -------------


def role_of(aws: Any, setup: dict[str, Any]) -> dict[str, Any]:
    return dict(aws("iam").get_role(RoleName=f"publish-{setup['suffix']}")["Role"])


def configurator(variable: dict[str, Any]) -> Any:
    from cognito_streams.configure.configurator import StreamsConfigurator
    from cognito_streams.settings import parse_settings

    return StreamsConfigurator(parse_settings(variable))


CONFUSED_DEPUTY = {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_a_stricter_trust_added_by_hand_is_kept(setup: dict[str, Any], aws: Any) -> None:
    # GIVEN the role the pipeline created, whose trust an administrator then narrowed to this account
    assert configurator(setup["variable"]).ensure_publish_role().action == "created"
    trust = role_of(aws, setup)["AssumeRolePolicyDocument"]
    trust["Statement"][0]["Condition"] = CONFUSED_DEPUTY
    aws("iam").update_assume_role_policy(RoleName=f"publish-{setup['suffix']}", PolicyDocument=json.dumps(trust))
    # WHEN configure runs again (hourly)
    report = configurator(setup["variable"]).ensure_publish_role()
    # THEN the stricter trust is valid: nothing is "repaired" away
    assert (report.action, report.problems) == ("unchanged", [])
    assert role_of(aws, setup)["AssumeRolePolicyDocument"]["Statement"][0]["Condition"] == CONFUSED_DEPUTY


def test_a_trust_that_lets_in_another_principal_is_reported_not_rewritten(
    airflow_db: None, dag: Any, setup: dict[str, Any], aws: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow.utils.state import DagRunState

    # GIVEN the configured pipeline, and a trust that now also lets an AWS role assume the publish role
    assert dag.test().state == DagRunState.SUCCESS
    trust = role_of(aws, setup)["AssumeRolePolicyDocument"]
    intruder = "arn:aws:iam::123456789012:role/airflow-worker"
    trust["Statement"].append({"Effect": "Allow", "Principal": {"AWS": intruder}, "Action": "sts:AssumeRole"})
    aws("iam").update_assume_role_policy(RoleName=f"publish-{setup['suffix']}", PolicyDocument=json.dumps(trust))
    # WHEN the DAG runs
    run = dag.test()
    # THEN the drift is reported and the run is red; the trust is left as found (the worker may not change it)
    assert run.state == DagRunState.FAILED
    assert states(run)["check_pools"] == "failed"
    role = return_values(run)["ensure_publish_role"]
    assert role["action"] == "drifted"
    (drift,) = role["problems"]
    assert f"also lets AWS:{intruder} assume it" in drift
    assert role_of(aws, setup)["AssumeRolePolicyDocument"] == trust
    assert f"has drifted (the pipeline does not repair this): {drift}" in capsys.readouterr().out
    # The pool itself still streams: the role can serve.
    assert return_values(run)["configure_pools"]["counts"] == {"unchanged": 1}


def test_a_wildcard_principal_makes_an_unmanaged_role_invalid(setup: dict[str, Any], aws: Any) -> None:
    # GIVEN an unmanaged role (made by hand) that trusts '*' next to Cognito Sync
    variable = {**setup["variable"], "manage_publish_role": False}
    name = f"publish-{setup['suffix']}"
    anyone = publish_role_trust_policy()
    anyone["Statement"].append({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"})
    aws("iam").create_role(RoleName=name, Path="/streams/", AssumeRolePolicyDocument=json.dumps(anyone))
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "kinesis:PutRecord*", "Resource": "*"}],
    }
    aws("iam").put_role_policy(RoleName=name, PolicyName="put", PolicyDocument=json.dumps(policy))
    # WHEN it is validated THEN it is refused, saying why
    report = configurator(variable).ensure_publish_role()
    assert report.action == "invalid"
    (problem,) = report.problems
    assert "lets any principal ('*') assume it" in problem


def test_a_role_without_the_boundary_is_not_rewritten(setup: dict[str, Any], aws: Any) -> None:
    # GIVEN a publish role made before the boundary existed (by hand here), whose inline policy drifted
    name = f"publish-{setup['suffix']}"
    trust = publish_role_trust_policy()
    aws("iam").create_role(RoleName=name, Path="/streams/", AssumeRolePolicyDocument=json.dumps(trust))
    wide = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kinesis:*", "Resource": "*"}]}
    aws("iam").put_role_policy(RoleName=name, PolicyName="cognito-streams-publish", PolicyDocument=json.dumps(wide))
    # WHEN configure manages it
    report = configurator(setup["variable"]).ensure_publish_role()
    # THEN it reports that an administrator must attach the boundary, and rewrites nothing (IAM would refuse)
    assert report.action == "drifted"
    (drift,) = report.problems
    assert "has no permissions boundary" in drift and "put-role-permissions-boundary" in drift
    current = aws("iam").get_role_policy(RoleName=name, PolicyName="cognito-streams-publish")["PolicyDocument"]
    assert current == wide
    # WHEN the administrator attaches it THEN the next run rewrites the inline policy
    boundary = f"arn:aws:iam::123456789012:policy/{DEFAULT_BOUNDARY_NAME}"
    aws("iam").put_role_permissions_boundary(RoleName=name, PermissionsBoundary=boundary)
    assert configurator(setup["variable"]).ensure_publish_role().action == "updated"


def test_the_role_is_not_created_without_its_boundary_policy(setup: dict[str, Any], aws: Any) -> None:
    # GIVEN settings naming a boundary policy nobody created
    missing = "arn:aws:iam::123456789012:policy/not-created-yet"
    report = configurator({**setup["variable"], "publish_role_boundary_arn": missing}).ensure_publish_role()
    # THEN the role is not created, and the report says what to create
    assert report.action == "invalid"
    (problem,) = report.problems
    assert f"its permissions boundary {missing} does not exist" in problem and "iam_cli" in problem
    with pytest.raises(aws("iam").exceptions.NoSuchEntityException):
        role_of(aws, setup)


def test_the_opt_in_trust_condition_is_written_at_creation_and_checked_after(setup: dict[str, Any], aws: Any) -> None:
    # GIVEN the opt-in confused-deputy condition
    variable = {**setup["variable"], "publish_role_trust_condition": "source_account"}
    # WHEN the pipeline creates the role THEN its trust carries the condition
    assert configurator(variable).ensure_publish_role().action == "created"
    trust = role_of(aws, setup)["AssumeRolePolicyDocument"]
    (stmt,) = trust["Statement"]
    assert stmt["Condition"] == CONFUSED_DEPUTY
    # WHEN someone removes it THEN it is reported as drift, not written back
    del stmt["Condition"]
    name = f"publish-{setup['suffix']}"
    aws("iam").update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
    report = configurator(variable).ensure_publish_role()
    assert report.action == "drifted"
    assert "lacks the condition publish_role_trust_condition asks for" in report.problems[0]
    assert "Condition" not in role_of(aws, setup)["AssumeRolePolicyDocument"]["Statement"][0]
