"""A small client for the emulator's test controls (``/_emulator/...``; not part of AWS).

    from local.emulator.control import EmulatorControl

    ctl = EmulatorControl.from_env()             # AWS_ENDPOINT_URL_COGNITO_SYNC
    ctl.advance_clock(hours=25)                  # past the 24-hour bulk publish rule
    ctl.update_settings(s3url_threshold_bytes=50 * 1024)
    ctl.fail_next_bulk_publish("Kinesis throttled us")
    ctl.stale_bulk_publish_details(3)            # the next request stays unseen by 3 status reads
    ctl.flush()                                  # every committed change is on the stream
    ctl.pool("us-east-1:...")["configuration"]["CognitoStreams"]["DisabledReason"]

Standard library only, so any test, DAG test or script can use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode


class EmulatorControlError(RuntimeError):
    """The emulator refused a control request or could not be reached; the message says which."""


class EmulatorControl:
    """Calls ``/_emulator/*`` on one emulator."""

    def __init__(self, endpoint: str, timeout: float = 30.0) -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise EmulatorControlError(f"emulator endpoint {endpoint!r} is not an http(s) URL")
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> EmulatorControl:
        """The emulator named by ``AWS_ENDPOINT_URL_COGNITO_SYNC`` (as ``make stack-up`` exports it)."""
        source = os.environ if env is None else env
        endpoint = source.get("AWS_ENDPOINT_URL_COGNITO_SYNC")
        if not endpoint:
            raise EmulatorControlError(
                "AWS_ENDPOINT_URL_COGNITO_SYNC is not set; `source .local/stack.env` after `make stack-up`, "
                "or pass the emulator's URL to EmulatorControl(...)"
            )
        return cls(endpoint)

    # -- transport -----------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        url = f"{self.endpoint}/_emulator/{path}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the URL scheme is checked in __init__
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            with contextlib.suppress(ValueError):
                detail = json.loads(detail).get("error", detail)
            raise EmulatorControlError(f"{method} {url} answered {err.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as err:
            raise EmulatorControlError(
                f"cannot reach the emulator at {self.endpoint} ({err}); is it running?"
            ) from None

    # -- health and counters -------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``GET /_emulator/health``."""
        return dict(self._call("GET", "health"))

    def stats(self) -> dict[str, Any]:
        """Counters: calls and errors per operation, stream records published (inline, S3Url), ..."""
        return dict(self._call("GET", "stats"))

    # -- clock ---------------------------------------------------------------------------------
    def clock(self) -> dict[str, int]:
        """``{"now_ms", "offset_ms", "real_ms"}``."""
        return dict(self._call("GET", "clock"))

    def advance_clock(self, *, seconds: float = 0, hours: float = 0) -> dict[str, int]:
        """Move the clock forward (or back, with negative values) by this much."""
        return dict(self._call("POST", "clock", {"advance_seconds": seconds + hours * 3600}))

    def set_clock_offset(self, offset_ms: int) -> dict[str, int]:
        """Set the offset from the real time (0: the real time again)."""
        return dict(self._call("POST", "clock", {"offset_ms": offset_ms}))

    def set_clock(self, now_ms: int) -> dict[str, int]:
        """Make the clock read ``now_ms`` (epoch milliseconds) now."""
        return dict(self._call("POST", "clock", {"now_ms": now_ms}))

    # -- settings and faults -------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Current runtime settings."""
        return dict(self._call("GET", "settings"))

    def update_settings(self, **changes: Any) -> dict[str, Any]:
        """Change runtime settings (see docs/emulator.md); returns all of them."""
        return dict(self._call("POST", "settings", changes))

    def fail_next_bulk_publish(self, message: str, after_datasets: int = 0) -> dict[str, Any]:
        """The next bulk publish ends FAILED with ``message`` after publishing ``after_datasets``."""
        return dict(
            self._call(
                "POST", "faults", {"fail_next_bulk_publish": {"message": message, "after_datasets": after_datasets}}
            )
        )

    def throttle_next_requests(self, count: int) -> dict[str, Any]:
        """The next ``count`` API requests answer TooManyRequestsException (429)."""
        return dict(self._call("POST", "faults", {"throttle_next_requests": count}))

    def stale_bulk_publish_details(self, count: int) -> dict[str, Any]:
        """The next bulk publish request stays unseen by the next ``count`` GetBulkPublishDetails of its
        pool: they show the pool's previous publish (a stale read; 0 clears it)."""
        return dict(self._call("POST", "faults", {"stale_bulk_publish_details": count}))

    def clear_faults(self) -> dict[str, Any]:
        """No injected failure pending."""
        return dict(
            self._call(
                "POST",
                "faults",
                {"fail_next_bulk_publish": None, "throttle_next_requests": 0, "stale_bulk_publish_details": 0},
            )
        )

    # -- state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all datasets, configurations, bulk publishes, settings, faults and the clock offset."""
        self._call("POST", "reset", {})

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every answered change is on its Kinesis stream (or dropped because streaming is
        off); raises if that takes longer than ``timeout`` seconds."""
        self._call("POST", "flush", {"timeout_seconds": timeout}, timeout=timeout + 10)

    def pool(self, identity_pool_id: str) -> dict[str, Any]:
        """The pool as the emulator holds it: configuration (with DisabledReason, which boto3's model
        drops), bulk publish state (with the last success), usage."""
        return dict(self._call("GET", f"pools/{quote(identity_pool_id, safe='')}"))

    def export(self, identity_pool_id: str | None = None) -> dict[str, Any]:
        """``{"datasets": [...], "deletions": [...]}``: every dataset with all its records (removed keys
        as ``op: remove``), and the latest delete of each deleted dataset."""
        query = f"?{urlencode({'identity_pool_id': identity_pool_id})}" if identity_pool_id else ""
        return dict(self._call("GET", f"export{query}"))
