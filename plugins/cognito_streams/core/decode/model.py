"""What goes into the decoder and what comes out: a shard's records, the options, and the decoded batch
(rows of changes, rejects, pending ``S3Url`` payloads, the full text of cut values, counts)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from cognito_streams.core.decode.rules import VALUE_MAX_BYTES
from cognito_streams.core.landing_format import CHANGES_SCHEMA


@dataclass
class KinesisRecords:
    """One shard's records in stream order, as parallel lists (what GetRecords returned)."""

    data: list[bytes]
    sequence_numbers: list[str]
    arrived_at_ms: list[int]
    partition_keys: list[str] | None = None
    #: Given when the records are already KPL user records; else 0 and set by de-aggregation.
    sub_sequence_numbers: list[int] | None = None

    def __post_init__(self) -> None:
        n = len(self.data)
        lengths = {len(self.sequence_numbers), len(self.arrived_at_ms)}
        if self.partition_keys is not None:
            lengths.add(len(self.partition_keys))
        if self.sub_sequence_numbers is not None:
            lengths.add(len(self.sub_sequence_numbers))
        if lengths != {n}:
            raise ValueError(f"KinesisRecords lists differ in length: data has {n}, others {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.data)

    def slice(self, lo: int, hi: int) -> KinesisRecords:
        """Records ``[lo, hi)``."""
        return KinesisRecords(
            self.data[lo:hi],
            self.sequence_numbers[lo:hi],
            self.arrived_at_ms[lo:hi],
            self.partition_keys[lo:hi] if self.partition_keys is not None else None,
            self.sub_sequence_numbers[lo:hi] if self.sub_sequence_numbers is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Reject:
    """One quarantined record: where it was, why, and its raw bytes."""

    sequence_number: str
    sub_sequence_number: int
    arrived_at_ms: int
    reason: str
    detail: str
    raw: bytes
    identity_pool_id: str | None = None
    identity_id: str | None = None
    dataset_name: str | None = None


@dataclass(frozen=True, slots=True)
class PendingPayload:
    """A valid ``S3Url`` record whose records are behind a presigned URL, still to be fetched."""

    sequence_number: str
    sub_sequence_number: int
    arrived_at_ms: int
    url: str
    raw: bytes
    identity_pool_id: str | None
    identity_id: str | None
    dataset_name: str | None


@dataclass(frozen=True, slots=True)
class CutValue:
    """The exact text of a value the changes file holds cut or escaped, and where it must be kept."""

    ref: str
    text: bytes


#: Columns that hold one value for a whole batch: dictionary-encoded in memory.
CONSTANT_COLUMNS = ("stream_name", "shard_id", "landed_file")
#: Columns dictionary-encoded in memory: the constants, the record-level text every row of a record
#: repeats (encoded once per chunk over the records, not the rows), the keys (encoded anyway for the
#: repeated-key check), and the few values of ``op`` and ``payload_type`` (one dictionary for all
#: chunks). Each row then carries a 4-byte code, and the Parquet encoder writes these dictionaries as
#: they are instead of hashing every row's text.
CODED_COLUMNS = (
    *CONSTANT_COLUMNS,
    "identity_pool_id",
    "identity_id",
    "dataset_name",
    "record_key",
    "op",
    "payload_type",
)
#: The decoder's table: CHANGES_SCHEMA, with CODED_COLUMNS dictionary-encoded. Its Parquet file reads
#: back as exactly CHANGES_SCHEMA; ``.cast(CHANGES_SCHEMA)`` gives it in memory. The record-level
#: columns' dictionaries differ from chunk to chunk: compare two decodes after that cast.
DECODED_SCHEMA = pa.schema(
    [
        pa.field(f.name, pa.dictionary(pa.int32(), pa.string()), f.nullable) if f.name in CODED_COLUMNS else f
        for f in CHANGES_SCHEMA
    ]
)


def empty_changes() -> pa.Table:
    """A changes table with no rows."""
    # Not DECODED_SCHEMA.empty_table(): it goes through pyarrow's pandas layer.
    return pa.Table.from_batches([], schema=DECODED_SCHEMA)


@dataclass
class Decoded:
    """What :func:`~cognito_streams.core.decode.decode_records` made of a batch."""

    changes: pa.Table
    rejects: list[Reject] = field(default_factory=list)
    pending: list[PendingPayload] = field(default_factory=list)
    cut_values: list[CutValue] = field(default_factory=list)
    records_read: int = 0
    records_landed: int = 0
    #: How many records went through the exact per-record check (the slow path), for the logs.
    records_checked_slowly: int = 0
    parser_restarts: int = 0

    @property
    def records_rejected(self) -> int:
        """Quarantined records."""
        return len(self.rejects)

    def add(self, part: Decoded) -> None:
        """Add a chunk's rejects, payloads, cut values and counts (not its rows)."""
        self.rejects.extend(part.rejects)
        self.pending.extend(part.pending)
        self.cut_values.extend(part.cut_values)
        self.records_read += part.records_read
        self.records_landed += part.records_landed
        self.records_checked_slowly += part.records_checked_slowly
        self.parser_restarts += part.parser_restarts


@dataclass(frozen=True)
class DecodeOptions:
    """Where the rows go and how values are cut (the rules' settings), and how the work is cut (the speed
    machinery's)."""

    stream_name: str
    shard_id: str
    landed_file: str
    #: ``(sequence_number, sub_sequence_number, record_index) -> s3 URI`` of a cut value's full text.
    value_ref: Callable[[str, int, int], str]
    value_max_bytes: int = VALUE_MAX_BYTES
    #: The configured identity pools (the settings' ``identity_pool_ids``): a record of another pool is
    #: rejected as ``unknown_identity_pool``. None: not checked (tools and tests; the landing always sets it).
    identity_pool_ids: tuple[str, ...] | None = None
    #: Records are decoded in chunks of about this many bytes, two at a time (bounds memory; several
    #: chunks per batch keep both threads busy to the end).
    chunk_bytes: int = 4 * 2**20
    #: The JSON reader's block size once a record broke it: each further such record that no screen
    #: catches costs a reader start and the re-read of its block.
    block_bytes: int = 128 * 2**10
    #: The block size while the batch is clean (fewer blocks, each with its fixed costs).
    fast_block_bytes: int = 2**20
    #: The records are ``S3Url`` records whose fetched records were put in ``kinesisSyncRecords``.
    resolved_s3url: bool = False
    use_threads: bool = True
    #: Parse with the schema-specific parser (:mod:`cognito_streams.core.decode.fastparse`), falling back per
    #: chunk to the pyarrow reader with its screens and restarts only when the fast parser is unsure of
    #: a record the exact check accepts. False: always the pyarrow path (kept to compare the two).
    fast_parse: bool = True


#: Receives the rows of a batch piece by piece, in stream order, while the decoder goes on (see
#: :func:`~cognito_streams.core.decode.decode_records`): e.g. the landing's Parquet writer, encoding each
#: piece as a row group.
RowSink = Callable[[pa.Table], None]
