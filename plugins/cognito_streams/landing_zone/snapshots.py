"""A snapshot's durable cursor in S3 (``snapshots/<snapshot id>/`` under the landing prefix).

- ``plan.json``: what the snapshot walks (``core.snapshot.SnapshotPlan``), rewritten while the first task
  pages the identities and once more when every chunk is written;
- ``chunks/<chunk>.json``: the identities of one chunk (``Chunk``), in ``ListIdentities``' order;
- ``progress/<chunk>.json``: how far the walk is in that chunk (``ChunkProgress``), moved by
  compare-and-swap (``If-Match`` on the ETag read) after each landed batch, so that two tasks never both
  believe they walk one chunk;
- ``snapshots/_latest.json``: which snapshot is the latest and how big it is, for the health page.

Progress of a snapshot is read from these objects (:func:`snapshot_status`): the health page and any
monitoring can show it without the Airflow database.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from botocore.exceptions import ClientError
from pydantic import BaseModel, ValidationError

from cognito_streams.core.landing_format import LandingLayout
from cognito_streams.core.snapshot import Chunk, ChunkProgress, SnapshotPlan, summarize

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

_CAS_FAILED = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


class SnapshotConflictError(RuntimeError):
    """Another task moved a chunk's progress since this one read it."""


class SnapshotStateError(RuntimeError):
    """A cursor object is missing or is not what it should be; the message says which and what to do."""


class SnapshotStore:
    """The cursor objects of the snapshots in one landing zone."""

    def __init__(self, s3: Any, layout: LandingLayout) -> None:
        self.s3 = s3
        self.layout = layout

    # -- plumbing ------------------------------------------------------------------------------
    def _get(self, key: str) -> tuple[bytes, str] | None:
        try:
            response = self.s3.get_object(Bucket=self.layout.bucket, Key=key)
        except ClientError as err:
            if str(err.response.get("Error", {}).get("Code")) in _MISSING:
                return None
            raise
        return bytes(response["Body"].read()), str(response["ETag"])

    def _put(self, key: str, body: bytes, **condition: str) -> str:
        response = self.s3.put_object(
            Bucket=self.layout.bucket, Key=key, Body=body, ContentType="application/json", **condition
        )
        return str(response["ETag"])

    def _model(self, key: str, model: type[M]) -> tuple[M, str] | None:
        found = self._get(key)
        if found is None:
            return None
        try:
            return model.model_validate_json(found[0]), found[1]
        except ValidationError as err:
            raise SnapshotStateError(
                f"{self.layout.url(key)} is not a {model.__name__} ({err.error_count()} problem(s): "
                f"{err.errors(include_url=False)[0]['msg']}); a snapshot's cursor is written by cognito_snapshot "
                "only: start a new snapshot run"
            ) from None

    # -- plan and chunks -----------------------------------------------------------------------
    def plan(self, snapshot_id: str) -> SnapshotPlan | None:
        """The snapshot's plan, or None before its first task wrote it."""
        found = self._model(self.layout.snapshot_key(snapshot_id, "plan.json"), SnapshotPlan)
        return None if found is None else found[0]

    def write_plan(self, plan: SnapshotPlan) -> None:
        """Write the plan (only the paging task writes it), and point ``_latest.json`` at it."""
        self._put(self.layout.snapshot_key(plan.snapshot_id, "plan.json"), plan.model_dump_json(indent=1).encode())
        latest = {
            "snapshot_id": plan.snapshot_id,
            "run_id": plan.run_id,
            "created_at": plan.created_at.isoformat(),
            "identity_pool_ids": plan.identity_pool_ids,
            "identities": plan.identities,
            "chunks": len(plan.chunks),
            "paged": plan.paged,
            "plan": self.layout.url(self.layout.snapshot_key(plan.snapshot_id, "plan.json")),
        }
        self._put(self.layout.snapshot_key("_latest.json"), orjson.dumps(latest, option=orjson.OPT_INDENT_2))

    def write_chunk(self, chunk: Chunk) -> None:
        self._put(
            self.layout.snapshot_key(chunk.snapshot_id, "chunks", f"{chunk.name}.json"),
            chunk.model_dump_json().encode(),
        )

    def chunk(self, snapshot_id: str, name: str) -> Chunk:
        """One chunk; a missing one is an error (the walk runs only after every chunk is written)."""
        key = self.layout.snapshot_key(snapshot_id, "chunks", f"{name}.json")
        found = self._model(key, Chunk)
        if found is None:
            raise SnapshotStateError(
                f"chunk {name} of snapshot {snapshot_id} is missing ({self.layout.url(key)}); the first task "
                "(page_identities) writes every chunk before the walk starts: clear that task and rerun"
            )
        return found[0]

    # -- progress ------------------------------------------------------------------------------
    def _progress_key(self, snapshot_id: str, chunk: str) -> str:
        return self.layout.snapshot_key(snapshot_id, "progress", f"{chunk}.json")

    def progress(self, snapshot_id: str, chunk: str) -> tuple[ChunkProgress | None, str | None]:
        """A chunk's progress and its ETag (None, None: not started)."""
        found = self._model(self._progress_key(snapshot_id, chunk), ChunkProgress)
        return (None, None) if found is None else found

    def write_progress(self, progress: ChunkProgress, etag: str | None) -> str:
        """Compare-and-swap ``progress`` over the version read (``etag``; None: none may exist yet)."""
        key = self._progress_key(progress.snapshot_id, progress.chunk)
        condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
        try:
            return self._put(key, progress.model_dump_json(indent=1).encode(), **condition)
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            status = str(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in _CAS_FAILED or status in _CAS_FAILED:
                raise SnapshotConflictError(
                    f"the progress of chunk {progress.chunk} ({self.layout.url(key)}) was moved by another task "
                    "since this one read it: two tasks walk the same chunk. This one stops; the other goes on "
                    "(identities walked twice only land versions the loader absorbs)"
                ) from None
            raise

    def all_progress(self, snapshot_id: str) -> list[ChunkProgress]:
        """Every chunk's progress written so far."""
        prefix = self.layout.snapshot_key(snapshot_id, "progress") + "/"
        out: list[ChunkProgress] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.layout.bucket, Prefix=prefix):
            for item in page.get("Contents") or []:
                found = self._model(item["Key"], ChunkProgress)
                if found is not None:
                    out.append(found[0])
        return out

    def latest(self) -> dict[str, Any] | None:
        """``snapshots/_latest.json``, or None when no snapshot ever ran here."""
        found = self._get(self.layout.snapshot_key("_latest.json"))
        return None if found is None else dict(orjson.loads(found[0]))


def snapshot_status(
    store: SnapshotStore, snapshot_id: str | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """The progress of a snapshot (the latest by default) from its cursor objects: identities done and total,
    rate, ETA, and what was landed. ``{"snapshot_id": None}`` when none ever ran."""
    if snapshot_id is None:
        latest = store.latest()
        if latest is None:
            return {"snapshot_id": None}
        snapshot_id = str(latest["snapshot_id"])
    plan = store.plan(snapshot_id)
    if plan is None:
        return {"snapshot_id": snapshot_id, "paged": False}
    items = store.all_progress(snapshot_id)
    started = min((p.started_at for p in items if p.started_at), default=None)
    status = summarize(items, plan.identities, started, now or datetime.now(UTC))
    return {
        "snapshot_id": snapshot_id,
        "run_id": plan.run_id,
        "created_at": plan.created_at.isoformat(),
        "paged": plan.paged,
        "chunks": len(plan.chunks),
        **status,
    }
