"""A thin hook around boto3's ``cognito-sync`` client: connection handling from the Amazon provider,
pagination written once (botocore ships no paginators for this service), no business rules."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.exceptions import ClientError

from cognito_streams.core.walk import Answer, ListedRecords

NOT_FOUND = "ResourceNotFoundException"


def _keep_disabled_reason(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
    """botocore's model for cognito-sync lacks ``CognitoStreams.DisabledReason`` (the API reference
    has it), so boto3 drops it from the parsed answer; copy it back from the raw body."""
    if getattr(http_response, "status_code", None) != 200 or "CognitoStreams" not in parsed:
        return
    try:
        raw = orjson.loads(http_response.content or b"{}")
    except orjson.JSONDecodeError:
        return
    reason = (raw.get("CognitoStreams") or {}).get("DisabledReason") if isinstance(raw, dict) else None
    if reason:
        parsed["CognitoStreams"]["DisabledReason"] = reason


class CognitoSyncHook(AwsBaseHook):
    """Interact with Amazon Cognito Sync through the ``aws_default`` (or given) connection.

    Locally, ``AWS_ENDPOINT_URL_COGNITO_SYNC`` sends these calls to the emulator with no code change.
    """

    def __init__(self, *args: Any, on_answer: Callable[[int | None], None] | None = None, **kwargs: Any) -> None:
        """``on_answer``: called with the HTTP status of every answer (every attempt, retries included;
        None when no answer came), e.g. to count throttled calls."""
        kwargs["client_type"] = "cognito-sync"
        super().__init__(*args, **kwargs)
        self._on_answer = on_answer

    def get_client_type(self, *args: Any, **kwargs: Any) -> Any:
        """The boto3 client, with ``DisabledReason`` kept in GetIdentityPoolConfiguration answers."""
        client = super().get_client_type(*args, **kwargs)
        for op in ("GetIdentityPoolConfiguration", "SetIdentityPoolConfiguration"):
            client.meta.events.register(f"after-call.cognito-sync.{op}", _keep_disabled_reason)
        if self._on_answer is not None:
            on_answer = self._on_answer

            def answered(response_dict: Mapping[str, Any] | None = None, **_: Any) -> None:
                on_answer(None if response_dict is None else int(response_dict.get("status_code") or 0) or None)

            client.meta.events.register("response-received.cognito-sync", answered)
        return client

    # -- pagination --------------------------------------------------------------------------
    @staticmethod
    def paginate(call: Callable[..., dict[str, Any]], result_key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Yield every item of ``result_key`` across pages (``NextToken``/``MaxResults``)."""
        token: str | None = None
        while True:
            page = call(**kwargs, **({"NextToken": token} if token else {}))
            yield from page.get(result_key) or []
            token = page.get("NextToken")
            if not token:
                return

    # -- configuration -----------------------------------------------------------------------
    def get_configuration(self, identity_pool_id: str) -> dict[str, Any]:
        """``GetIdentityPoolConfiguration``: CognitoStreams and PushSync of one pool."""
        return self.conn.get_identity_pool_configuration(IdentityPoolId=identity_pool_id)

    def set_configuration(
        self, identity_pool_id: str, cognito_streams: dict[str, Any], push_sync: dict[str, Any] | None
    ) -> dict[str, Any]:
        """``SetIdentityPoolConfiguration``; ``push_sync`` is passed back as read, so it is kept."""
        kwargs: dict[str, Any] = {"IdentityPoolId": identity_pool_id, "CognitoStreams": cognito_streams}
        if push_sync:
            kwargs["PushSync"] = push_sync
        return self.conn.set_identity_pool_configuration(**kwargs)

    # -- bulk publish ------------------------------------------------------------------------
    def bulk_publish(self, identity_pool_id: str) -> dict[str, Any]:
        """``BulkPublish``; raises the client's DuplicateRequestException / AlreadyStreamedException."""
        return self.conn.bulk_publish(IdentityPoolId=identity_pool_id)

    def get_bulk_publish_details(self, identity_pool_id: str) -> dict[str, Any]:
        """``GetBulkPublishDetails``: status, start/complete times, failure message."""
        return self.conn.get_bulk_publish_details(IdentityPoolId=identity_pool_id)

    # -- data (reconciliation) ---------------------------------------------------------------
    def list_identity_pool_usage(self) -> Iterator[dict[str, Any]]:
        """Every pool's usage (``ListIdentityPoolUsage``)."""
        return self.paginate(self.conn.list_identity_pool_usage, "IdentityPoolUsages", MaxResults=60)

    def list_datasets(self, identity_pool_id: str, identity_id: str) -> Iterator[dict[str, Any]]:
        """Every dataset of one identity (``ListDatasets``)."""
        return self.paginate(
            self.conn.list_datasets, "Datasets", IdentityPoolId=identity_pool_id, IdentityId=identity_id, MaxResults=64
        )

    def describe_dataset(self, identity_pool_id: str, identity_id: str, dataset_name: str) -> dict[str, Any]:
        """``DescribeDataset``'s ``Dataset``."""
        return self.conn.describe_dataset(
            IdentityPoolId=identity_pool_id, IdentityId=identity_id, DatasetName=dataset_name
        )["Dataset"]

    def list_records(
        self, identity_pool_id: str, identity_id: str, dataset_name: str, last_sync_count: int = 0
    ) -> Iterator[dict[str, Any]]:
        """Every record of one dataset changed after ``last_sync_count`` (``ListRecords``)."""
        return self.paginate(
            self.conn.list_records,
            "Records",
            IdentityPoolId=identity_pool_id,
            IdentityId=identity_id,
            DatasetName=dataset_name,
            LastSyncCount=last_sync_count,
            MaxResults=1024,
        )

    # -- the walk's reads (core.walk.SyncReader): not found is an answer, with the answer's time ------
    def fetch_datasets(self, identity_pool_id: str, identity_id: str) -> Answer[list[Mapping[str, Any]]]:
        """Every page of ``ListDatasets``; None when Cognito Sync does not know the identity."""
        return self._every_page(
            self.conn.list_datasets, "Datasets", IdentityPoolId=identity_pool_id, IdentityId=identity_id, MaxResults=64
        )

    def fetch_description(
        self, identity_pool_id: str, identity_id: str, dataset_name: str
    ) -> Answer[Mapping[str, Any]]:
        """``DescribeDataset``'s ``Dataset``; None when the dataset does not exist."""
        try:
            response = self.conn.describe_dataset(
                IdentityPoolId=identity_pool_id, IdentityId=identity_id, DatasetName=dataset_name
            )
        except ClientError as err:
            if self.error_code(err) != NOT_FOUND:
                raise
            return Answer(None, answered_at(err.response))
        return Answer(response["Dataset"], answered_at(response))

    def fetch_records(self, identity_pool_id: str, identity_id: str, dataset_name: str) -> Answer[ListedRecords]:
        """Every page of ``ListRecords`` from sync count 0 (removed keys included); None when the dataset
        does not exist."""
        records: list[Mapping[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "IdentityPoolId": identity_pool_id,
                "IdentityId": identity_id,
                "DatasetName": dataset_name,
                "LastSyncCount": 0,
                "MaxResults": 1024,
            }
            try:
                page = self.conn.list_records(**kwargs, **({"NextToken": token} if token else {}))
            except ClientError as err:
                if self.error_code(err) != NOT_FOUND:
                    raise
                return Answer(None, answered_at(err.response))
            records += page.get("Records") or []
            token = page.get("NextToken")
            if not token:
                count = page.get("DatasetSyncCount")
                return Answer(ListedRecords(records, None if count is None else int(count)), answered_at(page))

    def _every_page(self, call: Callable[..., dict[str, Any]], result_key: str, **kwargs: Any) -> Answer[list[Any]]:
        items: list[Any] = []
        token: str | None = None
        while True:
            try:
                page = call(**kwargs, **({"NextToken": token} if token else {}))
            except ClientError as err:
                if self.error_code(err) != NOT_FOUND:
                    raise
                return Answer(None, answered_at(err.response))
            items += page.get(result_key) or []
            token = page.get("NextToken")
            if not token:
                return Answer(items, answered_at(page))

    def error_code(self, err: Exception) -> str | None:
        """The AWS error code of a ``ClientError`` (``None`` for anything else)."""
        response = getattr(err, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            return str(code) if code else None
        return None


def answered_at(response: Mapping[str, Any] | None) -> datetime | None:
    """The ``Date`` header of a boto3 answer (or of the ``response`` of a ``ClientError``), in UTC: when
    the service answered, by its own clock, to the second."""
    headers = ((response or {}).get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    text = headers.get("date")
    if not text:
        return None
    try:
        moment = parsedate_to_datetime(str(text))
    except (TypeError, ValueError):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
