"""The loader's merge on PostgreSQL, side by side with (a) the floor, a plain COPY of the same rows into an
empty table, and (b) the S3ToRedshiftOperator-style UPSERT (DELETE ... USING + INSERT, no dedupe, no
ordering), on ``records`` tables of two sizes. Full mode: a batch of 100,000 changes into 1,000,000 and
10,000,000 rows; quick mode: 10,000 into 100,000 and 1,000,000.

Every variant starts from the same landed Parquet file and pays the same Parquet -> CSV -> COPY FROM STDIN.
"ours" is ``PostgresWarehouse.load`` itself (stage, contract and count checks, dedupe, history, MERGE of
records and datasets, bookkeeping), in one transaction. The batch has what real streams have: updates,
new keys, removes, exact resends within the batch and older versions arriving late, changed as syncs change
them (1 to 8 keys of one dataset per sync; a last batch of one key per sync is the worst case of the datasets
step); (b) gets those wrong, and the figure notes count how many rows it leaves wrong.

Each size gets a sequence of batches (full: 6, quick: 4) loaded one after the other into the same tables, as a
loader meets them run after run, with a checkpoint before every load: ours into ``records``, (b) into its own
copy of it, taking turns going first, and (a) twice per batch. The figures are medians over the sequence; the
notes list every batch. (Until 2026-11-26 the figures were the best of two batches into fresh tables: on this
host two runs of the same load differ by up to 20 %, so which of ours and (b) was faster was decided by noise,
and (b) was measured only in its best state, before its duplicates and dead rows build up.)

Goals (issue 6): ours within 3x of (a), faster than (b), and less than 1.5x slower on the 10x larger table.
A further figure times, inside ours, the COPY plus the three writes the contract requires (history, records,
datasets): the part of the load that no change to the merge's logic can remove, against the same floor.
"""

# ruff: noqa: S608 - the SQL here names bench-only schemas built from integers and constants, no input
from __future__ import annotations

import io
import os
import random
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from bench.harness import BenchContext, Figure
from cognito_streams.core.landing_format import CHANGES_SCHEMA, FileRef, LandedBatch
from cognito_streams.core.sql_text import WarehouseSql
from cognito_streams.warehouse.models import BatchToLoad, LoadReport, Manifest, ManifestEntry
from cognito_streams.warehouse.postgres import PostgresWarehouse, copy_landed

POOL = "us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"
BASE_TIME = datetime(2024, 1, 1)
KEYS_PER_DATASET = 10
DATASETS_PER_IDENTITY = 2
ROWS_PER_IDENTITY = KEYS_PER_DATASET * DATASETS_PER_IDENTITY
#: How many keys of one dataset a sync changes (Cognito Streams sends one record per dataset sync, with the
#: keys it changed: 1 to 8 here, as in bench_decode's records).
KEYS_PER_SYNC = (1, 8)
#: The steps of a load that write what the contract keeps (warehouse/models.py MERGE_STEPS).
CONTRACT_WRITES = ("history", "records", "datasets")
#: Consecutive batches into the same tables per size in full mode (quick: 4): the figures are their medians.
SEQUENCE_BATCHES = 6


def identity(n: int) -> str:
    return f"us-east-1:{n:08d}-0000-4000-8000-000000000000"


def row_key(i: int) -> tuple[str, str, str]:
    """(identity_id, dataset_name, record_key) of base row ``i``; the same mapping as _populate's SQL."""
    return (
        identity(i // ROWS_PER_IDENTITY),
        f"ds{(i // KEYS_PER_DATASET) % DATASETS_PER_IDENTITY}",
        f"k{i % KEYS_PER_DATASET}",
    )


def _populate(conn: psycopg.Connection[Any], schema: str, n: int) -> None:
    """n rows in records and record_changes (the history of a warehouse in steady state), n/10 datasets.
    Bulk SQL for speed; the indexes (the loader's own, from sql/) are built after the rows, as a restore would."""
    key_sql = (
        "'us-east-1:' || lpad((i / 20)::text, 8, '0') || '-0000-4000-8000-000000000000', "
        "'ds' || ((i / 10) % 2)::text, 'k' || (i % 10)::text"
    )
    lma = "timestamp '2024-01-01' + (i % 1000) * interval '1 second'"
    with conn.cursor() as cur:
        for table in ("records", "datasets"):
            cur.execute(f"alter table {schema}.{table} drop constraint {table}_pkey")
        cur.execute(f"drop index {schema}.record_changes_version_idx, {schema}.record_changes_dataset_idx")
        cur.execute(
            f"insert into {schema}.records select '{POOL}', {key_sql}, 'replace', 'value ' || i, 10, false, null, 5, "
            f"{lma}, {lma}, false, now() from generate_series(0, {n - 1}) as i"
        )
        cur.execute(
            f"insert into {schema}.record_changes select '{POOL}', {key_sql}, 'replace', 'value ' || i, 10, false, "
            f"null, 5, {lma}, {lma}, 5, {lma}, 'Inline', 's', 'shardId-000000000000', lpad(i::text, 56, '0'), 0, 0, "
            f"{lma}, 's3://b/base.parquet', now() from generate_series(0, {n - 1}) as i"
        )
        cur.execute(
            f"insert into {schema}.datasets select '{POOL}', 'us-east-1:' || lpad((i / 2)::text, 8, '0') || "
            f"'-0000-4000-8000-000000000000', 'ds' || (i % 2)::text, 5, timestamp '2024-01-01 00:20:00', false, null, "
            f"null, 5, 10, now() from generate_series(0, {n // KEYS_PER_DATASET - 1}) as i"
        )
        cur.execute("set local maintenance_work_mem = '1GB'")
        cur.execute(
            f"alter table {schema}.records add primary key (identity_pool_id, identity_id, dataset_name, record_key)"
        )
        cur.execute(f"alter table {schema}.datasets add primary key (identity_pool_id, identity_id, dataset_name)")
        for statement in WarehouseSql(schema, "postgres").tune_tables():  # record_changes' indexes
            cur.execute(statement)
        # The baseline's target: the same rows, with the key indexed but not unique, like Redshift (whose
        # primary keys are not enforced), so that its duplicates survive as they would there.
        cur.execute(f"create table {schema}.records_upsert as select * from {schema}.records")
        cur.execute(
            f"create index on {schema}.records_upsert (identity_pool_id, identity_id, dataset_name, record_key)"
        )
    conn.commit()
    conn.autocommit = True
    for table in ("records", "record_changes", "datasets", "records_upsert"):
        conn.execute(f"vacuum analyze {schema}.{table}")
    conn.autocommit = False


def _batch(
    n_base: int, size: int, seed: int, keys_per_sync: tuple[int, int] = KEYS_PER_SYNC
) -> tuple[pa.Table, dict[str, int]]:
    """A batch of ``size`` changes against a table of ``n_base`` rows: 60% updates, 15% new keys, 5% removes,
    5% older versions of existing keys arriving late, 15% exact resends of the batch's own changes.

    The existing keys change as syncs do: each sync changes ``keys_per_sync`` (fewest, most) keys of one dataset,
    and every sync is of a different dataset, so a batch has the same shape (keys, versions, datasets touched)
    whatever the table's size and only the table grows between the two sizes. (Keys drawn at random from the
    whole table would collide in datasets more often in a small table, which made the growth figure compare two
    workloads.) ``(1, 1)``, one key per dataset, is the worst case of the datasets step: 100,000 changes touch
    71,500 datasets instead of about 17,100."""
    rnd = random.Random(seed)
    mix = {"update": 0.60, "new": 0.15, "remove": 0.05, "older": 0.05}
    counts = {k: int(size * v) for k, v in mix.items()}
    counts["resend"] = size - sum(counts.values())
    changed = counts["update"] + counts["remove"] + counts["older"]
    datasets = n_base // KEYS_PER_DATASET
    if changed > datasets:
        raise ValueError(f"a batch of {size} changes needs at least {changed * KEYS_PER_DATASET} rows, not {n_base}")
    fewest, most = keys_per_sync
    existing: list[int] = []
    for d in rnd.sample(range(datasets), -(-changed // fewest)):
        if fewest == most == 1:
            existing.append(d * KEYS_PER_DATASET + rnd.randrange(KEYS_PER_DATASET))
        else:
            keys = rnd.sample(range(KEYS_PER_DATASET), rnd.randint(fewest, most))
            existing.extend(d * KEYS_PER_DATASET + k for k in keys)
    existing = existing[:changed]
    t1 = BASE_TIME + timedelta(hours=1 + seed)
    rows: list[dict[str, Any]] = []

    def add(ident: str, ds: str, key: str, op: str, value: str | None, sc: int, lma: datetime) -> None:
        seq = len(rows) + 1
        rows.append(
            {
                "identity_pool_id": POOL, "identity_id": ident, "dataset_name": ds, "record_key": key, "op": op,
                "record_value": value, "value_bytes": None if value is None else len(value), "is_value_cut": False,
                "value_ref": None, "sync_count": sc, "last_modified_at": lma, "device_last_modified_at": lma,
                "event_sync_count": sc, "event_last_modified_at": lma, "payload_type": "Inline", "stream_name": "s",
                "shard_id": "shardId-000000000001", "sequence_number": f"{seed:04d}{seq:052d}",
                "sub_sequence_number": 0, "record_index": 0, "arrived_at": lma, "landed_file": "",
            }
        )  # fmt: skip

    it = iter(existing)
    for _ in range(counts["update"]):
        i = next(it)
        add(*row_key(i), "replace", f"updated {i}", 6 + seed, t1)
    for _ in range(counts["remove"]):
        i = next(it)
        add(*row_key(i), "remove", None, 6 + seed, t1)
    for _ in range(counts["older"]):
        i = next(it)
        add(*row_key(i), "replace", f"stale {i}", 4, BASE_TIME - timedelta(days=1))
    for j in range(counts["new"]):
        add(*row_key(n_base + seed * size + j), "replace", f"new {j}", 1, t1)
    for _ in range(counts["resend"]):
        again = dict(rnd.choice(rows[: counts["update"]]))
        again["sequence_number"] = f"{seed:04d}{len(rows) + 1:052d}"
        rows.append(again)
    rnd.shuffle(rows)
    return pa.Table.from_pylist(rows, schema=CHANGES_SCHEMA), counts


def _landed(table: pa.Table, name: str) -> tuple[BatchToLoad, dict[str, bytes]]:
    """The batch as the landing DAG would leave it (Parquet + manifest + descriptor), kept in memory."""
    url = f"s3://bench/{name}.parquet"
    table = table.set_column(
        CHANGES_SCHEMA.get_field_index("landed_file"), "landed_file", pa.array([url] * table.num_rows)
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    data = buf.getvalue()
    now = datetime.now(UTC)
    batch = LandedBatch(
        batch_id=f"s/shardId-000000000001/{name}", stream_name="s", shard_id="shardId-000000000001",
        first_sequence_number="1", last_sequence_number=str(table.num_rows), first_arrived_at=now,
        last_arrived_at=now, landed_at=now, kinesis_records_read=table.num_rows,
        kinesis_records_landed=table.num_rows, kinesis_records_rejected=0,
        changes=FileRef(url=url, rows=table.num_rows, bytes=len(data)), changes_manifest=url + ".manifest",
        rejects=None, rejects_raw=None, rejects_manifest=None,
    )  # fmt: skip
    manifest = Manifest(url + ".manifest", (ManifestEntry(url, len(data), table.num_rows),))
    return (
        BatchToLoad(f"s3://bench/{name}.json", now.date(), batch, manifest, None),
        {url: data},
    )


def _copy_floor(conn: psycopg.Connection[Any], wh: PostgresWarehouse, data: bytes) -> float:
    """(a): the same Parquet -> CSV -> COPY (the loader's own code) into an empty table, nothing else."""
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        _same_tuning(cur, wh)
        cur.execute("create temp table floor_copy (like bench_stage_shape)")
        copy_landed(cur, "copy floor_copy from stdin with (format csv)", data, CHANGES_SCHEMA, "floor")
    conn.commit()
    elapsed = time.perf_counter() - t0
    conn.execute("drop table floor_copy")
    conn.commit()
    return elapsed


def _same_tuning(cur: psycopg.Cursor[Any], wh: PostgresWarehouse) -> None:
    """The PostgreSQL settings ours runs with (memory, planner costs, asynchronous commit), for a baseline's
    transaction: a baseline slowed by a default setting would flatter ours."""
    for statement in (wh.sql.tune_transaction(), wh.sql.tune_planner(), wh.sql.tune_memoize(), wh.sql.tune_commit()):
        cur.execute(statement)


def _upsert_baseline(conn: psycopg.Connection[Any], wh: PostgresWarehouse, data: bytes) -> float:
    """(b): S3ToRedshiftOperator's UPSERT: COPY into a table like the stage, then in one transaction
    DELETE ... USING on the key and INSERT of every staged row (no dedupe, no version order). Its target has
    the same rows and the same key index as records (not unique: Redshift enforces no key, so its duplicates
    survive there as they do here)."""
    schema = wh.schema
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        _same_tuning(cur, wh)
        cur.execute("create temp table upsert_stage (like bench_stage_shape)")
        copy_landed(cur, "copy upsert_stage from stdin with (format csv)", data, CHANGES_SCHEMA, "upsert")
        cur.execute("analyze upsert_stage")
        cur.execute(
            f"delete from {schema}.records_upsert as t using upsert_stage as s where t.identity_pool_id = "
            "s.identity_pool_id and t.identity_id = s.identity_id and t.dataset_name = s.dataset_name and "
            "t.record_key = s.record_key"
        )
        cur.execute(
            f"insert into {schema}.records_upsert select identity_pool_id, identity_id, dataset_name, record_key, op, "
            "record_value, value_bytes, is_value_cut, value_ref, sync_count, last_modified_at, "
            "device_last_modified_at, op = 'remove', now() from upsert_stage"
        )
        cur.execute("drop table upsert_stage")
    conn.commit()
    return time.perf_counter() - t0


def _wrong_rows(conn: psycopg.Connection[Any], schema: str) -> tuple[int, int]:
    """(duplicate rows, keys holding another version than ours) left by the baseline."""
    dup = conn.execute(
        f"select count(*) - count(distinct (identity_id, dataset_name, record_key)) from {schema}.records_upsert"
    ).fetchone()
    stale = conn.execute(
        f"select count(distinct (u.identity_id, u.dataset_name, u.record_key)) from {schema}.records_upsert u "
        f"join {schema}.records r using (identity_pool_id, identity_id, dataset_name, record_key) "
        "where u.sync_count <> r.sync_count or u.last_modified_at <> r.last_modified_at"
    ).fetchone()
    conn.commit()
    assert dup is not None and stale is not None
    return int(dup[0]), int(stale[0])


def _checkpoint(conn: psycopg.Connection[Any]) -> None:
    """Write every dirty page now, so that no variant pays for the previous one's writes (or the population's
    ten million rows): each starts from a clean buffer pool, as a load does in steady state."""
    conn.commit()
    conn.autocommit = True
    conn.execute("checkpoint")
    conn.autocommit = False


def _vs_floor(name: str, seconds: float, floor: float, note: str) -> Figure:
    """A load time against (a), the plain COPY of the same rows into an empty table, and the 3x goal."""
    return Figure(
        name=name,
        value=seconds,
        unit="s",
        higher_is_better=False,
        baseline="(a) COPY into an empty table",
        baseline_value=floor,
        goal="ratio >= 0.33 (within 3x of the floor)",
        note=note,
    )


def _vs_upsert(name: str, seconds: float, upsert: float, note: str) -> Figure:
    """A load time against (b), the S3ToRedshiftOperator-style DELETE+INSERT, and the "faster" goal."""
    return Figure(
        name=name,
        value=seconds,
        unit="s",
        higher_is_better=False,
        baseline="(b) S3ToRedshiftOperator UPSERT",
        baseline_value=upsert,
        goal="ratio > 1 (faster than (b))",
        note=note,
    )


@dataclass
class _Pair:
    """One batch of the sequence: ours, (b) and (a) on the same rows, and which of ours and (b) went first."""

    ours: float
    stage: float
    merge: float
    writes: float  # the COPY into the stage plus the contract's three writes, timed inside ours
    steps: str
    upsert: float
    floor: float
    ours_first: bool


def _sequence_note(pairs: list[_Pair]) -> str:
    """Every batch of the sequence, in order: ours / (b) seconds and who went first."""
    return "; ".join(
        f"{i}: {p.ours:.2f}/{p.upsert:.2f}{'' if p.ours_first else ' (b first)'}" for i, p in enumerate(pairs, 1)
    )


def _ours_load(
    admin: psycopg.Connection[Any], wh: PostgresWarehouse, batch: BatchToLoad, files: dict[str, bytes]
) -> tuple[float, LoadReport]:
    """Ours: ``PostgresWarehouse.load`` of the batch (its files read from memory), then a checkpoint."""
    wh._fetch = files.__getitem__
    t0 = time.perf_counter()
    report = wh.load([batch])
    elapsed = time.perf_counter() - t0
    assert report.rows_staged == batch.batch.kinesis_records_landed, report
    _checkpoint(admin)
    return elapsed, report


def _upsert_load(admin: psycopg.Connection[Any], wh: PostgresWarehouse, data: bytes) -> float:
    """(b) on the same rows, then a checkpoint."""
    upserted = _upsert_baseline(admin, wh, data)
    _checkpoint(admin)
    return upserted


def run(ctx: BenchContext) -> list[Figure]:
    ctx.stack(emulator=False)
    dsn = os.environ["CS_WAREHOUSE_DSN"]
    batch_size = ctx.scale(10_000, 100_000)
    sizes = [ctx.scale(100_000, 1_000_000), ctx.scale(1_000_000, 10_000_000)]
    n_batches = ctx.scale(4, SEQUENCE_BATCHES)
    figures: list[Figure] = []
    ours_by_size: dict[int, float] = {}
    merge_by_size: dict[int, float] = {}
    loads: list[float] = []
    for n in sizes:
        schema = f"bench_merge_{n}"
        admin = psycopg.connect(dsn)
        admin.execute(WarehouseSql(schema, "postgres").tune_session())  # the baselines' temp tables get ours' memory
        admin.execute(f"drop schema if exists {schema} cascade")
        admin.commit()
        wh = PostgresWarehouse(psycopg.connect(dsn), schema)
        wh.ensure_schema()
        t0 = time.perf_counter()
        _populate(admin, schema, n)
        admin.execute(f"create temp table bench_stage_shape as select * from {schema}.record_changes limit 0")
        admin.execute("alter table bench_stage_shape drop column loaded_at")
        admin.commit()
        _checkpoint(admin)
        print(f"   records={n:,}: populated in {time.perf_counter() - t0:.1f} s", flush=True)

        # A sequence of batches into the same tables, as a loader meets them run after run: ours and (b) take
        # turns going first, and the figures are medians over the sequence (a best of two batches let one burst
        # of the host's noise, +-20 %, decide which was faster).
        pairs: list[_Pair] = []
        for seed in range(1, n_batches + 1):
            table, counts = _batch(n, batch_size, seed)
            batch, files = _landed(table, f"batch-{n}-{seed}")
            data = files[batch.changes_manifest.entries[0].url]  # type: ignore[union-attr]
            loads.append(os.getloadavg()[0])
            floor = min(_copy_floor(admin, wh, data) for _ in range(2))
            _checkpoint(admin)
            ours_first = seed % 2 == 1
            if ours_first:
                (elapsed, report), upserted = _ours_load(admin, wh, batch, files), _upsert_load(admin, wh, data)
            else:
                upserted = _upsert_load(admin, wh, data)
                elapsed, report = _ours_load(admin, wh, batch, files)
            steps = report.step_seconds
            pairs.append(
                _Pair(
                    ours=elapsed,
                    stage=report.stage_seconds,
                    merge=report.merge_seconds,
                    writes=report.stage_seconds + sum(steps[s] for s in CONTRACT_WRITES),
                    steps=report.steps_text(),
                    upsert=upserted,
                    floor=floor,
                    ours_first=ours_first,
                )
            )
            print(
                f"   records={n:,} batch {seed}: floor {floor:.3f} s, ours {elapsed:.3f} s (COPY "
                f"{report.stage_seconds:.3f} + merge {report.merge_seconds:.3f}: {report.steps_text()}), "
                f"DELETE+INSERT {upserted:.3f} s{'' if ours_first else ' (went first)'}",
                flush=True,
            )
        touched = table.group_by(["identity_id", "dataset_name"]).aggregate([]).num_rows
        # Then one batch of the datasets step's worst case: one key per dataset sync.
        table, _ = _batch(n, batch_size, n_batches + 1, (1, 1))
        batch, files = _landed(table, f"batch-{n}-worst")
        worst_touched = table.group_by(["identity_id", "dataset_name"]).aggregate([]).num_rows
        (worst, report), worst_upsert = (
            _ours_load(admin, wh, batch, files),
            _upsert_load(
                admin,
                wh,
                files[batch.changes_manifest.entries[0].url],  # type: ignore[union-attr]
            ),
        )
        print(
            f"   records={n:,} one key per sync: ours {worst:.3f} s ({report.steps_text()}), DELETE+INSERT "
            f"{worst_upsert:.3f} s",
            flush=True,
        )
        duplicates, stale = _wrong_rows(admin, schema)
        wh.close()
        admin.execute(f"drop schema {schema} cascade")
        admin.commit()
        admin.close()

        med = {
            name: statistics.median(getattr(p, name) for p in pairs)
            for name in ("ours", "stage", "merge", "writes", "upsert", "floor")
        }
        typical = min(pairs, key=lambda p: abs(p.writes - med["writes"]))  # the batch whose steps are quoted
        ours_by_size[n] = med["ours"]
        merge_by_size[n] = med["merge"]
        label = f"{batch_size:,} changes into {n:,} records"
        seq = f"medians over {n_batches} consecutive batches into the same tables"
        mix = f"batch mix {counts}, {KEYS_PER_SYNC[0]}-{KEYS_PER_SYNC[1]} keys per dataset sync; {seq}"
        figures.append(
            _vs_floor(
                f"merge vs plain COPY: {label}",
                med["ours"],
                med["floor"],
                f"the whole load (COPY {med['stage']:.3f} s + checks, merge, bookkeeping, commit "
                f"{med['merge']:.3f} s); {mix}",
            )
        )
        figures.append(
            _vs_floor(
                f"merge step after staging vs plain COPY: {label}",
                med["merge"],
                med["floor"],
                "what the load adds to the COPY it shares with (a): checks, dedupe, history, MERGE of records "
                f"and datasets, bookkeeping, commit; {seq}",
            )
        )
        figures.append(
            _vs_floor(
                f"the contract's writes alone vs plain COPY: {label}",
                med["writes"],
                med["floor"],
                "part of ours, timed inside it: the COPY into the stage plus the three writes the contract "
                "requires whatever the logic (versions into record_changes, MERGE of records, MERGE of datasets), "
                "each with the key lookup that finds its row; no dedupe, ranking, checks or bookkeeping. Over 3x "
                "here means the merge's logic is not what keeps the load from 3x: these writes alone, with the tables "
                f"indexed as they are here, already exceed it. {seq}; steps of a typical batch: {typical.steps}",
            )
        )
        first = pairs[0]
        figures.append(
            _vs_upsert(
                f"merge vs DELETE+INSERT upsert: {label}",
                med["ours"],
                med["upsert"],
                f"{seq}, ours and (b) taking turns going first; each batch ours/(b) s: {_sequence_note(pairs)} "
                f"(first batch {first.upsert / first.ours:.2f}x). (b) left {duplicates:,} duplicate rows and "
                f"{stale:,} keys on an older version; ours left none; (b) keeps no history and no datasets",
            )
        )
        figures.append(
            _vs_upsert(
                f"merge vs DELETE+INSERT upsert, one key per dataset sync: {label}",
                worst,
                worst_upsert,
                f"the datasets step's worst case: every changed key in a dataset of its own ({worst_touched:,} "
                f"datasets touched instead of {touched:,}); one batch, after the sequence",
            )
        )
    small, large = sizes
    load_note = f"1-minute load average at the batches: {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs"
    figures.append(
        Figure(
            name=f"merge cost growth, records {small:,} -> {large:,}",
            value=ours_by_size[large] / ours_by_size[small],
            unit="x",
            higher_is_better=False,
            goal="< 1.5x",
            note=f"the whole load, median per batch: {ours_by_size[small]:.3f} s -> {ours_by_size[large]:.3f} s for "
            f"batches of the same shape; {load_note}",
        )
    )
    per_change = {k: v / batch_size * 1e6 for k, v in merge_by_size.items()}
    figures.append(
        Figure(
            name=f"cost per change as the warehouse grows: records {large:,} vs {small:,}",
            value=per_change[large],
            unit="us/change",
            higher_is_better=False,
            baseline=f"the same batch into {small:,} records",
            baseline_value=per_change[small],
            goal="ratio > 0.67 (less than 1.5x)",
            note="the merge step after staging, per staged change (median per batch)",
        )
    )
    return figures
