"""The ``default_args`` every DAG of the pipeline shares: its owner, failure alerts and retries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cognito_streams.alerts import failure_callbacks

OWNER = "cognito-streams"


def default_args(*, retries: int, retry_delay: timedelta, exponential_backoff: bool = False) -> dict[str, Any]:
    """A DAG's ``default_args``: owner, the SNS failure alert when configured (``alerts``), its retries."""
    args: dict[str, Any] = {
        "owner": OWNER,
        "on_failure_callback": failure_callbacks(),
        "retries": retries,
        "retry_delay": retry_delay,
    }
    if exponential_backoff:
        args["retry_exponential_backoff"] = True
    return args
