"""The reference model (core/state.py) on the examples docs/semantics.md describes, plus invariants
checked with hypothesis: the state does not depend on order, duplication or how changes are grouped."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cognito_streams.core.landing_format import CHANGES_SCHEMA
from cognito_streams.core.state import FIRST_GENERATION, Change, expected_state, generation
from tests.support.changes import IDENTITY, POOL, at, change, dataset_remove, resent

KEY = (POOL, IDENTITY, "game_state")


def test_change_follows_the_contract_column_order() -> None:
    c = change("coins", "1", 1, 0)
    assert list(c.as_row()) == CHANGES_SCHEMA.names
    assert Change.from_row(c.as_row()) == c


def test_record_key_is_null_exactly_for_dataset_removes() -> None:
    with pytest.raises(ValueError, match="record_key must be null"):
        replace(dataset_remove(1, 0), record_key="k")
    with pytest.raises(ValueError, match="op 'upsert'"):
        replace(change("k", "v", 1, 0), op="upsert")


def test_highest_sync_count_wins_whatever_the_order() -> None:
    newer, older = change("coins", "new", 8, 0), change("coins", "old", 7, 500)
    for changes in ([newer, older], [older, newer]):
        assert expected_state(changes).records[(*KEY, "coins")].record_value == "new"


def test_equal_sync_count_is_broken_by_time_then_stream_position() -> None:
    early, late = change("coins", "a", 3, 0), change("coins", "b", 3, 10)
    assert expected_state([late, early]).records[(*KEY, "coins")].record_value == "b"
    first, second = change("level", "x", 3, 0, seq=10), change("level", "y", 3, 0, seq=11)
    assert expected_state([second, first]).records[(*KEY, "level")].record_value == "y"


def test_remove_leaves_a_tombstone_an_older_replace_cannot_resurrect() -> None:
    state = expected_state([change("coins", None, 9, 900), change("coins", "late", 8, 800)])
    row = state.records[(*KEY, "coins")]
    assert row.is_deleted and row.op == "remove" and row.record_value is None
    assert state.datasets[KEY].live_record_count == 0


def test_generation_is_the_latest_delete_strictly_before() -> None:
    deletes = [at(100), at(200)]
    assert generation(at(50), deletes) == FIRST_GENERATION
    assert generation(at(100), deletes) == FIRST_GENERATION  # a change at the delete's time is before it
    assert generation(at(150), deletes) == at(100)
    assert generation(at(250), deletes) == at(200)


def test_dataset_delete_then_recreation() -> None:
    # GIVEN keys at syncs 5-6, a delete at sync 7, then the dataset re-created (counts restart at 1)
    changes = [change("coins", "100", 5, 0), change("level", "9", 6, 100), dataset_remove(7, 200)]
    changes.append(change("coins", "5", 1, 300))
    state = expected_state(changes)
    # THEN the re-created key wins despite its lower sync count; the other key is deleted
    assert state.records[(*KEY, "coins")].record_value == "5"
    assert not state.records[(*KEY, "coins")].is_deleted
    assert state.records[(*KEY, "level")].is_deleted and state.records[(*KEY, "level")].op == "replace"
    ds = state.datasets[KEY]
    assert (ds.last_sync_count, ds.deleted_at, ds.is_deleted, ds.live_record_count) == (1, at(200), False, 1)


def test_a_change_at_the_delete_time_is_deleted() -> None:
    state = expected_state([change("coins", "1", 3, 200), dataset_remove(4, 200)])
    assert state.records[(*KEY, "coins")].is_deleted
    assert state.datasets[KEY].is_deleted and state.datasets[KEY].last_sync_count == 4


def test_deleted_dataset_without_changes() -> None:
    ds = expected_state([dataset_remove(4, 0)]).datasets[KEY]
    assert (ds.is_deleted, ds.last_sync_count, ds.live_record_count) == (True, 4, 0)
    assert expected_state([dataset_remove(4, 0)]).records == {}


def test_last_sync_count_is_the_current_generation_maximum() -> None:
    changes = [change("a", "1", 9, 0), dataset_remove(10, 100), change("a", "2", 2, 200), change("b", "3", 3, 300)]
    assert expected_state(changes).datasets[KEY].last_sync_count == 3
    assert expected_state(changes[:1]).datasets[KEY].last_sync_count == 9


items = st.lists(
    st.one_of(
        st.builds(
            lambda k, v, sc, t: change(k, v, sc, t * 1000),
            st.sampled_from(["a", "b"]),
            st.sampled_from([None, "x", "y"]),
            st.integers(1, 4),
            st.integers(0, 5),
        ),
        st.builds(lambda sc, t: dataset_remove(sc, t * 1000), st.integers(1, 4), st.integers(0, 5)),
    ),
    max_size=12,
)


def _canonical(changes: list[Change]) -> list[Change]:
    """One content per version, as Cognito guarantees: the first item of each version wins. A key's version
    is (key, sync_count, last_modified_at); a dataset delete's is its time."""

    def version(c: Change) -> tuple[object, ...]:
        return (
            ("delete", c.last_modified_at) if c.record_key is None else (c.record_key, c.sync_count, c.last_modified_at)
        )

    seen: dict[object, Change] = {}
    for c in changes:
        seen.setdefault(version(c), c)
    return [seen[version(c)] for c in changes]


@settings(max_examples=300)
@given(changes=items, data=st.data())
def test_state_ignores_order_and_duplicates(changes: list[Change], data: st.DataObject) -> None:
    changes = _canonical(changes)
    shuffled = data.draw(st.permutations(changes))
    duplicated = (
        shuffled + [resent(c) for c in data.draw(st.lists(st.sampled_from(changes), max_size=5))] if changes else []
    )
    assert expected_state(duplicated) == expected_state(changes)


@settings(max_examples=200)
@given(changes=items)
def test_every_deleted_key_is_a_remove_or_not_newer_than_the_delete(changes: list[Change]) -> None:
    state = expected_state(_canonical(changes))
    for key, row in state.records.items():
        ds = state.datasets[key[:3]]
        assert row.is_deleted == (
            row.op == "remove" or (ds.deleted_at is not None and row.last_modified_at <= ds.deleted_at)
        )
        assert ds.live_record_count == sum(1 for k, r in state.records.items() if k[:3] == key[:3] and not r.is_deleted)
