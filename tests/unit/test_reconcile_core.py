"""Comparing one identity's warehouse rows with Cognito's records: every kind of mismatch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cognito_streams.core.reconcile import (
    CognitoDataset,
    CognitoRecord,
    WarehouseDataset,
    WarehouseRecord,
    compare_datasets,
    compare_identity,
    records_summary,
    sample_identities,
    summary_matches,
    unknown_identity,
    value_matches,
)
from cognito_streams.core.values import stored_key, stored_value

T0 = datetime(2026, 11, 1, tzinfo=UTC)
SETTLED = T0 + timedelta(days=1)


def c(key: str, value: str | None, sync: int = 1, ds: str = "prefs", at: datetime = T0) -> CognitoRecord:
    return CognitoRecord(ds, key, value, sync, at)


def w(key: str, value: str | None, sync: int = 1, deleted: bool = False, ds: str = "prefs", **kw) -> WarehouseRecord:  # type: ignore[no-untyped-def]
    return WarehouseRecord(ds, key, value, sync, T0, deleted, **kw)


def kinds(cognito, warehouse) -> dict[str | None, str]:  # type: ignore[no-untyped-def]
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


def value_derived_texts(*values: str, width: int = 8) -> list[str]:
    """What a detail must not contain: the values, and any ``width``-hex-digit piece of a common digest
    of them (a 48-bit SHA-256 prefix of a short value is found by dictionary)."""
    import hashlib

    out = list(values)
    for value in values:
        for algorithm in ("md5", "sha1", "sha256", "sha512", "blake2b"):
            digest = hashlib.new(algorithm, value.encode()).hexdigest()
            out += [digest[i : i + width] for i in range(len(digest) - width + 1)]
    return out


def test_a_differing_value_is_described_by_its_lengths_only() -> None:
    # GIVEN a short secret value changed in the warehouse (and a cut one)
    cognito = [c("pin", "4711", 2), c("long", "x" * 100 + "tail", 3)]
    warehouse = [w("pin", "1234", 2), w("long", "y" * 20, 3, is_value_cut=True, value_bytes=104)]
    result = compare_identity("pool", "id", cognito, warehouse, settled_before=SETTLED)
    # THEN each is stale_value, described by sizes, with no value-derived text at all
    details = {m.record_key: m.detail for m in result.mismatches}
    assert details == {
        "pin": "value differs (warehouse 4 bytes, Cognito 4 bytes)",
        "long": "value differs (warehouse 20 bytes kept of 104 (cut), Cognito 104 bytes)",
    }
    for text in value_derived_texts("4711", "1234", "x" * 100 + "tail", "y" * 20):
        assert not any(text in d for d in details.values()), text


def test_an_unknown_identity_reports_its_live_datasets() -> None:
    # GIVEN the warehouse's rows of an identity Cognito Sync does not know: a live dataset, a deleted
    # one, and records of a dataset whose datasets row is missing
    datasets = [
        WarehouseDataset("prefs", T0, False, 1),
        WarehouseDataset("old", T0, True, 0),
    ]
    records = [w("a", "1"), w("b", None, deleted=True, ds="old"), w("c", "3", ds="orphan")]
    # WHEN compared
    result = unknown_identity("pool", "gone", datasets, records, error_code="ResourceNotFoundException")
    # THEN each dataset with live data is one unknown_identity mismatch; deleted data is none
    assert {(m.dataset_name, m.record_key, m.kind) for m in result.mismatches} == {
        ("prefs", None, "unknown_identity"),
        ("orphan", None, "unknown_identity"),
    }
    assert result.datasets_checked == 3
    detail = next(m.detail for m in result.mismatches if m.dataset_name == "prefs")
    assert "does not know identity gone (ListDatasets: ResourceNotFoundException)" in detail
    assert "DeleteIdentities" in detail and "1 live records" in detail


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


def test_values_and_keys_holding_nul_compare_decoded_with_cognitos() -> None:
    # GIVEN Cognito values and keys holding U+0000, stored as the landing stores them (core/values.py)
    value, key = "a\x00b\\c", "le\x00vel"
    stored = stored_value(value, 65_535)
    row = w(stored_key(key), stored.text, is_value_cut=True, value_bytes=stored.value_bytes)
    # WHEN compared  THEN they match, and a different value or key does not
    assert kinds([c(key, value)], [row]) == {}
    assert kinds([c(key, "a\x00b\\d")], [row]) == {stored_key(key): "stale_value"}
    assert kinds([c("level", value)], [row]) == {"level": "missing", stored_key(key): "extra"}
    # AND a value holding U+0000 too long to store escaped is a prefix up to its first U+0000, like a cut one
    long_value = "é" * 40_000 + "\x00"
    cut = stored_value(long_value, 65_535)
    assert cut.flagged and value_matches(long_value, w("k", cut.text, is_value_cut=True, value_bytes=cut.value_bytes))
    assert not value_matches("é" * 40_001, w("k", cut.text, is_value_cut=True, value_bytes=cut.value_bytes))
    # AND the dataset's size counts the key and the value as Cognito does, not their stored forms
    assert records_summary([row]) == (1, len(key.encode()) + len(value.encode()), T0)


def test_sampling_is_deterministic_and_bounded() -> None:
    ids = [("pool", f"id-{i}") for i in range(100)]
    first = sample_identities(ids, 10, seed="2026-11-26")
    assert len(first) == 10
    assert first == sample_identities(list(reversed(ids)), 10, seed="2026-11-26")
    assert first != sample_identities(ids, 10, seed="another day")
    assert sample_identities(ids, None, seed="x") == sorted(ids)


# -- datasets ---------------------------------------------------------------------------------------


def cd(name: str, num: int, storage: int = 0, at: datetime = T0) -> CognitoDataset:
    return CognitoDataset(name, at, num, storage)


def wd(name: str, live: int, deleted: bool = False, at: datetime = T0) -> WarehouseDataset:
    return WarehouseDataset(name, at, deleted, live)


def dataset_kinds(cognito, warehouse, listed=None) -> dict[str, str]:  # type: ignore[no-untyped-def]
    result = compare_datasets("pool", "id", cognito, warehouse, listed or {}, settled_before=SETTLED)
    assert all(m.record_key is None for m in result.mismatches)
    return {m.dataset_name: m.kind for m in result.mismatches}


def test_identical_datasets_have_no_mismatch() -> None:
    # GIVEN Cognito's descriptions and datasets rows that agree (a deleted dataset absent from Cognito)
    cognito = [cd("prefs", 2), cd("empty", 0)]
    warehouse = [wd("prefs", 2), wd("empty", 0), wd("gone", 0, deleted=True)]
    # THEN nothing is reported
    assert dataset_kinds(cognito, warehouse) == {}


def test_each_dataset_kind() -> None:
    # GIVEN one dataset per way a datasets row can be wrong
    cognito = [cd("no_row", 1), cd("marked_deleted", 1), cd("old_time", 1), cd("wrong_count", 3)]
    warehouse = [
        wd("marked_deleted", 1, deleted=True),
        wd("old_time", 1, at=T0 - timedelta(seconds=1)),
        wd("wrong_count", 2),
        wd("not_in_cognito", 4),
    ]
    # THEN each is found with its kind
    assert dataset_kinds(cognito, warehouse) == {
        "no_row": "missing",
        "marked_deleted": "wrong_delete_state",
        "old_time": "stale_value",
        "wrong_count": "stale_value",
        "not_in_cognito": "extra",
    }


def test_listed_records_give_the_exact_live_count_whatever_num_records_counts() -> None:
    # GIVEN a Cognito whose NumRecords also counted removed keys (3) while only 2 are live
    listed = {"prefs": [c("a", "1"), c("b", "2"), c("removed", None)]}
    # THEN the listed records' live count (2) is what the datasets row is held to
    assert dataset_kinds([cd("prefs", 3)], [wd("prefs", 2)], listed) == {}
    result = compare_datasets("pool", "id", [cd("prefs", 3)], [wd("prefs", 3)], listed, settled_before=SETTLED)
    (m,) = result.mismatches
    assert m.kind == "stale_value" and "live_record_count 3 != Cognito's 2 live records" in m.detail


def test_a_dataset_changed_recently_is_in_flight() -> None:
    # GIVEN a dataset whose description is settled but one of its listed records changed since
    late = SETTLED + timedelta(seconds=1)
    listed = {"prefs": [c("a", "1"), c("b", "2", at=late)]}
    result = compare_datasets("pool", "id", [cd("prefs", 1)], [wd("prefs", 1)], listed, settled_before=SETTLED)
    # THEN the dataset is not judged
    assert result.mismatches == [] and result.in_flight == 1
    result = compare_datasets("pool", "id", [cd("prefs", 5, at=late)], [], {}, settled_before=SETTLED)
    assert result.mismatches == [] and result.in_flight == 1


def test_records_summary_counts_live_keys_bytes_and_latest_change() -> None:
    rows = [
        w("k1", "é", value_bytes=2),  # 2 + 2 bytes
        w("k2", "x" * 10, is_value_cut=True, value_bytes=70_000),  # the full length counts, not the cut one
        WarehouseRecord("prefs", "gone", None, 3, T0 + timedelta(hours=1), True),
    ]
    assert records_summary(rows) == (2, 4 + 2 + 70_000, T0 + timedelta(hours=1))
    assert records_summary([]) == (0, 0, None)


def test_summary_matches_only_when_description_row_and_records_all_agree() -> None:
    rows = [w("k1", "abc", value_bytes=3), w("k2", "de", value_bytes=2)]  # 2 live keys, (2 + 3) + (2 + 2) = 9 bytes
    good = cd("prefs", 2, storage=9)

    def matches(cognito: CognitoDataset, row: WarehouseDataset | None, records=rows) -> bool:  # type: ignore[no-untyped-def]
        return summary_matches(cognito, row, records, settled_before=SETTLED)

    assert matches(good, wd("prefs", 2))
    assert not matches(good, None)  # no datasets row
    assert not matches(good, wd("prefs", 2, deleted=True))
    assert not matches(good, wd("prefs", 3))  # datasets row's count tampered
    assert not matches(good, wd("prefs", 2, at=T0 + timedelta(seconds=1)))
    assert not matches(good, wd("prefs", 2), rows[:1])  # a records row missing
    assert not matches(good, wd("prefs", 2), [rows[0], w("k2", "longer", value_bytes=6)])  # a value of another size
    assert not matches(cd("prefs", 2, storage=9, at=SETTLED), wd("prefs", 2, at=SETTLED))  # in flight
    # What the screen cannot see, by design: a value replaced by one of the same length.
    assert matches(good, wd("prefs", 2), [rows[0], w("k2", "zz", value_bytes=2)])
