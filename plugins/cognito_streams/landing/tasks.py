"""The bodies of the ``cognito_stream_to_s3`` tasks, so that the DAG file stays wiring only.

Each function reads the settings at run time (``load_settings``), builds its AWS clients from the
``aws_conn_id`` connection and returns JSON-friendly values for XCom.

The landing runner (and with it the decoder: numba, pyarrow, pandas) is imported only by the functions
that use it: every task process imports this module, and ``publish_landed`` and ``check_shards`` never
decode. Measured at load 4-6 on the 2-core machine, that import was 1.3-2 s of each of those task
processes, on the critical path of every landing run (docs/performance.md).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cognito_streams.landing.summary import summarize

if TYPE_CHECKING:
    from cognito_streams.settings import PipelineSettings

log = logging.getLogger(__name__)


def parse_replay_from(value: str | None) -> datetime | None:
    """The ``replay_from`` param: an ISO 8601 timestamp (a time without zone is taken as UTC)."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"replay_from {text!r} is not an ISO 8601 timestamp; give e.g. 2026-11-25T08:00:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def lease_owner(dag_id: str, run_id: str) -> str:
    """Who holds a shard's lease: the DAG run (a retry of its tasks may take its own lease back)."""
    return f"{dag_id}:{run_id}"


def plan(
    params: Mapping[str, Any], dag_id: str, run_id: str, settings: PipelineSettings | None = None
) -> list[dict[str, Any]]:
    """Plan task: the readable shards, one dict each (the landing task is mapped over them), then the
    shards that left the stream before being read to their end (their tasks fail: ``MAY BE LOST``)."""
    from cognito_streams.landing.runner import LandingContext, plan_run
    from cognito_streams.settings import load_settings

    settings = settings or load_settings()
    ctx = LandingContext.from_settings(settings)
    replay_from = parse_replay_from(params.get("replay_from"))
    only = [s for s in (params.get("shards") or []) if s] or None
    shard_plan, rewound = plan_run(ctx, lease_owner(dag_id, run_id), only=only, replay_from=replay_from, run_id=run_id)
    if rewound:
        log.info("replay from %s: rewound %s", replay_from.isoformat() if replay_from else "", ", ".join(rewound))
    return [shard.as_dict() for shard in shard_plan.tasks()]


def land(
    shard: Mapping[str, Any], dag_id: str, run_id: str, settings: PipelineSettings | None = None
) -> dict[str, Any]:
    """Landing task (one per readable shard): see :func:`cognito_streams.landing.runner.land_shard`."""
    # Whether the process this task was forked from had imported the decoder already (cognito_streams.preload,
    # docs/operations.md): how an operator checks that the scheduler's forkserver preload took.
    log.info("decoder preloaded: %s", "yes" if "cognito_streams.landing.runner" in sys.modules else "no")
    from cognito_streams.core.landing.shards import ShardInfo
    from cognito_streams.landing.runner import LandingContext, land_shard
    from cognito_streams.settings import load_settings

    settings = settings or load_settings()
    ctx = LandingContext.from_settings(settings)
    info = ShardInfo(**{k: shard.get(k) for k in ShardInfo.__dataclass_fields__})  # type: ignore[arg-type]
    return land_shard(ctx, info, lease_owner(dag_id, run_id)).as_dict()


def land_with_metrics(shard: Mapping[str, Any], dag_id: str, run_id: str) -> dict[str, Any]:
    """The ``land_shard`` task: :func:`land`, then its counts and lag emitted as Airflow metrics
    (:func:`cognito_streams.monitoring.metrics.landed`)."""
    from cognito_streams.monitoring import metrics

    outcome = land(shard, dag_id, run_id)
    metrics.landed(outcome)
    return outcome


#: Descriptor URIs listed in the asset event (and publish_landed's XCom). A busy run lands several
#: batches on each of hundreds of shards; the loader lists the landing zone itself, so the event
#: carries the counts and a sample, not a list that grows with the stream.
DESCRIPTORS_IN_EVENT = 100


def publish(outcomes: Iterable[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Final task: the asset event's extra when something landed, else None (the task skips).

    ``descriptors`` holds the first ``DESCRIPTORS_IN_EVENT`` URIs; ``descriptors_omitted`` how many more."""
    summary = summarize(outcomes)
    log.info("run total: %s", summary.line())
    if not summary.descriptors:
        return None
    return {
        "batches": len(summary.descriptors),
        "descriptors": summary.descriptors[:DESCRIPTORS_IN_EVENT],
        "descriptors_omitted": max(0, len(summary.descriptors) - DESCRIPTORS_IN_EVENT),
        "records_read": summary.records_read,
        "records_landed": summary.records_landed,
        "records_rejected": summary.records_rejected,
    }


def failed_shards(planned: Iterable[Mapping[str, Any]], outcomes: Iterable[dict[str, Any] | None]) -> list[str]:
    """Shards planned for this run whose landing task left no outcome (it failed)."""
    done = {o["shard_id"] for o in outcomes if o}
    return [p["shard_id"] for p in planned if p["shard_id"] not in done]


# The run's steps before the per-shard tasks, which ``failed_shards`` judges from their outcomes.
# (``publish_landed`` runs beside ``check_shards``: a failure of it fails the run as a last task itself.)
STEP_TASKS = ["plan_shards"]


def failed_steps(states: Mapping[str, str | None]) -> list[str]:
    """The steps in ``STEP_TASKS`` that failed this run, from Airflow's task states of the run."""
    return [task_id for task_id in STEP_TASKS if states.get(task_id) in ("failed", "upstream_failed")]


def check_shards(
    planned: Iterable[Mapping[str, Any]] | None,
    outcomes: Iterable[dict[str, Any] | None] | None,
    ti: Any,
    dag_id: str,
    run_id: str,
) -> None:
    """The ``check_shards`` task, the run's verdict: raises ``RuntimeError`` when a step of the run
    (``STEP_TASKS``, from Airflow's task states read through the task instance ``ti``) or a shard's landing
    failed, naming them and where to look."""
    states = ti.get_task_states(dag_id=dag_id, run_ids=[run_id], task_ids=STEP_TASKS)
    broken = failed_steps(states.get(run_id, {}))
    if broken:
        raise RuntimeError(
            f"{' and '.join(broken)} failed: see {'its' if len(broken) == 1 else 'their'} task log "
            "(nothing is lost: the checkpoints move only after a batch is landed, the next run goes on from them)"
        )
    failed = failed_shards(list(planned or []), list(outcomes or []))
    if failed:
        raise RuntimeError(
            f"landing failed for shard(s) {', '.join(failed)}: see their land_shard task logs "
            "(the other shards' batches were landed and announced)"
        )
