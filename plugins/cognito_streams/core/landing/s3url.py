"""``S3Url`` payloads, pure: which URLs may be fetched, how a response is judged, and how a fetched
body becomes an ordinary record for the decoder (the fetching itself is
``cognito_streams.landing.s3url``).

A presigned URL is a bearer credential: it is never logged or stored in a detail. Only its
:func:`redacted` form (scheme, host and path, no query string) may appear in logs.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import orjson

from cognito_streams.core.decode import shape

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
    """``host`` or ``host:port`` (lower case) of an http(s) URL, else None. For settings and endpoints
    (the deployment's own S3 endpoint), never for a URL from a record: those go through :func:`check_url`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return f"{parts.hostname.lower()}:{port}" if port else parts.hostname.lower()


DEFAULT_PORTS = {"http": 80, "https": 443}

_SCHEME = re.compile(r"(?i)(https?)://")
#: A DNS name (letters, digits, hyphens; dot-separated labels of 1-63, no empty label, no trailing dot).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?i)(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")
#: The request target: a path and query of RFC 3986 characters only (no fragment, no backslash, no space).
_TARGET = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*(?:%[0-9A-Fa-f]{2}[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*)*")


@dataclass(frozen=True)
class CheckedUrl:
    """A payload URL parsed once, by us: the fetch connects to ``host``:``port`` (at an address that was
    checked) and sends ``target`` with ``Host: authority``, so it fetches exactly what was checked.

    ``explicit``: the host is one the deployment named (``s3url_allowed_hosts`` or its own S3 endpoint);
    it may then resolve to a private or loopback address (a local or private S3). A host allowed only as
    ``*.amazonaws.com`` must resolve to public addresses.
    """

    scheme: str
    host: str  # lower case; an IP literal without brackets
    port: int
    authority: str  # as given (the Host header: what a presigned URL's signature covers)
    target: str  # path and query as given
    explicit: bool = False

    def redacted(self) -> str:
        """``scheme://authority/path``: no query string (the signature)."""
        return f"{self.scheme}://{self.authority}{self.target.split('?', 1)[0]}"


def parse_url(url: str) -> CheckedUrl | str:
    """``url`` split into what the fetch uses, or why it is refused (a sentence, without the URL's query).

    Strict on purpose: one parser decides what is fetched, so no URL may mean one thing to a checker and
    another to an HTTP library (``https://evil.example\\@bucket.s3.amazonaws.com/`` is a host
    ``evil.example`` to urllib3 and ``bucket.s3.amazonaws.com`` to ``urlsplit``). Refused: anything but
    printable ASCII, backslashes, user info (``user@``), fragments, a host that is not a DNS name or an IP
    literal, a port outside 1-65535, characters RFC 3986 does not allow in a path or query."""
    if not url.isascii() or not url.isprintable() or " " in url:
        return "kinesisSyncRecordsURL has characters a URL cannot hold (not printable ASCII, or a space)"
    if "\\" in url:
        return "kinesisSyncRecordsURL holds a backslash (URL parsers disagree on it)"
    scheme_match = _SCHEME.match(url)
    if scheme_match is None:
        return "kinesisSyncRecordsURL is not an http(s) URL"
    scheme = scheme_match.group(1).lower()
    rest = url[scheme_match.end() :]
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, target = rest[:end], rest[end:]
    if "@" in authority:
        return "kinesisSyncRecordsURL has user info (user@host): refused"
    if "#" in target:
        return "kinesisSyncRecordsURL has a fragment (#): refused"
    if not target.startswith("/"):
        target = "/" + target  # an empty path (``https://host?query``) is the root
    if not _TARGET.fullmatch(target):
        return "kinesisSyncRecordsURL's path or query has characters RFC 3986 does not allow there"
    host, port_text = _split_authority(authority)
    if host is None:
        return "kinesisSyncRecordsURL has no valid host (a DNS name or an IP address)"
    if port_text is None:
        port = DEFAULT_PORTS[scheme]
    elif port_text.isdigit() and len(port_text) <= 5 and 1 <= int(port_text) <= 65535:
        port = int(port_text)
    else:
        return "kinesisSyncRecordsURL has an invalid port"
    return CheckedUrl(scheme, host, port, authority, target)


def _split_authority(authority: str) -> tuple[str | None, str | None]:
    """(host, port text) of ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; host None when invalid."""
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            return None, None
        literal, tail = authority[1:close], authority[close + 1 :]
        if tail and not tail.startswith(":"):
            return None, None
        try:
            address = ipaddress.IPv6Address(literal)
        except ValueError:
            return None, None
        return str(address), (tail[1:] if tail else None)
    host, sep, port_text = authority.partition(":")
    if ":" in port_text or not _HOSTNAME.fullmatch(host):
        return None, None
    return host.lower(), (port_text if sep else None)


def check_url(url: str, allowed_hosts: frozenset[str]) -> CheckedUrl | str:
    """``url`` parsed (:func:`parse_url`) and allowed, or why it must not be fetched.

    Allowed: ``https://`` on ``*.amazonaws.com`` at port 443 (Cognito's presigned S3 URLs), and any
    ``http(s)://`` URL whose ``host:port`` is in ``allowed_hosts``, or whose ``host`` is when it uses the
    scheme's default port (the deployment's own S3 endpoint, ``s3url_allowed_hosts``). Anything else is
    refused: a record must not make the pipeline fetch arbitrary addresses. Where the host resolves to is
    checked at fetch time (:func:`address_problem`).
    """
    parsed = parse_url(url)
    if isinstance(parsed, str):
        return parsed
    default_port = parsed.port == DEFAULT_PORTS[parsed.scheme]
    named = f"{parsed.host}:{parsed.port}" in allowed_hosts or (default_port and parsed.host in allowed_hosts)
    if named:
        return replace(parsed, explicit=True)
    aws = parsed.host.endswith(AWS_HOST_SUFFIX)
    if aws and parsed.scheme != "https":
        return f"host {parsed.host} is fetched over https only (Cognito's presigned S3 URLs are https)"
    if aws and default_port:
        return parsed
    if parsed.host in allowed_hosts or aws:
        return (
            f"port {parsed.port} of host {parsed.host} is not allowed (only {parsed.scheme}'s default port, or a "
            "host:port listed in s3url_allowed_hosts)"
        )
    return f"host {parsed.host} is not an S3 endpoint this pipeline fetches from (see setting s3url_allowed_hosts)"


def url_problem(url: str, allowed_hosts: frozenset[str]) -> str | None:
    """Why ``url`` must not be fetched (:func:`check_url`), or None."""
    checked = check_url(url, allowed_hosts)
    return checked if isinstance(checked, str) else None


def address_problem(
    address: str, *, explicit: bool, allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
) -> str | None:
    """Why a payload host that resolved to ``address`` must not be connected to, or None.

    A host the deployment named may be anywhere (a local S3 on loopback, a private endpoint); any other
    host must resolve to public addresses only, unless the address is in ``allowed_networks``
    (``s3url_allowed_networks``: e.g. an S3 interface endpoint of the VPC). Without this, a record naming
    ``anything.amazonaws.com`` with a DNS answer of 169.254.169.254 would reach the instance metadata."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"the host resolved to {address!r}, not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if explicit or any(ip in network for network in allowed_networks):
        return None
    if ip.is_global and not ip.is_multicast:
        return None
    kinds = [
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("unspecified", ip.is_unspecified),  # 0.0.0.0 reaches this host on Linux
        ("private", ip.is_private),
    ]
    kind = next((name for name, match in kinds if match), "non-public")
    return (
        f"the host resolves to a {kind} address ({ip}): refused (a private S3 endpoint must be named in "
        "s3url_allowed_hosts, or its network in s3url_allowed_networks)"
    )


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

    The records keep their repeated member names visible (see :mod:`cognito_streams.core.decode.shape`).
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
