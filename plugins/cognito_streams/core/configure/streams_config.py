"""What to do with one identity pool's Cognito Streams settings (pure).

Given the pool's current configuration, the settings we want and what we know about the stream
and the role, decide: leave it (already right), write it (first configuration or drift), re-enable
it (it was DISABLED and the cause is fixed) or fail with the reason (DISABLED and still broken).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class PoolAction(enum.StrEnum):
    """The outcome for one pool."""

    UNCHANGED = "unchanged"  # already right: nothing written
    CONFIGURE = "configure"  # no Cognito Streams settings yet
    REPAIR = "repair"  # drifted (another stream or role, or disabled by hand): rewritten
    REENABLE = "reenable"  # Cognito disabled it (DisabledReason) and the cause is fixed now
    FAIL = "fail"  # cannot be made right by us: the reason says what to fix


@dataclass(frozen=True)
class PoolPlan:
    """Decision for one pool, with the configuration to write (when writing)."""

    action: PoolAction
    reasons: list[str] = field(default_factory=list)
    cognito_streams: dict[str, Any] | None = None  # what to send to SetIdentityPoolConfiguration
    push_sync: dict[str, Any] | None = None  # kept exactly as read

    @property
    def writes(self) -> bool:
        return self.action in (PoolAction.CONFIGURE, PoolAction.REPAIR, PoolAction.REENABLE)

    @property
    def needs_backfill(self) -> bool:
        """Streaming was off for a while: changes made meanwhile never reached the stream, and only
        a bulk publish can send them."""
        return self.action is PoolAction.REENABLE or (
            self.action is PoolAction.REPAIR and any("DISABLED" in r for r in self.reasons)
        )


def plan_pool(
    current: dict[str, Any],
    *,
    stream_name: str,
    role_arn: str,
    stream_problems: list[str],
    role_problems: list[str],
) -> PoolPlan:
    """Decide for one pool from its ``GetIdentityPoolConfiguration`` response."""
    streams = current.get("CognitoStreams") or {}
    push_sync = current.get("PushSync") or None
    desired = {"StreamName": stream_name, "RoleArn": role_arn, "StreamingStatus": "ENABLED"}
    blockers = [f"stream: {p}" for p in stream_problems] + [f"role {role_arn}: {p}" for p in role_problems]

    if not streams.get("StreamName") and not streams.get("RoleArn"):
        if blockers:
            return PoolPlan(PoolAction.FAIL, ["not configured yet, and cannot be:", *blockers])
        return PoolPlan(PoolAction.CONFIGURE, ["no Cognito Streams settings yet"], desired, push_sync)

    drift = []
    if streams.get("StreamName") != stream_name:
        drift.append(f"stream was {streams.get('StreamName')!r}, want {stream_name!r}")
    if streams.get("RoleArn") != role_arn:
        drift.append(f"role was {streams.get('RoleArn')!r}, want {role_arn!r}")
    status = streams.get("StreamingStatus")
    disabled_by_cognito = status == "DISABLED" and bool(streams.get("DisabledReason"))
    if status != "ENABLED":
        reason = f"StreamingStatus was {status}"
        if streams.get("DisabledReason"):
            reason += f" (DisabledReason: {streams['DisabledReason']})"
        drift.append(reason)

    if not drift:
        # Enabled and pointing where we want. A stream or role that is broken now will make Cognito
        # disable streaming at its next publish: say so loudly rather than wait for it.
        if blockers:
            return PoolPlan(PoolAction.FAIL, ["configured and ENABLED, but publishing will fail:", *blockers])
        return PoolPlan(PoolAction.UNCHANGED, [])
    if blockers:
        return PoolPlan(PoolAction.FAIL, [*drift, "cannot repair because:", *blockers])
    only_disabled = len(drift) == 1 and disabled_by_cognito
    action = PoolAction.REENABLE if only_disabled else PoolAction.REPAIR
    return PoolPlan(action, drift, desired, push_sync)


#: Kinesis refuses an ``UpdateShardCount`` above double or below half the stream's open shards
#: (UpdateShardCount API reference, "limits"); a bigger change is made in steps.
RESHARD_MAX_FACTOR = 2


def reshard_steps(current: int, wanted: int) -> list[int]:
    """The ``TargetShardCount`` of each ``UpdateShardCount`` taking a stream from ``current`` to
    ``wanted`` open shards, each within Kinesis' double/half limit (empty: nothing to do).

    Doubling (or halving) is also what AWS recommends: it needs the fewest splits and merges."""
    if current < 1 or wanted < 1:
        raise ValueError(f"shard counts must be at least 1 (current {current}, wanted {wanted})")
    steps: list[int] = []
    while current != wanted:
        if wanted > current:
            current = min(wanted, current * RESHARD_MAX_FACTOR)
        else:
            current = max(wanted, -(-current // RESHARD_MAX_FACTOR))
        steps.append(current)
    return steps
