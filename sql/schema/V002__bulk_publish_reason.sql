-- V002: why each bulk publish decision was taken (core/bulk_publish.Plan.reason), for operators reading
-- bulk_publish_runs. Applied once per schema by the migration ledger, in one transaction with its record.
alter table ${schema}.bulk_publish_runs add column reason varchar(1024);
