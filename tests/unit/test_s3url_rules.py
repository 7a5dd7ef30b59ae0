"""The payload URL rules, pure (issue 18, item 6): one parser decides what is fetched, and it refuses
every URL that another parser could read as a different host."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cognito_streams.core.landing import s3url
from cognito_streams.settings import parse_settings

ALLOWED = frozenset({"payloads.example", "127.0.0.1:4566"})


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://evil.example\\@bucket.s3.amazonaws.com/x", "backslash"),
        ("https://bucket.s3.amazonaws.com\\x/y", "backslash"),
        ("https://user:pw@bucket.s3.amazonaws.com/x", "user info"),
        ("https://evil.example@bucket.s3.amazonaws.com/x", "user info"),
        ("https://bucket.s3.amazonaws.com/x#@evil.example", "fragment"),
        ("https://bucket.s3.amazonaws.com:8443/x", "port"),
        ("https://bucket.s3.amazonaws.com:0/x", "invalid port"),
        ("https://bucket.s3.amazonaws.com:99999/x", "invalid port"),
        ("http://bucket.s3.amazonaws.com/x", "https only"),
        ("https://bucket.s3.amazonaws.com./x", "no valid host"),
        ("https://bucket..s3.amazonaws.com/x", "no valid host"),
        ("https://bücket.s3.amazonaws.com/x", "characters"),
        ("https://bucket.s3.amazonaws.com/a b", "characters"),
        ("https://bucket.s3.amazonaws.com/a\tb", "characters"),
        ("https://bucket.s3.amazonaws.com/%zz", "RFC 3986"),
        ("https://bucket.s3.amazonaws.com/a<b", "RFC 3986"),
        ("https://169.254.169.254/latest/meta-data", "not an S3 endpoint"),
        ("https://[::1]/x", "not an S3 endpoint"),
        ("http://payloads.example:8080/x", "port"),
        ("file:///etc/passwd", "not an http(s) URL"),
        ("//bucket.s3.amazonaws.com/x", "not an http(s) URL"),
    ],
)
def test_urls_that_parsers_could_read_differently_are_refused(url: str, why: str) -> None:
    problem = s3url.check_url(url, ALLOWED)
    assert isinstance(problem, str) and why in problem
    assert "Signature" not in problem


@pytest.mark.parametrize(
    ("url", "host", "port", "authority", "target", "explicit"),
    [
        (
            "https://bucket.s3.us-east-1.amazonaws.com/k/e%2Fy?X-Amz-Signature=ab&X-Amz-Credential=AKIA%2F1",
            "bucket.s3.us-east-1.amazonaws.com",
            443,
            "bucket.s3.us-east-1.amazonaws.com",
            "/k/e%2Fy?X-Amz-Signature=ab&X-Amz-Credential=AKIA%2F1",
            False,
        ),
        (
            "HTTPS://Bucket.S3.amazonaws.com:443/k",
            "bucket.s3.amazonaws.com",
            443,
            "Bucket.S3.amazonaws.com:443",
            "/k",
            False,
        ),
        ("https://s3.amazonaws.com?list-type=2", "s3.amazonaws.com", 443, "s3.amazonaws.com", "/?list-type=2", False),
        ("http://127.0.0.1:4566/bucket/key?sig", "127.0.0.1", 4566, "127.0.0.1:4566", "/bucket/key?sig", True),
        ("http://payloads.example/bucket/key", "payloads.example", 80, "payloads.example", "/bucket/key", True),
        ("https://payloads.example/k", "payloads.example", 443, "payloads.example", "/k", True),
    ],
)
def test_allowed_urls_are_parsed_into_what_the_fetch_sends(
    url: str, host: str, port: int, authority: str, target: str, explicit: bool
) -> None:
    checked = s3url.check_url(url, ALLOWED)
    assert isinstance(checked, s3url.CheckedUrl)
    assert (checked.host, checked.port, checked.authority, checked.target, checked.explicit) == (
        host,
        port,
        authority,
        target,
        explicit,
    )
    assert "?" not in checked.redacted()


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40))
def test_whatever_is_accepted_urlsplit_reads_as_the_same_host_and_port(tail: str) -> None:
    # GIVEN any printable ASCII after an allowed authority
    for url in (f"https://bucket.s3.amazonaws.com{tail}", f"https://{tail}@bucket.s3.amazonaws.com/x"):
        checked = s3url.check_url(url, ALLOWED)
        if isinstance(checked, str):
            continue
        # THEN a URL that is accepted means the same host and port to the standard parser
        parts = urlsplit(url)
        assert (parts.hostname, parts.port or 443) == (checked.host, checked.port)
        assert parts.username is None


@pytest.mark.parametrize(
    ("address", "explicit", "networks", "refused"),
    [
        ("52.216.8.1", False, (), None),
        ("2600:1f18::1", False, (), None),
        ("127.0.0.1", False, (), "loopback"),
        ("::1", False, (), "loopback"),
        ("::ffff:127.0.0.1", False, (), "loopback"),
        ("169.254.169.254", False, (), "link-local"),
        ("fe80::1", False, (), "link-local"),
        ("10.0.0.1", False, (), "private"),
        ("192.168.1.1", False, (), "private"),
        ("fd00::1", False, (), "private"),
        ("100.64.0.1", False, (), "non-public"),
        ("0.0.0.0", False, (), "unspecified"),  # noqa: S104 - an address under test, not a bind
        ("224.0.0.1", False, (), "non-public"),
        ("10.0.0.1", False, ("10.0.0.0/8",), None),
        ("127.0.0.1", True, (), None),
    ],
)
def test_resolved_addresses_must_be_public_unless_allowed(
    address: str, explicit: bool, networks: tuple[str, ...], refused: str | None
) -> None:
    import ipaddress

    problem = s3url.address_problem(
        address, explicit=explicit, allowed_networks=tuple(ipaddress.ip_network(n) for n in networks)
    )
    assert (problem is None) if refused is None else (problem is not None and refused in problem)


def test_allowed_networks_must_be_cidr_networks() -> None:
    base = {
        "identity_pool_ids": ["us-east-1:0f5b2a4e-1111-2222-3333-444455556666"],
        "stream_name": "s",
        "publish_role_arn": "arn:aws:iam::123456789012:role/r",
        "landing_bucket": "landing-bucket",
    }
    assert parse_settings({**base, "s3url_allowed_networks": ["10.0.0.0/16"]}).s3url_allowed_networks == ["10.0.0.0/16"]
    with pytest.raises((ValueError, ValidationError), match="CIDR"):
        parse_settings({**base, "s3url_allowed_networks": ["10.0.0.1/16"]})
