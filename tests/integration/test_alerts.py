"""Failure alerts to SNS: off by default, on for every task of every DAG when configured, and a failed
task really publishes a message that says what failed and where to look."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from cognito_streams.alerts import AlertConfigError, failure_callbacks
from local.stack import Stack
from tests.support.dag_params import load_dag

REPO = Path(__file__).resolve().parents[2]
TOPIC = "arn:aws:sns:us-east-1:123456789012:cognito-streams-alerts"


class FakeConf:
    """The two options of ``[cognito_streams]`` that alerts read."""

    def __init__(self, **options: str) -> None:
        self.options = options

    def get(self, section: str, key: str, fallback: str = "") -> str:
        assert section == "cognito_streams"
        return self.options.get(key, fallback)


def test_alerts_are_off_unless_a_topic_is_configured() -> None:
    assert failure_callbacks(FakeConf()) == []
    assert failure_callbacks(FakeConf(alert_sns_topic_arn="  ")) == []


def test_a_malformed_topic_fails_the_parse_naming_the_option() -> None:
    with pytest.raises(AlertConfigError) as err:
        failure_callbacks(FakeConf(alert_sns_topic_arn="arn:aws:sqs:us-east-1:123456789012:q"))
    message = str(err.value)
    assert "alert_sns_topic_arn" in message and "AIRFLOW__COGNITO_STREAMS__ALERT_SNS_TOPIC_ARN" in message


def test_a_topic_gives_one_sns_alert_in_the_topics_region() -> None:
    (notifier,) = failure_callbacks(FakeConf(alert_sns_topic_arn=TOPIC, alert_aws_conn_id="alerts"))
    assert notifier.target_arn == TOPIC
    assert notifier.aws_conn_id == "alerts" and notifier.region_name == "us-east-1"


def test_every_task_of_every_dag_alerts_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW__COGNITO_STREAMS__ALERT_SNS_TOPIC_ARN", TOPIC)
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert len(bag.dags) == 6
    for dag_id, dag in bag.dags.items():
        for task in dag.tasks:
            callbacks = task.on_failure_callback or []
            targets = [getattr(c, "target_arn", None) for c in callbacks]
            assert targets == [TOPIC], f"{dag_id}.{task.task_id} has no SNS alert"


@pytest.mark.integration
def test_a_failed_task_publishes_what_failed_and_where_to_look(
    stack: Stack, aws: Any, airflow_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN a topic on the stack with a queue subscribed, alerts configured, and the landing DAG pointed
    at a stream that does not exist WHEN its run fails THEN the queue receives one message naming the DAG,
    the task, the run and the error (which says what to do)."""

    sns, sqs = aws("sns"), aws("sqs")
    topic = sns.create_topic(Name=f"alerts-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"alerts-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "false"})
    monkeypatch.setenv("AIRFLOW__COGNITO_STREAMS__ALERT_SNS_TOPIC_ARN", topic)
    variable = {**json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"]), "stream_name": "alerts-no-such-stream"}
    monkeypatch.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(variable))

    dag = load_dag("cognito_stream_to_s3")  # retries off: the alert of the first and last try, at once
    run = dag.test()
    assert run.state == "failed"

    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=5).get("Messages", [])
    bodies = {json.loads(m["Body"])["Subject"]: json.loads(m["Body"])["Message"] for m in messages}
    # plan_shards failed; check_shards, the run's last task, fails the run because of it.
    assert sorted(bodies) == [
        "cognito-streams: cognito_stream_to_s3.check_shards failed",
        "cognito-streams: cognito_stream_to_s3.plan_shards failed",
    ]
    assert "plan_shards failed: see its task log" in bodies["cognito-streams: cognito_stream_to_s3.check_shards failed"]
    text = bodies["cognito-streams: cognito_stream_to_s3.plan_shards failed"]
    assert "task cognito_stream_to_s3.plan_shards failed" in text
    assert run.run_id in text and "try 1" in text
    assert "alerts-no-such-stream" in text and "cognito_streams_configure" in text
    assert "docs/operations.md" in text
