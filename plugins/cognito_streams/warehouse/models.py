"""What goes in and out of a :class:`~cognito_streams.warehouse.base.Warehouse`: the batches to load
(read from the landing zone by ``cognito_streams.loading``), the load reports, the bulk-publish
attempts, and the errors a user can act on."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cognito_streams.core.landing_format import LandedBatch
from cognito_streams.core.values import clip_text

#: ``write_manifest(name, body)`` writes a load's combined COPY manifest under the landing prefix's
#: ``load-manifests/`` and returns its s3:// URL (``LandingReader.put_load_manifest``); Redshift COPYs from it.
WriteManifest = Callable[[str, bytes], str]


class WarehouseError(RuntimeError):
    """Base of the warehouse's errors; the message says what failed, with which input, what to do."""


class BatchDataError(WarehouseError):
    """A load failed because of what some landed files or batches hold (not because of the warehouse or the
    network): the loader loads the other batches and records these as failed (``landing_zone.load``).

    ``files``: the data files found at fault, when known; ``descriptors``: the batch descriptors, when known."""

    def __init__(self, message: str, *, files: Iterable[str] = (), descriptors: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.files = frozenset(files)
        self.descriptors = frozenset(descriptors)


class LoadError(BatchDataError):
    """A COPY into the stage failed (the message names the file, the line and the reason)."""


class LoadCheckError(BatchDataError):
    """Staged rows disagree with the manifests, or break the landing contract, or a descriptor or manifest is
    malformed; nothing was merged."""


class DataQualityError(WarehouseError):
    """A data-quality check failed after a load (the message lists each check with its numbers)."""


class BatchesFailedError(WarehouseError):
    """Some landed batches could not be loaded and were set aside (``failed_batches``); all others were loaded.
    The message lists each batch with its error and the repair."""


class MigrationError(WarehouseError):
    """The schema's migration history does not match the ``sql/schema`` files."""


@dataclass(frozen=True)
class ManifestEntry:
    """One entry of a Redshift COPY manifest."""

    url: str
    content_length: int
    record_count: int


@dataclass(frozen=True)
class Manifest:
    """A COPY manifest and where it is."""

    url: str
    entries: tuple[ManifestEntry, ...]

    @classmethod
    def parse(cls, url: str, body: bytes) -> Manifest:
        """Parse a manifest written by ``landing_format.copy_manifest``; errors name the manifest."""
        try:
            data = orjson.loads(body)
            entries = tuple(
                ManifestEntry(
                    url=str(e["url"]),
                    content_length=int(e["meta"]["content_length"]),
                    record_count=int(e["meta"]["record_count"]),
                )
                for e in data["entries"]
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise LoadCheckError(
                f"manifest {url} is not a COPY manifest with meta.content_length and meta.record_count per entry "
                f"({type(err).__name__}: {err}); re-land the batch or fix the writer"
            ) from None
        return cls(url=url, entries=entries)


@dataclass(frozen=True)
class BatchToLoad:
    """One landed batch, ready to load: its descriptor and its manifests."""

    descriptor_url: str
    landing_day: date
    batch: LandedBatch
    changes_manifest: Manifest | None
    rejects_manifest: Manifest | None

    def __post_init__(self) -> None:
        for kind, ref, manifest in (
            ("changes", self.batch.changes, self.changes_manifest),
            ("rejects", self.batch.rejects, self.rejects_manifest),
        ):
            listed = {e.url for e in manifest.entries} if manifest else set()
            expected = {ref.url} if ref else set()
            if listed != expected:
                raise LoadCheckError(
                    f"batch {self.descriptor_url}: its {kind} manifest lists {sorted(listed)} but the descriptor "
                    f"names {sorted(expected)}; the batch is inconsistent, re-land it"
                )

    @property
    def file_count(self) -> int:
        """Data files of the batch (at least 1, so that empty batches still bound a transaction)."""
        return max(1, len(self.batch.files()))


@dataclass(frozen=True)
class FailedBatch:
    """A landed batch the loader set aside: its COPY, its checks or its descriptor failed. Recorded in
    ``failed_batches``; loading goes on without it, and later runs try it again until it loads."""

    descriptor_url: str
    landing_day: date
    batch_id: str | None
    error_kind: str
    error_message: str

    @classmethod
    def of(cls, descriptor_url: str, landing_day: date, batch_id: str | None, err: BaseException) -> FailedBatch:
        """The record of ``err`` for one batch."""
        return cls(descriptor_url, landing_day, batch_id, type(err).__name__, str(err))

    def as_dict(self) -> dict[str, str]:
        """For XCom (JSON)."""
        return {
            "descriptor_url": self.descriptor_url,
            "landing_day": self.landing_day.isoformat(),
            "batch_id": self.batch_id or "",
            "error_kind": self.error_kind,
            "error_message": self.error_message,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FailedBatch:
        """Inverse of :meth:`as_dict`."""
        return cls(
            str(data["descriptor_url"]),
            date.fromisoformat(str(data["landing_day"])),
            str(data.get("batch_id") or "") or None,
            str(data["error_kind"]),
            str(data["error_message"]),
        )


#: How much of each failed batch's error the task's failure message quotes (the full text is in
#: failed_batches.error_message and the load task's log).
FAILED_MESSAGE_CHARS = 2_000


def batches_failed_error(failed: Sequence[FailedBatch], schema: str) -> BatchesFailedError:
    """The error that fails the run when batches were set aside: each batch, its error, and the repair."""
    lines = []
    for f in failed:
        message = (
            f.error_message
            if len(f.error_message) <= FAILED_MESSAGE_CHARS
            else f.error_message[:FAILED_MESSAGE_CHARS] + " ..."
        )
        lines.append(f"- {f.descriptor_url} ({f.error_kind}):\n    " + message.replace("\n", "\n    "))
    return BatchesFailedError(
        f"{len(failed)} landed batch(es) could not be loaded and were set aside (recorded in {schema}.failed_batches); "
        "every other batch was loaded:\n" + "\n".join(lines) + "\nRepair: fix the cause named above (usually re-land "
        "the batch: run cognito_stream_to_s3 with replay_from), then the next load retries it; see docs/operations.md, "
        "'A batch the loader set aside'"
    )


@dataclass
class MergeCounts:
    """What one merge did."""

    versions_staged: int = 0
    versions_inserted: int = 0
    deletes_inserted: int = 0
    keys_changed: int = 0
    keys_inserted: int = 0
    keys_deleted: int = 0
    datasets_touched: int = 0

    def add(self, other: MergeCounts) -> None:
        """Accumulate ``other`` into this."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


#: The steps of a load after the COPY into the stage, in order (sql/load.sql): the stage checks; dedupe and
#: the stored row of each version; the history insert; the winners; the MERGE of records; the datasets'
#: new values; the MERGE of datasets; rejects, loaded files/batches and work tables. The three writes the
#: contract needs whatever the logic (history, records, datasets) are timed on their own.
MERGE_STEPS = (
    "checks", "versions", "history", "winners", "records", "dataset_updates", "datasets", "bookkeeping",
)  # fmt: skip


@dataclass
class LoadReport:
    """What one call of ``Warehouse.load`` did (one transaction)."""

    batches: int = 0
    batches_skipped: int = 0  # already loaded by someone else when the lock was obtained
    files: int = 0
    rows_staged: int = 0
    rejects_staged: int = 0
    rejects_inserted: int = 0
    #: Wall time of the COPY into the stage tables (what a plain COPY would cost: the floor).
    stage_seconds: float = 0.0
    #: Wall time of everything after the COPY: checks, merge, bookkeeping and the commit.
    merge_seconds: float = 0.0
    merge: MergeCounts = field(default_factory=MergeCounts)
    #: Wall time of each step after the COPY (``MERGE_STEPS``), for the task log and the benchmark; the commit
    #: is what merge_seconds has beyond their sum.
    step_seconds: dict[str, float] = field(default_factory=dict)
    #: Batches set aside by the loader (``landing_zone.load``): not loaded, recorded in failed_batches.
    failed: list[FailedBatch] = field(default_factory=list)

    _SUMMED = (
        "batches", "batches_skipped", "files", "rows_staged", "rejects_staged", "rejects_inserted", "stage_seconds",
        "merge_seconds",
    )  # fmt: skip

    def add(self, other: LoadReport) -> None:
        """Accumulate ``other`` into this."""
        for name in self._SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.merge.add(other.merge)
        self.failed.extend(other.failed)
        for step, seconds in other.step_seconds.items():
            self.step_seconds[step] = self.step_seconds.get(step, 0.0) + seconds

    def steps_text(self) -> str:
        """``checks 0.05 s, versions 0.91 s, ...`` in MERGE_STEPS order, for the task log."""
        return ", ".join(f"{step} {self.step_seconds[step]:.2f} s" for step in MERGE_STEPS if step in self.step_seconds)

    def as_dict(self) -> dict[str, Any]:
        """Flat counts (and the two timings, rounded to milliseconds), for logs, XCom and asset event extras."""
        out: dict[str, Any] = {k: getattr(self, k) for k in self._SUMMED}
        out["stage_seconds"] = round(self.stage_seconds, 3)
        out["merge_seconds"] = round(self.merge_seconds, 3)
        out.update(vars(self.merge))
        out["batches_failed"] = len(self.failed)
        return out


@dataclass(frozen=True)
class CheckResult:
    """One data-quality check: how many rows fail it, and one example."""

    name: str
    failing: int
    example: str

    @property
    def ok(self) -> bool:
        return self.failing == 0


#: Widths in bytes (Redshift's VARCHAR counts bytes) of ``bulk_publish_runs``' text columns.
BULK_PUBLISH_TEXT_BYTES = {
    "attempt_id": 256,
    "identity_pool_id": 64,
    "decision": 64,
    "status": 32,
    "failure_message": 4096,
    "dag_run_id": 256,
    "reason": 1024,
}


class BulkPublishAttempt(BaseModel):
    """A row of ``bulk_publish_runs``: one bulk publish attempt for one identity pool. The writer passes the
    whole current state of the attempt each time; ``record_bulk_publish_attempt`` upserts it by id.

    Free text (``failure_message``, ``reason``: Cognito's words, ours) is cut to its column's width in bytes
    at a character boundary; an identifier wider than its column is refused (cutting would change it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempt_id: str = Field(min_length=1)
    identity_pool_id: str = Field(min_length=1)
    requested_at: datetime
    decision: str = Field(min_length=1)
    status: str = Field(min_length=1)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failure_message: str | None = None
    next_eligible_at: datetime | None = None
    dag_run_id: str | None = None
    reason: str | None = None  # why this decision (core.bulk_publish.Plan)
    updated_at: datetime | None = None  # set by the warehouse when read back

    @field_validator("failure_message", "reason", mode="before")
    @classmethod
    def _clip(cls, value: Any, info: Any) -> Any:
        return clip_text(value, BULK_PUBLISH_TEXT_BYTES[info.field_name]) if isinstance(value, str) else value

    @field_validator("attempt_id", "identity_pool_id", "decision", "status", "dag_run_id")
    @classmethod
    def _fits(cls, value: str | None, info: Any) -> str | None:
        width = BULK_PUBLISH_TEXT_BYTES[info.field_name]
        size = 0 if value is None else len(value.encode("utf-8", "surrogatepass"))
        if size > width:
            raise ValueError(f"is {size} UTF-8 bytes long; bulk_publish_runs.{info.field_name} holds at most {width}")
        return value
