"""Checkpoints in S3, written only by compare-and-swap (S3 conditional writes).

- Create: ``PutObject`` with ``If-None-Match: *`` (fails if the object appeared meanwhile).
- Update: ``PutObject`` with ``If-Match: <ETag read>`` (fails if anyone wrote it meanwhile).

A failed compare-and-swap raises :class:`CheckpointConflictError`: the caller stops without moving the
checkpoint (what it landed stays in S3 and is landed again by whoever owns the shard: a duplicate,
never a loss).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from cognito_streams.core.landing.checkpoints import Checkpoint, Lease, lease_holder, utcnow
from cognito_streams.core.landing_format import LandingLayout

log = logging.getLogger(__name__)

_CAS_FAILED = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})


class CheckpointConflictError(RuntimeError):
    """Someone else wrote the checkpoint since we read it (another run took the shard)."""


class CheckpointCorruptError(RuntimeError):
    """The checkpoint object exists but is not a checkpoint."""


@dataclass(frozen=True)
class Versioned:
    """A checkpoint and the ETag it was read or written with."""

    checkpoint: Checkpoint
    etag: str | None  # None: the object does not exist yet


@dataclass(frozen=True)
class LeaseRefused:
    """The shard is leased to someone else."""

    shard_id: str
    lease: Lease

    def describe(self) -> str:
        """For the logs and the task's return value."""
        return f"shard {self.shard_id} is being read by {self.lease.owner} until {self.lease.expires_at.isoformat()}"


class CheckpointStore:
    """The checkpoints of one stream's shards."""

    def __init__(self, s3: Any, layout: LandingLayout, lease_seconds: float) -> None:
        self.s3 = s3
        self.layout = layout
        self.lease_seconds = lease_seconds

    def _key(self, shard_id: str) -> str:
        return self.layout.checkpoint_key(shard_id)

    def url(self, shard_id: str) -> str:
        """s3 URI of a shard's checkpoint (for messages)."""
        return self.layout.url(self._key(shard_id))

    def read(self, shard_id: str) -> Versioned:
        """The shard's checkpoint (a new one, never written, if there is none)."""
        key = self._key(shard_id)
        try:
            response = self.s3.get_object(Bucket=self.layout.bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return Versioned(Checkpoint.new(self.layout.stream_name, shard_id, utcnow()), None)
            raise
        body = response["Body"].read()
        try:
            checkpoint = Checkpoint.model_validate_json(body)
        except ValidationError as err:
            raise CheckpointCorruptError(
                f"{self.url(shard_id)} is not a valid checkpoint ({err.error_count()} problem(s): "
                f"{err.errors(include_url=False)[0]['msg']}). Inspect it; to start the shard over from "
                "the trim horizon, delete it (duplicates are absorbed by the loader)."
            ) from None
        return Versioned(checkpoint, response["ETag"])

    def read_all(self) -> dict[str, Checkpoint]:
        """Every checkpoint of the stream, by shard id."""
        prefix = self.layout.checkpoint_key("x").rsplit("/", 1)[0] + "/"
        found: dict[str, Checkpoint] = {}
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.layout.bucket, Prefix=prefix):
            for item in page.get("Contents") or []:
                name = item["Key"][len(prefix) :]
                if name.endswith(".json") and "/" not in name:
                    shard_id = name.removesuffix(".json")
                    found[shard_id] = self.read(shard_id).checkpoint
        return found

    def write(self, current: Versioned, new: Checkpoint) -> Versioned:
        """Compare-and-swap ``new`` over ``current``; raises :class:`CheckpointConflictError`."""
        condition = {"IfMatch": current.etag} if current.etag is not None else {"IfNoneMatch": "*"}
        try:
            response = self.s3.put_object(
                Bucket=self.layout.bucket,
                Key=self._key(new.shard_id),
                Body=new.model_dump_json(indent=1).encode(),
                ContentType="application/json",
                **condition,
            )
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            status = str(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in _CAS_FAILED or status in _CAS_FAILED:
                raise CheckpointConflictError(
                    f"the checkpoint {self.url(new.shard_id)} was changed by someone else since it was read "
                    f"({code or status}); stopping without moving it"
                ) from None
            raise
        return Versioned(new, response["ETag"])

    def acquire(self, shard_id: str, owner: str, now: datetime | None = None) -> Versioned | LeaseRefused:
        """Take the shard's lease for ``owner`` (or renew it), unless someone else holds a live one."""
        now = now or utcnow()
        current = self.read(shard_id)
        holder = lease_holder(current.checkpoint if current.etag else None, owner, now)
        if holder is not None:
            return LeaseRefused(shard_id, holder)
        try:
            return self.write(current, current.checkpoint.leased_to(owner, now, self.lease_seconds))
        except CheckpointConflictError:
            # Someone wrote between our read and our write: whoever it was, they hold the shard now.
            latest = self.read(shard_id)
            lease = latest.checkpoint.lease
            if lease is not None and lease.owner != owner:
                return LeaseRefused(shard_id, lease)
            raise

    def update(self, current: Versioned, new: Checkpoint, owner: str, now: datetime | None = None) -> Versioned:
        """Write ``new`` (our lease renewed) over ``current``, by compare-and-swap."""
        now = now or utcnow()
        return self.write(current, new.leased_to(owner, now, self.lease_seconds))

    def release(self, current: Versioned, owner: str) -> Versioned:
        """Give the lease up (compare-and-swap; a conflict means it was no longer ours)."""
        lease = current.checkpoint.lease
        if lease is None or lease.owner != owner:
            return current
        return self.write(current, current.checkpoint.released(utcnow()))
