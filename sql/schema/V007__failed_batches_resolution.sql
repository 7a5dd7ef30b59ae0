-- V007: how a batch the loader set aside was resolved (failed_batches.resolution): 'loaded' (a later run loaded
-- it), 'superseded' (a replay landed its records again and marked its descriptor superseded: it is not listed,
-- so never tried, any more) or 'removed' (its descriptor is no longer in the landing zone). Null while
-- unresolved. Rows resolved before this migration were all loaded.
alter table ${schema}.failed_batches add column resolution varchar(16);
update ${schema}.failed_batches set resolution = 'loaded' where resolved_at is not null;
