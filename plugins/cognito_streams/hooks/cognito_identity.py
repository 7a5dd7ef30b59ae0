"""A thin hook around boto3's ``cognito-identity`` client: the identities of a pool, page by page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

#: ``ListIdentities`` returns at most 60 identities per call (its MaxResults bound).
PAGE_SIZE = 60


class CognitoIdentityHook(AwsBaseHook):
    """Amazon Cognito Identity through the ``aws_default`` (or given) connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "cognito-identity"
        super().__init__(*args, **kwargs)

    def identities_page(self, identity_pool_id: str, next_token: str | None = None) -> tuple[list[str], str | None]:
        """One ``ListIdentities`` page: its identity ids and the token of the next page (None: the last)."""
        kwargs: dict[str, Any] = {"IdentityPoolId": identity_pool_id, "MaxResults": PAGE_SIZE}
        if next_token:
            kwargs["NextToken"] = next_token
        page = self.conn.list_identities(**kwargs)
        return [str(i["IdentityId"]) for i in page.get("Identities") or []], page.get("NextToken") or None

    def list_identities(self, identity_pool_id: str) -> Iterator[str]:
        """Every identity id of the pool, in ``ListIdentities``' order."""
        token: str | None = None
        while True:
            ids, token = self.identities_page(identity_pool_id, token)
            yield from ids
            if not token:
                return
