"""Replays of the landing (``replay_from``): the checks on the time asked, the rewind of each shard's
checkpoint before the run reads, and, as the replay lands batches again, the markers that supersede the
older batches it re-landed (docs/landing.md, "Replays")."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from cognito_streams.core.landing.checkpoints import utcnow
from cognito_streams.core.landing.shards import sequence_key
from cognito_streams.core.landing_format import LandingLayout
from cognito_streams.landing_zone.checkpoints import CheckpointStore, LeaseRefused
from cognito_streams.landing_zone.descriptors import list_batches, mark_superseded

log = logging.getLogger(__name__)


class ReplayOutOfRangeError(ValueError):
    """``replay_from`` is not within the stream's retention."""


def check_replay_from(replay_from: datetime, retention_hours: int, now: datetime) -> None:
    """``replay_from`` must be in the past and within the stream's retention."""
    if replay_from.tzinfo is None:
        raise ReplayOutOfRangeError(f"replay_from {replay_from.isoformat()} has no time zone; give it in UTC (…Z)")
    oldest = now - timedelta(hours=retention_hours)
    if replay_from > now:
        raise ReplayOutOfRangeError(f"replay_from {replay_from.isoformat()} is in the future (now {now.isoformat()})")
    if replay_from <= oldest:
        raise ReplayOutOfRangeError(
            f"replay_from {replay_from.isoformat()} is older than the stream's retention ({retention_hours} h: "
            f"the oldest record kept arrived after {oldest.isoformat()}). Kinesis no longer has that data: "
            "replay from a later time, or use cognito_bulk_publish to republish everything."
        )


def rewind(store: CheckpointStore, shard_id: str, replay_from: datetime, owner: str, run_id: str) -> bool:
    """Rewind the shard's checkpoint to ``replay_from`` under its lease; False when this run (``run_id``)
    rewound it already (a retry of the replay must not rewind twice)."""
    acquired = store.acquire(shard_id, owner)
    if isinstance(acquired, LeaseRefused):
        raise RuntimeError(
            f"cannot replay: {acquired.describe()}. Trigger the replay again after that run ends "
            "(or after the lease expires)."
        )
    current = acquired
    if current.checkpoint.replay_run_id == run_id and run_id:
        store.release(current, owner)
        return False
    current = store.update(current, current.checkpoint.rewound(replay_from, run_id, utcnow()), owner)
    log.info(
        "shard %s rewound for a replay from %s (it was at sequence number %s)",
        shard_id,
        replay_from.isoformat(),
        current.checkpoint.replay_until,
    )
    store.release(current, owner)
    return True


#: A replay's batches may start a little before the older batches they supersede in arrival time
#: (ApproximateArrivalTimestamp is approximate): the days around the replay's are looked at too.
SUPERSEDE_MARGIN = timedelta(days=1)


def supersede_replayed(
    s3: Any,
    layout: LandingLayout,
    folder: str,
    token: str,
    first_sequence: str,
    last_sequence: str,
    first_arrived_at: datetime,
    last_arrived_at: datetime,
) -> int:
    """Supersede the older batches of the shard folder ``folder`` whose records the replay ``token`` has now
    landed again (their whole range within ``first_sequence``..``last_sequence``): write a marker for each
    (``_superseded/`` beside ``batches/``, :func:`landing_zone.descriptors.mark_superseded`), deleting nothing.
    Every lister of descriptors skips a descriptor with a marker: the loader then loads the replay's batches,
    which hold those records decoded by the code of now, and never again an older batch that fails (a broken
    file the replay re-landed with other cuts); it resolves such a batch it had set aside. Returns how many
    were superseded now; idempotent (a retry of the replay finds them marked: no second marker, nothing
    counted twice)."""
    low, high = sequence_key(first_sequence), sequence_key(last_sequence)
    day = (first_arrived_at - SUPERSEDE_MARGIN).date()
    base = folder.split("@", 1)[0]
    superseded = 0
    while day <= (last_arrived_at + SUPERSEDE_MARGIN).date():
        prefix = layout.batches_prefix(day.isoformat())
        day += timedelta(days=1)
        # Descriptors already marked are not listed: a retry of the replay marks nothing twice.
        for item in list_batches(s3, layout, [prefix + base]).live:
            batch_folder, _, name = item.key[len(prefix) :].partition("/")
            batch_base, _, other_token = batch_folder.partition("~")
            first, _, last = name.removesuffix(".json").partition("-")
            if batch_base != folder or other_token == token or "/" in name or not (first.isdigit() and last.isdigit()):
                continue
            if low <= int(first) and int(last) <= high:
                marker = mark_superseded(s3, layout, item.key)
                log.info("replay %s superseded %s (marker %s)", token, layout.url(item.key), layout.url(marker))
                superseded += 1
    return superseded
