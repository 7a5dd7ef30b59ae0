"""
### cognito_reconcile

Proves the warehouse right: compares it with Amazon Cognito Sync itself, daily and on demand, and
writes the pipeline-health report.

1. **reconcile** — for every identity of the configured pools (from the warehouse and from Cognito
   Identity's `ListIdentities`), or a deterministic sample, reads Cognito Sync (`ListDatasets`,
   `DescribeDataset` for a dataset the warehouse has and the listing does not, `ListRecords`) and the
   identity's rows of `records` and `datasets`, and records each difference in
   `reconciliation_results` with its kind: `missing` (Cognito has the key or dataset, the warehouse
   has no row), `extra` (a live row Cognito does not have), `stale_value` (value, sync count or time
   differ; for a dataset, its last change or live record count; the detail gives the values' lengths,
   never anything else of them), `wrong_delete_state` (deleted on one side, live on the other),
   `unknown_identity` (live warehouse data of an identity Cognito Sync does not know: deleted with
   `DeleteIdentities`, or never valid; one row per dataset, and the other identities are still
   compared). Dataset-level rows have no `record_key`. Only what the pipeline has had time to load is
   judged: changes made after its **watermark** (every Kinesis record that arrived before it is landed
   and loaded: from the checkpoints, a peek at Kinesis and the loader's `loaded_batches`) or within
   `settle_seconds` are counted as in flight; an `extra` is kept only after the watermark has passed the
   end of the Cognito reads (waiting up to `settle_seconds`, at least 30 s) and the row is still live.
   While the pipeline is **stalled** nothing is compared: the run's verdict is `stalled, not judged`
   (the stall alarm is `cognito_pipeline_health`'s). The run's counts, verdict and watermark go to
   `reconciliation_runs`.
2. **write_report** — a static snapshot of the health report as one HTML file in the landing bucket
   under `reports/` (and locally for `make demo`), for attaching to a ticket. The Airflow UI does not
   serve it: *Browse > Pipeline health* is computed live.
3. **check_mismatches** — red when mismatches exceed `max_mismatches`.

**Params**: `sample_size` (null = every identity), `settle_seconds`, `max_mismatches` (null = the
setting `reconcile_max_mismatches`, default 0), `identity_pool_ids` (a subset), `depth` (null = the
setting `reconcile_depth`, default `records`: every dataset's records are listed and every
difference is found; `datasets`: only datasets whose `Dataset` description — `NumRecords`,
`DataStorage`, `LastModifiedDate` — differs from the warehouse are listed, one call per dataset
fewer, but a value replaced by one of the same length or a sync count changed alone goes unseen).

Backfills are refused (`allowed_run_types`): a reconciliation compares the present.

**When it is red**: query `reconciliation_results` for the run (`run_id` in the log). A few
`stale_value`/`missing` right after an outage usually mean data still in flight or lost from
Kinesis: run `cognito_bulk_publish`, let the pipeline catch up, then reconcile again. `extra` or
`wrong_delete_state` that persist point at a loader problem: run `cognito_s3_to_redshift` with
`mode: rebuild`, and open an issue with the examples. `unknown_identity`: the identity is gone from
Cognito; keep its rows as history, or delete them (docs/operations.md, "Reconciliation").
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, TriggerRule, dag, task

from cognito_streams.dag_defaults import NO_BACKFILL, default_args


@dag(
    dag_id="cognito_reconcile",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    allowed_run_types=NO_BACKFILL,
    doc_md=__doc__,
    tags=["cognito-streams", "data-quality"],
    default_args=default_args(retries=1, retry_delay=timedelta(minutes=5)),
    params={
        "sample_size": Param(None, type=["null", "integer"], minimum=1, description="Identities to check; null = all."),
        "settle_seconds": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            # The setting's bound: a longer settle time counts every change as in flight and judges nothing.
            maximum=7 * 86_400,
            description="Ignore changes younger than this (in flight); at most 7 days (604800).",
        ),
        "max_mismatches": Param(None, type=["null", "integer"], minimum=0, description="Red above this many."),
        "identity_pool_ids": Param(
            [], type="array", items={"type": "string"}, uniqueItems=True, description="Subset of pools."
        ),
        "depth": Param(
            None,
            type=["null", "string"],
            enum=[None, "records", "datasets"],
            description="records: list every dataset; datasets: only those whose description differs.",
        ),
    },
)
def cognito_reconcile() -> None:
    """Warehouse vs Cognito Sync, and the health report (see doc_md)."""

    @task
    def reconcile(params: dict[str, Any] | None = None, dag_run: Any = None) -> dict[str, Any]:
        from cognito_streams.reconcile import tasks

        return tasks.reconcile(params, dag_run.run_id)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def write_report() -> dict[str, Any]:
        from cognito_streams.report import tasks

        return tasks.write_report()

    @task(retries=0)
    def check_mismatches(summary: Any) -> dict[str, int]:
        from cognito_streams.reconcile import tasks

        return tasks.check_mismatches(summary)

    summary = reconcile()
    summary >> write_report()
    check_mismatches(summary)


DAG = cognito_reconcile()
