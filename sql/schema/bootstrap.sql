-- Run before any migration, every time (idempotent): the schema and the ledger of applied migrations.
create schema if not exists ${schema};

create table if not exists ${schema}.schema_migrations (
    version integer not null,
    name varchar(256) not null,
    checksum varchar(64) not null,
    applied_at timestamp not null,
    primary key (version)
) ${attributes_schema_migrations};
