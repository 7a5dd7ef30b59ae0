-- Redshift-only table attributes. PostgreSQL gets none of this; on Redshift each block's clause replaces
-- ${attributes_<table>} in the portable DDL (V*.sql, bootstrap.sql, the stage tables in load.sql), and its
-- "-- encode <encoding>: <columns>" lines add ENCODE to those column definitions.
--
-- Format: a block starts with "-- table: <name>"; other "--" lines are comments (say why); the remaining
-- lines are the clause. Every ${attributes_x} placeholder needs a block (tests/unit/test_sql_text.py).
--
-- Choices, for all tables that hold per-identity rows:
-- * DISTKEY(identity_id): high cardinality, so slices stay even; every join the loader runs (stage ->
--   records, record_changes, datasets, dataset_deletes) includes identity_id, so it is collocated and no
--   table is redistributed or broadcast during a merge. identity_pool_id is useless as a distkey (usually one).
-- * COMPOUND SORTKEY on the merge key: zone maps let the merge's joins and the analysts' per-identity
--   lookups skip blocks; the key's columns stay RAW (Redshift's rule for sort key columns).
-- * Encodings: columns not listed get Redshift's defaults once any column has an explicit encoding
--   (AZ64 for integers and timestamps, LZO for VARCHAR, RAW for BOOLEAN and sort keys); ZSTD is set on
--   the long, free-text columns (values, S3 references, lineage paths), where it compresses far better
--   than LZO. We do not use ENCODE AUTO: it would re-encode in the background and the table would no
--   longer say what it stores.

-- table: records
-- Current state; merged by key, read by identity.
diststyle key distkey (identity_id)
compound sortkey (identity_pool_id, identity_id, dataset_name, record_key)
-- encode zstd: record_value, value_ref

-- table: record_changes
-- History; the loader's anti-join probes (key, sync_count, last_modified_at).
diststyle key distkey (identity_id)
compound sortkey (identity_pool_id, identity_id, dataset_name, record_key, sync_count, last_modified_at)
-- encode zstd: record_value, value_ref, sequence_number, landed_file

-- table: dataset_deletes
diststyle key distkey (identity_id)
compound sortkey (identity_pool_id, identity_id, dataset_name, deleted_at)
-- encode zstd: sequence_number, landed_file

-- table: datasets
diststyle key distkey (identity_id)
compound sortkey (identity_pool_id, identity_id, dataset_name)

-- table: loaded_batches
-- Bookkeeping, read by landing day to find new work.
diststyle even
compound sortkey (landing_day, descriptor_url)
-- encode zstd: descriptor_url, batch_id, first_sequence_number, last_sequence_number

-- table: loaded_files
diststyle even
compound sortkey (descriptor_url, file_url)
-- encode zstd: file_url, manifest_url

-- table: rejected_records
-- Read by time when investigating a quarantine.
diststyle even
compound sortkey (arrived_at)
-- encode zstd: detail, raw_ref, landed_file, sequence_number

-- table: bulk_publish_runs
-- Tiny; copied to every node so joins with it never move data.
diststyle all
compound sortkey (identity_pool_id, requested_at)
-- encode zstd: failure_message

-- table: reconciliation_runs
-- One row per reconciliation run: tiny, on every node.
diststyle all
compound sortkey (checked_at)

-- table: reconciliation_results
-- Mismatches: few when healthy; read by run and by identity.
diststyle key distkey (identity_id)
compound sortkey (run_id, identity_pool_id, identity_id)
-- encode zstd: detail, record_key

-- table: health_samples
-- Small (a few rows per check, 14 days kept), read by time range: on every node, sorted by time.
diststyle all
compound sortkey (sampled_at)

-- table: schema_migrations
diststyle all

-- table: stg_changes
-- The loader's stage (a temporary table), distributed like the targets so the merge's joins are local.
diststyle key distkey (identity_id)

-- table: stg_rejects
diststyle even

-- table: stg_work
-- Intermediate tables of a merge (versions, candidates, winners...), created with CREATE TABLE AS.
diststyle key distkey (identity_id)
