"""``min_load_interval_seconds`` against the real warehouse: the loader task waits until that long after
the last load's start (the warehouse's own ``loaded_batches.loaded_at``), then loads everything landed."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from cognito_streams.landing import tasks as landing_tasks
from cognito_streams.landing_zone import load as loader
from cognito_streams.loading import tasks as loading_tasks
from cognito_streams.loading.pace import last_load_at
from cognito_streams.settings import PipelineSettings, parse_settings
from cognito_streams.warehouse.connect import open_warehouse
from tests.landing_records import put_records, seed_records
from tests.support.warehouse import drop_schema, unique_schema

pytestmark = pytest.mark.integration


@pytest.fixture
def paced(stack: Any, aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineSettings]:
    name = f"pace-{uuid.uuid4().hex[:8]}"
    aws("kinesis").create_stream(StreamName=name, ShardCount=1)
    variable = {
        **json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"]),
        "stream_name": name,
        "landing_prefix": f"pace/{name}",
        "warehouse_schema": unique_schema(),
        "min_load_interval_seconds": 600,
    }
    monkeypatch.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(variable))
    settings = parse_settings(variable)
    loader.ensure_schema(settings)
    yield settings
    drop_schema(settings.warehouse_schema)


def land(settings: PipelineSettings, aws: Any, n: int, run_id: str) -> None:
    put_records(aws("kinesis"), settings.stream_name, seed_records(n, seed=len(run_id)))
    for shard in landing_tasks.plan({}, "cognito_stream_to_s3", run_id, settings=settings):
        landing_tasks.land(shard, "cognito_stream_to_s3", run_id, settings=settings)


def test_the_loader_waits_for_the_interval_after_the_last_load(
    paced: PipelineSettings, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    # The pause itself is not waited out: the loader's module sees a clock whose sleep is recorded.
    monkeypatch.setattr("cognito_streams.loading.pace.time", SimpleNamespace(sleep=slept.append))
    # GIVEN no load yet: the first load does not wait
    with open_warehouse(paced) as wh:
        assert last_load_at(wh) is None
    land(paced, aws, 5, "r1")
    first = loading_tasks.load({"mode": "load"})
    assert first["batches"] == 1 and slept == []
    with open_warehouse(paced) as wh:
        last = last_load_at(wh)
    assert last is not None and abs((datetime.now(UTC) - last).total_seconds()) < 300
    # WHEN more lands and the loader runs again right away
    land(paced, aws, 5, "r2")
    second = loading_tasks.load({"mode": "load"})
    # THEN it waited for the rest of the interval, then loaded what had landed
    assert len(slept) == 1 and 0 < slept[0] <= 600
    assert second["batches"] == 1
    # ... and a forced reload of a day range is never held back
    day = datetime.now(UTC).date().isoformat()
    loading_tasks.load({"mode": "load", "from_day": day, "to_day": day, "force": True})
    assert len(slept) == 1
