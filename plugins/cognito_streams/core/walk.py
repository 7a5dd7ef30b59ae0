"""Reading one identity from Cognito Sync: the walk reconciliation and the snapshot share (pure).

For one identity of one pool: ``ListDatasets`` (every page); ``DescribeDataset`` for each dataset the
caller expects (the warehouse holds it live) and the listing did not show, because the listing is paged,
not a snapshot, and only a not-found answer proves a dataset gone; ``ListRecords`` from sync count 0
(every page: removed keys come back as records without a ``Value``) for every dataset the caller wants
listed. An identity Cognito Sync does not know (``ListDatasets`` answers not found) is said so, not
raised: one such identity must not stop a walk of millions.

Each answer carries the moment Cognito Sync gave it (the HTTP ``Date`` of the answer, when the reader
knows it): the snapshot places the dataset deletes it infers at such moments (docs/semantics.md,
"Snapshots"). The reader (:class:`SyncReader`, ``hooks.cognito_sync.CognitoSyncHook`` in production) does
the I/O; this module only decides what to call, in which order, and what the answers mean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

T = TypeVar("T")


class Answer(NamedTuple, Generic[T]):
    """One answer of Cognito Sync: ``value`` None means ResourceNotFoundException; ``answered_at`` is the
    answer's ``Date`` (UTC, whole seconds), None when unknown."""

    value: T | None
    answered_at: datetime | None


@dataclass(frozen=True)
class ListedRecords:
    """Every record ``ListRecords`` returned for one dataset (all pages), and the dataset's sync count."""

    records: list[Mapping[str, Any]]
    dataset_sync_count: int | None


class SyncReader(Protocol):
    """The three Cognito Sync reads of a walk (every page of each)."""

    def fetch_datasets(self, identity_pool_id: str, identity_id: str) -> Answer[list[Mapping[str, Any]]]:
        """``ListDatasets``: the ``Dataset`` shapes (None: the identity is not known)."""
        ...

    def fetch_description(
        self, identity_pool_id: str, identity_id: str, dataset_name: str
    ) -> Answer[Mapping[str, Any]]:
        """``DescribeDataset``'s ``Dataset`` (None: the dataset does not exist)."""
        ...

    def fetch_records(self, identity_pool_id: str, identity_id: str, dataset_name: str) -> Answer[ListedRecords]:
        """``ListRecords`` from sync count 0 (None: the dataset does not exist)."""
        ...


@dataclass
class DatasetRead:
    """One dataset Cognito Sync has (or had when it was listed)."""

    #: The ``Dataset`` shape (from ``ListDatasets``, or ``DescribeDataset`` when ``described``).
    description: Mapping[str, Any]
    #: Every record ``ListRecords`` returned, live and removed; None when the caller did not want them.
    records: list[Mapping[str, Any]] | None = None
    #: ``ListRecords``' ``DatasetSyncCount``.
    dataset_sync_count: int | None = None
    #: Found by ``DescribeDataset`` (created after the listing passed its name), not by the listing.
    described: bool = False
    #: ``ListRecords`` answered not found: the dataset was deleted after it was listed (at this moment).
    vanished: bool = False
    vanished_at: datetime | None = None
    #: When ``ListRecords`` answered (its last page).
    records_read_at: datetime | None = None

    @property
    def name(self) -> str:
        return str(self.description["DatasetName"])


@dataclass
class IdentityRead:
    """What Cognito Sync answered for one identity."""

    identity_pool_id: str
    identity_id: str
    datasets: list[DatasetRead] = field(default_factory=list)
    #: Datasets expected but confirmed absent (``DescribeDataset``: not found), with the answer's moment.
    absent: dict[str, datetime | None] = field(default_factory=dict)
    #: Cognito Sync does not know the identity (``ListDatasets``: not found).
    unknown: bool = False
    #: When ``ListDatasets`` answered (its last page).
    listed_at: datetime | None = None
    #: ``DescribeDataset`` calls made.
    described: int = 0
    #: API calls made (pages count one each where the reader tells; at least one per operation).
    calls: int = 0


def walk_identity(
    reader: SyncReader,
    identity_pool_id: str,
    identity_id: str,
    *,
    expected: Iterable[str] = (),
    want_records: Callable[[Mapping[str, Any]], bool] | None = None,
) -> IdentityRead:
    """Read one identity: its datasets, each expected one the listing lacks confirmed, and the records
    of every dataset ``want_records`` accepts (all by default). See the module docstring."""
    read = IdentityRead(identity_pool_id, identity_id)
    listed = reader.fetch_datasets(identity_pool_id, identity_id)
    read.calls += 1
    read.listed_at = listed.answered_at
    if listed.value is None:
        read.unknown = True
        return read
    read.datasets = [DatasetRead(d) for d in listed.value]
    names = {d.name for d in read.datasets}
    for name in sorted(set(expected) - names):
        described = reader.fetch_description(identity_pool_id, identity_id, name)
        read.calls += 1
        read.described += 1
        if described.value is None:
            read.absent[name] = described.answered_at
        else:
            read.datasets.append(DatasetRead(described.value, described=True))
    for dataset in read.datasets:
        if want_records is not None and not want_records(dataset.description):
            continue
        answer = reader.fetch_records(identity_pool_id, identity_id, dataset.name)
        read.calls += 1
        dataset.records_read_at = answer.answered_at
        if answer.value is None:
            # Deleted after it was listed: nothing of it is left to list.
            dataset.records, dataset.vanished, dataset.vanished_at = [], True, answer.answered_at
        else:
            dataset.records = list(answer.value.records)
            dataset.dataset_sync_count = answer.value.dataset_sync_count
    return read
