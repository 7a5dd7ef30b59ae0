"""Parquet column types as the Redshift emulator's ``COPY ... FORMAT AS PARQUET`` sees them, and which table
columns each one may load (docs/redshift-emulator.md, 'COPY from S3').

Redshift reads Parquet for COPY through Redshift Spectrum, whose rule AWS documents as "the column type in
the table must match the column type of the data file" (an "incompatible Parquet schema" error otherwise).
AWS publishes no full matrix of which Parquet physical/logical types load into which column types, so the
matrix here is the strict one: each Parquet type loads only into the Redshift type that holds exactly its
values (INT32 into INTEGER, not BIGINT; DECIMAL(p,s) into DECIMAL(P,s) with p <= P). What it refuses, a
real cluster may accept; what it accepts, Redshift reads as documented. Two choices are ours, not AWS's:

* INT64 timestamps load only as TIMESTAMP(MICROS) (either ``isAdjustedToUTC``). AWS documents no COPY
  mapping of any INT64 timestamp unit; the misreads reported against Spectrum (apache/arrow#38000,
  dask/fastparquet#432) are of nanosecond files, read as dates centuries away. MILLIS and NANOS are refused
  until ``make redshift-check`` shows a real cluster reading them right (``ACCEPTED_TIMESTAMPS``).
* INT96 timestamps (the legacy Hive/Impala/Spark encoding that Spectrum has always read) load, truncated to
  microseconds, Redshift's precision.

Dictionary encoding is a Parquet *encoding*, not a type: every reader decodes it, and pyarrow writes it by
default, so dictionary-encoded columns load like plain ones. ``large_string`` is an Arrow type that Parquet
stores exactly as ``string`` (BYTE_ARRAY annotated STRING): Redshift cannot tell them apart, so neither can
this module; the landing contract's own test is what pins the Arrow types the pipeline writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

#: INT64 timestamp kinds the emulator loads (see the module docstring for why only microseconds).
ACCEPTED_TIMESTAMPS = frozenset({"timestamp_micros"})

#: Redshift's VARCHAR without a length, and TEXT (an alias of VARCHAR(256)), hold 256 bytes.
DEFAULT_VARCHAR_BYTES = 256
#: Redshift's DECIMAL without precision and scale is DECIMAL(18, 0).
DEFAULT_DECIMAL = (18, 0)

#: Which Parquet kinds load into which PostgreSQL type names (pg_type.typname of the target column).
LOADS_INTO: dict[str, frozenset[str]] = {
    "boolean": frozenset({"bool"}),
    "int8": frozenset({"int2"}),
    "int16": frozenset({"int2"}),
    "int32": frozenset({"int4"}),
    "int64": frozenset({"int8"}),
    "float": frozenset({"float4"}),
    "double": frozenset({"float8"}),
    "decimal": frozenset({"numeric"}),
    "string": frozenset({"varchar", "bpchar", "text"}),
    "date": frozenset({"date"}),
    "int96": frozenset({"timestamp", "timestamptz"}),
    **{kind: frozenset({"timestamp", "timestamptz"}) for kind in ACCEPTED_TIMESTAMPS},
}

#: The name Redshift (and its Spectrum messages) give a column type, by pg_type.typname.
_REDSHIFT_NAMES = {
    "bool": "BOOLEAN",
    "int2": "SMALLINT",
    "int4": "INT",
    "int8": "BIGINT",
    "float4": "REAL",
    "float8": "DOUBLE PRECISION",
    "numeric": "DECIMAL",
    "varchar": "VARCHAR",
    "text": "VARCHAR",
    "bpchar": "CHAR",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ",
}


@dataclass(frozen=True)
class TargetColumn:
    """A column of the COPY's target table, read from the PostgreSQL catalog."""

    name: str
    pg_type: str  # pg_type.typname
    not_null: bool
    has_default: bool
    max_bytes: int | None = None  # VARCHAR/CHAR/TEXT width in bytes (Redshift counts bytes)
    precision: int | None = None
    scale: int | None = None

    @classmethod
    def from_catalog(cls, name: str, typname: str, typmod: int, not_null: bool, has_default: bool) -> TargetColumn:
        """Build from pg_attribute/pg_type: ``typmod`` is ``atttypmod`` (-1 when the type has no modifier)."""
        max_bytes = precision = scale = None
        if typname in ("varchar", "bpchar"):
            max_bytes = typmod - 4 if typmod >= 4 else (DEFAULT_VARCHAR_BYTES if typname == "varchar" else 1)
        elif typname == "text":
            max_bytes = DEFAULT_VARCHAR_BYTES
        elif typname == "numeric":
            if typmod >= 4:
                precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
            else:
                precision, scale = DEFAULT_DECIMAL
        return cls(name, typname, not_null, has_default, max_bytes, precision, scale)

    @property
    def redshift_type(self) -> str:
        """The type as Redshift's messages name it (``VARCHAR``, ``INT``, ``DECIMAL(12,2)``...)."""
        base = _REDSHIFT_NAMES.get(self.pg_type, self.pg_type.upper())
        if self.pg_type == "numeric":
            return f"{base}({self.precision},{self.scale})"
        return base

    @property
    def column_type(self) -> str:
        """SYS_LOAD_ERROR_DETAIL.column_type (character(10)): the short type name, as ``int4`` there."""
        return {"bpchar": "char", "text": "varchar"}.get(self.pg_type, self.pg_type)[:10]

    @property
    def column_length(self) -> str:
        """SYS_LOAD_ERROR_DETAIL.column_length: the declared length of a character column, else empty."""
        return str(self.max_bytes) if self.max_bytes is not None else ""


@dataclass(frozen=True)
class ParquetColumn:
    """A top-level column of a Parquet file: what its schema says, reduced to one ``kind``."""

    name: str
    kind: str  # a key of LOADS_INTO, or a kind nothing loads from (timestamp_millis, uint32, nested, ...)
    schema_text: str  # the column as a Parquet schema line, for error messages
    precision: int | None = None
    scale: int | None = None


def describe_columns(parquet: pq.ParquetFile) -> list[ParquetColumn]:
    """The file's top-level columns in order (Redshift maps them to table columns by position)."""
    leaves = {parquet.schema.column(i).path: parquet.schema.column(i) for i in range(len(parquet.schema))}
    columns = []
    for field in parquet.schema_arrow:
        leaf = leaves.get(field.name)
        if leaf is None or _is_nested(field.type):
            columns.append(ParquetColumn(field.name, "nested", f"optional group {field.name} ({field.type})"))
        else:
            columns.append(_describe_leaf(field.name, leaf))
    return columns


def _is_nested(arrow_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_struct(arrow_type)
        or pa.types.is_list(arrow_type)
        or pa.types.is_large_list(arrow_type)
        or pa.types.is_fixed_size_list(arrow_type)
        or pa.types.is_map(arrow_type)
        or pa.types.is_union(arrow_type)
    )


def _logical(leaf: Any) -> dict[str, Any]:
    try:
        return dict(json.loads(leaf.logical_type.to_json()))
    except (ValueError, AttributeError):
        return {"Type": "None"}


def _describe_leaf(name: str, leaf: Any) -> ParquetColumn:
    physical = str(leaf.physical_type)
    logical = _logical(leaf)
    logical_type = str(logical.get("Type", "None"))
    converted = str(leaf.converted_type)
    repetition = "optional" if leaf.max_definition_level > 0 else "required"
    annotation = _annotation(logical, converted)
    text = f"{repetition} {physical.lower()} {name}" + (f" ({annotation})" if annotation else "")
    kind = _kind(physical, logical_type, logical, converted)
    precision = scale = None
    if kind == "decimal":
        precision = int(logical.get("precision", leaf.precision))
        scale = int(logical.get("scale", leaf.scale))
    return ParquetColumn(name, kind, text, precision, scale)


def _annotation(logical: dict[str, Any], converted: str) -> str:
    kind = str(logical.get("Type", "None"))
    if kind == "Timestamp":
        unit = {"milliseconds": "MILLIS", "microseconds": "MICROS", "nanoseconds": "NANOS"}.get(
            str(logical.get("timeUnit")), str(logical.get("timeUnit"))
        )
        return f"TIMESTAMP({unit},{str(logical.get('isAdjustedToUTC')).lower()})"
    if kind == "Int":
        return f"INTEGER({logical.get('bitWidth')},{str(logical.get('isSigned')).lower()})"
    if kind == "Decimal":
        return f"DECIMAL({logical.get('precision')},{logical.get('scale')})"
    if kind != "None":
        return kind.upper()
    return converted if converted != "NONE" else ""


def _kind(physical: str, logical_type: str, logical: dict[str, Any], converted: str) -> str:
    if logical_type == "Timestamp" or converted in ("TIMESTAMP_MILLIS", "TIMESTAMP_MICROS"):
        unit = str(logical.get("timeUnit") or ("milliseconds" if converted == "TIMESTAMP_MILLIS" else "microseconds"))
        return {"milliseconds": "timestamp_millis", "microseconds": "timestamp_micros"}.get(unit, "timestamp_nanos")
    if logical_type == "Decimal" or converted == "DECIMAL":
        return "decimal"
    if logical_type == "Int" or converted.startswith(("INT_", "UINT_")):
        signed = bool(logical.get("isSigned", not converted.startswith("UINT_")))
        width = int(logical.get("bitWidth") or converted.rsplit("_", 1)[-1])
        return f"{'' if signed else 'u'}int{width}"
    if logical_type == "String" or converted == "UTF8":
        return "string" if physical == "BYTE_ARRAY" else "other"
    if logical_type == "Date" or converted == "DATE":
        return "date"
    if logical_type in ("Time",) or converted in ("TIME_MILLIS", "TIME_MICROS"):
        return "time"
    if logical_type not in ("None", "") or converted != "NONE":
        return logical_type.lower() if logical_type != "None" else converted.lower()  # json, uuid, enum, ...
    return {
        "BOOLEAN": "boolean",
        "INT32": "int32",
        "INT64": "int64",
        "INT96": "int96",
        "FLOAT": "float",
        "DOUBLE": "double",
        "BYTE_ARRAY": "binary",
        "FIXED_LEN_BYTE_ARRAY": "fixed_binary",
    }.get(physical, "other")


def incompatibility(column: ParquetColumn, target: TargetColumn) -> str | None:
    """Why ``column`` cannot load into ``target`` (None: it can). The reason is the emulator's explanation,
    for the error's HINT; Redshift's own text only says the Parquet schema is incompatible."""
    allowed = LOADS_INTO.get(column.kind)
    if column.kind.startswith("timestamp_") and column.kind not in ACCEPTED_TIMESTAMPS:
        return (
            "the emulator loads INT64 timestamps only as TIMESTAMP(MICROS): AWS documents no COPY mapping of other"
            " units and Spectrum has misread INT64 timestamps from other writers; write timestamps as INT64"
            " TIMESTAMP(MICROS) (docs/redshift-emulator.md, 'COPY from S3')"
        )
    if column.kind == "nested":
        return (
            "a nested Parquet column (struct, list or map) loads only into a SUPER column with SERIALIZETOJSON,"
            " which the emulator does not model; flatten it"
        )
    if allowed is None:
        return f"a Parquet {column.kind} column loads into no Redshift column type in COPY"
    if target.pg_type not in allowed:
        names = sorted({_REDSHIFT_NAMES.get(t, t.upper()) for t in allowed})
        return f"a Parquet {column.kind} column loads only into {' or '.join(names)}, not {target.redshift_type}"
    if column.kind == "decimal":
        assert column.precision is not None and column.scale is not None  # noqa: S101 - set for decimals
        assert target.precision is not None and target.scale is not None  # noqa: S101 - set for numeric
        if column.scale != target.scale or column.precision > target.precision:
            return (
                f"DECIMAL({column.precision},{column.scale}) loads only into a DECIMAL with the same scale and at"
                f" least its precision, not {target.redshift_type}"
            )
    return None
