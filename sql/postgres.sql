-- PostgreSQL-only statements (the local stand-in): the stage is fed through COPY FROM STDIN with the
-- rows of the same S3 objects Redshift would read, and the planner gets statistics on the work tables
-- (Redshift computes them itself when CREATE TABLE AS or COPY fills an empty table).

-- name: tune_transaction
-- Sorts of a 100,000-row batch (dedupe, winners) fit in memory instead of spilling to disk.
set local work_mem = '64MB';

-- name: copy_from_stdin
copy ${table} from stdin with (format csv);

-- name: analyze_table
analyze ${table};
