"""Reading the landing zone for the loader: list batch descriptors, read them and their COPY manifests,
fetch landed files. Works on any boto3 S3 client (the Amazon provider's S3Hook gives it in tasks)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
from botocore.exceptions import ClientError
from pydantic import ValidationError

from cognito_streams.core.landing_format import FORMAT_VERSION, READABLE_FORMAT_VERSIONS, LandedBatch, LandingLayout
from cognito_streams.core.load_plan import landing_day
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


class LandingReader:
    """The landing zone of one stream, read-only."""

    def __init__(self, s3: Any, layout: LandingLayout) -> None:
        self.s3 = s3
        self.layout = layout

    def list_descriptors(self, day_from: date | None = None, day_to: date | None = None) -> list[DescriptorRef]:
        """Every batch descriptor (``batches/.../*.json``), or those of the days in the range, in key order
        (by day, shard and sequence range)."""
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
        refs: list[DescriptorRef] = []
        ignored = 0
        for p in prefixes:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.layout.bucket, Prefix=p):
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    day = landing_day(key)
                    if not key.endswith(".json") or day is None:
                        ignored += 1
                        continue
                    if (day_from and day < day_from) or (day_to and day > day_to):
                        continue
                    refs.append(DescriptorRef(url=self.layout.url(key), key=key, landing_day=day))
        if ignored:
            log.warning(
                "Ignored %d object(s) under %s that are not batch descriptors (batches/stream=<s>/dt=<day>/.../*.json)",
                ignored,
                self.layout.url(prefix),
            )
        return sorted(refs, key=lambda r: r.key)

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

    def read_batch(self, ref: DescriptorRef) -> BatchToLoad | None:
        """A descriptor and its manifests, checked against each other; None when the descriptor is gone
        since it was listed (a replay superseded its batch: docs/landing.md, 'Replay')."""
        try:
            body = self.fetch(ref.url)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                log.info("Batch descriptor %s was superseded since it was listed (a replay): skipped", ref.url)
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

    def read_batches(self, refs: list[DescriptorRef]) -> list[BatchToLoad]:
        """:meth:`read_batch` for many, in parallel, in the order given (those superseded meanwhile left out)."""
        if not refs:
            return []
        with ThreadPoolExecutor(max_workers=min(READ_WORKERS, len(refs)), thread_name_prefix="landing-read") as pool:
            return [batch for batch in pool.map(self.read_batch, refs) if batch is not None]
