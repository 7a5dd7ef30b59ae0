"""Comparing one identity's warehouse rows with Cognito's records: every kind of mismatch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cognito_streams.core.reconcile import (
    CognitoRecord,
    WarehouseRecord,
    compare_identity,
    sample_identities,
    value_matches,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
SETTLED = T0 + timedelta(days=1)


def c(key: str, value: str | None, sync: int = 1, ds: str = "prefs", at: datetime = T0) -> CognitoRecord:
    return CognitoRecord(ds, key, value, sync, at)


def w(key: str, value: str | None, sync: int = 1, deleted: bool = False, ds: str = "prefs", **kw) -> WarehouseRecord:  # type: ignore[no-untyped-def]
    return WarehouseRecord(ds, key, value, sync, T0, deleted, **kw)


def kinds(cognito, warehouse) -> dict[str, str]:  # type: ignore[no-untyped-def]
    result = compare_identity("pool", "id", cognito, warehouse, settled_before=SETTLED)
    return {m.record_key: m.kind for m in result.mismatches}


def test_identical_sides_have_no_mismatch() -> None:
    assert kinds([c("a", "1"), c("b", None, 2)], [w("a", "1"), w("b", None, 2, deleted=True)]) == {}


def test_each_kind() -> None:
    cognito = [c("missing", "x"), c("stale", "new", 3), c("resurrected", "v"), c("removed", None, 4), c("gone", None)]
    warehouse = [
        w("stale", "old", 2),
        w("resurrected", "v", deleted=True),
        w("removed", "v", 3),
        w("extra", "v"),
        w("old-tombstone", None, deleted=True),
    ]
    assert kinds(cognito, warehouse) == {
        "missing": "missing",
        "stale": "stale_value",
        "resurrected": "wrong_delete_state",
        "removed": "wrong_delete_state",
        "gone": "missing",
        "extra": "extra",
    }


def test_same_value_different_sync_count_is_stale_and_details_hold_no_values() -> None:
    result = compare_identity(
        "pool", "id", [c("k", "secret-value", 5)], [w("k", "secret-value", 4)], settled_before=SETTLED
    )
    (m,) = result.mismatches
    assert m.kind == "stale_value"
    assert "sync count 4 != Cognito's 5" in m.detail
    assert "secret-value" not in m.detail


def test_recent_changes_are_in_flight_not_mismatches() -> None:
    result = compare_identity(
        "pool", "id", [c("k", "v", at=SETTLED + timedelta(seconds=1))], [], settled_before=SETTLED
    )
    assert result.mismatches == []
    assert result.in_flight == 1


def test_cut_values_match_by_prefix_and_full_length() -> None:
    full = "é" * 40_000  # 80,000 UTF-8 bytes
    cut = "é" * 32_767
    assert value_matches(full, w("k", cut, is_value_cut=True, value_bytes=80_000))
    assert not value_matches(full, w("k", cut, is_value_cut=True, value_bytes=79_998))
    assert not value_matches(full + "x", w("k", "z" + cut[1:], is_value_cut=True, value_bytes=80_001))


def test_sampling_is_deterministic_and_bounded() -> None:
    ids = [("pool", f"id-{i}") for i in range(100)]
    first = sample_identities(ids, 10, seed="2026-11-26")
    assert len(first) == 10
    assert first == sample_identities(list(reversed(ids)), 10, seed="2026-11-26")
    assert first != sample_identities(ids, 10, seed="another day")
    assert sample_identities(ids, None, seed="x") == sorted(ids)
