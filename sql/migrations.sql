-- The migration ledger (schema_migrations, created by schema/bootstrap.sql).

-- name: lock_migrations
-- One migrator at a time; the second waits, then finds the versions already applied.
lock table ${schema}.schema_migrations;

-- name: applied_migrations
select version, name, checksum
from ${schema}.schema_migrations
order by version;

-- name: record_migration
insert into ${schema}.schema_migrations (version, name, checksum, applied_at)
values (%s, %s, %s, cast(%s as timestamp));
