"""Retries of ``cognito_snapshot``'s tasks are for the network only: a throttled or failing service, a
connection that broke, retry (the retry resumes from the cursor); anything else fails at once."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from cognito_streams.landing_zone.snapshots import SnapshotConflictError
from cognito_streams.snapshot.tasks import is_transient, network_retries_only


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(
    "err",
    [
        client_error("TooManyRequestsException", 429),
        client_error("InternalErrorException", 500),
        client_error("ServiceUnavailable", 503),
        EndpointConnectionError(endpoint_url="http://x"),
        ReadTimeoutError(endpoint_url="http://x"),
        ConnectionResetError(),
        type("OperationalError", (Exception,), {})("server closed the connection"),
    ],
)
def test_network_errors_and_throttling_are_retried(err: Exception) -> None:
    assert is_transient(err)
    with pytest.raises(type(err)), network_retries_only():
        raise err


@pytest.mark.parametrize(
    "err",
    [
        client_error("InvalidParameterException", 400),
        client_error("NotAuthorizedException", 403),
        ValueError("param identities is 'some'"),
        SnapshotConflictError("moved by another task"),
        KeyError("chunks"),
    ],
)
def test_anything_else_fails_at_once_with_its_message(err: Exception) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    assert not is_transient(err)
    with pytest.raises(AirflowFailException, match=type(err).__name__), network_retries_only():
        raise err


def test_airflows_own_exceptions_pass_through() -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(AirflowSkipException), network_retries_only():
        raise AirflowSkipException("no export asked for")


def test_a_walk_task_loads_what_it_landed_every_so_often_and_at_its_end() -> None:
    from types import SimpleNamespace

    from cognito_streams.snapshot.walker import BatchLoader

    loads: list[list[str]] = []

    def load(urls: list[str]) -> object:
        loads.append(urls)
        return SimpleNamespace(batches=len(urls))

    # GIVEN a load at most every hour: batches wait for the flush at the task's end
    hourly = BatchLoader(load, every=3600)
    hourly.landed("a")
    hourly.landed("b")
    assert loads == []
    hourly.flush()
    assert loads == [["a", "b"]] and hourly.loaded == 2
    # GIVEN no wait: each batch is loaded as it lands, and a flush with nothing pending loads nothing
    eager = BatchLoader(load, every=0)
    eager.landed("c")
    eager.flush()
    assert loads[1:] == [["c"]] and eager.loaded == 1
