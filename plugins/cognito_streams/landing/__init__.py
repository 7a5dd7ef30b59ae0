"""Adapters of the landing DAG (``cognito_stream_to_s3``): the task bodies, the runner (plan, land one
shard), the Kinesis shard reader, the ``S3Url`` fetcher and payloads, replays, and the event-mode watcher.
What it writes and its checkpoints are in the shared ``landing_zone``; the rules are ``core.landing``."""

from __future__ import annotations
