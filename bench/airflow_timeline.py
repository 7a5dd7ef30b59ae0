"""Where a change's time goes through Airflow: the critical path of every landing run and of the loading
run it triggered, read from Airflow's metadata database after a benchmark run.

For each landing run: the asset event that created it (event mode: the watcher's; schedule mode: none,
the run's ``run_after`` is the tick) -> the run created -> the run started -> each task scheduled, queued,
started, ended -> the ``cognito_streams_landed_batches`` event -> the loading run created -> started ->
each of its tasks -> ``load_batches`` ended (the commit) -> the run ended (its slot free for the next).

``python -m bench.airflow_timeline <airflow.db>`` prints the table for a kept metadata DB.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LANDING_DAG = "cognito_stream_to_s3"
LOADING_DAG = "cognito_s3_to_redshift"


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(str(value))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@dataclass
class TaskTimes:
    """One task of a run (a mapped task: its first scheduled/queued/start, its last end)."""

    task_id: str
    scheduled: float | None
    queued: float | None
    start: float | None
    end: float | None
    state: str | None
    instances: int = 1


@dataclass
class RunTimes:
    """One DAG run and its tasks."""

    dag_id: str
    run_id: str
    db_id: int
    trigger: float | None  # the asset event that made it (its earliest), or run_after
    created: float | None
    start: float | None
    end: float | None
    state: str | None
    tasks: dict[str, TaskTimes] = field(default_factory=dict)
    #: the event this run emitted on the landed asset (landing runs only)
    emitted: float | None = None
    emitted_event_id: int | None = None


def _runs(db: sqlite3.Connection, dag_id: str) -> list[RunTimes]:
    rows = db.execute(
        "select id, run_id, run_after, created_at, start_date, end_date, state from dag_run where dag_id = ? "
        "order by run_after",
        (dag_id,),
    ).fetchall()
    runs = []
    for db_id, run_id, run_after, created, start, end, state in rows:
        events = db.execute(
            "select min(e.timestamp) from dagrun_asset_event d join asset_event e on e.id = d.event_id "
            "where d.dag_run_id = ?",
            (db_id,),
        ).fetchone()
        trigger = _ts(events[0]) if events and events[0] else _ts(run_after)
        runs.append(RunTimes(dag_id, run_id, db_id, trigger, _ts(created), _ts(start), _ts(end), state))
    tis = db.execute(
        "select run_id, task_id, scheduled_dttm, queued_dttm, start_date, end_date, state from task_instance "
        "where dag_id = ?",
        (dag_id,),
    ).fetchall()
    by_run = {r.run_id: r for r in runs}
    grouped: dict[tuple[str, str], list[tuple[Any, ...]]] = defaultdict(list)
    for run_id, task_id, *times in tis:
        grouped[(run_id, task_id)].append(tuple(times))
    for (run_id, task_id), rows_ in grouped.items():
        run = by_run.get(run_id)
        if run is None:
            continue

        def first(i: int, rows: list[tuple[Any, ...]] = rows_) -> float | None:
            values = [t for r in rows if (t := _ts(r[i])) is not None]
            return min(values) if values else None

        ends = [t for r in rows_ if (t := _ts(r[3])) is not None]
        run.tasks[task_id] = TaskTimes(
            task_id, first(0), first(1), first(2), max(ends) if ends else None, rows_[0][4], len(rows_)
        )
    return runs


def _link(db: sqlite3.Connection, landing: list[RunTimes], loading: list[RunTimes]) -> dict[str, RunTimes]:
    """The loading run that took each landing run's event (landing run_id -> loading run)."""
    loading_by_id = {r.db_id: r for r in loading}
    linked: dict[str, RunTimes] = {}
    for run in landing:
        row = db.execute(
            "select id, timestamp from asset_event where source_dag_id = ? and source_run_id = ? order by id limit 1",
            (LANDING_DAG, run.run_id),
        ).fetchone()
        if not row:
            continue
        run.emitted_event_id, run.emitted = row[0], _ts(row[1])
        took = db.execute("select dag_run_id from dagrun_asset_event where event_id = ?", (row[0],)).fetchone()
        if took and took[0] in loading_by_id:
            linked[run.run_id] = loading_by_id[took[0]]
    return linked


def _stages(run: RunTimes, order: list[str]) -> list[tuple[str, float | None]]:
    """The run's path as (stage, seconds): the hop to each task and each task's own time."""
    out: list[tuple[str, float | None]] = []
    ends: list[float] = []
    for task_id in order:
        t = run.tasks.get(task_id)
        if t is None or t.start is None:
            continue
        # Ready when the last of the earlier tasks it waited for ended (a task beside another, like
        # check_shards beside publish_landed, did not wait for it).
        queued = t.queued if t.queued is not None else t.start
        ready = max([e for e in ends if e <= queued], default=run.start)
        out.append((f"{task_id}: ready -> queued", _diff(t.queued, ready)))
        out.append((f"{task_id}: queued -> started", _diff(t.start, t.queued)))
        out.append((f"{task_id}: started -> ended", _diff(t.end, t.start)))
        if t.end is not None:
            ends.append(t.end)
    return out


def _diff(later: float | None, earlier: float | None) -> float | None:
    return None if later is None or earlier is None else later - earlier


LANDING_ORDER = ["plan_shards", "land_shard", "publish_landed", "check_shards"]
LOADING_ORDER = [
    "prepare",
    "check_params",
    "ensure_schema",
    "choose_mode",
    "load_batches",
    "quality_checks",
    "announce_loaded",
]


def breakdown(db_path: Path, since: float | None = None, until: float | None = None) -> dict[str, Any]:
    """Per stage of the critical path: seconds (median, p95, max, n) over the landing runs triggered in
    ``[since, until]`` (all when None) that landed something, with the loading run that took their event."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        landing = _runs(db, LANDING_DAG)
        loading = _runs(db, LOADING_DAG)
        linked = _link(db, landing, loading)
    finally:
        db.close()
    samples: dict[str, list[float]] = defaultdict(list)
    order: list[str] = []

    def add(stage: str, value: float | None) -> None:
        if value is None:
            return
        if stage not in samples:
            order.append(stage)
        samples[stage].append(value)

    chosen = [
        r
        for r in landing
        if r.trigger is not None and (since is None or r.trigger >= since) and (until is None or r.trigger <= until)
    ]
    for run in chosen:
        add("landing: trigger (watcher event / tick) -> run created", _diff(run.created, run.trigger))
        add("landing: run created -> run started", _diff(run.start, run.created))
        for stage, value in _stages(run, LANDING_ORDER):
            add(f"landing {stage}", value)
        add("landing: run started -> run ended (the run slot)", _diff(run.end, run.start))
        load = linked.get(run.run_id)
        if load is None:
            continue
        publish = run.tasks.get("publish_landed")
        add("publish_landed ended -> landed asset event", _diff(run.emitted, publish.end if publish else None))
        add("landed asset event -> loading run created", _diff(load.created, run.emitted))
        add("loading: run created -> run started", _diff(load.start, load.created))
        for stage, value in _stages(load, LOADING_ORDER):
            add(f"loading {stage}", value)
        batches = load.tasks.get("load_batches")
        add("loading: run started -> run ended (the run slot)", _diff(load.end, load.start))
        add(
            "TOTAL trigger -> load_batches ended (the commit)",
            _diff(batches.end if batches else None, run.trigger),
        )
    # Gaps between consecutive runs: the slot freed -> the next run started.
    for runs, name in ((landing, "landing"), (loading, "loading")):
        for a, b in itertools.pairwise(runs):
            if a.end is not None and b.start is not None and b.created is not None and b.created <= a.end:
                add(f"{name}: previous run ended -> next (waiting) run started", _diff(b.start, a.end))
    table = {
        stage: {
            "median": round(statistics.median(v), 2),
            "p95": round(_pct(v, 0.95), 2),
            "max": round(max(v), 2),
            "n": len(v),
        }
        for stage in order
        for v in [samples[stage]]
    }
    return {"landing_runs": len(chosen), "loading_runs": len(set(id(x) for x in linked.values())), "stages": table}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def render(result: dict[str, Any]) -> str:
    """The breakdown as a text table."""
    lines = [f"{result['landing_runs']} landing run(s), {result['loading_runs']} loading run(s) linked"]
    width = max([len(s) for s in result["stages"]] + [10])
    lines.append(f"{'stage'.ljust(width)}  median     p95     max    n")
    for stage, s in result["stages"].items():
        lines.append(f"{stage.ljust(width)}  {s['median']:6.2f}  {s['p95']:6.2f}  {s['max']:6.2f}  {s['n']:3d}")
    return "\n".join(lines)


if __name__ == "__main__":
    found = breakdown(Path(sys.argv[1]))
    print(render(found))
    if len(sys.argv) > 2:
        Path(sys.argv[2]).write_text(json.dumps(found, indent=2) + "\n")
