"""Property: whatever order, duplication and batching the changes arrive in, the warehouse ends in the
reference model's state (core/state.py, docs/semantics.md), after every batch, not just the last.

The SQL under test is the loader's own merge (sql/load.sql), on both warehouses: the PostgreSQL stand-in, and
the Redshift emulator through redshift-connector (Redshift's SQL, no key enforced, serializable isolation).
Batches are put in the stage with plain inserts (``Warehouse.merge_changes``) instead of S3 + COPY to keep
hundreds of examples fast; test_merge_scenarios.py covers the S3 + COPY path.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cognito_streams.core.state import Change, expected_state
from cognito_streams.warehouse.base import Warehouse
from cognito_streams.warehouse.connect import open_warehouse
from tests.conftest import warehouse_env
from tests.support.changes import IDENTITY, POOL, change, dataset_remove, sequence_number
from tests.support.warehouse import drop_schema, drop_unique_keys, pipeline_settings, query, read_state, unique_schema

pytestmark = pytest.mark.integration

IDENTITIES = (IDENTITY, "us-east-1:00000000-0000-4000-8000-000000000002")
DATASETS = ("game_state", "app_prefs")
KEYS = ("coins", "level", "theme")
SHARDS = ("shardId-000000000000", "shardId-000000000001")
EPOCH = datetime(1970, 1, 1)
VALUES = ("a", "b", "", "long value " * 3)


@st.composite
def histories(draw: st.DrawFn) -> list[Change]:
    """Distinct versions and deletes on a small universe, so keys, sync counts and times collide often
    (equal times of a change and a delete, sync counts restarting, removes...). Each version has one
    content, as in Cognito: copies made later are exact resends."""
    items: dict[tuple[object, ...], Change] = {}
    for _ in range(draw(st.integers(1, 16))):
        # Skewed towards one identity and dataset, so that most items meet on the same keys.
        identity = draw(st.sampled_from(IDENTITIES[:1] * 3 + IDENTITIES[1:]))
        dataset = draw(st.sampled_from(DATASETS[:1] * 3 + DATASETS[1:]))
        lma = draw(st.integers(0, 8)) * 1000
        if draw(st.integers(0, 5)) == 0:
            sc = draw(st.integers(1, 6))
            items.setdefault(("d", identity, dataset, lma), dataset_remove(sc, lma, dataset=dataset, identity=identity))
        else:
            key = draw(st.sampled_from(KEYS))
            sc = draw(st.integers(1, 6))
            value = draw(st.sampled_from((None, *VALUES)))
            items.setdefault(
                ("k", identity, dataset, key, sc, lma),
                change(key, value, sc, lma, dataset=dataset, identity=identity),
            )
    return list(items.values())


@st.composite
def deliveries(draw: st.DrawFn) -> list[list[Change]]:
    """A history delivered the way Kinesis and the landing DAG may deliver it: every item one to three
    times (new stream positions), in any order, cut into any number of batches."""
    copies: list[Change] = []
    n = 0
    for item in draw(histories()):
        for _ in range(draw(st.integers(1, 3))):
            n += 1
            copies.append(
                replace(
                    item,
                    shard_id=draw(st.sampled_from(SHARDS)),
                    sequence_number=sequence_number(draw(st.integers(1, 10**6)) * 100 + n),
                )
            )
    ordered = draw(st.permutations(copies))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(ordered) - 1)), max_size=4)))
    bounds = [0, *cuts, len(ordered)]
    return [list(ordered[a:b]) for a, b in itertools.pairwise(bounds) if a < b]


#: (warehouse, drop the keys after migrating): PostgreSQL with its keys and without (as Redshift treats them), and
#: the Redshift emulator, which enforces none.
WAREHOUSE_VARIANTS = [
    pytest.param(("postgres", False), id="postgres"),
    pytest.param(("postgres", True), id="postgres-no-keys"),
    pytest.param(("redshift", False), id="redshift"),
]


@pytest.fixture(scope="module", params=WAREHOUSE_VARIANTS)
def warehouse(request: pytest.FixtureRequest, stack) -> Iterator[Warehouse]:  # type: ignore[no-untyped-def]
    """The pipeline's warehouse (``open_warehouse``, as the loader opens it) on a fresh schema, on each engine; on
    PostgreSQL also without its primary keys and unique indexes (Redshift enforces none: the emulator drops them):
    correctness must not depend on an index refusing a duplicate."""
    engine, drop_keys = request.param
    with warehouse_env(stack, engine):
        settings = pipeline_settings(warehouse_schema=unique_schema())
        wh = open_warehouse(settings)
        try:
            wh.ensure_schema()
            if drop_keys:
                drop_unique_keys(settings.warehouse_schema)
            yield wh
        finally:
            wh.close()
            drop_schema(settings.warehouse_schema)


#: The checks of the tables a merge writes (sql/checks.sql); without keys they are the only guard of the grain.
MERGE_CHECKS = (
    "records_keys_unique", "record_changes_versions_unique", "dataset_deletes_unique", "datasets_keys_unique",
    "live_record_counts",
)  # fmt: skip


def assert_grain_holds(wh: Warehouse) -> None:
    """The data-quality checks of the merged tables hold."""
    checks = wh.sql.quality_checks()
    with wh.transaction() as cur:
        for name in MERGE_CHECKS:
            cur.execute(checks[name], (EPOCH,) * checks[name].count("%s") or None)
            failing, example = cur.fetchone()
            assert failing == 0, f"{name}: {failing} failing, e.g. {example}"


def _reset(wh: Warehouse) -> None:
    query(wh, "truncate {schema}.records, {schema}.record_changes, {schema}.dataset_deletes, {schema}.datasets")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=deliveries())
def test_any_order_duplication_and_batching_gives_the_reference_state(
    warehouse: Warehouse, batches: list[list[Change]]
) -> None:
    # GIVEN an empty warehouse
    _reset(warehouse)
    seen: list[Change] = []
    for batch in batches:
        # WHEN the next batch is merged
        warehouse.merge_changes(batch)
        seen.extend(batch)
        # THEN records and datasets equal the reference model's state of everything merged so far
        got, want = read_state(warehouse), expected_state(seen)
        assert got.records == want.records
        assert got.datasets == want.datasets
    # AND the history holds one row per distinct version
    versions = {(c.key, c.sync_count, c.last_modified_at) for c in seen if c.record_key is not None}
    assert query(warehouse, "select count(*) from {schema}.record_changes")[0][0] == len(versions)
    # AND every table keeps its grain (with or without unique keys)
    assert_grain_holds(warehouse)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=deliveries())
def test_rebuild_from_history_gives_the_same_state(warehouse: Warehouse, batches: list[list[Change]]) -> None:
    # GIVEN a warehouse loaded batch by batch
    _reset(warehouse)
    for batch in batches:
        warehouse.merge_changes(batch)
    before = read_state(warehouse)
    # WHEN records and datasets are rebuilt from record_changes and dataset_deletes
    warehouse.rebuild_current_state()
    # THEN nothing changes, and it is the reference state
    after = read_state(warehouse)
    assert after == before
    assert after == expected_state([c for b in batches for c in b])
    assert_grain_holds(warehouse)


def test_pools_are_separate(warehouse: Warehouse) -> None:
    # GIVEN the same identity, dataset and key in two pools
    _reset(warehouse)
    other_pool = "us-east-1:11111111-2222-4333-8444-555555555555"
    mine = change("coins", "1", 5, 0)
    theirs = change("coins", "2", 1, 0, pool=other_pool)
    # WHEN both are merged, in one batch
    warehouse.merge_changes([mine, theirs])
    # THEN each pool keeps its own value: a higher sync count elsewhere does not win here
    state = read_state(warehouse)
    assert state.records[(POOL, IDENTITY, "game_state", "coins")].record_value == "1"
    assert state.records[(other_pool, IDENTITY, "game_state", "coins")].record_value == "2"
