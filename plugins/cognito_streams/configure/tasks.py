"""The work of each ``cognito_streams_configure`` task, so that the DAG file only wires them.

The configurator (the Amazon provider's hooks, botocore) is imported only by the functions that call AWS:
every task process imports this module, and ``pools_to_backfill`` and ``check_pools`` only read their
upstream tasks' results.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def ensure_stream(params: dict[str, Any] | None) -> dict[str, Any]:
    """The ``ensure_stream`` task: the Kinesis stream exists, ACTIVE, with ``stream_shards`` shards (changed
    only with the ``reshard`` param). A bad setting fails at once, without retries; AWS errors are retried."""
    from dataclasses import asdict

    from cognito_streams.configure.configurator import StreamsConfigurator
    from cognito_streams.dag_defaults import user_errors
    from cognito_streams.settings import load_settings

    with user_errors():
        settings = load_settings()
    report = StreamsConfigurator(settings).ensure_stream(reshard=bool((params or {}).get("reshard")))
    return asdict(report)


def ensure_publish_role() -> dict[str, Any]:
    """The ``ensure_publish_role`` task: the role Cognito Sync publishes with, created or validated. An
    ``invalid`` or ``drifted`` role is logged, not raised: the pools may still be inspected, and
    ``check_pools`` turns the run red."""
    from dataclasses import asdict

    from cognito_streams.configure.configurator import ConfigurationError, StreamsConfigurator
    from cognito_streams.settings import load_settings

    report = StreamsConfigurator(load_settings()).ensure_publish_role()
    if report.action in ("invalid", "drifted"):
        log.error("publish role %s: %s", report.role_arn, "; ".join(report.problems))
    elif report.action not in ("created", "updated", "unchanged", "validated"):
        raise ConfigurationError(f"unexpected role report {report}")
    return asdict(report)


def configure_pools() -> dict[str, Any]:
    """The ``configure_pools`` task: each pool's Cognito Streams settings, then their summary
    (:func:`cognito_streams.configure.configurator.summarize`)."""
    from cognito_streams.configure.configurator import StreamsConfigurator, summarize
    from cognito_streams.settings import load_settings

    return summarize(StreamsConfigurator(load_settings()).configure_pools())


def pools_to_backfill(summary: dict[str, Any], params: dict[str, Any] | None) -> dict[str, Any] | bool:
    """The ``pools_to_backfill`` short circuit: the ``cognito_bulk_publish`` conf for the pools whose streaming
    was re-enabled, or False (nothing to backfill, or the ``backfill_reenabled`` param is off)."""
    pools = summary["needs_backfill"]
    if not pools or not (params or {}).get("backfill_reenabled", True):
        return False
    return {"identity_pool_ids": pools, "reason": "streaming was re-enabled by cognito_streams_configure"}


def check_pools(summary: dict[str, Any] | None, role: dict[str, Any] | None) -> dict[str, Any]:
    """The ``check_pools`` task (runs whatever happened upstream): raises ``ConfigurationError`` naming each
    pool that could not be made right and a role that is invalid or drifted, or a step that did not run;
    returns the pools' counts."""
    from cognito_streams.configure.configurator import ConfigurationError

    if summary is None or role is None:
        # Without their results the pools' state is unknown.
        steps = (("ensure_publish_role", role), ("configure_pools", summary))
        missing = [name for name, out in steps if out is None]
        raise ConfigurationError(
            f"Cognito Streams is not healthy: the pools were not checked: {' and '.join(missing)} did not run or "
            "failed (open the log of the first failed task: ensure_stream, ensure_publish_role or configure_pools)"
        )
    failed = [p for p in summary["pools"] if p["action"] == "fail"]
    if failed or role["action"] in ("invalid", "drifted"):
        lines = [f"- pool {p['identity_pool_id']}: {'; '.join(p['reasons'])}" for p in failed]
        if role["action"] in ("invalid", "drifted"):
            what = "" if role["action"] == "invalid" else " has drifted (the pipeline does not repair this)"
            lines.insert(0, f"- publish role {role['role_arn']}{what}: {'; '.join(role['problems'])}")
        raise ConfigurationError("Cognito Streams is not healthy:\n" + "\n".join(lines))
    return summary["counts"]  # type: ignore[no-any-return]
