"""The loader reads every version of the landing contract it knows (issue 17 item 3): batches landed by the
previous version stay in the landing zone, and reloads and replays read them alongside new ones."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cognito_streams.core.state import expected_state
from cognito_streams.landing_zone.load import load_landing_zone
from cognito_streams.warehouse.connect import open_warehouse
from tests.support.changes import change, dataset_remove
from tests.support.landing import LandingWriter
from tests.support.warehouse import drop_schema, pipeline_settings, query, read_state, unique_schema

pytestmark = pytest.mark.integration


@pytest.fixture
def landing(stack: Any, aws: Any) -> Iterator[tuple[Any, LandingWriter]]:
    settings = pipeline_settings(warehouse_schema=unique_schema(), landing_prefix=f"v-{uuid.uuid4().hex[:10]}")
    with open_warehouse(settings) as wh:
        wh.ensure_schema()
    try:
        yield settings, LandingWriter(aws("s3"), settings.landing_bucket, settings.landing_prefix)
    finally:
        drop_schema(settings.warehouse_schema)


def test_a_version_1_batch_and_a_version_2_batch_load_together(landing: tuple[Any, LandingWriter]) -> None:
    settings, writer = landing
    # GIVEN a batch landed by version 1 of the contract (millisecond timestamps) and a later one by version 2
    old = [change("coins", "4500", 7, 0), change("level", "12", 7, 0, index=1), dataset_remove(3, 50)]
    new = [change("coins", "4600", 8, 100), change("gems", "3", 1, 120)]
    writer.land(old, format_version=1)
    writer.land(new, format_version=2)
    # WHEN the loader loads the landing zone
    report = load_landing_zone(settings)
    # THEN both load, and the warehouse holds the reference state of all their changes, to the millisecond
    assert report.batches == 2 and report.rows_staged == len(old) + len(new)
    with open_warehouse(settings) as wh:
        assert read_state(wh) == expected_state(old + new)
        assert query(wh, "select count(*) from {schema}.loaded_batches") == [(2,)]
