"""The work of the ``cognito_bulk_publish`` task that is not its operator: the pools to publish."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def pools_to_publish(params: dict[str, Any] | None) -> list[str]:
    """The ``pools_to_publish`` task: the ``identity_pool_ids`` param (a subset of the configured pools) or
    every configured pool. A bad setting or a pool the settings do not name fails at once, never retried."""
    from cognito_streams.dag_defaults import user_errors
    from cognito_streams.settings import SettingsError, load_settings

    with user_errors():
        settings = load_settings()
        asked = list((params or {}).get("identity_pool_ids") or [])
        unknown = sorted(set(asked) - set(settings.identity_pool_ids))
        if unknown:
            raise SettingsError(
                f"identity_pool_ids param names pools that are not in cognito_pipeline.identity_pool_ids: {unknown}"
            )
    pools = asked or list(settings.identity_pool_ids)
    reason = (params or {}).get("reason")
    log.info("bulk publish for %d pool(s)%s", len(pools), f" (reason: {reason})" if reason else "")
    return pools
