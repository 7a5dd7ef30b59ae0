"""A missing stream is a clear, actionable error, not a raw AWS exception."""

from __future__ import annotations

from typing import Any

import pytest

from cognito_streams.hooks.kinesis_reader import KinesisReaderHook, StreamNotFoundError

pytestmark = pytest.mark.integration


def test_listing_a_missing_stream_says_what_to_run(stack: Any) -> None:
    hook = KinesisReaderHook(aws_conn_id="aws_default")
    with pytest.raises(StreamNotFoundError, match="no-such-stream does not exist: run cognito_streams_configure"):
        hook.list_shards("no-such-stream")
