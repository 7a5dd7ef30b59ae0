"""Fetch ``S3Url`` payloads at once, concurrently, with timeouts and retries.

Presigned URLs expire (Cognito's last about an hour), so they are fetched in the same task that read
the record, before anything else of the batch is written. Each URL is tried up to
``1 + s3url_fetch_retries`` times with exponential backoff and jitter when the failure may pass
(connection errors, timeouts, HTTP 5xx/429/408); an expired, forbidden or missing object is final.

Never logged: a presigned URL (only its redacted form, without the query string) or a body.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from cognito_streams.core import s3url

log = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 5.0


@dataclass(frozen=True)
class FetchResult:
    """The body of one payload, or why there is none (a reject reason and detail)."""

    body: bytes | None
    reason: str | None = None
    detail: str = ""
    attempts: int = 1

    @property
    def ok(self) -> bool:
        """The body was fetched."""
        return self.body is not None


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
    ) -> None:
        self.concurrency = concurrency
        self.retries = retries
        self.max_bytes = max_bytes
        self.allowed_hosts = allowed_hosts
        self.sleep = sleep
        self.pool = urllib3.PoolManager(
            num_pools=max(4, concurrency),
            maxsize=concurrency,
            timeout=urllib3.Timeout(connect=timeout_seconds, read=timeout_seconds),
            retries=False,
        )

    def fetch_all(self, urls: Sequence[str]) -> list[FetchResult]:
        """Fetch every URL (results in the same order)."""
        if not urls:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(urls)), thread_name_prefix="s3url") as pool:
            return list(pool.map(self.fetch, urls))

    def fetch(self, url: str) -> FetchResult:
        """Fetch one URL, retrying what may pass."""
        problem = s3url.url_problem(url, self.allowed_hosts)
        if problem is not None:
            return FetchResult(None, "s3url_forbidden", f"not fetched: {problem}", attempts=0)
        last = FetchResult(None, "s3url_unreachable", "not tried")
        for attempt in range(1, self.retries + 2):
            last = self._try(url, attempt)
            if last.ok or last.reason not in ("s3url_unreachable",):
                return last
            if attempt <= self.retries:
                delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
                self.sleep(delay * (0.5 + random.random() / 2))  # noqa: S311 - jitter, not security
        log.warning(
            "S3Url payload %s unreachable after %d attempts: %s", s3url.redacted(url), last.attempts, last.detail
        )
        return last

    def _try(self, url: str, attempt: int) -> FetchResult:
        try:
            response = self.pool.request("GET", url, preload_content=False, redirect=False)
        except HTTPError as err:
            return FetchResult(None, "s3url_unreachable", f"{_transport_problem(err)} (attempt {attempt})", attempt)
        try:
            body = response.read(self.max_bytes + 1, decode_content=True)
        except HTTPError as err:
            return FetchResult(None, "s3url_unreachable", f"{_transport_problem(err)} (attempt {attempt})", attempt)
        finally:
            response.release_conn()
        verdict = s3url.judge_response(response.status, body)
        if verdict.reason is not None:
            detail = f"{verdict.detail} (attempt {attempt})" if verdict.retryable else verdict.detail
            return FetchResult(None, verdict.reason, detail, attempt)
        if len(body) > self.max_bytes:
            return FetchResult(
                None, "s3url_bad_body", f"the body is larger than s3url_max_bytes ({self.max_bytes})", attempt
            )
        return FetchResult(body, attempts=attempt)
