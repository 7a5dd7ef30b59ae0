"""The batch descriptors of the landing zone as every reader lists them: the loader (finding work), the health
page (the backlog) and a replay (what it supersedes). One lister, so that they all agree on what is landed.

A replay supersedes an older batch by writing a marker (a copy of its descriptor) under ``_superseded/``
(``core/landing_format.LandingLayout.superseded_key``) and deletes nothing: the worker's IAM policy grants no
``s3:DeleteObject``, so that a compromised worker cannot destroy landed data. A descriptor with a marker is
left out of every listing; its data files stay where they are (docs/landing.md, "Replay").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cognito_streams.core.landing_format import LandingLayout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ListedObject:
    """One object under ``batches/`` that no marker supersedes."""

    key: str
    last_modified: datetime  # S3's LastModified: a descriptor is its batch's last object written


@dataclass
class DescriptorListing:
    """What one listing of some ``batches/`` prefixes found."""

    #: Objects under the prefixes without a marker, in key order (callers keep the ``.json`` descriptors).
    live: list[ListedObject] = field(default_factory=list)
    #: Descriptor keys under the prefixes that a marker supersedes (whether or not the descriptor is still there).
    superseded: set[str] = field(default_factory=set)
    #: The ``batches/`` prefixes listed (what the listing can speak for).
    prefixes: tuple[str, ...] = ()

    def covers(self, key: str) -> bool:
        """Whether ``key`` lies under a listed prefix: only then does its absence from ``live`` mean something."""
        return any(key.startswith(p) for p in self.prefixes)


def _list(s3: Any, bucket: str, prefix: str) -> Iterable[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents") or []


def list_batches(s3: Any, layout: LandingLayout, prefixes: Iterable[str]) -> DescriptorListing:
    """Every object under each of ``prefixes`` (``batches/`` prefixes: :meth:`LandingLayout.batches_prefix`,
    optionally followed by the start of a shard folder) but those a marker supersedes. The descriptors are
    listed before the markers: a replay writes its own descriptor before it marks the older ones, so a
    listing never misses both the older batch and the replay's (at worst it still sees an older batch that
    a replay is superseding meanwhile, which loads harmlessly)."""
    listing = DescriptorListing(prefixes=tuple(prefixes))
    found: list[ListedObject] = []
    for prefix in listing.prefixes:
        found.extend(ListedObject(o["Key"], o["LastModified"]) for o in _list(s3, layout.bucket, prefix))
        for marker in _list(s3, layout.bucket, layout.superseded_key(prefix)):
            listing.superseded.add(layout.batch_key_of_marker(marker["Key"]))
    listing.live = sorted((o for o in found if o.key not in listing.superseded), key=lambda o: o.key)
    return listing


def mark_superseded(s3: Any, layout: LandingLayout, key: str) -> str:
    """Supersede the descriptor ``key``: copy it to its marker key (the copy keeps what it described, for the
    record). Writes only; returns the marker's key. Writing it again is harmless (the same object)."""
    marker = layout.superseded_key(key)
    s3.copy_object(Bucket=layout.bucket, Key=marker, CopySource={"Bucket": layout.bucket, "Key": key})
    return marker
