-- V001: the warehouse contract (docs/warehouse.md; ../shared/design/ARCHITECTURE.md, "Warehouse contract").
--
-- Portable DDL: PostgreSQL 16 (the local stand-in) and Amazon Redshift run the same text.
-- ${schema} is the validated settings.warehouse_schema. ${attributes_<table>} is empty on PostgreSQL and,
-- on Redshift, the table's DISTSTYLE/DISTKEY/SORTKEY clause from redshift_table_attributes.sql, which also
-- lists column encodings. Every statement is idempotent (IF NOT EXISTS / OR REPLACE), ends with ';' at the
-- end of a line, and is applied once per schema by the migration runner (schema_migrations).
--
-- Types: timestamps are UTC without time zone (Redshift COPY maps Parquet timestamp[ms, UTC] to TIMESTAMP);
-- VARCHAR widths are Redshift byte limits: identity pool/identity ids are at most 55 characters,
-- dataset names 128 ASCII characters, record keys 1,024 characters (4,096 UTF-8 bytes), and values are cut
-- by the landing DAG to 65,535 bytes, Redshift's VARCHAR maximum, with the full text referenced by value_ref.

-- Current state: one row per key, tombstones kept (is_deleted) so that a late, older change cannot
-- resurrect a deleted key. op/sync_count/last_modified_at are those of the winning version.
create table if not exists ${schema}.records (
    identity_pool_id varchar(64) not null,
    identity_id varchar(64) not null,
    dataset_name varchar(128) not null,
    record_key varchar(4096) not null,
    op varchar(16) not null,
    record_value varchar(65535),
    value_bytes bigint,
    is_value_cut boolean not null,
    value_ref varchar(2048),
    sync_count bigint not null,
    last_modified_at timestamp not null,
    device_last_modified_at timestamp,
    is_deleted boolean not null,
    updated_at timestamp not null,
    primary key (identity_pool_id, identity_id, dataset_name, record_key)
) ${attributes_records};

-- History: one row per version of a key (docs/semantics.md: sync counts restart when a dataset is
-- re-created, hence last_modified_at in the key), with the lineage of the first copy loaded.
create table if not exists ${schema}.record_changes (
    identity_pool_id varchar(64) not null,
    identity_id varchar(64) not null,
    dataset_name varchar(128) not null,
    record_key varchar(4096) not null,
    op varchar(16) not null,
    record_value varchar(65535),
    value_bytes bigint,
    is_value_cut boolean not null,
    value_ref varchar(2048),
    sync_count bigint not null,
    last_modified_at timestamp not null,
    device_last_modified_at timestamp,
    event_sync_count bigint,
    event_last_modified_at timestamp,
    payload_type varchar(16) not null,
    stream_name varchar(128) not null,
    shard_id varchar(128) not null,
    sequence_number varchar(128) not null,
    sub_sequence_number bigint not null,
    record_index integer not null,
    arrived_at timestamp not null,
    landed_file varchar(2048) not null,
    loaded_at timestamp not null,
    primary key (identity_pool_id, identity_id, dataset_name, record_key, sync_count, last_modified_at)
) ${attributes_record_changes};

-- Dataset deletes (Kinesis records with operation "remove" and no records): one row per delete time.
create table if not exists ${schema}.dataset_deletes (
    identity_pool_id varchar(64) not null,
    identity_id varchar(64) not null,
    dataset_name varchar(128) not null,
    deleted_at timestamp not null,
    sync_count bigint not null,
    payload_type varchar(16) not null,
    stream_name varchar(128) not null,
    shard_id varchar(128) not null,
    sequence_number varchar(128) not null,
    sub_sequence_number bigint not null,
    arrived_at timestamp not null,
    landed_file varchar(2048) not null,
    loaded_at timestamp not null,
    primary key (identity_pool_id, identity_id, dataset_name, deleted_at)
) ${attributes_dataset_deletes};

-- One row per dataset seen. generation_sync_count is the largest sync_count among versions made after
-- deleted_at (all versions when never deleted); last_sync_count falls back to the delete's sync count.
create table if not exists ${schema}.datasets (
    identity_pool_id varchar(64) not null,
    identity_id varchar(64) not null,
    dataset_name varchar(128) not null,
    last_sync_count bigint,
    last_modified_at timestamp not null,
    is_deleted boolean not null,
    deleted_at timestamp,
    delete_sync_count bigint,
    generation_sync_count bigint,
    live_record_count bigint not null,
    updated_at timestamp not null,
    primary key (identity_pool_id, identity_id, dataset_name)
) ${attributes_datasets};

-- One row per batch descriptor loaded: how the loader knows what is done, and the batch's counts
-- (read = landed + rejected, as the landing DAG reported them).
create table if not exists ${schema}.loaded_batches (
    descriptor_url varchar(2048) not null,
    batch_id varchar(512) not null,
    landing_day date not null,
    stream_name varchar(128) not null,
    shard_id varchar(128) not null,
    first_sequence_number varchar(128) not null,
    last_sequence_number varchar(128) not null,
    first_arrived_at timestamp not null,
    last_arrived_at timestamp not null,
    landed_at timestamp not null,
    kinesis_records_read bigint not null,
    kinesis_records_landed bigint not null,
    kinesis_records_rejected bigint not null,
    is_replay boolean not null,
    loaded_at timestamp not null,
    primary key (descriptor_url)
) ${attributes_loaded_batches};

-- One row per landed data file loaded (changes and rejects Parquet files), with the manifest's
-- record_count and what the COPY actually staged.
create table if not exists ${schema}.loaded_files (
    file_url varchar(2048) not null,
    descriptor_url varchar(2048) not null,
    file_kind varchar(16) not null,
    manifest_url varchar(2048) not null,
    rows_expected bigint not null,
    rows_staged bigint not null,
    file_bytes bigint not null,
    loaded_at timestamp not null,
    primary key (file_url)
) ${attributes_loaded_files};

-- One row per quarantined Kinesis record (or KPL sub-record); raw_ref points at its raw bytes.
create table if not exists ${schema}.rejected_records (
    stream_name varchar(128) not null,
    shard_id varchar(128) not null,
    sequence_number varchar(128) not null,
    sub_sequence_number bigint not null,
    arrived_at timestamp not null,
    reason varchar(64) not null,
    detail varchar(65535) not null,
    identity_pool_id varchar(64),
    identity_id varchar(64),
    dataset_name varchar(128),
    raw_bytes bigint not null,
    raw_ref varchar(2048) not null,
    landed_file varchar(2048) not null,
    loaded_at timestamp not null,
    primary key (stream_name, shard_id, sequence_number, sub_sequence_number)
) ${attributes_rejected_records};

-- One row per bulk publish attempt, written by cognito_bulk_publish (Warehouse.record_bulk_publish_attempt).
create table if not exists ${schema}.bulk_publish_runs (
    attempt_id varchar(256) not null,
    identity_pool_id varchar(64) not null,
    requested_at timestamp not null,
    decision varchar(64) not null,
    status varchar(32) not null,
    started_at timestamp,
    completed_at timestamp,
    failure_message varchar(4096),
    next_eligible_at timestamp,
    dag_run_id varchar(256),
    updated_at timestamp not null,
    primary key (attempt_id)
) ${attributes_bulk_publish_runs};

-- The analysts' view: live records only.
create or replace view ${schema}.live_records as
select
    identity_pool_id,
    identity_id,
    dataset_name,
    record_key,
    record_value,
    value_bytes,
    is_value_cut,
    value_ref,
    sync_count,
    last_modified_at,
    device_last_modified_at,
    updated_at
from ${schema}.records
where is_deleted = false;
