-- PostgreSQL-only statements (the local stand-in). The stage is fed through COPY FROM STDIN with the rows
-- of the same S3 objects Redshift would read; the rest is tuning that Redshift does not need or accept.
-- None of it changes what a statement computes.

-- name: copy_from_stdin
copy ${table} from stdin with (format csv);

-- name: analyze_table
analyze ${table};

-- name: analyze_dataset_keys
-- Statistics of the join keys only: enough for the planner to estimate the loader's joins (without them
-- it may take a 70,000-row work table for one row and nest loops over it), at a fraction of the cost.
analyze ${table} (identity_pool_id, identity_id, dataset_name);

-- name: analyze_record_keys
analyze ${table} (identity_pool_id, identity_id, dataset_name, record_key);

-- name: analyze_version_keys
-- stg_versions is filtered (key_rank = 1, is_new = 1) before its rows are joined back to the stage for their
-- values: without statistics on the flags the planner takes the filter to keep a handful of rows and nests
-- loops over the stage for each (minutes for 10,000 rows).
analyze ${table} (identity_pool_id, identity_id, dataset_name, record_key, key_rank, is_new, has_deletes);

-- name: tune_session
-- The loader's work tables are temporary: with the default 8MB of temp_buffers, a 100,000-row batch spills
-- them to disk between statements. Runs before the session first touches a temporary table.
set temp_buffers = '256MB';

-- name: tune_transaction
-- Sorts of a 100,000-row batch (dedupe, winners) fit in memory instead of spilling to disk.
set local work_mem = '64MB';

-- name: tune_planner
-- A batch touches a small part of large tables: index probes (random reads on SSD or in cache) must look
-- cheaper than scanning the whole table, or a merge's cost grows with the table instead of the batch.
set local random_page_cost = 1.1;

-- name: tune_memoize
-- The loader's probes look up each key once (its work tables have one row per key), so PostgreSQL's
-- Memoize cache in front of them never hits: it only costs memory and time.
set local enable_memoize = off;

-- name: tune_statistics
-- The work tables' statistics only need the order of magnitude of their distinct keys: a 3,000-row
-- sample (instead of 30,000) gives it at a tenth of the cost.
set local default_statistics_target = 10;

-- name: tune_commit
-- The load transaction does not wait for its WAL to reach the disk at COMMIT (asynchronous commit). Safe
-- here: PostgreSQL stays consistent and the transaction stays atomic; a server crash within ~0.6 s of the
-- commit can only lose the whole transaction, its loaded_batches rows included, and the next run then finds
-- those batches unloaded and loads them again from the landing zone (which keeps them). Nothing outside the
-- warehouse acts on a load before the run's checks read it back.
set local synchronous_commit = off;

-- name: probe_by_key
-- Around the MERGE into records: the planner prices an index probe as a random read and, for a batch a
-- tenth of the table's size, prefers to read all of records into a hash; the probes are cached reads and
-- cost what the batch costs, whatever the table's size. The MERGE's only join is its ON clause, so this
-- leaves one plan: a nested loop over the batch with one primary-key probe per row.
select set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);

-- name: probe_by_key_done
select set_config('enable_hashjoin', 'on', true), set_config('enable_mergejoin', 'on', true);

-- name: join_back_by_hash
-- Around the statements that join the stage back to stg_versions for the values (history, winners,
-- candidates): the join is on seven columns, which the planner takes for a one-row result and answers with a
-- merge join that sorts both sides on long text keys (~2x slower than hashing them, measured at 10,000 rows).
select set_config('enable_mergejoin', 'off', true);

-- name: join_back_by_hash_done
select set_config('enable_mergejoin', 'on', true);

-- name: tune_records_table
-- records and datasets are updated in place by every load: free space in their pages lets PostgreSQL keep
-- a new row version on the same page without touching the indexes (HOT updates). Idempotent; applies to
-- pages written from now on.
alter table ${schema}.records set (fillfactor = 85);

-- name: tune_datasets_table
alter table ${schema}.datasets set (fillfactor = 85);

-- name: tune_history_version_index
-- record_changes' unique key (a version: key, sync_count, last_modified_at), with last_modified_at first: a
-- batch's new versions are recent, so their index entries go to the index's right edge (a few pages, hot
-- in cache) instead of one random leaf per version, and a write-heavy PostgreSQL logs a full-page image
-- for far fewer pages after each checkpoint. Lookups of a version by its full key use it as well as the
-- key-ordered primary key did. Redshift has no indexes; its sort key is unchanged.
create unique index if not exists record_changes_version_idx on ${schema}.record_changes (
    last_modified_at, identity_pool_id, identity_id, dataset_name, record_key, sync_count
);

-- name: tune_history_drop_key_ordered_pkey
-- The same uniqueness as record_changes_version_idx, in key order (V001's primary key): a second index
-- to maintain on every insert, so it goes once the version index exists.
alter table ${schema}.record_changes drop constraint if exists record_changes_pkey;

-- name: tune_history_dataset_index
-- What the key-ordered primary key also served: a dataset's whole history (read when a new dataset delete
-- re-decides its keys). Two columns, and deduplicated by PostgreSQL: about a tenth of the primary key's size.
create index if not exists record_changes_dataset_idx on ${schema}.record_changes (identity_id, dataset_name);
