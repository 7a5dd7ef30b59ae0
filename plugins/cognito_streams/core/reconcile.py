"""Compare the warehouse with Cognito Sync itself, one identity at a time (pure).

Cognito's side is what ``ListDatasets``, ``DescribeDataset`` and ``ListRecords`` answer (removed
keys come back from ``ListRecords`` without a ``Value``); the warehouse's side is the identity's
rows of ``records`` and ``datasets``. Every difference is a :class:`Mismatch` of one kind:

- ``missing``: Cognito has the key (live, or as a removed-key tombstone) and the warehouse has no row;
- ``extra``: the warehouse has a live row for a key Cognito does not have at all;
- ``stale_value``: both live, but the value, sync count or modification time differ;
- ``wrong_delete_state``: one side has the key deleted and the other live;
- ``unknown_identity``: the warehouse holds live data of an identity Cognito does not know at all
  (``ListDatasets`` answers ResourceNotFoundException: deleted with Cognito Identity's
  ``DeleteIdentities``, or never valid), one mismatch per live dataset (:func:`unknown_identity`).

No mismatch holds a record value or anything computed from one but its length in UTF-8 bytes: an
unsalted hash of a short value is as good as the value to anyone with a dictionary.

Datasets are compared too (:func:`compare_datasets`; mismatches with ``record_key`` None): a dataset
Cognito has and ``datasets`` lacks is ``missing``, a live ``datasets`` row for a dataset Cognito does
not have is ``extra``, a ``datasets`` row marked deleted for a dataset Cognito has is
``wrong_delete_state``, and a ``last_modified_at`` or ``live_record_count`` that differs from
Cognito's ``LastModifiedDate`` / live records is ``stale_value``.

Changes made less than ``settle`` ago may still be on their way through Kinesis and S3: keys (and
datasets) whose Cognito ``LastModifiedDate`` is that recent are counted as in flight, not as
mismatches.

Two depths (:data:`DEPTHS`): ``records`` lists every dataset's records (every difference is found);
``datasets`` first compares each dataset's ``Dataset`` description (``NumRecords``, ``DataStorage``,
``LastModifiedDate``) with the warehouse's row and with its records' live count, bytes and latest
change (:func:`summary_matches`), and lists only the datasets where they differ. That costs one
``ListDatasets`` per identity instead of one ``ListRecords`` per dataset more, but a change that
keeps all three (a value replaced by one of the same UTF-8 length, a sync count changed alone) is
not seen: use it for frequent, cheap checks, and ``records`` for the proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cognito_streams.core.values import decoded_value, original_key, stored_key

KINDS = ("missing", "extra", "stale_value", "wrong_delete_state", "unknown_identity")
#: How deep a run reads Cognito: every dataset's records, or only where the dataset summary differs.
DEPTHS = ("records", "datasets")


@dataclass(frozen=True)
class CognitoRecord:
    """One record of ``ListRecords`` (``value`` None: the key was removed)."""

    dataset_name: str
    key: str
    value: str | None
    sync_count: int
    last_modified_at: datetime


@dataclass(frozen=True)
class WarehouseRecord:
    """One row of ``records``: ``key`` and ``value`` as stored (core/values.py: a value may be cut to
    ``value_max_bytes`` or escaped, a key escaped)."""

    dataset_name: str
    key: str
    value: str | None
    sync_count: int
    last_modified_at: datetime
    is_deleted: bool
    is_value_cut: bool = False
    value_bytes: int | None = None


@dataclass(frozen=True)
class CognitoDataset:
    """One dataset as ``ListDatasets`` and ``DescribeDataset`` describe it (the ``Dataset`` shape)."""

    dataset_name: str
    last_modified_at: datetime
    num_records: int
    data_storage: int


@dataclass(frozen=True)
class WarehouseDataset:
    """One row of ``datasets``."""

    dataset_name: str
    last_modified_at: datetime
    is_deleted: bool
    live_record_count: int


@dataclass(frozen=True)
class Mismatch:
    """One difference, with enough to find and explain it (never the values themselves)."""

    identity_pool_id: str
    identity_id: str
    dataset_name: str
    record_key: str | None
    kind: str
    detail: str
    cognito_sync_count: int | None = None
    warehouse_sync_count: int | None = None


@dataclass
class IdentityResult:
    """What comparing one identity found."""

    keys_checked: int = 0
    in_flight: int = 0
    datasets_checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)


def value_matches(cognito_value: str, row: WarehouseRecord) -> bool:
    """The stored value, decoded (core/values.py), is Cognito's: equal when the row holds the exact value
    (as it is, or escaped); when it holds a cut one, a prefix of Cognito's value, with ``value_bytes`` its
    UTF-8 length."""
    if row.value is None:
        return False
    text, exact = decoded_value(row.value, row.is_value_cut, row.value_bytes)
    if exact:
        return text == cognito_value
    return cognito_value.startswith(text) and row.value_bytes == len(cognito_value.encode("utf-8"))


def compare_identity(
    identity_pool_id: str,
    identity_id: str,
    cognito: Iterable[CognitoRecord],
    warehouse: Iterable[WarehouseRecord],
    *,
    settled_before: datetime,
) -> IdentityResult:
    """All mismatches of one identity. ``settled_before``: Cognito changes at or after this time may
    still be in flight and are not judged."""
    result = IdentityResult()
    ours = {(r.dataset_name, r.key): r for r in warehouse}
    # Keys as the warehouse stores them (a key with U+0000 is escaped): mismatches name the stored key, which
    # reconciliation_results can hold and which joins with records.
    theirs = {(r.dataset_name, stored_key(r.key)): r for r in cognito}

    def mismatch(dataset: str, key: str | None, kind: str, detail: str, c: int | None, w: int | None) -> None:
        result.mismatches.append(Mismatch(identity_pool_id, identity_id, dataset, key, kind, detail, c, w))

    for (dataset, key), c in theirs.items():
        result.keys_checked += 1
        if c.last_modified_at >= settled_before:
            result.in_flight += 1
            continue
        w = ours.get((dataset, key))
        live_in_cognito = c.value is not None
        if w is None:
            what = "live key" if live_in_cognito else "removed key (tombstone)"
            mismatch(
                dataset,
                key,
                "missing",
                f"Cognito has this {what} at sync count {c.sync_count}; the warehouse has no row",
                c.sync_count,
                None,
            )
        elif live_in_cognito == w.is_deleted:
            state = "live" if live_in_cognito else "removed"
            mismatch(
                dataset,
                key,
                "wrong_delete_state",
                f"Cognito: {state} at sync count {c.sync_count}; warehouse: "
                f"{'deleted' if w.is_deleted else 'live'} at sync count {w.sync_count}",
                c.sync_count,
                w.sync_count,
            )
        elif live_in_cognito:
            assert c.value is not None  # noqa: S101 - live_in_cognito
            problems = []
            if w.sync_count != c.sync_count:
                problems.append(f"sync count {w.sync_count} != Cognito's {c.sync_count}")
            if w.last_modified_at != c.last_modified_at:
                problems.append(
                    f"last_modified_at {w.last_modified_at:%Y-%m-%d %H:%M:%S.%f} != Cognito's "
                    f"{c.last_modified_at:%Y-%m-%d %H:%M:%S.%f}"
                )
            if not value_matches(c.value, w):
                problems.append(f"value differs ({_sizes(w, c.value)})")
            if problems:
                mismatch(dataset, key, "stale_value", "; ".join(problems), c.sync_count, w.sync_count)

    for (dataset, key), w in ours.items():
        if (dataset, key) not in theirs and not w.is_deleted:
            result.keys_checked += 1
            mismatch(
                dataset,
                key,
                "extra",
                f"the warehouse has this key live at sync count {w.sync_count}; Cognito does not have it",
                None,
                w.sync_count,
            )
    return result


def records_summary(rows: Iterable[WarehouseRecord]) -> tuple[int, int, datetime | None]:
    """The warehouse's side of a dataset's ``Dataset`` description, from its ``records`` rows: live
    keys (``NumRecords``), their keys' and full values' UTF-8 bytes (``DataStorage``) and the latest
    change of any row, tombstones included (``LastModifiedDate``)."""
    live = size = 0
    latest: datetime | None = None
    for row in rows:
        latest = row.last_modified_at if latest is None else max(latest, row.last_modified_at)
        if row.is_deleted:
            continue
        live += 1
        value_bytes = row.value_bytes
        if value_bytes is None:
            value_bytes = 0 if row.value is None else len(row.value.encode("utf-8", "surrogatepass"))
        size += len(original_key(row.key).encode("utf-8", "surrogatepass")) + value_bytes
    return live, size, latest


def summary_matches(
    cognito: CognitoDataset,
    warehouse: WarehouseDataset | None,
    rows: Iterable[WarehouseRecord],
    *,
    settled_before: datetime,
) -> bool:
    """Whether depth ``datasets`` may skip listing this dataset's records: it is settled, and its
    description agrees with both the ``datasets`` row and the ``records`` rows (live keys, bytes,
    latest change). Anything else, including a Cognito whose counts mean something else, lists the
    records, so this screen can cost calls but never hide a difference it can see."""
    if cognito.last_modified_at >= settled_before or warehouse is None or warehouse.is_deleted:
        return False
    live, size, latest = records_summary(rows)
    return (
        warehouse.last_modified_at == cognito.last_modified_at == latest
        and warehouse.live_record_count == cognito.num_records == live
        and size == cognito.data_storage
    )


def compare_datasets(
    identity_pool_id: str,
    identity_id: str,
    cognito: Iterable[CognitoDataset],
    warehouse: Iterable[WarehouseDataset],
    listed: Mapping[str, Sequence[CognitoRecord]],
    *,
    settled_before: datetime,
) -> IdentityResult:
    """Dataset-level mismatches of one identity (``record_key`` None).

    ``cognito``: every dataset Cognito has (a dataset absent from it is one Cognito does not have);
    ``listed``: the records ``ListRecords`` returned, for the datasets that were listed. Their live
    count is the one compared with ``live_record_count`` (exact, whatever ``NumRecords`` counts);
    an unlisted dataset's ``NumRecords`` is used instead. A dataset with a change at or after
    ``settled_before`` (in its description or in its listed records) is in flight, not judged."""
    result = IdentityResult()
    ours = {w.dataset_name: w for w in warehouse}
    theirs = {c.dataset_name: c for c in cognito}

    def mismatch(dataset: str, kind: str, detail: str) -> None:
        result.mismatches.append(Mismatch(identity_pool_id, identity_id, dataset, None, kind, detail))

    for name, c in theirs.items():
        result.datasets_checked += 1
        records = listed.get(name)
        latest = max([c.last_modified_at, *(r.last_modified_at for r in records or ())])
        if latest >= settled_before:
            result.in_flight += 1
            continue
        live = c.num_records if records is None else sum(1 for r in records if r.value is not None)
        w = ours.get(name)
        if w is None:
            mismatch(
                name,
                "missing",
                f"Cognito has this dataset ({live} live records, last modified {_when(c.last_modified_at)}); "
                "the warehouse has no datasets row",
            )
        elif w.is_deleted:
            mismatch(
                name,
                "wrong_delete_state",
                f"Cognito: the dataset exists ({live} live records, last modified {_when(c.last_modified_at)}); "
                f"warehouse: deleted (last modified {_when(w.last_modified_at)})",
            )
        else:
            problems = []
            if w.last_modified_at != c.last_modified_at:
                problems.append(
                    f"last_modified_at {_when(w.last_modified_at)} != Cognito's {_when(c.last_modified_at)}"
                )
            if w.live_record_count != live:
                problems.append(f"live_record_count {w.live_record_count} != Cognito's {live} live records")
            if problems:
                mismatch(name, "stale_value", "; ".join(problems))

    for name, w in ours.items():
        if name not in theirs and not w.is_deleted:
            result.datasets_checked += 1
            mismatch(
                name,
                "extra",
                f"the warehouse has this dataset live ({w.live_record_count} live records, last modified "
                f"{_when(w.last_modified_at)}); Cognito does not have it",
            )
    return result


def _when(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S.%f}"[:-3]


def _utf8_len(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def _sizes(row: WarehouseRecord, cognito_value: str) -> str:
    """The two values' UTF-8 lengths: all a mismatch says of them."""
    if row.value is None:
        ours = "no value"
    elif row.is_value_cut:
        ours = f"{_utf8_len(row.value)} bytes kept of {row.value_bytes} (cut)"
    else:
        ours = f"{_utf8_len(row.value)} bytes"
    return f"warehouse {ours}, Cognito {_utf8_len(cognito_value)} bytes"


def unknown_identity(
    identity_pool_id: str,
    identity_id: str,
    datasets: Iterable[WarehouseDataset],
    records: Iterable[WarehouseRecord],
    *,
    error_code: str,
) -> IdentityResult:
    """The mismatches of an identity Cognito does not know (``ListDatasets`` answered ``error_code``):
    one ``unknown_identity`` per dataset the warehouse holds live (a live ``datasets`` row, or live
    ``records`` rows), ``record_key`` None. Deleted data is no mismatch: Cognito has none either."""
    result = IdentityResult()
    live: dict[str, int] = {}
    for record in records:
        if not record.is_deleted:
            live[record.dataset_name] = live.get(record.dataset_name, 0) + 1
    rows = {d.dataset_name: d for d in datasets}
    for name in sorted(set(rows) | set(live)):
        result.datasets_checked += 1
        row = rows.get(name)
        if (row is None or row.is_deleted) and not live.get(name):
            continue
        state = "no datasets row" if row is None else ("deleted" if row.is_deleted else "live")
        since = f", last modified {_when(row.last_modified_at)}" if row is not None else ""
        result.mismatches.append(
            Mismatch(
                identity_pool_id,
                identity_id,
                name,
                None,
                "unknown_identity",
                f"Cognito Sync does not know identity {identity_id} (ListDatasets: {error_code}): deleted with "
                "Cognito Identity's DeleteIdentities, or never valid; the warehouse holds this dataset "
                f"({state}{since}, {live.get(name, 0)} live records)",
            )
        )
    return result


def sample_identities(identities: Sequence[tuple[str, str]], size: int | None, seed: str) -> list[tuple[str, str]]:
    """A deterministic sample (same seed, same identities: a rerun checks the same ones)."""
    unique = sorted(set(identities))
    if size is None or size >= len(unique):
        return unique
    ranked = sorted(unique, key=lambda pi: hashlib.sha256(f"{seed}|{pi[0]}|{pi[1]}".encode()).hexdigest())
    return sorted(ranked[:size])
