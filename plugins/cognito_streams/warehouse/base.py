"""The ``Warehouse`` interface and everything both engines share.

One interface, two implementations (``redshift.RedshiftWarehouse``, ``postgres.PostgresWarehouse``),
chosen only by the conn_type of the warehouse connection (``cognito_streams.warehouse.connect``). They
differ in how rows reach the stage (server-side COPY from S3 vs COPY FROM STDIN) and in small planner
hints; every statement after the COPY is the same text (``sql/load.sql``), run here.

A load is one transaction: lock, stage, check the staged rows against the manifests, merge, record the
files. Any error rolls all of it back, so a failed batch leaves nothing behind and is retried whole.
"""

from __future__ import annotations

import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from types import TracebackType
from typing import Any, ClassVar, Protocol, TypeVar

from cognito_streams.core.sql_text import Engine, Migration, SqlLibrary, WarehouseSql, multi_row_insert, row_chunks
from cognito_streams.core.state import Change
from cognito_streams.core.values import cut_utf8
from cognito_streams.warehouse.models import (
    BatchToLoad,
    BulkPublishAttempt,
    CheckResult,
    DataQualityError,
    FailedBatch,
    LoadCheckError,
    LoadReport,
    Manifest,
    MergeCounts,
    MigrationError,
    WarehouseError,
)

log = logging.getLogger(__name__)

#: The longest error text kept per failed batch: failed_batches.error_message is varchar(65535), in bytes.
FAILED_ERROR_BYTES = 65_535

STAGE_CHANGES = "stg_changes"
STAGE_REJECTS = "stg_rejects"


class Cursor(Protocol):
    """The DB-API cursor methods we use (psycopg 3 and redshift-connector both have them)."""

    rowcount: int

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...

    def fetchall(self) -> Sequence[Any]: ...

    def fetchone(self) -> Any: ...

    def close(self) -> Any: ...


class Connection(Protocol):
    """The DB-API connection methods we use."""

    def cursor(self) -> Any: ...

    def commit(self) -> Any: ...

    def rollback(self) -> Any: ...

    def close(self) -> Any: ...


@contextmanager
def _timed(steps: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall time of the block to ``steps[name]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        steps[name] = steps.get(name, 0.0) + time.perf_counter() - started


#: Runs of one transaction when it loses a serialization conflict (Redshift's error 1023, PostgreSQL's SQLSTATE
#: 40001) before the error goes up. Our writers take table locks first (docs/warehouse.md, "Concurrent
#: writers"), so they never conflict with one another; this covers sessions we do not control (an analyst's
#: transaction that writes, another tool).
SERIALIZATION_ATTEMPTS = 3
_SERIALIZATION_TEXT = re.compile(r"serializable isolation violation|could not serialize access", re.IGNORECASE)
_ALREADY_EXISTS_TEXT = re.compile(r"already exists|duplicate key value", re.IGNORECASE)

T = TypeVar("T")


def is_serialization_failure(err: BaseException) -> bool:
    """Whether ``err`` is a serialization conflict: psycopg's SQLSTATE 40001, or redshift-connector's error 1023
    (its args hold the server's fields: ``{'M': '1023', 'D': 'Serializable isolation violation on table ...'}``)."""
    if getattr(err, "sqlstate", None) == "40001":
        return True
    fields = err.args[0] if err.args and isinstance(err.args[0], dict) else {}
    if str(fields.get("M", "")).strip() == "1023" or str(fields.get("C", "")) == "40001":
        return True
    return bool(_SERIALIZATION_TEXT.search(str(err)))


def is_create_race(err: BaseException) -> bool:
    """Whether ``err`` is what PostgreSQL answers when two sessions run the same ``create ... if not exists`` at
    once (the second one's insert into the catalog meets the first one's row: 23505, 42P06, 42P07)."""
    return getattr(err, "sqlstate", None) in ("23505", "42P06", "42P07") or bool(_ALREADY_EXISTS_TEXT.search(str(err)))


def insert_rows(cur: Cursor, statement: str, rows: Sequence[Sequence[Any]]) -> int:
    """Insert ``rows`` with ``statement`` (an ``insert ... values (<one row>)``) as multi-row INSERTs of bounded
    size, never one statement per row: redshift-connector's ``executemany`` is one prepared INSERT per row.
    Returns the number of rows inserted."""
    for chunk in row_chunks(rows):
        cur.execute(multi_row_insert(statement, len(chunk)), [value for row in chunk for value in row])
    return len(rows)


def utcnow() -> datetime:
    """Now, as the warehouse stores times (UTC, no time zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _naive(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC).replace(tzinfo=None) if value is not None and value.tzinfo else value


class Warehouse(ABC):
    """The warehouse the pipeline writes: schema, loads, rebuilds, checks and bulk-publish bookkeeping."""

    engine: ClassVar[Engine]

    def __init__(self, conn: Connection, schema: str, *, library: SqlLibrary | None = None) -> None:
        self.sql = WarehouseSql(schema, self.engine, library)
        self.schema = self.sql.schema
        self._conn = conn
        #: Transactions run again after a serialization conflict, since this object was made (tests read it).
        self.serialization_retries = 0

    # Connection ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """A cursor in one transaction: committed when the block ends, rolled back on any error."""
        cur = self._conn.cursor()
        try:
            yield cur
            self._conn.commit()
        except BaseException as err:
            self._rollback_after(err)
            self._close_after(cur, err)
            raise
        cur.close()

    def _rollback_after(self, error: BaseException) -> None:
        """Roll back after ``error``, never replacing it: on a dropped connection ``rollback()`` fails too, and
        its "connection closed" must not take the place of the real error (a failed check, ``COPY ... failed``)
        in the task's message and the alert. The server rolls back a transaction whose connection died."""
        try:
            self._conn.rollback()
        except Exception as cleanup:  # noqa: BLE001 - logged and attached; the error in flight is what is raised
            log.error(
                "rollback after %s failed (%s: %s); the server rolls the transaction back when the connection "
                "ends. The original error follows.",
                type(error).__name__,
                type(cleanup).__name__,
                cleanup,
            )
            error.add_note(f"(the rollback after this error failed too: {type(cleanup).__name__}: {cleanup})")

    @staticmethod
    def _close_after(cur: Cursor, error: BaseException) -> None:
        """Close ``cur`` after ``error``; a failure to close (a dead connection) is noted, never raised."""
        try:
            cur.close()
        except Exception as cleanup:  # noqa: BLE001 - attached to the error in flight, which is what is raised
            error.add_note(f"(closing the cursor after this error failed too: {type(cleanup).__name__}: {cleanup})")

    def retrying(self, what: str, work: Callable[[], T], *, also: Callable[[BaseException], bool] | None = None) -> T:
        """``work()`` (one whole transaction), run again up to SERIALIZATION_ATTEMPTS times in all when it fails
        with a serialization conflict (or an error ``also`` accepts); each retry is logged, and the last error
        goes up in a WarehouseError that says what to do."""
        for attempt in range(1, SERIALIZATION_ATTEMPTS + 1):
            try:
                return work()
            except Exception as err:
                retryable = is_serialization_failure(err) or (also is not None and also(err))
                if not retryable:
                    raise
                if attempt == SERIALIZATION_ATTEMPTS:
                    raise WarehouseError(
                        f"{what} on schema {self.schema} failed {attempt} times in a row on a conflict with a "
                        f"concurrent session ({type(err).__name__}: {err}); it was rolled back each time. Another "
                        "session keeps writing the same tables: look for a long transaction (Redshift: STV_SESSIONS, "
                        "SVV_TRANSACTIONS, STL_TR_CONFLICT; PostgreSQL: pg_stat_activity) and clear the task to retry"
                    ) from err
                self.serialization_retries += 1
                log.warning(
                    "%s on schema %s conflicted with a concurrent session (attempt %d of %d: %s: %s); it was rolled "
                    "back whole and runs again",
                    what,
                    self.schema,
                    attempt,
                    SERIALIZATION_ATTEMPTS,
                    type(err).__name__,
                    str(err).strip().splitlines()[0] if str(err).strip() else "",
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def write(self, what: str, locks: str, work: Callable[[Cursor], T]) -> T:
        """Run ``work(cursor)`` in one transaction that first executes ``locks`` (a LOCK statement of sql/ naming
        every table the work writes), run again on a serialization conflict (:meth:`retrying`). For writers
        outside this class (reconciliation)."""

        def once() -> T:
            with self.transaction() as cur:
                cur.execute(locks)
                return work(cur)

        return self.retrying(what, once)

    # Engine specifics ------------------------------------------------------------------------------
    @abstractmethod
    def _stage(self, cur: Cursor, table: str, manifests: Sequence[Manifest]) -> None:
        """Fill stage ``table`` (stg_changes or stg_rejects) with the rows of the manifests' files, or raise
        :class:`~cognito_streams.warehouse.models.LoadError` naming the file, line and reason."""

    @abstractmethod
    def _after_migrations(self, cur: Cursor) -> None:
        """Engine-specific table settings, applied (idempotently) after the migrations."""

    @abstractmethod
    def _begin(self, cur: Cursor) -> None:
        """First statement(s) of a loader transaction (session tuning)."""

    @abstractmethod
    def _after_work_table(self, cur: Cursor, table: str) -> None:
        """Called after a stage or work table is filled (planner statistics where the engine needs them)."""

    @contextmanager
    def _probing_by_key(self, cur: Cursor) -> Iterator[None]:
        """Around a MERGE whose target is a large table: where the engine has a planner to steer, make it look
        up each source row by the target's key (cost grows with the batch) rather than scan the whole target
        (cost grows with the table). Nothing to do by default."""
        yield

    @contextmanager
    def _joining_back(self, cur: Cursor) -> Iterator[None]:
        """Around the statements that join the stage's payload columns back to stg_versions by position (the
        history insert, the winners, the candidates): where the engine has a planner to steer, make it hash
        the join. Nothing to do by default."""
        yield

    # Schema --------------------------------------------------------------------------------------
    def ensure_schema(self) -> list[str]:
        """Create or upgrade the schema: apply the ``sql/schema/V*.sql`` files not yet in schema_migrations,
        in version order, in one transaction. Returns the names of the migrations applied now."""
        migrations = self.sql.library.migrations()
        # Several tasks may run this at once (mapped bulk-publish tasks, the loader): the bootstrap's
        # "create ... if not exists" can then meet another session's uncommitted create; run again, it finds them.
        self.retrying("schema bootstrap", self._bootstrap, also=is_create_race)
        applied_now = self.retrying("schema migration", lambda: self._migrate(migrations))
        if applied_now:
            log.info("Schema %s: applied migrations %s", self.schema, ", ".join(applied_now))
        else:
            log.info("Schema %s is up to date (%d migrations)", self.schema, len(migrations))
        return applied_now

    def _bootstrap(self) -> None:
        with self.transaction() as cur:
            for statement in self.sql.bootstrap():
                cur.execute(statement)

    def _migrate(self, migrations: Sequence[Migration]) -> list[str]:
        applied_now: list[str] = []
        with self.transaction() as cur:
            # First statement: a second migrator waits here, then reads the versions the first one applied.
            cur.execute(self.sql.lock_migrations())
            cur.execute(self.sql.applied_migrations())
            applied = {int(v): (name, checksum) for v, name, checksum in cur.fetchall()}
            files = {m.version: m for m in migrations}
            unknown = sorted(set(applied) - set(files))
            if unknown:
                raise MigrationError(
                    f"schema {self.schema} has migrations {unknown} that sql/schema does not have; this code is older "
                    "than the warehouse: deploy the newer code"
                )
            for version, (name, checksum) in sorted(applied.items()):
                if files[version].checksum != checksum:
                    raise MigrationError(
                        f"sql/schema/V{version:03d}__{name}.sql changed after it was applied to schema {self.schema}; "
                        "applied migrations are immutable: restore the file and put the change in a new V<NNN> file"
                    )
            for migration in migrations:
                if migration.version in applied:
                    continue
                for statement in self.sql.migration(migration):
                    cur.execute(statement)
                cur.execute(
                    self.sql.record_migration(), (migration.version, migration.name, migration.checksum, utcnow())
                )
                applied_now.append(f"V{migration.version:03d}__{migration.name}")
            self._after_migrations(cur)
        return applied_now

    # Finding work ----------------------------------------------------------------------------------
    def loaded_descriptors(self, day_from: date, day_to: date) -> set[str]:
        """Descriptor URLs already loaded among landing days ``day_from``..``day_to``."""
        with self.transaction() as cur:
            cur.execute(self.sql.loaded_descriptors(), (day_from, day_to))
            return {row[0] for row in cur.fetchall()}

    # Loading ---------------------------------------------------------------------------------------
    def load(self, batches: Sequence[BatchToLoad], *, force: bool = False) -> LoadReport:
        """Load these batches in one transaction; batches already loaded are skipped unless ``force``
        (a forced reload merges them again, which changes nothing in records: the merge is idempotent)."""
        if not batches:
            return LoadReport()
        return self.retrying(f"load of {len(batches)} batch(es)", lambda: self._load_once(batches, force))

    def _load_once(self, batches: Sequence[BatchToLoad], force: bool) -> LoadReport:
        report = LoadReport()
        loaded_at = utcnow()
        with self.transaction() as cur:
            self._begin(cur)
            # First statement that reads or writes: loaders, rebuilds and direct merges serialise here, and the
            # transaction's snapshot is taken after the lock, so it sees what the previous holder committed.
            cur.execute(self.sql.lock_loader())
            todo = list(batches)
            if not force:
                days = [b.landing_day for b in batches]
                cur.execute(self.sql.loaded_descriptors(), (min(days), max(days)))
                done = {row[0] for row in cur.fetchall()}
                todo = [b for b in batches if b.descriptor_url not in done]
                report.batches_skipped = len(batches) - len(todo)
            if not todo:
                return report
            cur.execute(self.sql.create_stage_changes())
            cur.execute(self.sql.create_stage_rejects())
            started = time.perf_counter()
            self._stage(cur, STAGE_CHANGES, [b.changes_manifest for b in todo if b.changes_manifest])
            self._stage(cur, STAGE_REJECTS, [b.rejects_manifest for b in todo if b.rejects_manifest])
            staged_at = time.perf_counter()
            steps = report.step_seconds
            with _timed(steps, "checks"):
                staged = self._verify_stage(cur, todo)
            report.merge = self._merge(cur, loaded_at, steps=steps)
            with _timed(steps, "bookkeeping"):
                cur.execute(self.sql.insert_rejected_records(), (loaded_at,))
                report.rejects_inserted = max(cur.rowcount, 0)
                self._record_batches(cur, todo, staged, loaded_at)
                cur.execute(self.sql.drop_work_tables())
        report.stage_seconds = staged_at - started
        report.merge_seconds = time.perf_counter() - staged_at
        report.batches = len(todo)
        report.files = sum(len(b.batch.files()) for b in todo)
        report.rows_staged = sum(n for (kind, _), n in staged.items() if kind == STAGE_CHANGES)
        report.rejects_staged = sum(n for (kind, _), n in staged.items() if kind == STAGE_REJECTS)
        return report

    def merge_changes(self, changes: Iterable[Change]) -> MergeCounts:
        """Merge change rows given directly (no files, no bookkeeping) in one transaction: the same merge as
        :meth:`load`. For small amounts (tests, repairs): rows reach the stage by multi-row INSERTs."""
        # A change given twice is one row of the stage (as in a landed file, where each row has its own position:
        # the merge joins values back by position).
        rows = list(dict.fromkeys(c.as_tuple() for c in changes))

        def once() -> MergeCounts:
            with self.transaction() as cur:
                self._begin(cur)
                cur.execute(self.sql.lock_loader())
                cur.execute(self.sql.create_stage_changes())
                insert_rows(cur, self.sql.insert_stage_change(), rows)
                self._after_work_table(cur, STAGE_CHANGES)
                counts = self._merge(cur, utcnow())
                cur.execute(self.sql.drop_work_tables())
            return counts

        return self.retrying(f"merge of {len(rows)} change(s)", once)

    def rebuild_current_state(self) -> MergeCounts:
        """Rebuild ``records`` and ``datasets`` from ``record_changes`` and ``dataset_deletes`` (after a fix to
        the merge rules, or if the current state is suspect), in one transaction: readers see the old state
        until it commits."""
        counts = self.retrying("rebuild of records and datasets", self._rebuild_once)
        log.info(
            "Rebuilt %s.records and datasets from the history: %d versions, %d keys (%d deleted), %d datasets",
            self.schema,
            counts.versions_staged,
            counts.keys_changed,
            counts.keys_deleted,
            counts.datasets_touched,
        )
        return counts

    def _rebuild_once(self) -> MergeCounts:
        with self.transaction() as cur:
            self._begin(cur)
            cur.execute(self.sql.lock_loader())
            cur.execute(self.sql.clear_records())
            cur.execute(self.sql.clear_datasets())
            cur.execute(self.sql.create_stage_changes())
            cur.execute(self.sql.stage_history())
            self._after_work_table(cur, STAGE_CHANGES)
            counts = self._merge(cur, utcnow(), from_history=True)
            cur.execute(self.sql.drop_work_tables())
        return counts

    def _work(self, cur: Cursor, statement: str, table: str) -> None:
        cur.execute(statement)
        self._after_work_table(cur, table)

    def _merge(
        self, cur: Cursor, loaded_at: datetime, *, from_history: bool = False, steps: dict[str, float] | None = None
    ) -> MergeCounts:
        """The merge of whatever is in stg_changes (docs/semantics.md), steps in sql/load.sql's order.

        ``from_history``: the stage holds the history itself (a rebuild), so nothing is added to it; the
        shortcut of insert_record_changes (a version newer than the stored row is new) would not hold
        while records is being rebuilt.

        ``steps``: where to add the wall time of each step (names from MERGE_STEPS)."""
        sql = self.sql
        steps = {} if steps is None else steps
        deletes_inserted = versions_inserted = 0
        with _timed(steps, "versions"):
            self._work(cur, sql.create_new_deletes(), "stg_new_deletes")
            if not from_history:
                cur.execute(sql.insert_dataset_deletes(), (loaded_at,))
                deletes_inserted = max(cur.rowcount, 0)
            self._work(cur, sql.create_touched_datasets(), "stg_datasets")
            self._work(cur, sql.create_latest_deletes(), "stg_latest_deletes")
            self._work(cur, sql.create_reset_datasets(), "stg_reset_datasets")
            cur.execute(sql.count_latest_deletes())
            with_deletes = int(cur.fetchone()[0]) > 0
            self._work(cur, sql.create_versions(), "stg_versions")
        if not from_history:
            with _timed(steps, "history"), self._joining_back(cur):
                cur.execute(sql.insert_record_changes(), (loaded_at,))
                versions_inserted = max(cur.rowcount, 0)
        with _timed(steps, "winners"):
            with self._joining_back(cur):
                cur.execute(sql.create_winners())
            if with_deletes:
                # Only datasets with a delete need candidates and generations: in a batch without any (the usual
                # case) these statements would scan the versions to find nothing.
                with self._joining_back(cur):
                    self._work(cur, sql.create_candidates(), "stg_candidates")
                self._work(cur, sql.create_generations(), "stg_generations")
                cur.execute(sql.insert_winners_with_deletes())
            self._after_work_table(cur, "stg_winners")
        with _timed(steps, "records"), self._probing_by_key(cur):
            cur.execute(sql.merge_records(loaded_at))
        with _timed(steps, "dataset_updates"):
            self._work(cur, sql.create_dataset_updates(), "stg_dataset_updates")
        with _timed(steps, "datasets"):
            cur.execute(sql.merge_datasets(loaded_at))
        cur.execute(sql.merge_counts())
        versions_staged, _, keys_changed, keys_inserted, keys_deleted, datasets_touched = cur.fetchone()
        return MergeCounts(
            versions_staged=int(versions_staged),
            versions_inserted=versions_inserted,
            deletes_inserted=deletes_inserted,
            keys_changed=int(keys_changed),
            keys_inserted=int(keys_inserted),
            keys_deleted=int(keys_deleted),
            datasets_touched=int(datasets_touched),
        )

    def _verify_stage(self, cur: Cursor, batches: Sequence[BatchToLoad]) -> dict[tuple[str, str], int]:
        """Staged rows per file must equal the manifests' record_count, and rows must obey the landing
        contract; otherwise nothing is merged. Returns ``{(stage table, file url): rows}``."""
        staged: dict[tuple[str, str], int] = {}
        problems: list[str] = []
        violations: dict[str, tuple[int, str]] = {}
        # The files at fault, so that the loader can tell which batches to set aside (landing_zone.load).
        bad_counts: set[str] = set()
        bad_rows: set[str] = set()
        for table, statement, manifests in (
            (STAGE_CHANGES, self.sql.staged_changes_per_file(), [b.changes_manifest for b in batches]),
            (STAGE_REJECTS, self.sql.staged_rejects_per_file(), [b.rejects_manifest for b in batches]),
        ):
            expected = {e.url: (m.url, e.record_count) for m in manifests if m for e in m.entries}
            cur.execute(statement)
            got: dict[str, int] = {}
            for url, problem, n in cur.fetchall():
                got[str(url)] = got.get(str(url), 0) + int(n)
                if problem is not None:
                    count, example = violations.get(problem, (0, ""))
                    violations[problem] = (count + int(n), max(example, str(url)))
                    bad_rows.add(str(url))
            for url in sorted(set(expected) | set(got)):
                manifest_url, want = expected.get(url, ("(no manifest lists it)", 0))
                have = got.get(url, 0)
                staged[(table, url)] = have
                if have != want:
                    problems.append(f"{url}: {manifest_url} says {want} rows, {table} holds {have}")
                    bad_counts.add(url)
        if problems:
            raise LoadCheckError(
                f"staged rows do not match the manifests' record_count in {len(problems)} file(s); nothing was "
                "merged:\n  " + "\n  ".join(problems) + "\nThe landed files and their manifests disagree: re-land "
                "those batches, or check that landed_file in the rows names the file that holds them",
                files=bad_counts,
            )
        if violations:
            lines = [f"{p}: {n} row(s), e.g. in {example}" for p, (n, example) in sorted(violations.items())]
            raise LoadCheckError(
                "staged rows break the landing contract (core/landing_format.py); nothing was merged:\n  "
                + "\n  ".join(lines)
                + "\nFix the landing DAG's writer, re-land those batches, then rerun this DAG",
                files=bad_rows,
            )
        return staged

    def _record_batches(
        self, cur: Cursor, batches: Sequence[BatchToLoad], staged: dict[tuple[str, str], int], loaded_at: datetime
    ) -> None:
        files: list[tuple[Any, ...]] = []
        for b in batches:
            for table, kind, ref, manifest in (
                (STAGE_CHANGES, "changes", b.batch.changes, b.changes_manifest),
                (STAGE_REJECTS, "rejects", b.batch.rejects, b.rejects_manifest),
            ):
                if ref is None or manifest is None:
                    continue
                expected = sum(e.record_count for e in manifest.entries if e.url == ref.url)
                rows = staged.get((table, ref.url), 0)
                files.append((ref.url, b.descriptor_url, kind, manifest.url, expected, rows, ref.bytes))
        cur.execute(self.sql.create_stage_files())
        insert_rows(cur, self.sql.insert_stage_file(), files)
        cur.execute(self.sql.merge_loaded_files(loaded_at))
        rows_b = [
            (
                b.descriptor_url,
                b.batch.batch_id,
                b.landing_day,
                b.batch.stream_name,
                b.batch.shard_id,
                b.batch.first_sequence_number,
                b.batch.last_sequence_number,
                _naive(b.batch.first_arrived_at),
                _naive(b.batch.last_arrived_at),
                _naive(b.batch.landed_at),
                b.batch.kinesis_records_read,
                b.batch.kinesis_records_landed,
                b.batch.kinesis_records_rejected,
                b.batch.replay,
            )
            for b in batches
        ]
        cur.execute(self.sql.create_stage_batches())
        insert_rows(cur, self.sql.insert_stage_batch(), rows_b)
        cur.execute(self.sql.merge_loaded_batches(loaded_at))
        cur.execute(self.sql.resolve_failed_batches(), (loaded_at,))

    # Batches set aside ---------------------------------------------------------------------------------
    def record_failed_batches(self, failed: Sequence[FailedBatch]) -> None:
        """Record batches the loader set aside in ``failed_batches`` (one row per batch: a batch failing again
        counts one more failure and keeps its latest error), in a transaction of its own, under the loader's
        lock."""
        if not failed:
            return
        now = utcnow()
        # One source row per batch (a MERGE source row per target row); the latest error of a batch wins.
        latest = {f.descriptor_url: f for f in failed}
        rows = [
            (
                f.descriptor_url,
                f.landing_day,
                f.batch_id,
                f.error_kind[:64],
                # Redshift's VARCHAR counts bytes: cut whole characters to fit varchar(65535).
                cut_utf8(f.error_message.encode(), FAILED_ERROR_BYTES).decode(),
            )
            for f in latest.values()
        ]

        def write(cur: Cursor) -> None:
            cur.execute(self.sql.create_stage_failed())
            insert_rows(cur, self.sql.insert_stage_failed(), rows)
            cur.execute(self.sql.merge_failed_batches(now))
            cur.execute(self.sql.drop_stage_failed())

        self.write(f"record of {len(failed)} failed batch(es)", self.sql.lock_loader(), write)

    def settle_failed_batches(self, settled: Mapping[str, str]) -> None:
        """Resolve batches set aside earlier that will never be tried again, with how (``{descriptor_url:
        'superseded' | 'removed'}``: a replay landed their records again, or their descriptor is gone), in a
        transaction of its own, under the loader's lock. A row already resolved stays as it is."""
        if not settled:
            return
        now = utcnow()
        rows = sorted(settled.items())

        def write(cur: Cursor) -> None:
            cur.execute(self.sql.create_stage_settled())
            insert_rows(cur, self.sql.insert_stage_settled(), rows)
            cur.execute(self.sql.settle_failed_batches(), (now,))
            cur.execute(self.sql.drop_stage_settled())

        self.write(f"resolution of {len(settled)} batch(es) set aside", self.sql.lock_loader(), write)

    def unresolved_failed_batches(self) -> set[str]:
        """Descriptor URLs of the batches set aside and not loaded since."""
        with self.transaction() as cur:
            cur.execute(self.sql.unresolved_failed_batches())
            return {str(row[0]) for row in cur.fetchall()}

    # Checks ----------------------------------------------------------------------------------------
    def quality_checks(self, since: datetime) -> list[CheckResult]:
        """Run every check of sql/checks.sql (loads since ``since`` for the per-load ones)."""
        results = []
        with self.transaction() as cur:
            for name, statement in self.sql.quality_checks().items():
                params = (_naive(since),) * statement.count("%s")
                cur.execute(statement, params or None)
                failing, example = cur.fetchone()
                results.append(CheckResult(name=name, failing=int(failing), example=str(example)))
        return results

    def check_quality(self, since: datetime) -> list[CheckResult]:
        """:meth:`quality_checks`, raising :class:`DataQualityError` with the numbers when one fails."""
        results = self.quality_checks(since)
        failed = [r for r in results if not r.ok]
        for r in results:
            log.info("Check %s: %s", r.name, "ok" if r.ok else f"FAILED, {r.failing} row(s), e.g. {r.example}")
        if failed:
            raise DataQualityError(
                f"{len(failed)} data-quality check(s) failed on schema {self.schema}:\n  "
                + "\n  ".join(f"{r.name}: {r.failing} failing row(s), e.g. {r.example!r}" for r in failed)
                + "\nSee docs/warehouse.md, 'When the loader is red'"
            )
        return results

    # Bulk publish ----------------------------------------------------------------------------------
    def record_bulk_publish_attempt(self, attempt: BulkPublishAttempt) -> None:
        """Insert or update (by attempt_id) one row of bulk_publish_runs; calling it again with the same
        state changes nothing but updated_at."""
        now = utcnow()

        def write(cur: Cursor) -> None:
            cur.execute(self.sql.create_stage_bulk_publish())
            cur.execute(
                self.sql.insert_stage_bulk_publish(),
                (
                    attempt.attempt_id,
                    attempt.identity_pool_id,
                    _naive(attempt.requested_at),
                    attempt.decision,
                    attempt.status,
                    _naive(attempt.started_at),
                    _naive(attempt.completed_at),
                    attempt.failure_message,
                    _naive(attempt.next_eligible_at),
                    attempt.dag_run_id,
                    attempt.reason,
                ),
            )
            cur.execute(self.sql.merge_bulk_publish(now))
            cur.execute(self.sql.drop_stage_bulk_publish())

        # The mapped per-pool tasks write at once: without the lock first, two MERGEs into bulk_publish_runs
        # from transactions that overlap are not serializable (Redshift aborts one with error 1023).
        self.write(f"bulk publish attempt {attempt.attempt_id}", self.sql.lock_bulk_publish_runs(), write)

    def bulk_publish_attempts(self, identity_pool_id: str, limit: int = 20) -> list[BulkPublishAttempt]:
        """The pool's latest attempts, newest first (times are naive UTC)."""
        with self.transaction() as cur:
            cur.execute(self.sql.bulk_publish_attempts(limit), (identity_pool_id,))
            names = [
                "attempt_id", "identity_pool_id", "requested_at", "decision", "status", "started_at",
                "completed_at", "failure_message", "next_eligible_at", "dag_run_id", "reason", "updated_at",
            ]  # fmt: skip
            return [BulkPublishAttempt(**dict(zip(names, row, strict=True))) for row in cur.fetchall()]
