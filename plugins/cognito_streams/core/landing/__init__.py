"""The rules of ``cognito_stream_to_s3`` (pure): checkpoints and leases, shards and resharding, ``S3Url``
payloads, the event-mode watcher."""

from __future__ import annotations
