"""What every DAG of the pipeline shares: ``default_args`` (owner, failure alerts, retries), the run types
it allows (no backfill), and how a user's mistake fails a task (at once, never retried)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

# The Task SDK's own enum (what ``dag(allowed_run_types=...)`` is typed with; not re-exported publicly).
from airflow.sdk.api.datamodels._generated import DagRunType

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


#: Every run type but ``backfill``: none of the pipeline's DAGs reads a fixed data interval (landing reads
#: from its checkpoints, loading what is landed and not loaded, the others act on the present), so an
#: Airflow backfill would repeat "now" once per interval. ``allowed_run_types`` makes Airflow refuse it in
#: one line, in its own words. Re-read or reload instead: ``replay_from`` (cognito_stream_to_s3),
#: ``from_day``/``to_day`` (cognito_s3_to_redshift), ``cognito_bulk_publish`` (README, "Re-reading and
#: reloading"). A superset of what each schedule needs (Airflow checks that it includes the DAG's own
#: scheduled or asset-triggered type), so it fits a cron, an asset or an event-driven schedule alike.
NO_BACKFILL = frozenset(DagRunType) - {DagRunType.BACKFILL}


@contextmanager
def user_errors() -> Iterator[None]:
    """Fail the task at once, without retries, on a user's mistake: a bad Param or a bad setting (the
    ``ValueError`` family: ``SettingsError``, ``LoadParamsError``, a replay out of range ...). A typo is not
    a transient error; retrying it would only hold the DAG's run slot (``max_active_runs=1``) for minutes
    while scheduled runs wait. The message is kept as it was."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except ValueError as err:
        raise AirflowFailException(f"{type(err).__name__}: {err}") from err
