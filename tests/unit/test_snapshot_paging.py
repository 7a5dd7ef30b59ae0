"""The snapshot's first task pages ``ListIdentities`` (60 a page, one after the other) into chunks, and its
retry goes on from the plan in S3: every identity lands in exactly one chunk, in the listing's order,
whether the task died after one chunk or after several, and a token Cognito no longer accepts makes it
page the pool again from its start. The chunks' progress moves by compare-and-swap only."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cognito_streams.core.landing_format import LandingLayout
from cognito_streams.core.snapshot import ChunkProgress
from cognito_streams.landing_zone.snapshots import SnapshotConflictError, SnapshotStore
from cognito_streams.settings import parse_settings
from cognito_streams.snapshot.walker import Counters, SnapshotContext, page_identities

POOL = "us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"


def error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "X")


class FakeS3:
    """Enough of S3 for the cursor: get, conditional put, list."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def _etag(self, key: str) -> str:
        return hashlib.md5(self.objects[key]).hexdigest()  # noqa: S324 - an ETag, as S3's

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        if Key not in self.objects:
            raise error("NoSuchKey", 404)
        return {"Body": io.BytesIO(self.objects[Key]), "ETag": self._etag(Key)}

    def put_object(self, Bucket: str, Key: str, Body: bytes, **kw: Any) -> dict[str, Any]:  # noqa: N803
        if "IfNoneMatch" in kw and Key in self.objects:
            raise error("PreconditionFailed", 412)
        if "IfMatch" in kw and (Key not in self.objects or self._etag(Key) != kw["IfMatch"]):
            raise error("PreconditionFailed", 412)
        self.objects[Key] = Body
        return {"ETag": self._etag(Key)}

    def get_paginator(self, name: str) -> Any:
        objects = self.objects

        class Paginator:
            def paginate(self, Bucket: str, Prefix: str) -> list[dict[str, Any]]:  # noqa: N803
                return [{"Contents": [{"Key": k} for k in sorted(objects) if k.startswith(Prefix)]}]

        return Paginator()


class FakeIdentity:
    """``ListIdentities`` over a fixed list, 60 a page; dies on the ``die_on``-th call of a try, and refuses
    tokens given out before ``expire`` was called."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.calls = 0
        self.die_on: int | None = None
        self.generation = 0

    def identities_page(self, pool: str, token: str | None = None) -> tuple[list[str], str | None]:
        self.calls += 1
        if self.die_on is not None and self.calls == self.die_on:
            raise ConnectionResetError("the task's host went away")
        start = 0
        if token:
            generation, offset = token.split(":")
            if int(generation) != self.generation:
                raise error("InvalidParameterException", 400)
            start = int(offset)
        page = self.ids[start : start + 60]
        end = start + len(page)
        return page, (f"{self.generation}:{end}" if end < len(self.ids) else None)

    def list_identities(self, pool: str) -> Any:
        token: str | None = None
        while True:
            ids, token = self.identities_page(pool, token)
            yield from ids
            if not token:
                return


class FakeSync:
    @staticmethod
    def error_code(err: Exception) -> str | None:
        response = getattr(err, "response", None)
        return response["Error"]["Code"] if isinstance(response, dict) else None


def context(s3: FakeS3, identity: FakeIdentity, chunk: int) -> SnapshotContext:
    settings = parse_settings(
        {
            "identity_pool_ids": [POOL],
            "stream_name": "s",
            "publish_role_arn": "arn:aws:iam::123456789012:role/p",
            "landing_bucket": "landing",
            "snapshot_chunk_identities": chunk,
        }
    )
    layout = LandingLayout("landing", "p", "s")
    return SnapshotContext(
        settings=settings,
        s3=s3,
        layout=layout,
        store=SnapshotStore(s3, layout),
        writer=None,  # type: ignore[arg-type]
        sync=FakeSync(),  # type: ignore[arg-type]
        identity=identity,  # type: ignore[arg-type]
        counters=Counters(),
    )


def chunks_of(ctx: SnapshotContext, snapshot_id: str) -> list[list[str]]:
    plan = ctx.store.plan(snapshot_id)
    assert plan is not None
    return [ctx.store.chunk(snapshot_id, name).identities for name in plan.chunks]


IDS = [f"us-east-1:{i:08x}-0000-0000-0000-000000000000" for i in range(250)]


@pytest.mark.parametrize("die_on", [2, 3, 5])
def test_paging_killed_midway_resumes_and_every_identity_is_in_one_chunk_in_order(die_on: int) -> None:
    s3, identity = FakeS3(), FakeIdentity(IDS)
    ctx = context(s3, identity, chunk=100)
    # GIVEN the task dies on its n-th ListIdentities call (a chunk may be half full, a page half used)
    identity.die_on = die_on
    with pytest.raises(ConnectionResetError):
        page_identities(ctx, "snap-1", "run-1", pool_ids=[POOL], selection="all")
    written = ctx.store.plan("snap-1")  # written after each chunk (none yet when it died on page 2)
    assert (written is None) == (die_on == 2) and (written is None or not written.paged)
    # WHEN Airflow retries it
    identity.die_on, identity.calls = None, 0
    plan = page_identities(ctx, "snap-1", "run-1", pool_ids=[POOL], selection="all")
    # THEN it went on from the plan: the pages of the chunks already written are not read again (5 pages
    # in all; the first chunk is written after page 2, the second after page 4) ...
    assert identity.calls == {2: 5, 3: 3, 5: 1}[die_on] and plan.paged and plan.identities == 250
    # ... and the chunks hold every identity once, in the listing's order
    chunks = chunks_of(ctx, "snap-1")
    assert [len(c) for c in chunks] == [100, 100, 50]
    assert [i for c in chunks for i in c] == IDS
    # AND a retry after the end changes nothing
    assert page_identities(ctx, "snap-1", "run-1", pool_ids=[POOL], selection="all").chunks == plan.chunks


def test_a_token_no_longer_accepted_pages_the_pool_again_from_its_start() -> None:
    s3, identity = FakeS3(), FakeIdentity(IDS)
    ctx = context(s3, identity, chunk=100)
    identity.die_on = 4
    with pytest.raises(ConnectionResetError):
        page_identities(ctx, "snap-2", "run-2", pool_ids=[POOL], selection="all")
    # GIVEN the saved token expired meanwhile
    identity.die_on, identity.generation = None, 1
    plan = page_identities(ctx, "snap-2", "run-2", pool_ids=[POOL], selection="all")
    # THEN the pool is paged again from its start under the same chunk names: no identity missed or doubled
    assert plan.identities == 250 and [i for c in chunks_of(ctx, "snap-2") for i in c] == IDS
    assert plan.chunks == ["000-000000", "000-000001", "000-000002"]


def test_a_list_and_a_sample_are_chunked_too() -> None:
    s3, identity = FakeS3(), FakeIdentity(IDS)
    ctx = context(s3, identity, chunk=40)
    listed = page_identities(ctx, "snap-3", "run-3", pool_ids=[POOL], selection="list", identities=IDS[:90])
    assert [i for c in chunks_of(ctx, "snap-3") for i in c] == IDS[:90] and len(listed.chunks) == 3
    sampled = page_identities(ctx, "snap-4", "run-4", pool_ids=[POOL], selection="sample", sample_size=30)
    chosen = [i for c in chunks_of(ctx, "snap-4") for i in c]
    assert sampled.identities == 30 == len(set(chosen)) and set(chosen) <= set(IDS)


def test_the_progress_of_a_chunk_moves_only_from_the_version_read() -> None:
    store = SnapshotStore(FakeS3(), LandingLayout("landing", "p", "s"))
    progress = ChunkProgress(snapshot_id="s", chunk="000-000000", digest="d", identities=10)
    etag = store.write_progress(progress, None)
    moved = store.write_progress(progress.model_copy(update={"done": 2}), etag)
    # GIVEN another task moved it meanwhile  THEN a write from the old version is refused, naming the chunk
    with pytest.raises(SnapshotConflictError, match="000-000000"):
        store.write_progress(progress.model_copy(update={"done": 4}), etag)
    with pytest.raises(SnapshotConflictError):
        store.write_progress(progress, None)  # "not started" when it has been
    assert store.progress("s", "000-000000") == (progress.model_copy(update={"done": 2}), moved)
