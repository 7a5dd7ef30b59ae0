"""The Redshift emulator's reading of COPY statements (local/redshift/copy.py, parse_copy) and its Parquet type
rules (local/redshift/parquet_types.py): what it takes from S3, what Redshift refuses with Parquet, what the
emulator does not run, and which statements are none of its business."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cognito_streams.core.sql_text import WarehouseSql
from local.redshift.copy import CopyCommand, parse_copy
from local.redshift.errors import RedshiftError
from local.redshift.parquet_types import TargetColumn, describe_columns, incompatibility

ROLE = "arn:aws:iam::123456789012:role/cognito-streams-redshift-copy"
MANIFEST = "s3://landing/cognito-streams/manifests/stream=s/dt=2026-03-01/shardId-000000000000/1-2.changes.manifest"
PARQUET = f"from 's3://b/k' iam_role '{ROLE}' format as parquet"


def _error(statement: str) -> RedshiftError:
    with pytest.raises(RedshiftError) as info:
        parse_copy(statement)
    return info.value


def test_the_pipelines_statement() -> None:
    statement = WarehouseSql("cognito_sync", "redshift").copy_from_manifest("stg_changes", MANIFEST, ROLE)
    assert parse_copy(statement) == CopyCommand(
        table="stg_changes", schema=None, columns=None, source=MANIFEST, iam_role=ROLE, manifest=True
    )


@pytest.mark.parametrize(
    "statement",
    [
        f"COPY stg FROM '{MANIFEST}' IAM_ROLE '{ROLE}' FORMAT AS PARQUET MANIFEST",
        f"copy stg from '{MANIFEST}' manifest format parquet iam_role '{ROLE}';",
        f"copy stg from '{MANIFEST}' iam_role '{ROLE}' as parquet, manifest",
        f"copy stg from '{MANIFEST}' iam_role '{ROLE}' parquet manifest",
        f"copy stg from '{MANIFEST}' credentials 'aws_iam_role={ROLE}' format as parquet manifest",
        f"copy stg from '{MANIFEST}' with credentials as 'aws_iam_role={ROLE}' format as parquet manifest",
        f"-- the stage\ncopy /* target */ stg\nfrom '{MANIFEST}'\n  iam_role '{ROLE}'\n  format as parquet\n"
        "  manifest ;",
    ],
)
def test_forms_of_the_same_copy(statement: str) -> None:
    assert parse_copy(statement) == CopyCommand(
        table="stg", schema=None, columns=None, source=MANIFEST, iam_role=ROLE, manifest=True
    )


def test_names_column_list_and_options() -> None:
    cmd = parse_copy(
        f"copy Cognito_Sync.\"Stg Changes\" (a, \"B\") from 's3://b/prefix/' iam_role '{ROLE}' format as parquet "
        "acceptinvchars as '^' fillrecord explicit_ids statupdate off"
    )
    assert cmd == CopyCommand(
        table="Stg Changes",
        schema="cognito_sync",
        columns=("a", "B"),
        source="s3://b/prefix/",
        iam_role=ROLE,
        manifest=False,
        acceptinvchars="^",
        fillrecord=True,
        explicit_ids=True,
        statupdate=False,
    )
    assert cmd.qualified_name == "cognito_sync.Stg Changes"
    assert parse_copy(f"copy t {PARQUET} acceptinvchars").acceptinvchars == "?"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "statement",
    [
        "select 1",
        "copy t from stdin with (format csv)",
        "COPY t (a, b) FROM STDIN",
        "copy t to stdout",
        "copy (select 1) to stdout",
        f"copy t from 'dynamodb://table' iam_role '{ROLE}' readratio 50",
        f"copy t from 'emr://j-1/part-*' iam_role '{ROLE}'",
        "copy",
        "",
    ],
)
def test_statements_that_are_not_a_copy_from_s3(statement: str) -> None:
    assert parse_copy(statement) is None


@pytest.mark.parametrize(
    ("option", "name"),
    [
        ("region as 'us-west-2'", "REGION"),
        ("region 'us-west-2'", "REGION"),
        ("maxerror as 10", "MAXERROR"),
        ("acceptanydate", "ACCEPTANYDATE"),
        ("dateformat 'auto'", "DATEFORMAT"),
        ("timeformat as 'epochmillisecs'", "TIMEFORMAT"),
        ("gzip", "GZIP"),
        ("zstd", "ZSTD"),
        ("ignoreheader 1", "IGNOREHEADER"),
        ("compupdate off", "COMPUPDATE"),
        ("truncatecolumns", "TRUNCATECOLUMNS"),
        ("blanksasnull", "BLANKSASNULL"),
        ("emptyasnull", "EMPTYASNULL"),
        ("encoding utf8", "ENCODING"),
        ("null as '\\N'", "NULL"),
        ("ignoreallerrors", "IGNOREALLERRORS"),
    ],
)
def test_parameters_redshift_refuses_with_parquet(option: str, name: str) -> None:
    # AWS: "Only the following COPY parameters are supported" with columnar formats; the REGION text is
    # documented ("REGION argument is not supported for PARQUET based COPY").
    err = _error(f"copy t {PARQUET} manifest {option}")
    assert err.message == f"{name} argument is not supported for PARQUET based COPY"


@pytest.mark.parametrize(
    "auth",
    [
        "access_key_id 'AKIAEXAMPLE' secret_access_key 'sEcReT/kEy'",
        "access_key_id 'AKIAEXAMPLE' secret_access_key 'sEcReT/kEy' session_token 'tOkEn'",
        "credentials 'aws_access_key_id=AKIAEXAMPLE;aws_secret_access_key=sEcReT/kEy'",
    ],
)
def test_key_credentials_are_refused_without_echoing_them(auth: str) -> None:
    err = _error(f"copy t from 's3://b/k' {auth} format as parquet")
    assert err.sqlstate == "0A000"
    assert "IAM_ROLE" in (err.hint or "")
    assert "sEcReT" not in str(err) and "AKIAEXAMPLE" not in str(err)


@pytest.mark.parametrize(
    ("format_clause", "shown"),
    [("", "TEXT"), ("csv", "CSV"), ("format as json 'auto'", "JSON"), ("format orc", "ORC"), ("avro 'auto'", "AVRO")],
)
def test_other_formats_are_not_run(format_clause: str, shown: str) -> None:
    err = _error(f"copy t from 's3://b/k' iam_role '{ROLE}' {format_clause}")
    assert (err.sqlstate, err.message) == ("0A000", f"the Redshift emulator does not run COPY ... FORMAT AS {shown} "
                                           "(only FORMAT AS PARQUET)")  # fmt: skip


@pytest.mark.parametrize(
    ("statement", "sqlstate", "text"),
    [
        (f"copy t {PARQUET} serializetojson", "0A000", "SERIALIZETOJSON"),
        ("copy t from 's3://b/k' format as parquet", "42601", "needs authorization"),
        ("copy t from 's3://b/k' iam_role default format as parquet", "0A000", "IAM_ROLE default"),
        (f"copy t from 's3://b/k' iam_role '{ROLE},{ROLE}' format as parquet", "0A000", "chained"),
        (f"copy t {PARQUET} credentials 'aws_iam_role={ROLE}'", "42601", "conflicting or redundant options"),
        (f"copy t {PARQUET} sometimes", "42601", 'syntax error at or near "sometimes"'),
        (f"copy t (a, b from 's3://b/k' iam_role '{ROLE}' format as parquet", "42601", "syntax error"),
        (f"copy t {PARQUET}; select 1", "42601", 'syntax error at or near "select"'),
        (f"copy t (a, a) {PARQUET}", "42701", 'column "a" specified more than once'),
        (f"copy t from 's3://b' iam_role '{ROLE}' format as parquet manifest", "XX000", "requires full path"),
        (f"copy db.s.t {PARQUET}", "0A000", "schema.table"),
    ],
)
def test_copies_that_are_refused(statement: str, sqlstate: str, text: str) -> None:
    err = _error(statement)
    assert err.sqlstate == sqlstate
    assert text in err.message


# ----------------------------------------------------------------------------------------------- Parquet types


def _columns(table: pa.Table, **options: object) -> list[tuple[str, str]]:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **options)  # type: ignore[arg-type]
    buffer.seek(0)
    return [(c.name, c.kind) for c in describe_columns(pq.ParquetFile(buffer))]


def test_parquet_columns_are_described_by_their_parquet_types() -> None:
    table = pa.table(
        {
            "s": pa.array(["a"]),
            "ls": pa.array(["a"], pa.large_string()),
            "dict": pa.array(["a"]).dictionary_encode(),
            "bin": pa.array([b"a"]),
            "i8": pa.array([1], pa.int8()),
            "i16": pa.array([1], pa.int16()),
            "i32": pa.array([1], pa.int32()),
            "i64": pa.array([1], pa.int64()),
            "u32": pa.array([1], pa.uint32()),
            "f": pa.array([1.0], pa.float32()),
            "d": pa.array([1.0], pa.float64()),
            "dec": pa.array([1], pa.decimal128(9, 2)),
            "b": pa.array([True]),
            "date": pa.array([1], pa.date32()),
            "ms": pa.array([1], pa.timestamp("ms", tz="UTC")),
            "us": pa.array([1], pa.timestamp("us", tz="UTC")),
            "ns": pa.array([1], pa.timestamp("ns")),
            "time": pa.array([1], pa.time64("us")),
            "list": pa.array([[1]]),
            "struct": pa.array([{"x": 1}]),
        }
    )
    assert _columns(table) == [
        ("s", "string"), ("ls", "string"), ("dict", "string"), ("bin", "binary"), ("i8", "int8"), ("i16", "int16"),
        ("i32", "int32"), ("i64", "int64"), ("u32", "uint32"), ("f", "float"), ("d", "double"), ("dec", "decimal"),
        ("b", "boolean"), ("date", "date"), ("ms", "timestamp_millis"), ("us", "timestamp_micros"),
        ("ns", "timestamp_nanos"), ("time", "time"), ("list", "nested"), ("struct", "nested"),
    ]  # fmt: skip
    assert _columns(pa.table({"t": pa.array([1], pa.timestamp("ns"))}), use_deprecated_int96_timestamps=True) == [
        ("t", "int96")
    ]


def _target(typname: str, typmod: int = -1) -> TargetColumn:
    return TargetColumn.from_catalog("c", typname, typmod, False, False)


def test_target_columns_from_the_catalog() -> None:
    assert _target("varchar", 64 + 4).max_bytes == 64
    assert _target("varchar").max_bytes == 256  # Redshift's VARCHAR without a length
    assert _target("text").max_bytes == 256  # Redshift's TEXT is VARCHAR(256)
    assert _target("bpchar", 3 + 4).max_bytes == 3
    numeric = _target("numeric", ((12 << 16) | 2) + 4)
    assert (numeric.precision, numeric.scale, numeric.redshift_type) == (12, 2, "DECIMAL(12,2)")
    assert (_target("numeric").precision, _target("numeric").scale) == (18, 0)
    assert (_target("int4").redshift_type, _target("int4").column_type) == ("INT", "int4")


@pytest.mark.parametrize(
    ("array", "typname", "typmod", "loads"),
    [
        (pa.array([1], pa.int64()), "int8", -1, True),
        (pa.array([1], pa.int64()), "int4", -1, False),  # narrowing: a real COPY fails so too
        (pa.array([1], pa.int32()), "int8", -1, False),  # widening: refused by the emulator's strict rule
        (pa.array([1], pa.int16()), "int2", -1, True),
        (pa.array([1.0], pa.float64()), "numeric", ((12 << 16) | 2) + 4, False),
        (pa.array([1], pa.decimal128(9, 2)), "numeric", ((12 << 16) | 2) + 4, True),
        (pa.array([1], pa.decimal128(13, 2)), "numeric", ((12 << 16) | 2) + 4, False),
        (pa.array([1], pa.decimal128(9, 3)), "numeric", ((12 << 16) | 2) + 4, False),
        (pa.array(["a"]), "varchar", 68, True),
        (pa.array(["a"]), "bpchar", 5, True),
        (pa.array(["a"]), "int4", -1, False),
        (pa.array([b"a"]), "varchar", 68, False),
        (pa.array([1], pa.timestamp("us")), "timestamp", -1, True),
        (pa.array([1], pa.timestamp("us", tz="UTC")), "timestamptz", -1, True),
        (pa.array([1], pa.timestamp("ms", tz="UTC")), "timestamp", -1, False),
        (pa.array([1], pa.timestamp("ns", tz="UTC")), "timestamp", -1, False),
        (pa.array([1], pa.date32()), "date", -1, True),
        (pa.array([1], pa.date32()), "timestamp", -1, False),
        (pa.array([True]), "bool", -1, True),
        (pa.array([[1]]), "varchar", 68, False),
        (pa.array([1], pa.uint64()), "int8", -1, False),
    ],
)
def test_which_parquet_types_load_into_which_columns(array: pa.Array, typname: str, typmod: int, loads: bool) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"c": array}), buffer)
    buffer.seek(0)
    (column,) = describe_columns(pq.ParquetFile(buffer))
    why = incompatibility(column, _target(typname, typmod))
    assert (why is None) == loads, why
