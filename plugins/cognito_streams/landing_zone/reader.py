"""Reading the landing zone for the loader: list batch descriptors, read them and their COPY manifests,
fetch landed files. Works on any boto3 S3 client (the Amazon provider's S3Hook gives it in tasks)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
from botocore.exceptions import ClientError
from pydantic import ValidationError

from cognito_streams.core.landing_format import FORMAT_VERSION, READABLE_FORMAT_VERSIONS, LandedBatch, LandingLayout
from cognito_streams.core.loading.plan import LOAD_MANIFESTS, landing_day
from cognito_streams.landing_zone.descriptors import list_batches
from cognito_streams.settings import PipelineSettings
from cognito_streams.warehouse.models import BatchToLoad, LoadCheckError, Manifest

log = logging.getLogger(__name__)

#: Parallel S3 reads of descriptors and manifests (small objects: latency-bound).
READ_WORKERS = 8


@dataclass(frozen=True)
class DescriptorRef:
    """A batch descriptor found in the landing zone."""

    url: str
    key: str
    landing_day: date


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    if not url.startswith("s3://") or "/" not in url[5:]:
        raise ValueError(f"{url!r} is not an s3://bucket/key URL")
    bucket, key = url[5:].split("/", 1)
    return bucket, key


def check_format_version(url: str, body: bytes) -> None:
    """Refuse a descriptor of a landing-contract version this loader does not know (a newer landing DAG
    than this loader, or not a descriptor), naming both; an older version it knows passes."""
    try:
        version = orjson.loads(body).get("format_version")
    except (orjson.JSONDecodeError, AttributeError):
        return  # not a JSON object: the contract's validation says what is wrong with it
    if version not in READABLE_FORMAT_VERSIONS:
        raise LoadCheckError(
            f"batch descriptor {url} has landing format_version {version!r}, which this loader cannot read (it reads "
            f"versions {', '.join(map(str, READABLE_FORMAT_VERSIONS))}; the landing writes {FORMAT_VERSION}): deploy "
            "the same release of the plugins to the landing and the loading DAGs' workers, then rerun the load"
        )


@dataclass(frozen=True)
class FoundDescriptors:
    """A listing of descriptors for the loader."""

    refs: list[DescriptorRef]
    #: URLs of descriptors a replay superseded (markers under ``_superseded/``), within the listing.
    superseded: set[str]
    #: What the listing covered: the descriptors under this URL prefix, of the landing days in the range (None:
    #: unbounded). A descriptor URL it covered that is neither in ``refs`` nor in ``superseded`` is not there.
    prefix_url: str
    day_from: date | None = None
    day_to: date | None = None

    def covers(self, url: str) -> bool:
        """Whether the listing speaks for the descriptor ``url`` (its absence from it means something)."""
        day = landing_day(url)
        return (
            url.startswith(self.prefix_url)
            and day is not None
            and (self.day_from is None or day >= self.day_from)
            and (self.day_to is None or day <= self.day_to)
        )

    def settle(self, set_aside: Iterable[str]) -> dict[str, str]:
        """Which of the batches set aside by earlier runs (descriptor URLs) this listing shows settled, and how:
        ``superseded`` (a replay landed their records again) or ``removed`` (the descriptor is no longer in the
        landing zone). The others (still there, or outside what was listed) are not in the result."""
        listed = {r.url for r in self.refs}
        out: dict[str, str] = {}
        for url in set_aside:
            if url in self.superseded:
                out[url] = "superseded"
            elif url not in listed and self.covers(url):
                out[url] = "removed"
        return out


class LandingReader:
    """The landing zone of one stream, read-only."""

    def __init__(self, s3: Any, layout: LandingLayout) -> None:
        self.s3 = s3
        self.layout = layout

    def list_descriptors(self, day_from: date | None = None, day_to: date | None = None) -> list[DescriptorRef]:
        """Every batch descriptor (``batches/.../*.json``) but those a replay superseded, or those of the days in
        the range, in key order (by day, shard and sequence range)."""
        return self.find_descriptors(day_from, day_to).refs

    def find_descriptors(self, day_from: date | None = None, day_to: date | None = None) -> FoundDescriptors:
        """:meth:`list_descriptors`, with what the listing says of the descriptors it left out: those a replay
        superseded, and which descriptor URLs it covered (so that one absent from it is known to be gone)."""
        prefix = self.layout.batches_prefix()
        prefixes = [prefix]
        if day_from is not None or day_to is not None:
            prefixes = [
                p
                for p in self._day_prefixes(prefix)
                if (d := landing_day(p)) is not None
                and (day_from is None or d >= day_from)
                and (day_to is None or d <= day_to)
            ]
        listing = list_batches(self.s3, self.layout, prefixes)
        refs: list[DescriptorRef] = []
        ignored = 0
        for obj in listing.live:
            day = landing_day(obj.key)
            if not obj.key.endswith(".json") or day is None:
                ignored += 1
                continue
            if (day_from and day < day_from) or (day_to and day > day_to):
                continue
            refs.append(DescriptorRef(url=self.layout.url(obj.key), key=obj.key, landing_day=day))
        if ignored:
            log.warning(
                "Ignored %d object(s) under %s that are not batch descriptors (batches/stream=<s>/dt=<day>/.../*.json)",
                ignored,
                self.layout.url(prefix),
            )
        if listing.superseded:
            log.info(
                "%d batch descriptor(s) superseded by a replay are left out (markers under %s)",
                len(listing.superseded),
                self.layout.url(self.layout.superseded_prefix()),
            )
        return FoundDescriptors(
            refs=refs,
            superseded={self.layout.url(k) for k in listing.superseded},
            prefix_url=self.layout.url(prefix),
            day_from=day_from,
            day_to=day_to,
        )

    def _day_prefixes(self, prefix: str) -> list[str]:
        out: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.layout.bucket, Prefix=prefix, Delimiter="/"):
            out.extend(cp["Prefix"] for cp in page.get("CommonPrefixes", []))
        return out

    def fetch(self, url: str) -> bytes:
        """The bytes of one landed object."""
        bucket, key = split_s3_url(url)
        return bytes(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def put_load_manifest(self, name: str, body: bytes) -> str:
        """Write a combined COPY manifest as ``<landing prefix>/load-manifests/<name>``; returns its s3:// URL.
        (The worker's policy allows writing under the landing prefix; Redshift's COPY role may read there.)"""
        key = "/".join(p for p in (self.layout.prefix, LOAD_MANIFESTS, name) if p)
        self.s3.put_object(Bucket=self.layout.bucket, Key=key, Body=body, ContentType="application/json")
        return self.layout.url(key)

    def read_batch(self, ref: DescriptorRef) -> BatchToLoad | None:
        """A descriptor and its manifests, checked against each other; None when the descriptor is gone since it
        was listed (removed from the landing zone by someone: nothing of the pipeline deletes one)."""
        try:
            body = self.fetch(ref.url)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                log.warning(
                    "Batch descriptor %s was removed from the landing zone since it was listed: skipped", ref.url
                )
                return None
            raise
        check_format_version(ref.url, body)
        try:
            batch = LandedBatch.model_validate_json(body)
        except ValidationError as err:
            raise LoadCheckError(
                f"batch descriptor {ref.url} does not follow the landing contract (core/landing_format.py): "
                f"{err.error_count()} problem(s): {err.errors(include_url=False)[:3]}; fix the writer and re-land it"
            ) from None
        manifests = {}
        for kind, url in (("changes", batch.changes_manifest), ("rejects", batch.rejects_manifest)):
            manifests[kind] = Manifest.parse(url, self.fetch(url)) if url else None
        return BatchToLoad(
            descriptor_url=ref.url,
            landing_day=ref.landing_day,
            batch=batch,
            changes_manifest=manifests["changes"],
            rejects_manifest=manifests["rejects"],
        )

    def read_batches(
        self, refs: list[DescriptorRef]
    ) -> tuple[list[BatchToLoad], list[tuple[DescriptorRef, Exception]]]:
        """:meth:`read_batch` for many, in parallel, in the order given: the batches read, and the descriptors
        that could not be read as a batch (malformed, or naming a manifest that is not there) with their error,
        so that one bad descriptor does not hold back the others. Other errors (S3 down, access denied) go up."""
        if not refs:
            return [], []
        with ThreadPoolExecutor(max_workers=min(READ_WORKERS, len(refs)), thread_name_prefix="landing-read") as pool:
            outcomes = list(pool.map(self._read_or_error, refs))
        # None: removed since it was listed (read_batch logged it).
        batches = [o for o in outcomes if isinstance(o, BatchToLoad)]
        unreadable = [(ref, o) for ref, o in zip(refs, outcomes, strict=True) if isinstance(o, Exception)]
        return batches, unreadable

    def _read_or_error(self, ref: DescriptorRef) -> BatchToLoad | Exception | None:
        try:
            return self.read_batch(ref)
        except LoadCheckError as err:
            return err
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return LoadCheckError(
                    f"batch {ref.url} names an object that is not in the landing zone ({err}); re-land the batch",
                    descriptors=(ref.url,),
                )
            raise


def landing_reader(settings: PipelineSettings) -> LandingReader:
    """The landing zone, through the Amazon provider's S3Hook on settings.aws_conn_id."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    s3 = S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()
    return LandingReader(s3, LandingLayout(settings.landing_bucket, settings.landing_prefix, settings.stream_name))
