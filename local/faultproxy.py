"""A fault-injecting HTTP proxy between the pipeline and a local AWS endpoint (moto, the emulator).

It forwards every request unchanged until told to fail some of them, the way AWS fails when it has
a bad day: throttling (``ProvisionedThroughputExceededException``, ``ThrottlingException``, S3
``SlowDown``), server errors (500/503), connections reset before an answer, and refused connections
(the listening socket closed for a while). The pipeline reaches it like any endpoint
(``AWS_ENDPOINT_URL=http://127.0.0.1:<port>``); the tests switch its fault rules through a separate
control port, so closing the proxy's listener never cuts the test off from it.

    python -m local.faultproxy --upstream http://127.0.0.1:45660 --port 45670 --control-port 45671

    from local.faultproxy import FaultProxyControl
    proxy = FaultProxyControl("http://127.0.0.1:45671")
    proxy.set_rules([{"fault": "throttle", "service": "kinesis", "operation": "GetRecords", "count": 20}])
    proxy.refuse(seconds=3)        # connections refused for 3 s
    proxy.stats()                  # forwarded and injected counts, by operation and fault

A rule fails the requests it matches (``service`` from the SigV4 credential scope, ``operation`` from
``X-Amz-Target`` or the S3 method and path, ``path_contains``), after letting the first ``after``
through, for its next ``count`` matches or for ``seconds``, each with ``probability`` (seeded: the
same seed fails the same requests).
Standard library only; nothing here is logged but methods, paths and counts (never bodies or
headers: they carry signatures).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import random
import signal
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("local.faultproxy")

FAULTS = ("throttle", "error", "reset", "delay")
#: Headers that belong to one HTTP hop, not to the request (RFC 9110 section 7.6.1), plus Expect:
#: the proxy answers ``100-continue`` itself and sends the upstream the whole body at once.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "expect"}
)
#: What a throttled call of each JSON-protocol service answers (the error code its SDK retries).
THROTTLE_CODES = {"kinesis": "ProvisionedThroughputExceededException"}


class RuleError(ValueError):
    """A fault rule is malformed; the message names the field."""


@dataclass
class Rule:
    """One kind of failure for the requests it matches."""

    fault: str
    service: str = "*"
    operation: str = "*"
    path_contains: str = ""
    count: int | None = None
    seconds: float | None = None
    after: int = 0
    probability: float = 1.0
    status: int = 500
    delay_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)
    injected: int = 0
    passed: int = 0

    @classmethod
    def parse(cls, raw: Any) -> Rule:
        """From the control API's JSON; every field checked, the bad one named."""
        if not isinstance(raw, dict):
            raise RuleError(f"a rule must be a JSON object, got {type(raw).__name__}")
        known = {"fault", "service", "operation", "path_contains", "count", "seconds", "after", "probability", "status"}
        known.add("delay_seconds")
        unknown = sorted(set(raw) - known)
        if unknown:
            raise RuleError(f"unknown rule field(s) {unknown}; known: {sorted(known)}")
        fault = raw.get("fault")
        if fault not in FAULTS:
            raise RuleError(f"rule.fault is {fault!r}; use one of {FAULTS}")
        count, seconds = raw.get("count"), raw.get("seconds")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
            raise RuleError(f"rule.count is {count!r}; give a whole number >= 0, or null for no limit")
        if seconds is not None and (not isinstance(seconds, int | float) or seconds <= 0):
            raise RuleError(f"rule.seconds is {seconds!r}; give a number of seconds > 0, or null")
        after = raw.get("after", 0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise RuleError(f"rule.after is {after!r}; give how many matching requests pass first (>= 0)")
        probability = raw.get("probability", 1.0)
        if not isinstance(probability, int | float) or not 0 <= probability <= 1:
            raise RuleError(f"rule.probability is {probability!r}; give a number from 0 to 1")
        status = raw.get("status", 500)
        if not isinstance(status, int) or not 500 <= status <= 599:
            raise RuleError(f"rule.status is {status!r}; give an HTTP 5xx status")
        delay = raw.get("delay_seconds", 0.0)
        if not isinstance(delay, int | float) or not 0 <= delay <= 120:
            raise RuleError(f"rule.delay_seconds is {delay!r}; give 0 to 120 seconds")
        text = {k: raw.get(k, "*" if k != "path_contains" else "") for k in ("service", "operation", "path_contains")}
        for name, value in text.items():
            if not isinstance(value, str):
                raise RuleError(f"rule.{name} is {value!r}; give a string")
        return cls(
            fault=fault,
            service=text["service"],
            operation=text["operation"],
            path_contains=text["path_contains"],
            count=count,
            seconds=float(seconds) if seconds is not None else None,
            after=after,
            probability=float(probability),
            status=status,
            delay_seconds=float(delay),
        )

    def active(self, now: float) -> bool:
        """Still failing requests (count left, time left)."""
        if self.count is not None and self.injected >= self.count:
            return False
        return self.seconds is None or now - self.started < self.seconds

    def matches(self, request: RequestInfo) -> bool:
        """This rule applies to ``request``."""
        return (
            self.service in ("*", request.service)
            and self.operation in ("*", request.operation)
            and self.path_contains in request.path
        )

    def describe(self) -> dict[str, Any]:
        """For the stats."""
        return {
            "fault": self.fault,
            "service": self.service,
            "operation": self.operation,
            "path_contains": self.path_contains,
            "count": self.count,
            "seconds": self.seconds,
            "after": self.after,
            "probability": self.probability,
            "injected": self.injected,
        }


@dataclass(frozen=True)
class RequestInfo:
    """What a rule can match on."""

    method: str
    path: str
    service: str
    operation: str


def classify(method: str, target: str, headers: Any) -> RequestInfo:
    """The AWS service and operation of a request (from its signature's scope and protocol)."""
    parts = urlsplit(target)
    service = "unknown"
    auth = headers.get("Authorization") or ""
    scope = ""
    if "Credential=" in auth:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0]
    else:
        scope = (parse_qs(parts.query).get("X-Amz-Credential") or [""])[0]
    pieces = scope.split("/")
    if len(pieces) >= 4:
        service = pieces[3]
    amz_target = headers.get("X-Amz-Target") or ""
    if amz_target:
        operation = amz_target.rsplit(".", 1)[-1]
    elif service == "s3":
        operation = _s3_operation(method, parts.path, parse_qs(parts.query, keep_blank_values=True))
    else:
        operation = f"{method} {parts.path.split('/')[1] if parts.path.count('/') else ''}".strip()
    return RequestInfo(method=method, path=parts.path, service=service, operation=operation)


def _s3_operation(method: str, path: str, query: dict[str, list[str]]) -> str:
    has_key = len([p for p in path.split("/") if p]) >= 2
    if method == "GET":
        if not has_key:
            return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
        return "GetObject"
    if method == "PUT":
        return "PutObject" if has_key else "CreateBucket"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "DELETE":
        return "DeleteObject" if has_key else "DeleteBucket"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    return method


class FaultState:
    """Rules and counters, shared by the proxy's request threads and the control API."""

    def __init__(self, seed: int = 0) -> None:
        self.lock = threading.Lock()
        self.rules: list[Rule] = []
        self.random = random.Random(seed)
        self.forwarded: dict[str, int] = {}
        self.injected: dict[str, int] = {}
        self.refused_until = 0.0
        self.refusals = 0

    def set_rules(self, rules: list[Rule], seed: int | None = None) -> None:
        """Replace the rules (and reseed the random choices)."""
        with self.lock:
            self.rules = rules
            if seed is not None:
                self.random = random.Random(seed)

    def decide(self, request: RequestInfo) -> Rule | None:
        """The rule that fails ``request``, if any (and count it)."""
        now = time.monotonic()
        with self.lock:
            for rule in self.rules:
                if not (rule.active(now) and rule.matches(request)):
                    continue
                if rule.passed < rule.after:
                    rule.passed += 1
                    continue
                if self.random.random() < rule.probability:
                    rule.injected += 1
                    key = f"{rule.fault}:{request.service}:{request.operation}"
                    self.injected[key] = self.injected.get(key, 0) + 1
                    return rule
            key = f"{request.service}:{request.operation}"
            self.forwarded[key] = self.forwarded.get(key, 0) + 1
        return None

    def stats(self) -> dict[str, Any]:
        """Counters and rules, for the control API."""
        with self.lock:
            return {
                "forwarded": dict(self.forwarded),
                "injected": dict(self.injected),
                "injected_total": sum(self.injected.values()),
                "forwarded_total": sum(self.forwarded.values()),
                "refusals": self.refusals,
                "refusing": time.monotonic() < self.refused_until,
                "rules": [r.describe() for r in self.rules],
            }

    def clear(self) -> None:
        """No rules, counters at zero."""
        with self.lock:
            self.rules = []
            self.forwarded.clear()
            self.injected.clear()
            self.refusals = 0


def _error_body(service: str, fault: str, status: int) -> tuple[int, dict[str, str], bytes]:
    """An AWS-shaped error answer: S3's XML, or the JSON protocols' ``__type``."""
    if service == "s3":
        code, message = (
            ("SlowDown", "Please reduce your request rate.")
            if fault == "throttle"
            else ("InternalError" if status == 500 else "ServiceUnavailable", "We encountered an internal error.")
        )
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message} '
            "(injected by local.faultproxy)</Message></Error>"
        ).encode()
        return (503 if fault == "throttle" else status), {"Content-Type": "application/xml"}, body
    if fault == "throttle":
        code, status = THROTTLE_CODES.get(service, "ThrottlingException"), 400
    else:
        code = "InternalFailure" if status == 500 else "ServiceUnavailable"
    body = json.dumps({"__type": code, "message": f"{code} (injected by local.faultproxy)"}).encode()
    return status, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": f"{code}:"}, body


class ProxyHandler(BaseHTTPRequestHandler):
    """Forwards one client connection's requests to the upstream, failing those the rules pick."""

    protocol_version = "HTTP/1.1"
    server: ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the control API's stats say what happened."""

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)
        self.upstream: http.client.HTTPConnection | None = None

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.untrack(self.connection)
        if self.upstream is not None:
            self.upstream.close()

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._read_body()
        request = classify(self.command, self.path, self.headers)
        rule = self.server.state.decide(request)
        if rule is not None and rule.fault == "reset":
            self._reset()
            return
        if rule is not None and rule.fault == "delay":
            time.sleep(rule.delay_seconds)
        elif rule is not None:
            status, headers, payload = _error_body(request.service, rule.fault, rule.status)
            self._answer(status, headers, payload)
            return
        self._forward(body)

    def _forward(self, body: bytes) -> None:
        upstream = urlsplit(self.server.upstream)
        for attempt in (1, 2):
            if self.upstream is None:
                self.upstream = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=120)
            try:
                self.upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                        self.upstream.putheader(name, value)
                if body or self.command in ("PUT", "POST"):
                    self.upstream.putheader("Content-Length", str(len(body)))
                self.upstream.endheaders(body or None)
                response = self.upstream.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                # The upstream closed a kept-alive connection meanwhile: one fresh try, then a 502.
                self.upstream.close()
                self.upstream = None
                if attempt == 2:
                    self._answer(502, {"Content-Type": "text/plain"}, b"upstream unreachable (local.faultproxy)")
                continue
            headers = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
            if self.command == "HEAD":
                self._answer(response.status, headers, b"", head=True)
            else:
                headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
                self._answer(response.status, headers, payload)
            return

    def _answer(self, status: int, headers: dict[str, str], payload: bytes, head: bool = False) -> None:
        self.send_response_only(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if not head:
            self.send_header("Content-Length", str(len(payload)))
        elif "content-length" not in {k.lower() for k in headers}:
            self.send_header("Content-Length", "0")
        self.end_headers()
        if not head and payload:
            self.wfile.write(payload)
        self.wfile.flush()

    def _reset(self) -> None:
        """Drop the connection with a TCP reset, no answer (what a crashed or overloaded endpoint does)."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle  # noqa: N815 - http.server's names


class ProxyServer(ThreadingHTTPServer):
    """The proxy's listener; knows its open client connections so that ``refuse`` can cut them."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], upstream: str, state: FaultState) -> None:
        super().__init__(address, ProxyHandler)
        self.upstream = upstream
        self.state = state
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()

    def track(self, sock: socket.socket) -> None:
        with self._clients_lock:
            self._clients.add(sock)

    def untrack(self, sock: socket.socket) -> None:
        with self._clients_lock:
            self._clients.discard(sock)

    def cut_clients(self) -> None:
        """Close every open client connection (their next request finds the port refusing)."""
        with self._clients_lock:
            clients = list(self._clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class FaultProxy:
    """The proxy's listener plus the control API, in one process (or in a thread, for benchmarks)."""

    def __init__(self, upstream: str, host: str, port: int, control_port: int, seed: int = 0) -> None:
        if not upstream.startswith("http://"):
            raise ValueError(f"--upstream {upstream!r} must be an http:// URL (the local endpoint to front)")
        self.upstream = upstream.rstrip("/")
        self.host, self.port = host, port
        self.state = FaultState(seed)
        self._proxy_lock = threading.Lock()
        self.proxy: ProxyServer | None = None
        self.control = ThreadingHTTPServer((host, control_port), _control_handler(self))
        self.control.daemon_threads = True
        self._reopen_timer: threading.Timer | None = None

    def start(self) -> None:
        """Listen (proxy in a thread; the control API in another)."""
        self._open()
        threading.Thread(target=self.control.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def _open(self) -> None:
        with self._proxy_lock:
            if self.proxy is not None:
                return
            deadline = time.monotonic() + 10
            while True:
                try:
                    server = ProxyServer((self.host, self.port), self.upstream, self.state)
                    break
                except OSError:
                    # The port of the listener we just closed may linger briefly.
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            self.proxy = server
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def _close(self) -> None:
        with self._proxy_lock:
            server, self.proxy = self.proxy, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.cut_clients()

    def refuse(self, seconds: float) -> None:
        """Close the listener (connections refused) for ``seconds``, then listen again."""
        with self.state.lock:
            self.state.refused_until = time.monotonic() + seconds
            self.state.refusals += 1
        if self._reopen_timer is not None:
            self._reopen_timer.cancel()
        self._close()
        self._reopen_timer = threading.Timer(seconds, self._open)
        self._reopen_timer.daemon = True
        self._reopen_timer.start()

    def stop(self) -> None:
        """Stop both listeners."""
        if self._reopen_timer is not None:
            self._reopen_timer.cancel()
        self._close()
        self.control.shutdown()
        self.control.server_close()


def _control_handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class ControlHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def _reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._reply(200, {"status": "ok", "upstream": proxy.upstream, "listening": proxy.proxy is not None})
            elif self.path == "/stats":
                self._reply(200, proxy.state.stats())
            else:
                self._reply(404, {"error": f"no such control path {self.path}; use /health, /stats, /rules"})

        def do_POST(self) -> None:
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if not isinstance(body, dict):
                    raise RuleError("the body must be a JSON object")
                if self.path == "/rules":
                    rules = body.get("rules")
                    if not isinstance(rules, list):
                        raise RuleError("'rules' must be a list of rule objects (an empty list clears them)")
                    seed = body.get("seed")
                    if seed is not None and not isinstance(seed, int):
                        raise RuleError(f"'seed' is {seed!r}; give an integer")
                    proxy.state.set_rules([Rule.parse(r) for r in rules], seed)
                elif self.path == "/refuse":
                    seconds = body.get("seconds")
                    if not isinstance(seconds, int | float) or not 0 < seconds <= 600:
                        raise RuleError(f"'seconds' is {seconds!r}; give 0 < seconds <= 600")
                    proxy.refuse(float(seconds))
                elif self.path == "/reset":
                    proxy.state.clear()
                else:
                    self._reply(404, {"error": f"no such control path {self.path}; use /rules, /refuse, /reset"})
                    return
            except (RuleError, ValueError) as err:
                self._reply(400, {"error": str(err)})
                return
            self._reply(200, proxy.state.stats())

    return ControlHandler


class FaultProxyError(RuntimeError):
    """The proxy's control API refused a request or could not be reached; the message says which."""


class FaultProxyControl:
    """Client of a running proxy's control API (standard library only)."""

    def __init__(self, control_url: str, timeout: float = 10.0) -> None:
        if not control_url.startswith("http://"):
            raise FaultProxyError(f"control URL {control_url!r} is not an http:// URL")
        self.url = control_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            f"{self.url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as err:
            raise FaultProxyError(
                f"{method} {path} answered {err.code}: {err.read().decode(errors='replace')}"
            ) from None
        except (urllib.error.URLError, OSError) as err:
            raise FaultProxyError(f"cannot reach the fault proxy's control API at {self.url} ({err})") from None

    def health(self) -> dict[str, Any]:
        """``{"status", "upstream", "listening"}``."""
        return self._call("GET", "/health")

    def stats(self) -> dict[str, Any]:
        """Forwarded and injected counts (by ``fault:service:operation``), refusals, the rules."""
        return self._call("GET", "/stats")

    def set_rules(self, rules: list[dict[str, Any]], seed: int | None = None) -> dict[str, Any]:
        """Replace the fault rules (``[]``: forward everything)."""
        return self._call("POST", "/rules", {"rules": rules, **({"seed": seed} if seed is not None else {})})

    def refuse(self, seconds: float) -> dict[str, Any]:
        """Refuse connections for ``seconds`` (the listener is closed, open connections cut)."""
        return self._call("POST", "/refuse", {"seconds": seconds})

    def reset(self) -> dict[str, Any]:
        """No rules, counters at zero."""
        return self._call("POST", "/reset", {})


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m local.faultproxy", description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the endpoint to front, e.g. http://127.0.0.1:45660")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="where the pipeline connects")
    parser.add_argument("--control-port", type=int, required=True, help="where the tests switch the faults")
    parser.add_argument("--seed", type=int, default=0, help="seed of the probability draws")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    try:
        proxy = FaultProxy(args.upstream, args.host, args.port, args.control_port, args.seed)
    except (OSError, ValueError) as err:
        log.error("cannot start: %s", err)
        return 2
    proxy.start()
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "fault proxy on http://%s:%d -> %s (control on port %d)", args.host, args.port, args.upstream, args.control_port
    )
    stopped.wait()
    proxy.stop()
    log.info("stopped: %s", json.dumps(proxy.state.stats()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
