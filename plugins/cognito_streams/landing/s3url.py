"""Fetch ``S3Url`` payloads at once, concurrently, with timeouts and retries; fetch exactly what was checked.

Presigned URLs expire (Cognito's last about an hour), so they are fetched in the same task that read
the record, before anything else of the batch is written. Each URL is tried up to
``1 + s3url_fetch_retries`` times with exponential backoff and jitter when the failure may pass
(connection errors, timeouts, HTTP 5xx/429/408); an expired, forbidden or missing object is final.

A record must not make the pipeline fetch an address of its choosing (SSRF). So a URL is parsed once,
by :func:`cognito_streams.core.landing.s3url.check_url`, and that one parsed object is what the fetch uses:
its host is resolved here, every address it resolves to is checked
(:func:`~cognito_streams.core.landing.s3url.address_problem`: public only, unless the deployment named the
host), and the connection goes to the checked address
(TLS still verifies the certificate for the host name), with ``Host`` and the request target taken
from the same object. No second parser, no second DNS lookup between the check and the connection.

Bodies are never all in memory: each one is read in chunks into a spool (memory up to
``SPOOL_MEMORY_BYTES``, then a temporary file) and handed over as a file.

Never logged: a presigned URL (only its redacted form, without the query string) or a body.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from cognito_streams.core.landing import s3url

log = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 5.0
#: A body is read this much at a time, and kept in memory up to SPOOL_MEMORY_BYTES (then on disk).
READ_CHUNK_BYTES = 256 * 1024
SPOOL_MEMORY_BYTES = 64 * 1024
#: How long a host's checked addresses are reused (fewer DNS lookups, stable connection pools).
RESOLVE_TTL_SECONDS = 30.0
#: Connection pools kept (one per host and address); the least recently used is closed beyond this.
MAX_POOLS = 64

#: ``(host, port) -> addresses``: the system resolver, or a test's.
Resolver = Callable[[str, int], list[str]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def system_resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (``getaddrinfo``), in the resolver's order, without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def spool() -> IO[bytes]:
    """A file for one body: in memory up to SPOOL_MEMORY_BYTES, then a temporary file."""
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)


@dataclass
class FetchResult:
    """The body of one payload, or why there is none (a reject reason and detail).

    ``body`` is a file positioned at its start (the caller closes it, :meth:`close`)."""

    body: IO[bytes] | None
    reason: str | None = None
    detail: str = ""
    attempts: int = 1
    size: int = 0

    @property
    def ok(self) -> bool:
        """The body was fetched."""
        return self.body is not None

    def read(self) -> bytes:
        """The whole body (and the file is closed)."""
        if self.body is None:
            raise ValueError("no body: the payload was not fetched")
        try:
            self.body.seek(0)
            return self.body.read()
        finally:
            self.close()

    def close(self) -> None:
        """Free the body's memory or temporary file."""
        if self.body is not None:
            self.body.close()


def _transport_problem(err: HTTPError) -> str:
    # urllib3's messages quote the URL (with its signature): describe the failure by its kind only.
    if isinstance(err, ConnectTimeoutError):
        return "connection timed out"
    if isinstance(err, ReadTimeoutError):
        return "read timed out"
    if isinstance(err, NewConnectionError):
        return "connection failed (refused or unreachable)"
    if isinstance(err, SSLError):
        return "TLS error"
    if isinstance(err, ProtocolError):
        return "connection broken"
    return type(err).__name__


class PayloadFetcher:
    """Fetch presigned GET URLs with bounded concurrency; thread-safe connection pools."""

    def __init__(
        self,
        concurrency: int,
        timeout_seconds: float,
        retries: int,
        max_bytes: int,
        allowed_hosts: frozenset[str] = frozenset(),
        sleep: Callable[[float], None] = time.sleep,
        allowed_networks: Sequence[str] = (),
        resolve: Resolver = system_resolve,
    ) -> None:
        self.concurrency = concurrency
        self.retries = retries
        self.max_bytes = max_bytes
        self.allowed_hosts = allowed_hosts
        self.allowed_networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in allowed_networks)
        self.sleep = sleep
        self.resolve = resolve
        self.timeout = urllib3.Timeout(connect=timeout_seconds, read=timeout_seconds)
        self._lock = threading.Lock()
        self._pools: OrderedDict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = OrderedDict()
        self._resolved: dict[tuple[str, int], tuple[float, list[str]]] = {}

    def fetch_all(self, urls: Sequence[str]) -> list[FetchResult]:
        """Fetch every URL (results in the same order)."""
        if not urls:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(urls)), thread_name_prefix="s3url") as pool:
            return list(pool.map(self.fetch, urls))

    def fetch(self, url: str) -> FetchResult:
        """Fetch one URL, retrying what may pass."""
        checked = s3url.check_url(url, self.allowed_hosts)
        if isinstance(checked, str):
            return FetchResult(None, "s3url_forbidden", f"not fetched: {checked}", attempts=0)
        last = FetchResult(None, "s3url_unreachable", "not tried")
        for attempt in range(1, self.retries + 2):
            last = self._try(checked, attempt)
            if last.ok or last.reason not in ("s3url_unreachable",):
                return last
            if attempt <= self.retries:
                delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
                self.sleep(delay * (0.5 + random.random() / 2))  # noqa: S311 - jitter, not security
        log.warning(
            "S3Url payload %s unreachable after %d attempts: %s", checked.redacted(), last.attempts, last.detail
        )
        return last

    def _try(self, checked: s3url.CheckedUrl, attempt: int) -> FetchResult:
        """One GET of ``checked``, at an address checked for it."""
        try:
            addresses = self._addresses(checked)
        except OSError as err:
            return FetchResult(None, "s3url_unreachable", f"name resolution failed ({type(err).__name__})", attempt)
        for address in addresses:
            problem = s3url.address_problem(address, explicit=checked.explicit, allowed_networks=self.allowed_networks)
            if problem is not None:
                return FetchResult(None, "s3url_forbidden", f"not fetched: {problem}", attempt)
        pool = self._pool(checked, addresses[0])
        try:
            response = pool.urlopen(
                "GET",
                checked.target,
                headers={"Host": checked.authority},
                redirect=False,
                retries=False,
                preload_content=False,
                assert_same_host=False,
            )
        except HTTPError as err:
            return FetchResult(None, "s3url_unreachable", f"{_transport_problem(err)} (attempt {attempt})", attempt)
        try:
            return self._read(response, attempt)
        except HTTPError as err:
            return FetchResult(None, "s3url_unreachable", f"{_transport_problem(err)} (attempt {attempt})", attempt)
        finally:
            response.release_conn()

    def _read(self, response: Any, attempt: int) -> FetchResult:
        if response.status != 200:
            verdict = s3url.judge_response(response.status, response.read(4096, decode_content=True))
            reason = verdict.reason or "s3url_forbidden"
            detail = f"{verdict.detail} (attempt {attempt})" if verdict.retryable else verdict.detail
            return FetchResult(None, reason, detail, attempt)
        body = spool()
        size = 0
        try:
            while chunk := response.read(READ_CHUNK_BYTES, decode_content=True):
                size += len(chunk)
                if size > self.max_bytes:
                    body.close()
                    return FetchResult(
                        None, "s3url_bad_body", f"the body is larger than s3url_max_bytes ({self.max_bytes})", attempt
                    )
                body.write(chunk)
        except BaseException:
            body.close()
            raise
        body.seek(0)
        return FetchResult(body, attempts=attempt, size=size)

    def _addresses(self, checked: s3url.CheckedUrl) -> list[str]:
        key = (checked.host, checked.port)
        now = time.monotonic()
        with self._lock:
            cached = self._resolved.get(key)
            if cached is not None and cached[0] > now:
                return cached[1]
        try:
            literal = ipaddress.ip_address(checked.host)
            addresses = [str(literal)]
        except ValueError:
            addresses = self.resolve(checked.host, checked.port)
        if not addresses:
            raise OSError(f"{checked.host} has no address")
        with self._lock:
            self._resolved[key] = (now + RESOLVE_TTL_SECONDS, addresses)
        return addresses

    def _pool(self, checked: s3url.CheckedUrl, address: str) -> urllib3.HTTPConnectionPool:
        """The connection pool to ``address`` for ``checked``'s host: connections go to that address only."""
        key = (checked.scheme, address, checked.port, checked.host)
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            options: dict[str, Any] = {"maxsize": self.concurrency, "timeout": self.timeout, "retries": False}
            if checked.scheme == "https":
                if checked.host != address:
                    # Connect to the checked address; SNI and the certificate check use the host name.
                    options.update(server_hostname=checked.host, assert_hostname=checked.host)
                pool = urllib3.HTTPSConnectionPool(address, checked.port, cert_reqs="CERT_REQUIRED", **options)
            else:
                pool = urllib3.HTTPConnectionPool(address, checked.port, **options)
            self._pools[key] = pool
            while len(self._pools) > MAX_POOLS:
                _, old = self._pools.popitem(last=False)
                old.close()
            return pool
