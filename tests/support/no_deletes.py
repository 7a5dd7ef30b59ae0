"""S3 as the worker's IAM policy makes it: no ``s3:DeleteObject`` (``plugins/cognito_streams/iam/
airflow-worker.policy.json``, "no deletes"). moto evaluates no IAM policy, so a test that must hold on real AWS
runs its pipeline code inside :func:`refusing_s3_deletes`: every S3 delete made in this process, by any boto3
client (the tasks' S3Hook clients too), fails with ``AccessDenied`` as AWS answers it, and is recorded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import botocore.client
from botocore.exceptions import ClientError

#: S3 operations the worker's policy does not allow (deleting objects or their versions).
REFUSED = frozenset({"DeleteObject", "DeleteObjects"})


@contextmanager
def refusing_s3_deletes() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Within the block, S3 deletes raise ``AccessDenied``; yields the list of the refused calls
    (operation, parameters), for the test to assert it stays empty or to show what was tried."""
    refused: list[tuple[str, dict[str, Any]]] = []
    real = botocore.client.BaseClient._make_api_call

    def make_api_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        if self.meta.service_model.service_name == "s3" and operation_name in REFUSED:
            refused.append((operation_name, dict(api_params)))
            raise ClientError(
                {
                    "Error": {
                        "Code": "AccessDenied",
                        "Message": f"User is not authorized to perform: s3:{operation_name} (the worker's policy "
                        "grants no delete)",
                    },
                    "ResponseMetadata": {"HTTPStatusCode": 403},
                },
                operation_name,
            )
        return real(self, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = make_api_call  # type: ignore[method-assign]
    try:
        yield refused
    finally:
        botocore.client.BaseClient._make_api_call = real  # type: ignore[method-assign]
