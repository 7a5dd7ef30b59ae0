"""Live health on a real pipeline (moto Kinesis and S3, the Cognito Sync emulator, PostgreSQL): the numbers
match the warehouse; stopping the loader (then the landing) longer than ``stall_alert_seconds`` turns the
health check red and sends one SNS alert per stall; a reconciliation during the stall judges nothing
instead of crying wolf, and judges everything, exactly, once the pipeline has caught up."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cognito_streams.monitoring.state import pipeline_state
from cognito_streams.report.gather import gather
from local.stack import Stack
from tests.support.dag_params import load_dag
from tests.support.faults import scenario
from tests.support.warehouse import connect

pytestmark = pytest.mark.integration

STALL_SECONDS = 3


def _sqs_queue(aws: Any) -> tuple[str, str]:
    sns, sqs = aws("sns"), aws("sqs")
    topic = sns.create_topic(Name=f"stall-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"stall-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, queue_url


def _messages(aws: Any, queue_url: str) -> list[dict[str, str]]:
    sqs = aws("sqs")
    out = []
    for m in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", []):
        out.append(json.loads(m["Body"]))
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return out


def _wait_past_the_limit() -> None:
    # Not a timing assertion: the stall condition is "waited longer than the limit", so the test waits.
    time.sleep(STALL_SECONDS + 1.5)


def test_a_stall_is_alerted_red_and_reconciliation_does_not_cry_wolf(
    stack: Stack, aws: Any, emulator: str, airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from cognito_streams.hooks.kinesis_reader import KinesisReaderHook
    from cognito_streams.reconcile.reconciler import STALLED_VERDICT, Reconciler
    from cognito_streams.warehouse.postgres import PostgresWarehouse

    topic, queue_url = _sqs_queue(aws)
    monkeypatch.setenv("AIRFLOW__COGNITO_STREAMS__ALERT_SNS_TOPIC_ARN", topic)
    health_dag = load_dag("cognito_pipeline_health")  # parsed with the alert configured

    with scenario("stall", "loader and landing stopped", stack, aws, tmp_path, stall_alert_seconds=STALL_SECONDS) as sc:
        s3 = S3Hook(aws_conn_id="aws_default").get_conn()
        kinesis = KinesisReaderHook(aws_conn_id="aws_default")

        def reconcile(wh: Any, *, probe: bool) -> Any:
            def pipeline() -> tuple[bool, datetime | None]:
                state = pipeline_state(sc.settings, wh, s3, kinesis)
                return state.assessment.stalled, state.assessment.watermark

            return Reconciler(sc.settings, wh).run(
                f"stall-{uuid.uuid4().hex[:6]}",
                pool_ids=[sc.pool_id],
                sample_size=None,
                settle_seconds=0,
                max_mismatches=0,
                now=datetime.now(UTC) + timedelta(seconds=1),
                pipeline=pipeline if probe else None,
            )

        # GIVEN a pipeline that has caught up
        sc.activity.run(25)
        sc.flush()
        sc.catch_up()
        with PostgresWarehouse(connect(), sc.settings.warehouse_schema) as wh:
            doc = gather(sc.settings, wh, s3, kinesis).as_dict()
            assert doc["stalled"] is False and doc["state"] == "ok", doc["problems"]
            assert doc["backlog_batches"] == 0 and set(doc["lag_seconds"].values()) == {0}
            # the numbers are the warehouse's
            with wh.transaction() as cur:
                cur.execute(f"select max(loaded_at) from {wh.schema}.loaded_batches")
                (last_loaded,) = cur.fetchone()
            assert doc["last_load_at"] == last_loaded.replace(tzinfo=UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            )
            assert doc["freshness_p95_seconds"] is not None and doc["freshness_p95_seconds"] >= 0
            assert doc["watermark"] is not None and doc["charts"]["freshness"][1]["points"]
        assert health_dag.test().state == "success"

        # WHEN the apps go on (deleting some datasets), the landing lands it, and the loader is stopped
        sc.activity.run(25, delete_share=0.3)
        sc.flush()
        sc.land()
        _wait_past_the_limit()

        # THEN the health check is red and the alert says what is stalled and what to do
        run = health_dag.test()
        assert run.state == "failed"
        (alert,) = _messages(aws, queue_url)
        assert alert["Subject"] == "cognito-streams: cognito_pipeline_health.check failed"
        assert "STALLED" in alert["Message"] and "Loading stalled" in alert["Message"]
        assert "cognito_s3_to_redshift" in alert["Message"]
        # ... the JSON says so too
        with PostgresWarehouse(connect(), sc.settings.warehouse_schema) as wh:
            doc = gather(sc.settings, wh, s3, kinesis).as_dict()
            assert doc["stalled"] is True and doc["state"] == "stalled"
            assert [p["code"] for p in doc["problems"]] == ["loading_stalled"] and doc["backlog_batches"] > 0
            # AND a reconciliation during the stall judges nothing, so raises no mismatch ...
            during = reconcile(wh, probe=True)
            assert during.verdict == STALLED_VERDICT and during.mismatches == 0 and during.passed
            # ... where the same reconciliation without the pipeline's state reports the unloaded changes
            assert reconcile(wh, probe=False).mismatches > 0
        # a second check during the same stall is red again, without a second alert
        assert health_dag.test().state == "failed"
        assert _messages(aws, queue_url) == []

        # WHEN the loader runs again THEN all is well and the reconciliation judges everything, exactly
        sc.load()
        assert health_dag.test().state == "success"
        with PostgresWarehouse(connect(), sc.settings.warehouse_schema) as wh:
            after = reconcile(wh, probe=True)
        assert after.verdict == "judged" and after.mismatches == 0 and after.keys_checked > 0, after.as_dict()

        # WHEN the landing stops while the apps go on THEN the landing stall is seen, per shard
        sc.activity.run(5)
        sc.flush()
        _wait_past_the_limit()
        assert health_dag.test().state == "failed"
        (alert,) = _messages(aws, queue_url)
        assert "Landing stalled on shard shardId-000000000000" in alert["Message"]
