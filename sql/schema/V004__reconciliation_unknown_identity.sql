-- V004: reconciliation's unknown_identity kind (issue 18): live warehouse data of an identity Cognito
-- Sync does not know (deleted with DeleteIdentities, or never valid), counted per run like the other
-- kinds. Runs recorded before this migration had no such kind: 0.
alter table ${schema}.reconciliation_runs add column unknown_identity bigint default 0;
