"""The read side of Kinesis, which the Amazon provider's ``KinesisHook`` does not have: a thin hook on
``AwsBaseHook`` (connection, region, endpoint from the ``aws_default`` connection), one method per
API call, pagination written once. Backoff, iterator renewal and batching are the reader's job
(``cognito_streams.landing.reader``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.exceptions import ClientError


class StreamNotFoundError(RuntimeError):
    """The configured Kinesis stream does not exist (yet, or any more)."""


class KinesisReaderHook(AwsBaseHook):
    """Read a Kinesis data stream through boto3's ``kinesis`` client."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "kinesis"
        super().__init__(*args, **kwargs)

    def list_shards(self, stream_name: str) -> list[dict[str, Any]]:
        """Every shard of the stream (open and closed, within retention), across ``ListShards`` pages."""
        shards: list[dict[str, Any]] = []
        try:
            page = self.conn.list_shards(StreamName=stream_name)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise StreamNotFoundError(
                    f"Kinesis stream {stream_name} does not exist: run cognito_streams_configure (it creates the "
                    "stream and re-enables Cognito Streams), then cognito_bulk_publish to send what was missed"
                ) from err
            raise
        shards.extend(page.get("Shards") or [])
        while page.get("NextToken"):
            # With NextToken, StreamName must not be given (the API rejects both).
            page = self.conn.list_shards(NextToken=page["NextToken"])
            shards.extend(page.get("Shards") or [])
        return shards

    def retention_hours(self, stream_name: str) -> int:
        """The stream's data retention (``DescribeStreamSummary``), in hours."""
        summary = self.conn.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
        return int(summary["RetentionPeriodHours"])

    def stream_created_at(self, stream_name: str) -> datetime:
        """The stream's ``StreamCreationTimestamp`` (``DescribeStreamSummary``): tells a stream deleted
        and created again under the same name from the one a checkpoint was written for."""
        summary = self.conn.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
        return summary["StreamCreationTimestamp"]  # type: ignore[no-any-return]

    def shard_iterator(
        self,
        stream_name: str,
        shard_id: str,
        iterator_type: str,
        sequence_number: str | None = None,
        timestamp: datetime | None = None,
    ) -> str:
        """``GetShardIterator`` (TRIM_HORIZON, AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER or AT_TIMESTAMP)."""
        kwargs: dict[str, Any] = {"StreamName": stream_name, "ShardId": shard_id, "ShardIteratorType": iterator_type}
        if sequence_number is not None:
            kwargs["StartingSequenceNumber"] = sequence_number
        if timestamp is not None:
            kwargs["Timestamp"] = timestamp
        return str(self.conn.get_shard_iterator(**kwargs)["ShardIterator"])

    def get_records(self, shard_iterator: str, limit: int) -> dict[str, Any]:
        """``GetRecords``: Records, NextShardIterator (None at the end of a closed shard), MillisBehindLatest."""
        return dict(self.conn.get_records(ShardIterator=shard_iterator, Limit=limit))
