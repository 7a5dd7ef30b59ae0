-- V006: batches the loader set aside (issue 17: loading must never stall behind one bad batch). When a
-- batch's COPY, its staged-row checks or its descriptor fail, the loader loads the other batches, records the
-- failure here, fails the run naming it, and tries it again on later runs (in transactions of its own, after
-- the other batches) until it loads; then resolved_at is set. One row per batch descriptor.
create table if not exists ${schema}.failed_batches (
    descriptor_url varchar(2048) not null,
    landing_day date not null,
    batch_id varchar(512),
    error_kind varchar(64) not null,
    error_message varchar(65535) not null,
    first_failed_at timestamp not null,
    last_failed_at timestamp not null,
    failures integer not null,
    resolved_at timestamp,
    primary key (descriptor_url)
) ${attributes_failed_batches};
