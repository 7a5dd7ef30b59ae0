"""The local Redshift emulator: the PostgreSQL wire protocol in front of the stack's PostgreSQL, refusing
what Amazon Redshift refuses and running what only Redshift runs (COPY from S3). docs/redshift-emulator.md."""
