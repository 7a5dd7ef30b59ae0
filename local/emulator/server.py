"""The HTTP front: Cognito Sync's rest-json routes (botocore model ``cognito-sync`` 2014-06-30)
and the emulator's own control routes under ``/_emulator/``.

A threaded stdlib HTTP/1.1 server with keep-alive: each boto3 connection gets a thread, requests
are parsed and answered outside the service lock, and only the state change itself is serialised.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from local.emulator import validation
from local.emulator.aws import AwsGateway
from local.emulator.errors import ApiError
from local.emulator.publisher import BulkRunner, KinesisSender, PayloadReaper, Publisher, wire
from local.emulator.service import CognitoSync, OutboxEntry
from local.emulator.settings import SettingsError
from local.emulator.stats import Stats
from local.emulator.store import Store

log = logging.getLogger(__name__)

Response = tuple[int, dict[str, str], bytes]
SERVICE_NAME = "cognito-sync-emulator"
REPORT_EVERY_SECONDS = 30.0


class ControlError(Exception):
    """A bad control request (answered 400 with ``{"error": message}``)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return status, {"Content-Type": "application/json", **(headers or {})}, orjson.dumps(body)


class Emulator:
    """Everything behind the HTTP server: store, AWS clients, service, publisher, bulk runner."""

    def __init__(self, state_dir: Path, aws_endpoint: str, region: str) -> None:
        self.region = region
        self.aws_endpoint = aws_endpoint
        self.stats = Stats()
        self.store = Store(state_dir / "state.sqlite")
        self.aws = AwsGateway(aws_endpoint, region)
        self.service = CognitoSync(self.store, self.aws, region)
        self.reaper = PayloadReaper(self.aws, self.store)
        sender = KinesisSender(self.service, self.aws, self.reaper, self.stats)
        self.publisher = Publisher(self.service, sender, self.store, self.stats)
        self.bulk = BulkRunner(self.service, sender, self.stats)
        wire(self.service, self.publisher, self.bulk)
        self.throttle_remaining = 0
        self._throttle_lock = threading.Lock()
        self._bucket = RateLimiter()
        self.started_at = time.time()
        self._stop_report = threading.Event()
        self._reporter = threading.Thread(target=self._report, name="reporter", daemon=True)

    def start(self) -> None:
        """Start the background threads; resume what was in flight when the emulator last stopped."""
        snap = self.store.load()
        self.reaper.start(snap.payloads)
        self.publisher.start([OutboxEntry(*row) for row in snap.outbox])
        for pool_id in self.service.in_progress_bulk_publishes():
            log.info("pool %s: resuming the bulk publish interrupted by the restart", pool_id)
            self.bulk.start(pool_id)
        self._reporter.start()

    def stop(self) -> None:
        """Stop the background threads and close the store (unsent records stay in the outbox)."""
        self._stop_report.set()
        self.bulk.cancel_all()
        self.publisher.stop()
        self.reaper.stop()
        self.store.close()

    def _report(self) -> None:
        last: dict[str, int] = {}
        while not self._stop_report.wait(REPORT_EVERY_SECONDS):
            now = self.stats.snapshot()
            delta = {k: v - last.get(k, 0) for k, v in now.items() if v != last.get(k, 0)}
            if delta:
                log.info("last %.0f s: %s", REPORT_EVERY_SECONDS, ", ".join(f"{k}={v}" for k, v in delta.items()))
            last = now

    # -- dispatch ----------------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, query: str, headers: Any, body: bytes) -> Response:
        """Answer one HTTP request."""
        parts = [unquote(p) for p in raw_path.strip("/").split("/")] if raw_path.strip("/") else []
        if parts and parts[0] == "_emulator":
            try:
                return self._control(method, parts[1:], parse_qs(query), body)
            except ControlError as err:
                return _json(err.status, {"error": str(err)})
            except SettingsError as err:
                return _json(400, {"error": str(err)})
        request_id = str(uuid.UUID(int=random.getrandbits(128), version=4))  # no urandom syscall per request
        operation = "Unknown"
        try:
            operation, call = self._route(method, parts, parse_qs(query), headers, body)
            self._maybe_throttle()
            result = call()
        except ApiError as err:
            self.stats.add(f"errors.{operation}.{err.error_type}")
            return (
                err.status,
                {
                    "Content-Type": "application/json",
                    "x-amzn-RequestId": request_id,
                    "x-amzn-ErrorType": f"{err.error_type}:",
                },
                orjson.dumps({"__type": err.error_type, "message": err.message}),
            )
        self.stats.add(f"calls.{operation}")
        return _json(200, result, {"x-amzn-RequestId": request_id})

    def _maybe_throttle(self) -> None:
        rate, burst = self.service.settings.rate_limit_calls_per_second, self.service.settings.rate_limit_burst
        if not self._bucket.take(rate, burst):
            raise ApiError(
                "TooManyRequestsException", f"Rate exceeded (the emulator's rate_limit_calls_per_second is {rate:g})"
            )
        with self._throttle_lock:
            if self.throttle_remaining <= 0:
                return
            self.throttle_remaining -= 1
        raise ApiError("TooManyRequestsException", "Rate exceeded (injected by POST /_emulator/faults)")

    def _route(
        self, method: str, parts: list[str], query: dict[str, list[str]], headers: Any, body: bytes
    ) -> tuple[str, Callable[[], dict[str, Any]]]:
        """(operation name, the call that answers it) for a Cognito Sync request."""
        svc = self.service

        def q(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        def payload(operation: str) -> dict[str, Any]:
            if not body:
                return {}
            try:
                decoded = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise ApiError("InvalidParameterException", f"{operation}: the request body is not JSON") from None
            return validation.require_object(decoded, operation)

        n = len(parts)
        if n == 0 or parts[0] != "identitypools":
            raise ApiError("UnknownOperationException", f"No Cognito Sync operation at {method} /{'/'.join(parts)}")
        if n == 1 and method == "GET":
            return "ListIdentityPoolUsage", lambda: svc.list_identity_pool_usage(q("maxResults"), q("nextToken"))
        pool = parts[1] if n > 1 else ""
        if n == 2 and method == "GET":
            return "DescribeIdentityPoolUsage", lambda: svc.describe_identity_pool_usage(pool)
        if n == 3:
            leaf = parts[2]
            if leaf == "bulkpublish" and method == "POST":
                return "BulkPublish", lambda: svc.bulk_publish(pool)
            if leaf == "getBulkPublishDetails" and method == "POST":
                return "GetBulkPublishDetails", lambda: svc.get_bulk_publish_details(pool)
            if leaf == "configuration" and method == "GET":
                return "GetIdentityPoolConfiguration", lambda: svc.get_identity_pool_configuration(pool)
            if leaf == "configuration" and method == "POST":
                data = payload("SetIdentityPoolConfiguration")
                return "SetIdentityPoolConfiguration", lambda: svc.set_identity_pool_configuration(pool, data)
            if leaf == "events":
                name = "GetCognitoEvents" if method == "GET" else "SetCognitoEvents"
                return name, _unsupported(name, "Cognito Sync events (Lambda sync triggers) are not emulated")
        if n == 5 and parts[2] == "identity" and parts[4] == "device" and method == "POST":
            return "RegisterDevice", _unsupported("RegisterDevice", "push sync (SNS devices) is not emulated")
        if n >= 4 and parts[2] == "identities":
            identity = parts[3]
            if n == 4 and method == "GET":
                return "DescribeIdentityUsage", lambda: svc.describe_identity_usage(pool, identity)
            if n == 5 and parts[4] == "datasets" and method == "GET":
                return "ListDatasets", lambda: svc.list_datasets(pool, identity, q("maxResults"), q("nextToken"))
            if n >= 6 and parts[4] == "datasets":
                name = parts[5]
                if n == 6 and method == "GET":
                    return "DescribeDataset", lambda: svc.describe_dataset(pool, identity, name)
                if n == 6 and method == "DELETE":
                    return "DeleteDataset", lambda: svc.delete_dataset(pool, identity, name)
                if n == 6 and method == "POST":
                    data = payload("UpdateRecords")
                    context = headers.get("x-amz-Client-Context")
                    return "UpdateRecords", lambda: svc.update_records(pool, identity, name, data, context)
                if n == 7 and parts[6] == "records" and method == "GET":
                    return "ListRecords", lambda: svc.list_records(
                        pool,
                        identity,
                        name,
                        last_sync_count=q("lastSyncCount"),
                        max_results=q("maxResults"),
                        next_token=q("nextToken"),
                        session_token=q("syncSessionToken"),
                    )
                if n == 8 and parts[6] == "subscriptions":
                    op = "SubscribeToDataset" if method == "POST" else "UnsubscribeFromDataset"
                    return op, _unsupported(op, "push sync (SNS subscriptions) is not emulated")
        raise ApiError("UnknownOperationException", f"No Cognito Sync operation at {method} /{'/'.join(parts)}")

    # -- control -----------------------------------------------------------------------------------
    def _control(self, method: str, parts: list[str], query: dict[str, list[str]], body: bytes) -> Response:
        route = "/".join(parts[:1])
        data: dict[str, Any] = {}
        if body:
            try:
                decoded = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise ControlError("the request body is not JSON") from None
            if not isinstance(decoded, dict):
                raise ControlError("the request body must be a JSON object")
            data = decoded
        svc = self.service
        if route == "health" and method == "GET":
            return _json(
                200,
                {
                    "status": "ok",
                    "service": SERVICE_NAME,
                    "region": self.region,
                    "aws_endpoint": self.aws_endpoint,
                    "uptime_seconds": round(time.time() - self.started_at, 1),
                    "stream_records_pending": self.publisher.pending(),
                },
            )
        if route == "clock":
            if method == "POST":
                self._move_clock(data)
            elif method != "GET":
                raise ControlError(f"{method} /_emulator/clock: use GET or POST", 405)
            now = svc.clock.now_ms()
            return _json(200, {"now_ms": now, "offset_ms": svc.clock.offset_ms, "real_ms": now - svc.clock.offset_ms})
        if route == "settings":
            if method == "POST":
                svc.set_settings(data)
                log.info("settings changed: %s", ", ".join(f"{k}={v!r}" for k, v in data.items()))
            return _json(200, svc.settings.model_dump())
        if route == "faults":
            if method == "POST":
                self._set_faults(data)
            fail = self.bulk.fail_next
            return _json(
                200,
                {
                    "fail_next_bulk_publish": {"message": fail[0], "after_datasets": fail[1]} if fail else None,
                    "throttle_next_requests": self.throttle_remaining,
                    "stale_bulk_publish_details": svc.stale_details_next,
                },
            )
        if route == "reset" and method == "POST":
            self.bulk.cancel_all()
            with svc.lock:  # no change may slip in between forgetting the queue and the state
                self.publisher.clear()
                svc.reset()
            self.publisher.flush(timeout=30)  # a batch already on its way finishes first
            self.stats.reset()
            with self._throttle_lock:
                self.throttle_remaining = 0
            log.info("state reset")
            return _json(200, {"reset": True})
        if route == "flush" and method == "POST":
            timeout = float(data.get("timeout_seconds", 30))
            if self.publisher.flush(timeout):
                return _json(200, {"flushed": True, "pending": 0})
            pending = self.publisher.pending()
            raise ControlError(
                f"{pending} stream records still not published after {timeout:.0f} s; see the emulator log", 504
            )
        if route == "stats" and method == "GET":
            return _json(200, {"counters": self.stats.snapshot(), "stream_records_pending": self.publisher.pending()})
        if route == "pools" and method == "GET" and len(parts) == 2:
            return _json(200, svc.pool_state(parts[1]))
        if route == "export" and method == "GET":
            pools = query.get("identity_pool_id")
            pool = pools[-1] if pools else None
            return _json(200, {"datasets": list(svc.export(pool)), "deletions": svc.export_deletions(pool)})
        raise ControlError(f"no control endpoint {method} /_emulator/{'/'.join(parts)} (see docs/emulator.md)", 404)

    def _move_clock(self, data: dict[str, Any]) -> None:
        clock = self.service.clock
        given = [k for k in ("offset_ms", "offset_seconds", "advance_seconds", "now_ms") if k in data]
        if len(given) != 1 or set(data) - set(given):
            raise ControlError(
                "POST /_emulator/clock takes exactly one of offset_ms, offset_seconds, advance_seconds, now_ms"
            )
        key = given[0]
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ControlError(f"{key} must be a number, got {value!r}")
        real = clock.now_ms() - clock.offset_ms
        offsets = {
            "offset_ms": lambda: int(value),
            "offset_seconds": lambda: round(value * 1000),
            "advance_seconds": lambda: clock.offset_ms + round(value * 1000),
            "now_ms": lambda: int(value) - real,
        }
        self.service.set_clock(offsets[key]())
        log.info("clock moved: offset now %d ms", self.service.clock.offset_ms)

    def _set_faults(self, data: dict[str, Any]) -> None:
        known = ("fail_next_bulk_publish", "throttle_next_requests", "stale_bulk_publish_details")
        unknown = set(data) - set(known)
        if unknown:
            raise ControlError(f"unknown faults {sorted(unknown)}; known: {', '.join(known)}")
        if "fail_next_bulk_publish" in data:
            fail = data["fail_next_bulk_publish"]
            if fail is None:
                self.bulk.fail_next = None
            else:
                if isinstance(fail, str):
                    fail = {"message": fail}
                if not isinstance(fail, dict) or not isinstance(fail.get("message"), str) or not fail["message"]:
                    raise ControlError('fail_next_bulk_publish needs a message: {"message": ..., "after_datasets": n}')
                after = fail.get("after_datasets", 0)
                if isinstance(after, bool) or not isinstance(after, int) or after < 0:
                    raise ControlError(
                        f"fail_next_bulk_publish.after_datasets must be a whole number >= 0, got {after!r}"
                    )
                self.bulk.fail_next = (fail["message"], after)
        if "throttle_next_requests" in data:
            count = data["throttle_next_requests"]
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ControlError(f"throttle_next_requests must be a whole number >= 0, got {count!r}")
            with self._throttle_lock:
                self.throttle_remaining = count
        if "stale_bulk_publish_details" in data:
            count = data["stale_bulk_publish_details"]
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ControlError(f"stale_bulk_publish_details must be a whole number >= 0, got {count!r}")
            self.service.clear_stale_details()
            with self.service.lock:
                self.service.stale_details_next = count


class RateLimiter:
    """A token bucket: ``rate`` calls per second, at most ``burst`` at once; a rate of 0 lets every call
    through."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens = 0.0
        self._at = time.monotonic()
        self._shape: tuple[float, int] = (0.0, 0)

    def take(self, rate: float, burst: int) -> bool:
        """Whether one call may go now (and count it)."""
        if rate <= 0:
            return True
        with self._lock:
            now = time.monotonic()
            if self._shape != (rate, burst):
                # A new limit starts with a full bucket.
                self._shape, self._tokens = (rate, burst), float(burst)
            else:
                self._tokens = min(float(burst), self._tokens + (now - self._at) * rate)
            self._at = now
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True


def _unsupported(operation: str, why: str) -> Callable[[], dict[str, Any]]:
    def answer() -> dict[str, Any]:
        raise ApiError("NotImplementedException", f"{operation}: {why} by the local emulator (see docs/emulator.md)")

    return answer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "CognitoSyncEmulator/1.0"
    # Small responses on keep-alive connections: with Nagle's algorithm on, the client's delayed ACK
    # could hold a response back ~40 ms.
    disable_nagle_algorithm = True
    emulator: Emulator
    access_log = False

    def _serve(self) -> None:
        raw_path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, payload = self.emulator.handle(self.command, raw_path, query, self.headers, body)
        self.log_request(status, len(payload))
        # One write per response: status line, headers and body leave in a single send.
        lines = [
            f"{self.protocol_version} {status} {self.responses.get(status, ('',))[0]}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
            *(f"{name}: {value}" for name, value in headers.items()),
            f"Content-Length: {len(payload)}",
        ]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + payload)

    do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _serve  # noqa: N815 - names BaseHTTPRequestHandler calls

    _date: tuple[int, str] = (0, "")

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header on the emulator's clock (moved by ``POST /_emulator/clock``, like the dates
        in its answers: a client may compare the two), formatted once per second (email.utils is slow
        per request)."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = self.emulator.service.clock.now_ms() // 1000
        if _Handler._date[0] != now:
            _Handler._date = (now, super().date_time_string(now))
        return _Handler._date[1]

    def log_message(self, format: str, *args: Any) -> None:
        if self.access_log:
            log.info("%s %s", self.address_string(), format % args)


class EmulatorServer(ThreadingHTTPServer):
    """One thread per connection; keep-alive connections from boto3's pool are reused."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def make_server(emulator: Emulator, host: str, port: int, *, access_log: bool = False) -> EmulatorServer:
    """An HTTP server answering with ``emulator`` (not started)."""
    handler = type("Handler", (_Handler,), {"emulator": emulator, "access_log": access_log})
    return EmulatorServer((host, port), handler)
