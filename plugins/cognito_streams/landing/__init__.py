"""Adapters of the landing DAG (``cognito_stream_to_s3``): the Kinesis shard reader, the ``S3Url``
fetcher, the batch writer and the S3 checkpoint store, and the runner that ties them together."""

from __future__ import annotations
