"""A record must not make the landing task connect to an address of its choosing (issue 18, item 6).

The check parsed URLs with ``urlsplit`` and the fetch with urllib3, and they disagreed: with a backslash
before ``@``, ``urlsplit`` sees the allowed host after the ``@`` and urllib3 connects to the one before
it. These tests reproduce that on loopback, with a TCP listener that counts the connections it gets,
then check the rest of the rule: no user info, no port but the default one unless allowed, no private,
loopback or link-local address unless the host was named, and the connection goes to the address that
was checked (no second DNS lookup that could answer differently).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3.util.connection

from cognito_streams.landing.s3url import PayloadFetcher
from tests.integration.test_landing import make_landing
from tests.integration.test_landing_s3url import s3url_record
from tests.landing_records import SAMPLES, put_records
from tests.support.http import QuietHandler, serving

pytestmark = pytest.mark.integration


class Listener:
    """A TCP listener on loopback that accepts and counts connections (and answers nothing)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def evil() -> Iterator[Listener]:
    listener = Listener()
    try:
        yield listener
    finally:
        listener.close()


class Payload(QuietHandler):
    """Answers every GET with the sample S3Url body, and remembers the Host header it got."""

    hosts: list[str] = []  # noqa: RUF012 - shared by the handler instances on purpose

    def do_GET(self) -> None:  # noqa: N802 - the name BaseHTTPRequestHandler calls
        Payload.hosts.append(self.headers.get("Host", ""))
        self.send(200, SAMPLES["s3url-body"])


@pytest.fixture
def payload_server() -> Iterator[int]:
    with serving(Payload) as port:
        yield port


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Names the test resolves itself (``answers``), every lookup made (``lookups``), and every address
    urllib3 was asked to connect to (``connects``); other names go to the system resolver."""
    state: dict[str, Any] = {"answers": {}, "lookups": [], "connects": []}
    real_getaddrinfo = socket.getaddrinfo
    real_connect = urllib3.util.connection.create_connection

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        state["lookups"].append(host)
        answer = state["answers"].get(host)
        if answer is None:
            return real_getaddrinfo(host, port, *args, **kwargs)
        address = answer() if callable(answer) else answer
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
        state["connects"].append(address)
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
    return state


def fetcher(**kwargs: Any) -> PayloadFetcher:
    options: dict[str, Any] = {"concurrency": 2, "timeout_seconds": 2, "retries": 0, "max_bytes": 1 << 20}
    options.update(kwargs)
    return PayloadFetcher(**options)


def test_a_backslash_before_the_at_sign_does_not_reach_another_host(stack: Any, aws: Any, evil: Listener) -> None:
    # GIVEN records whose URLs name an allowed host after "\@" and a loopback listener before it
    landing = make_landing(aws, s3url_allowed_hosts=["payloads.example"], s3url_fetch_retries=0)
    urls = [
        f"http://127.0.0.1:{evil.port}\\@payloads.example/bucket/key?X-Amz-Signature=s1",
        f"https://127.0.0.1:{evil.port}\\@bucket.s3.amazonaws.com/key?X-Amz-Signature=s2",
    ]
    put = put_records(landing.kinesis, landing.stream, [s3url_record(url, str(i)) for i, url in enumerate(urls)])
    # WHEN landed
    (outcome,) = landing.run()
    # THEN nothing connected to the listener, and both records are quarantined as forbidden, with the reason
    assert evil.connections == 0
    assert outcome.records_rejected == 2
    rejects = {r["sequence_number"]: r for r in landing.rejects().to_pylist()}
    for p in put:
        assert rejects[p["SequenceNumber"]]["reason"] == "s3url_forbidden"
        assert "backslash" in rejects[p["SequenceNumber"]]["detail"]


def test_user_info_and_other_ports_are_refused_before_any_connection(dns: dict[str, Any], evil: Listener) -> None:
    dns["answers"]["bucket.s3.amazonaws.com"] = "127.0.0.1"
    results = fetcher(allowed_hosts=frozenset({"payloads.example"})).fetch_all(
        [
            # an S3 host on a port of the record's choosing (the listener's)
            f"https://bucket.s3.amazonaws.com:{evil.port}/key?X-Amz-Signature=s",
            # user info: parsers disagree on where the host starts
            f"https://x@bucket.s3.amazonaws.com:{evil.port}/key",
            f"http://payloads.example@127.0.0.1:{evil.port}/key",
            # a host named without a port is allowed on the default port only
            f"http://payloads.example:{evil.port}/key",
        ]
    )
    assert [r.reason for r in results] == ["s3url_forbidden"] * 4
    assert evil.connections == 0 and dns["connects"] == []
    assert "port" in results[0].detail and "user info" in results[1].detail


def test_a_host_resolving_to_a_private_address_is_refused_unless_named(
    dns: dict[str, Any], payload_server: int
) -> None:
    # GIVEN S3-looking names whose DNS answers are loopback, link-local (instance metadata) and private
    dns["answers"].update(
        {
            "a.s3.amazonaws.com": "127.0.0.1",
            "b.s3.amazonaws.com": "169.254.169.254",
            "c.s3.amazonaws.com": "10.1.2.3",
        }
    )
    results = fetcher().fetch_all([f"https://{h}.s3.amazonaws.com/key?X-Amz-Signature=s" for h in "abc"])
    # THEN each is refused as forbidden, naming the kind of address, and nothing is connected to
    assert [r.reason for r in results] == ["s3url_forbidden"] * 3
    assert ["loopback" in results[0].detail, "link-local" in results[1].detail, "private" in results[2].detail] == [
        True,
        True,
        True,
    ]
    assert dns["connects"] == []
    # AND a network the deployment allows (an S3 interface endpoint) is let through to the connection
    allowed = fetcher(allowed_networks=["10.0.0.0/8"], timeout_seconds=0.2)
    (result,) = allowed.fetch_all(["https://c.s3.amazonaws.com/key?X-Amz-Signature=s"])
    assert result.reason == "s3url_unreachable" and dns["connects"] == [("10.1.2.3", 443)]
    # AND a host the deployment named (its own S3 endpoint, a local S3) may be on loopback
    dns["answers"]["payloads.example"] = "127.0.0.1"
    named = fetcher(allowed_hosts=frozenset({f"payloads.example:{payload_server}"}))
    (ok,) = named.fetch_all([f"http://payloads.example:{payload_server}/bucket/key?X-Amz-Signature=s"])
    assert ok.ok and ok.read() == SAMPLES["s3url-body"]


def test_the_connection_goes_to_the_address_that_was_checked(dns: dict[str, Any], payload_server: int) -> None:
    # GIVEN a named host whose DNS answer changes after the first lookup (DNS rebinding)
    answers = iter(["127.0.0.1"] + ["203.0.113.9"] * 10)
    dns["answers"]["payloads.example"] = lambda: next(answers)
    Payload.hosts.clear()
    url = f"http://payloads.example:{payload_server}/bucket/key?X-Amz-Signature=s"
    # WHEN it is fetched
    (result,) = fetcher(allowed_hosts=frozenset({f"payloads.example:{payload_server}"})).fetch_all([url])
    # THEN it was resolved once, and the connection went to that checked address, not to the name again
    assert result.ok
    assert dns["lookups"].count("payloads.example") == 1
    assert dns["connects"] == [("127.0.0.1", payload_server)]
    # AND the request still names the host (a presigned URL's signature covers it)
    assert Payload.hosts == [f"payloads.example:{payload_server}"]
