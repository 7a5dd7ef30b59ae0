"""An error raised while cleaning up never hides the error that caused the clean-up (issue 18, item 13).

The task's message and the SNS alert (``alerts.MESSAGE`` renders ``str(exception)``) show the exception
that leaves the task: it must be the real cause, with the clean-up's failure logged and added as a note.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from cognito_streams.core.landing.checkpoints import Checkpoint
from cognito_streams.landing import runner
from cognito_streams.landing_zone.checkpoints import CheckpointStore
from cognito_streams.warehouse.models import LoadCheckError
from tests.integration.test_landing import make_landing
from tests.landing_records import put_records, seed_records
from tests.support.warehouse import connect, postgres_warehouse, query

pytestmark = pytest.mark.integration


def logged(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    """What was logged, whether Airflow's logging (stdout) or the standard one (caplog) took it."""
    return caplog.text + capsys.readouterr().out


def test_a_failed_lease_release_does_not_replace_may_be_lost(
    stack: Any,
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a shard whose checkpoint is older than the retention (the task will fail with MAY BE LOST)
    landing = make_landing(aws)
    put_records(landing.kinesis, landing.stream, seed_records(5, seed=3))
    (shard_id,) = landing.shard_ids()
    old = datetime.now(UTC) - timedelta(days=2)
    stale = Checkpoint.new(landing.stream, shard_id, old).model_copy(
        update={"sequence_number": "0", "last_arrived_at": old, "verified_at": old}
    )
    landing.ctx.store.write(landing.ctx.store.read(shard_id), stale)

    # AND S3 unreachable by the time the task gives its lease back
    def unreachable(self: CheckpointStore, current: Any, owner: str) -> Any:
        raise EndpointConnectionError(endpoint_url="http://s3.example")

    monkeypatch.setattr(CheckpointStore, "release", unreachable)
    # WHEN the shard is landed
    with pytest.raises(runner.RecordsMayBeLostError) as failure:
        landing.run()
    # THEN the task fails with MAY BE LOST (what the task's message and the alert show), not with S3's error
    assert "MAY BE LOST" in str(failure.value)
    assert "Could not connect" not in str(failure.value)
    # AND the release's failure is logged and attached to the error, not lost either
    assert any("could not give the lease back" in note for note in failure.value.__notes__)
    assert "could not give the lease back" in logged(caplog, capsys)


def test_a_failed_rollback_on_a_dropped_connection_does_not_replace_the_error(
    stack: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with postgres_warehouse() as wh:
        (pid,) = query(wh, "select pg_backend_pid()")[0]

        # GIVEN a transaction whose connection the server drops (a restart, a network cut, an admin) ...
        def load_after_the_connection_dropped() -> None:
            with wh.transaction() as cur:
                cur.execute("select 1")
                with connect() as admin:
                    admin.execute("select pg_terminate_backend(%s)", (pid,))
                # ... and a real error in the block, which rollback() then fails to follow (connection gone)
                raise LoadCheckError("staged rows do not match the manifests' record_count")

        with pytest.raises(LoadCheckError) as failure:
            load_after_the_connection_dropped()
        # THEN the block's error is the one raised (the task's message, the alert), the rollback's is noted
        assert str(failure.value) == "staged rows do not match the manifests' record_count"
        assert any("the rollback after this error failed too" in note for note in failure.value.__notes__)
        assert "rollback after LoadCheckError failed" in logged(caplog, capsys)
        wh._conn = connect()  # a fresh connection for postgres_warehouse's clean-up
