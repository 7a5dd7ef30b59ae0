"""``S3Url`` payloads, pure: which URLs may be fetched, how a response is judged, and how a fetched
body becomes an ordinary record for the decoder (the fetching itself is
``cognito_streams.landing.s3url``).

A presigned URL is a bearer credential: it is never logged or stored in a detail. Only its
:func:`redacted` form (scheme, host and path, no query string) may appear in logs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from cognito_streams.core import shape

#: Hosts Cognito's presigned URLs point at (S3, any region, virtual-hosted or path style).
AWS_HOST_SUFFIX = ".amazonaws.com"

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})

_S3_ERROR_CODE = re.compile(rb"<Code>([A-Za-z]{1,64})</Code>")
_S3_ERROR_MESSAGE = re.compile(rb"<Message>([^<]{0,200})</Message>")


def redacted(url: str) -> str:
    """``scheme://host/path`` of a URL: no credentials, no query string (the signature), no fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def host_of(url: str) -> str | None:
    """``host`` or ``host:port`` (lower case) of an http(s) URL, else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return f"{parts.hostname.lower()}:{port}" if port else parts.hostname.lower()


def url_problem(url: str, allowed_hosts: frozenset[str]) -> str | None:
    """Why ``url`` must not be fetched, or None.

    Allowed: ``https://`` URLs on ``*.amazonaws.com``, and any ``http(s)://`` URL whose ``host`` or
    ``host:port`` is in ``allowed_hosts`` (the S3 endpoint this deployment uses, e.g. a local S3).
    Anything else is refused: a record must not make the pipeline fetch arbitrary addresses.
    """
    host = host_of(url)
    if host is None:
        return "kinesisSyncRecordsURL is not an http(s) URL with a host"
    bare_host = host.split(":", 1)[0]
    if host in allowed_hosts or bare_host in allowed_hosts:
        return None
    if urlsplit(url).scheme == "https" and bare_host.endswith(AWS_HOST_SUFFIX):
        return None
    return f"host {host} is not an S3 endpoint this pipeline fetches from (see setting s3url_allowed_hosts)"


@dataclass(frozen=True)
class ResponseVerdict:
    """What an HTTP response means for a payload."""

    reason: str | None  # None: the body is the payload
    detail: str
    retryable: bool = False


def judge_response(status: int, body: bytes) -> ResponseVerdict:
    """Classify a response to a presigned GET (S3's error documents are XML with Code/Message)."""
    if status == 200:
        return ResponseVerdict(None, "ok")
    code_match = _S3_ERROR_CODE.search(body[:4096])
    message_match = _S3_ERROR_MESSAGE.search(body[:4096])
    code = code_match.group(1).decode("ascii") if code_match else ""
    message = message_match.group(1).decode("utf-8", "replace") if message_match else ""
    described = f"HTTP {status}" + (f" {code}" if code else "")
    if status in (400, 403) and ("expired" in message.lower() or code in ("ExpiredToken", "TokenRefreshRequired")):
        return ResponseVerdict("s3url_expired", f"{described}: the presigned URL has expired")
    if status == 403:
        return ResponseVerdict("s3url_forbidden", f"{described}: access denied")
    if status == 404:
        return ResponseVerdict("s3url_not_found", f"{described}: no such object")
    if status in RETRYABLE_STATUS:
        return ResponseVerdict("s3url_unreachable", f"{described}", retryable=True)
    return ResponseVerdict("s3url_forbidden", f"{described}: the request was refused")


def payload_records(body: bytes) -> tuple[list[Any] | None, str | None]:
    """The records of a fetched body: a JSON array of record objects, or an object with a
    ``kinesisSyncRecords`` array. Returns ``(records, None)`` or ``(None, why not)``.

    The records keep their repeated member names visible (see :mod:`cognito_streams.core.shape`).
    """
    value, error = _parse_any(body)
    if error is not None:
        return None, f"the body is not the records: {error}"
    if isinstance(value, dict):
        value = value.get(shape.RECORDS_FIELD)
        if not isinstance(value, list):
            return None, f"the body is not the records: an object without a {shape.RECORDS_FIELD} array"
    if not isinstance(value, list):
        return None, "the body is not the records: neither an array nor an object"
    return value, None


def _parse_any(body: bytes) -> tuple[Any, str | None]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, f"not UTF-8 at offset {err.start}"
    try:
        orjson.loads(body)
        return json.loads(text, object_pairs_hook=shape.Members, parse_constant=shape.reject_constant), None
    except json.JSONDecodeError as err:
        return None, f"not valid JSON ({err.msg} at offset {err.pos})"
    except (ValueError, RecursionError) as err:
        return None, f"not valid JSON ({type(err).__name__})"


def resolve(raw_record: bytes, records: list[Any]) -> tuple[bytes | None, shape.ShapeError | None]:
    """The Kinesis record ``raw_record`` with the fetched ``records`` in ``kinesisSyncRecords``:
    an ordinary record the decoder reads like an inline one (``payloadType`` stays ``S3Url``).

    The records' shape is checked here, exactly, since re-serializing would hide repeated members.
    """
    header, error = shape.parse_object(raw_record)
    if error is not None or header is None:
        return None, error or shape.ShapeError("invalid_json", "the Kinesis record is not an object")
    header = dict(header)
    header[shape.RECORDS_FIELD] = records
    error = shape.check_object_shape(header)
    if error is not None:
        return None, error
    return orjson.dumps(header), None
