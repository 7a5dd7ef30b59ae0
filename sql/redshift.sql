-- Redshift-only statements: the server-side COPY (no data through the worker; only the role's ARN in
-- the text, never keys) and where a failed COPY's reason is read.
-- In copy_from_manifest, ${table} is a stage table and the manifest URL and role ARN are validated
-- (no quotes, see core/sql_text.py) before they are placed in the text: COPY takes no bound parameters.
-- The parameter order follows the COPY grammar: FROM, authorization, FORMAT, then MANIFEST.

-- name: copy_from_manifest
copy ${table} from '${manifest_url}' iam_role '${iam_role_arn}' format as parquet manifest;

-- name: load_error_detail
-- The failing file, line and reason of this session's COPY errors since the given time.
select
    trim(file_name) as file_name, line_number, trim(column_name) as column_name, error_code,
    trim(error_message) as error_message
from sys_load_error_detail
where session_id = pg_backend_pid() and start_time >= cast(%s as timestamp)
order by start_time desc
limit 5;
