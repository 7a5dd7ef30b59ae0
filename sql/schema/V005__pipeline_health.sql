-- V005: pipeline health (the UI's Browse > Pipeline health, /cognito-streams/api/health, the stall alarm).
--
-- health_samples: the numbers over time that no other table keeps, one row per (time, metric, series):
-- the Kinesis lag per shard and the landed-but-not-loaded backlog (written by cognito_pipeline_health at
-- every check) and the duration and freshness of each load (written by cognito_s3_to_redshift). A narrow
-- table, so a new metric needs no migration; the checks delete rows older than 14 days.
create table if not exists ${schema}.health_samples (
    sampled_at timestamp not null,
    metric varchar(64) not null,
    series varchar(256) not null,
    value double precision not null,
    source varchar(64) not null
) ${attributes_health_samples};

-- Reconciliation judges only what the pipeline has had time to load: the watermark it used, and its
-- verdict ('judged', or 'stalled, not judged' when the pipeline was stalled and nothing was compared).
alter table ${schema}.reconciliation_runs add column verdict varchar(32) default 'judged';
alter table ${schema}.reconciliation_runs add column watermark_at timestamp;
