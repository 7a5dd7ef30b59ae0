"""The loader and a replay at the same time: a descriptor the loader listed that a replay moves aside
(``_superseded/``, docs/landing.md 'Replay') before the loader reads it is skipped, not an error (the
replay's own batch holds its records). Issue 18, item 2; the only loader change of that item."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cognito_streams.core.landing_format import LandingLayout
from cognito_streams.loading.landing import LandingReader, split_s3_url
from tests.support.changes import STREAM, change
from tests.support.landing import LandingWriter
from tests.support.warehouse import pipeline_settings

pytestmark = pytest.mark.integration


def test_a_descriptor_superseded_after_the_listing_is_skipped(stack: Any, aws: Any) -> None:
    s3 = aws("s3")
    bucket = pipeline_settings().landing_bucket
    prefix = f"superseded/{uuid.uuid4().hex[:8]}"
    writer = LandingWriter(s3, bucket, prefix)
    kept = writer.land([change("coins", "1", 1, 0)])
    gone = writer.land([change("coins", "2", 2, 10)], first=5, last=9)
    reader = LandingReader(s3, LandingLayout(bucket, prefix, STREAM))
    # GIVEN the loader's listing of both descriptors
    refs = reader.list_descriptors()
    assert {r.url for r in refs} == {kept, gone}
    # WHEN a replay moves one of them aside before the loader reads it
    s3.delete_object(Bucket=bucket, Key=split_s3_url(gone)[1])
    # THEN the loader reads the other and skips that one, instead of failing the load
    assert [b.descriptor_url for b in reader.read_batches(refs)] == [kept]
