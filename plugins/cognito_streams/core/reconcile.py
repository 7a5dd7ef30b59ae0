"""Compare the warehouse with Cognito Sync itself, one identity at a time (pure).

Cognito's side is what ``ListDatasets`` and ``ListRecords`` answer (removed keys come back without
a ``Value``); the warehouse's side is the identity's rows of ``records`` and ``datasets``. Every
difference is a :class:`Mismatch` of one kind:

- ``missing``: Cognito has the key (live, or as a removed-key tombstone) and the warehouse has no row;
- ``extra``: the warehouse has a live row for a key Cognito does not have at all;
- ``stale_value``: both live, but the value, sync count or modification time differ;
- ``wrong_delete_state``: one side has the key deleted and the other live.

Changes made less than ``settle`` ago may still be on their way through Kinesis and S3: keys whose
Cognito ``LastModifiedDate`` is that recent are counted as in flight, not as mismatches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

KINDS = ("missing", "extra", "stale_value", "wrong_delete_state")


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
    """One row of ``records`` (the value may be cut to ``value_max_bytes``)."""

    dataset_name: str
    key: str
    value: str | None
    sync_count: int
    last_modified_at: datetime
    is_deleted: bool
    is_value_cut: bool = False
    value_bytes: int | None = None


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
    mismatches: list[Mismatch] = field(default_factory=list)


def value_matches(cognito_value: str, row: WarehouseRecord) -> bool:
    """Equal values; a cut warehouse value matches when it is a prefix of Cognito's full value and
    ``value_bytes`` is the full value's UTF-8 length."""
    if not row.is_value_cut:
        return row.value == cognito_value
    full_bytes = len(cognito_value.encode("utf-8"))
    return row.value is not None and cognito_value.startswith(row.value) and row.value_bytes == full_bytes


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
    theirs = {(r.dataset_name, r.key): r for r in cognito}

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
                problems.append(f"value differs (warehouse sha256 {_digest(w.value)}, Cognito {_digest(c.value)})")
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


def _digest(value: str | None) -> str:
    if value is None:
        return "null"
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]


def sample_identities(identities: Sequence[tuple[str, str]], size: int | None, seed: str) -> list[tuple[str, str]]:
    """A deterministic sample (same seed, same identities: a rerun checks the same ones)."""
    unique = sorted(set(identities))
    if size is None or size >= len(unique):
        return unique
    ranked = sorted(unique, key=lambda pi: hashlib.sha256(f"{seed}|{pi[0]}|{pi[1]}".encode()).hexdigest())
    return sorted(ranked[:size])
