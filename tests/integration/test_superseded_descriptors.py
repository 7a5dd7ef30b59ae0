"""Superseded descriptors (docs/landing.md, 'Replay'): a replay supersedes an older batch by writing a marker
under ``_superseded/``, never by deleting (the worker's IAM policy has no delete). Every lister of descriptors
leaves a superseded one out, through one lister (``landing_zone/descriptors.py``): the loader's finding of work and
the health page's backlog. The loader resolves a batch it had set aside that is superseded or gone, and a
descriptor removed after the loader listed it is skipped, not an error."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from cognito_streams.core.landing_format import LandingLayout
from cognito_streams.landing_zone.descriptors import mark_superseded
from cognito_streams.landing_zone.reader import LandingReader, split_s3_url
from cognito_streams.monitoring.state import list_recent_batches
from tests.support.changes import SHARD, STREAM, change
from tests.support.landing import LandingWriter
from tests.support.warehouse import pipeline_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def zone(stack: Any, aws: Any) -> tuple[Any, LandingWriter, LandingReader]:
    s3 = aws("s3")
    bucket = pipeline_settings().landing_bucket
    prefix = f"superseded/{uuid.uuid4().hex[:8]}"
    return s3, LandingWriter(s3, bucket, prefix), LandingReader(s3, LandingLayout(bucket, prefix, STREAM))


def key_of(url: str) -> str:
    return split_s3_url(url)[1]


def land_and_supersede(s3: Any, writer: LandingWriter) -> tuple[str, str, str]:
    """Two batches landed today, and a replay's batch holding the second one's records again, which the replay
    supersedes (a marker; the descriptor stays). Returns (kept, superseded, replay's) descriptor URLs."""
    today = datetime.now(UTC)
    kept = writer.land([change("coins", "1", 1, 0)], arrived_at=today)
    old = writer.land([change("coins", "2", 2, 10)], first=5, last=9, arrived_at=today)
    replayed = writer.land(
        [change("coins", "2", 2, 10)], first=5, last=9, arrived_at=today, folder=f"{SHARD}~replay-20261206T000000Z"
    )
    marker = mark_superseded(s3, writer.layout, key_of(old))
    assert marker == writer.layout.superseded_key(key_of(old)) and "/_superseded/batches/" in marker
    assert s3.get_object(Bucket=writer.bucket, Key=key_of(old))["Body"].read()  # still there
    return kept, old, replayed


def test_the_loader_does_not_list_a_superseded_descriptor(zone: tuple[Any, LandingWriter, LandingReader]) -> None:
    s3, writer, reader = zone
    # GIVEN a batch a replay superseded
    kept, old, replayed = land_and_supersede(s3, writer)
    # WHEN the loader lists the landing zone (all days, or today's)  THEN it finds the others only
    today = datetime.now(UTC).date()
    assert [r.url for r in reader.list_descriptors()] == sorted([kept, replayed])
    assert [r.url for r in reader.list_descriptors(today, today)] == sorted([kept, replayed])
    # AND it knows the one left out as superseded
    assert reader.find_descriptors().superseded == {old}


def test_the_health_backlog_does_not_count_a_superseded_descriptor(
    zone: tuple[Any, LandingWriter, LandingReader],
) -> None:
    s3, writer, _ = zone
    # GIVEN a batch a replay superseded, none loaded
    kept, _, replayed = land_and_supersede(s3, writer)
    # WHEN the health page lists the recent days' descriptors (its backlog: those not loaded)
    listed, _ = list_recent_batches(s3, writer.layout, datetime.now(UTC).date())
    # THEN the superseded one is not among them (it will never be loaded), and each is under its shard
    assert sorted(o.url for o in listed) == sorted([kept, replayed])
    assert {o.shard_id for o in listed} == {SHARD}


def test_batches_set_aside_are_settled_when_superseded_or_gone_and_only_where_the_listing_looked(
    zone: tuple[Any, LandingWriter, LandingReader],
) -> None:
    s3, writer, reader = zone
    day1, day2 = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    still = writer.land([change("a", "1", 1, 0)], arrived_at=day1)
    superseded = writer.land([change("b", "1", 1, 0)], arrived_at=day1)
    removed = writer.land([change("c", "1", 1, 0)], arrived_at=day1)
    elsewhere = writer.land([change("d", "1", 1, 0)], arrived_at=day2)
    mark_superseded(s3, writer.layout, key_of(superseded))
    s3.delete_object(Bucket=writer.bucket, Key=key_of(removed))  # by hand: nothing of the pipeline deletes
    other_prefix = "s3://another-bucket/p/batches/stream=s/dt=2026-03-01/x/1-2.json"
    set_aside = {still, superseded, removed, elsewhere, other_prefix}
    # WHEN every day is listed  THEN the superseded and the removed ones are settled, the others not
    assert reader.find_descriptors().settle(set_aside) == {superseded: "superseded", removed: "removed"}
    # AND a listing of another day says nothing of day 1's, and a day-2 descriptor absent from it is removed
    s3.delete_object(Bucket=writer.bucket, Key=key_of(elsewhere))
    assert reader.find_descriptors(day2.date(), day2.date()).settle(set_aside) == {elsewhere: "removed"}


def test_a_descriptor_removed_after_the_listing_is_skipped(zone: tuple[Any, LandingWriter, LandingReader]) -> None:
    s3, writer, reader = zone
    kept = writer.land([change("coins", "1", 1, 0)])
    gone = writer.land([change("coins", "2", 2, 10)], first=5, last=9)
    # GIVEN the loader's listing of both descriptors
    refs = reader.list_descriptors()
    assert {r.url for r in refs} == {kept, gone}
    # WHEN one is removed before the loader reads it (by hand: nothing of the pipeline deletes)
    s3.delete_object(Bucket=writer.bucket, Key=key_of(gone))
    # THEN the loader reads the other and skips that one, instead of failing the load
    batches, unreadable = reader.read_batches(refs)
    assert [b.descriptor_url for b in batches] == [kept] and unreadable == []
