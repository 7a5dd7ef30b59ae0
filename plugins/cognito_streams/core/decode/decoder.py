"""Decode Cognito Streams records (the data of Kinesis records) into rows of the landing zone's
changes file (:data:`~cognito_streams.core.landing_format.CHANGES_SCHEMA`), quarantining every
record that cannot be decoded with the reason.

Pure: no Airflow, no AWS calls. Input is one shard's records in stream order
(:class:`KinesisRecords`); output (:class:`Decoded`) is a pyarrow Table of changes, the rejects
with their raw bytes, the ``S3Url`` payloads still to fetch, and the full text of values that
had to be cut.

How it stays fast with bad records in the input (see docs/landing.md, "Decoding"):

1. KPL-aggregated records are expanded first (``aws_kinesis_agg``); each user record keeps its
   Kinesis sequence number and gets its sub-sequence number.
2. Records are decoded in chunks of a few MB, two chunks at a time on worker threads. A cheap
   vectorized screen (first and last byte, one UTF-8 validation of the whole chunk) sends the few
   suspicious records to the exact per-record check (:mod:`cognito_streams.core.shape`); bad ones
   are *blanked* (replaced by ``{}`` padded to the same length) so that one row still stands for
   one record.
3. The chunk is parsed by the schema-specific parser (:mod:`cognito_streams.core.fastparse`), which
   reads every record exactly as the ``pyarrow.json`` reader below would, or flags it: flagged records
   go to the exact check and are blanked when bad (the parser gave them a blank row already). Only a
   flagged record the check accepts sends the chunk to the pyarrow path (``DecodeOptions.fast_parse``
   False: always):
   the chunk is parsed as NDJSON by a streaming ``pyarrow.json`` reader with an explicit schema. If
   a record the screen let through still breaks the reader (a wrong JSON type, a repeated member...),
   the reader's row number points at it: it is checked, blanked, and reading resumes at the failing
   block — the blocks read before are kept. Each such restart is matched against
   :data:`MEMBER_SCREENS` (RE2 patterns anchored on a member name, one per kind of reader-breaking
   record); a screen is turned on for the rest of the batch once the restarts it would have saved
   cost more than it does, so the records of that kind are blanked before they reach the reader.
4. Semantic checks (missing ids, unknown ``op``/``payloadType``, negative counts, repeated record
   keys...) are vectorized masks over the parsed columns; kinesisSyncRecords is flattened with
   ``list_flatten``/``list_parent_indices``.

Every record read ends in exactly one place: landed (decoded, possibly with zero changes), rejected,
or pending (an ``S3Url`` payload to fetch), so ``read = landed + rejected + pending``.
"""

from __future__ import annotations

import contextlib
import io
import re
import string
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from cognito_streams.core import fastparse, shape
from cognito_streams.core.landing_format import (
    CHANGES_SCHEMA,
    OP_DATASET_REMOVE,
    OP_REMOVE,
    OP_REPLACE,
    TIMESTAMP_TYPE,
)
from cognito_streams.core.values import ESCAPED_NUL, stored_key, stored_value

PAYLOAD_INLINE = "Inline"
PAYLOAD_S3URL = "S3Url"
PAYLOAD_TYPES = (PAYLOAD_INLINE, PAYLOAD_S3URL)
OPERATIONS = (OP_REPLACE, OP_REMOVE)

#: Largest epoch-millisecond date accepted (9999-12-31T23:59:59.999Z); Redshift TIMESTAMP and Parquet hold it.
MAX_DATE_MS = 253_402_300_799_999

KPL_MAGIC = b"\xf3\x89\x9a\xc2"
_STDERR_LOCK = threading.Lock()

_ITEM_TYPE = pa.struct(
    [
        pa.field("key", pa.string()),
        pa.field("value", pa.string()),
        pa.field("syncCount", pa.int64()),
        pa.field("lastModifiedDate", pa.int64()),
        pa.field("deviceLastModifiedDate", pa.int64()),
        pa.field("op", pa.string()),
    ]
)

#: What the JSON reader reads of a record; every other member is ignored, whatever its type.
READ_SCHEMA = pa.schema(
    [
        pa.field("identityPoolId", pa.string()),
        pa.field("identityId", pa.string()),
        pa.field("dataSetName", pa.string()),
        pa.field("datasetName", pa.string()),
        pa.field("operation", pa.string()),
        pa.field("kinesisSyncRecords", pa.list_(_ITEM_TYPE)),
        pa.field("lastModifiedDate", pa.int64()),
        pa.field("kinesisSyncRecordsURL", pa.string()),
        pa.field("payloadType", pa.string()),
        pa.field("syncCount", pa.int64()),
    ]
)
_PARSE_OPTIONS = pj.ParseOptions(explicit_schema=READ_SCHEMA, unexpected_field_behavior="ignore")

_TS = TIMESTAMP_TYPE
#: Cognito's dates are epoch milliseconds; the landing contract's timestamps are microseconds.
_US_PER_MS = 1000
#: pyarrow.json's default block size.
_READER_DEFAULT_BLOCK = 2**20
_ROW_HINT = re.compile(r" in row (\d+)\s*$")
_OPEN, _CLOSE, _NEWLINE = ord("{"), ord("}"), ord("\n")

# Records that would break the JSON reader for a reason the first screen cannot see: a non-integer
# where an integer is read, a non-string where a string is read, a non-array kinesisSyncRecords.
# A match is only a suspicion: the exact check decides. SUSPECT_PATTERN looks for one in the block
# where the reader failed without naming a row; MEMBER_SCREENS screen whole chunks.
_INT_MEMBERS = "syncCount|lastModifiedDate|deviceLastModifiedDate"
_STR_MEMBERS = (
    "identityPoolId|identityId|dataSetName|datasetName|operation|payloadType|kinesisSyncRecordsURL|key|value|op"
)
SUSPECT_PATTERN = "|".join(
    [
        rf'"(?:{_INT_MEMBERS})"\s*:\s*(?:[^\s\-0-9n]|-?[0-9]+[^\s0-9,}}\]]|-?[0-9]{{19}})',
        rf'"(?:{_STR_MEMBERS})"\s*:\s*[^\s"n]',
        r'"kinesisSyncRecords"\s*:\s*(?:[^\s\[n]|\[\s*[^\s{\]n])',
    ]
)
_BAD_INT = r'"\s*:\s*(?:[^\s\-0-9n]|-?[0-9]+[^\s0-9,}\]]|-?[0-9]{19})'
_BAD_STR = r'"\s*:\s*[^\s"n]'
_VALUE = r'(?:"(?:[^"\\]|\\.)*"|[^\s,{}\[\]"]+)'  # a string or a scalar
#: Where the screen for a member repeated right after its value starts: the end of the member's name
#: that begins with the rarest byte (an upper-case letter where there is one). RE2 jumps from one
#: occurrence of the pattern's first bytes to the next, so a common first byte ("d" of dataSetName)
#: makes it stop everywhere in the values: 1.2 ms per 4 MB chunk for ``dataSetName``, 0.4 for ``Name``.
#: Never a piece that the next member of a usual record repeats (``Id`` would take identityPoolId
#: followed by identityId for a repeat).
_REPEAT_STARTS = {
    "identityPoolId": "PoolId",
    "dataSetName": "Name",
    "datasetName": "Name",
    "operation": "ration",
    "payloadType": "Type",
    "kinesisSyncRecordsURL": "URL",
    "syncCount": "Count",
    "kinesisSyncRecords": "SyncRecords",
    "deviceLastModifiedDate": "LastModifiedDate",
}
#: Screens for what breaks the reader, each turned on for the rest of a batch once the records it would
#: have caught cost more than its threshold in restarts per MB read (see ``_BatchState``). A restart costs
#: a reader start, a block's fixed costs and the re-read of the failing block (about 0.7 ms with
#: 128 KiB blocks); a screen costs one RE2 pass. Each pattern starts with a literal piece of a member
#: name, so RE2 skips from one occurrence of it to the next: 2-9 GB/s, against 0.5 GB/s for
#: SUSPECT_PATTERN, whose every alternative starts with a quote. The type screens together match every
#: record SUSPECT_PATTERN matches (and a few more: any member with such an ending).
MEMBER_SCREENS: tuple[tuple[str, float], ...] = (
    ("Count" + _BAD_INT, 0.5),  # syncCount
    ("Date" + _BAD_INT, 0.5),  # lastModifiedDate, deviceLastModifiedDate
    ("Id" + _BAD_STR, 0.5),  # identityPoolId, identityId
    ("Name" + _BAD_STR, 0.5),  # dataSetName, datasetName
    ("ration" + _BAD_STR, 0.5),  # operation
    ("Type" + _BAD_STR, 0.5),  # payloadType
    ("URL" + _BAD_STR, 0.5),  # kinesisSyncRecordsURL
    ("key" + _BAD_STR, 0.5),
    ("value" + _BAD_STR, 0.5),
    ("op" + _BAD_STR, 0.5),
    (r'Records"\s*:\s*(?:[^\s\[n]|\[\s*[^\s{\]n])', 0.5),  # kinesisSyncRecords
    # A member name repeated right after its first value (a repeat further away costs a restart; the
    # screen looks no further since that would mean reading on to the end of the object each time).
    *(
        (rf'{_REPEAT_STARTS.get(name, name)}"\s*:\s*{_VALUE}\s*,\s*"{name}"\s*:', 0.5)
        for name in dict.fromkeys(shape.TOP_FIELDS + shape.ITEM_FIELDS)
    ),
)
#: The same screens for one record at a time (Python's ``re`` reads them alike): which of them would
#: have caught a record that broke the reader.
_MEMBER_SCREENS_RE = tuple(re.compile(pattern.encode()) for pattern, _ in MEMBER_SCREENS)
#: After a restart, chunks are read in the smaller ``block_bytes`` (the next restart re-reads less) until
#: this many bytes went by without one (the screens turned on meanwhile caught the rest).
CALM_BYTES = 8 * 2**20
#: A screen is turned on after more than this many restarts it would have saved (one odd record early in
#: a batch is no trend). Low, because both threads start a batch with no screen on: every restart
#: before a screen turns on is paid twice over (1-2 ms each), while a screen that turned on for nothing
#: costs about 1 ms per 4 MB chunk (the benchmark's batch: 23-31 restarts with 4, 12-15 with 1, the
#: same screens on in the end).
SCREEN_MIN_RESTARTS = 1
#: Chunks decoded at once on worker threads.
DECODE_THREADS = 2


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


@dataclass
class Decoded:
    """What :func:`decode_records` made of a batch."""

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


@dataclass(frozen=True)
class DecodeOptions:
    """Where the rows go and how values are cut."""

    stream_name: str
    shard_id: str
    landed_file: str
    #: ``(sequence_number, sub_sequence_number, record_index) -> s3 URI`` of a cut value's full text.
    value_ref: Callable[[str, int, int], str]
    value_max_bytes: int = 65_535
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
    #: Parse with the schema-specific parser (:mod:`cognito_streams.core.fastparse`), falling back per
    #: chunk to the pyarrow reader with its screens and restarts only when the fast parser is unsure of
    #: a record the exact check accepts. False: always the pyarrow path (kept to compare the two).
    fast_parse: bool = True


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


# -- KPL ------------------------------------------------------------------------------------------


def deaggregate(records: KinesisRecords) -> tuple[KinesisRecords, list[Reject]]:
    """Expand KPL-aggregated records into their user records (sub-sequence numbers 0, 1, ...).

    An aggregate that does not de-aggregate (bad digest, bad protobuf) is rejected as
    ``kpl_bad_aggregate``. Records without the KPL magic prefix pass through unchanged.
    """
    expanded, rejects = _deaggregate(records)
    return expanded, [reject for _, reject in rejects]


def _deaggregate(records: KinesisRecords) -> tuple[KinesisRecords, list[tuple[int, Reject]]]:
    """:func:`deaggregate`, each reject with its place in stream order: the number of user records
    before it."""
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    data: list[bytes] = []
    seqs: list[str] = []
    arrived: list[int] = []
    keys: list[str] = []
    subs: list[int] = []
    rejects: list[tuple[int, Reject]] = []
    partition_keys = records.partition_keys or [""] * len(records)
    given_subs = records.sub_sequence_numbers or [0] * len(records)
    for raw, seq, at, key, sub in zip(
        records.data, records.sequence_numbers, records.arrived_at_ms, partition_keys, given_subs, strict=True
    ):
        if not raw.startswith(KPL_MAGIC):
            data.append(raw)
            seqs.append(seq)
            arrived.append(at)
            keys.append(key)
            subs.append(sub)
            continue
        boto_record = {"Data": raw, "SequenceNumber": seq, "PartitionKey": key, "ApproximateArrivalTimestamp": at}
        # The library prints a dump of the record (values included) to stderr when a sub-record is
        # malformed, then stops; keep that out of the logs and treat it as a bad aggregate.
        errors = io.StringIO()
        # redirect_stderr swaps the process-wide sys.stderr: one thread at a time.
        with _STDERR_LOCK, contextlib.redirect_stderr(errors):
            users = list(iter_deaggregate_records([boto_record], data_format="Boto3"))
        # A record that does not de-aggregate comes back as itself, without the "aggregated" flag.
        not_expanded = not users or not all(u.get("kinesis", {}).get("aggregated") for u in users)
        if errors.getvalue() or not_expanded:
            why = "a sub-record is malformed" if errors.getvalue() else "bad MD5 digest or protobuf message"
            reject = Reject(seq, sub, at, "kpl_bad_aggregate", f"KPL aggregate could not be de-aggregated: {why}", raw)
            rejects.append((len(data), reject))
            continue
        for user in users:
            kinesis = user["kinesis"]
            data.append(_b64(kinesis["data"]))
            seqs.append(seq)
            arrived.append(at)
            keys.append(kinesis.get("partitionKey") or key)
            subs.append(int(kinesis["subSequenceNumber"]))
    return KinesisRecords(data, seqs, arrived, keys, subs), rejects


def _b64(value: bytes | str) -> bytes:
    import base64

    return base64.b64decode(value)


# -- the decoder ----------------------------------------------------------------------------------


#: Receives the rows of a batch piece by piece, in stream order, while the decoder goes on (see
#: :func:`decode_records`): e.g. the landing's Parquet writer, encoding each piece as a row group.
RowSink = Callable[[pa.Table], None]


def decode_records(records: KinesisRecords, options: DecodeOptions, sink: RowSink | None = None) -> Decoded:
    """Decode one shard's records into changes, rejects and pending ``S3Url`` payloads.

    Never raises for bad input: every record is landed, rejected with a reason, or pending.

    ``sink``, when given, is called with each chunk's rows (never an empty table) in stream order,
    as soon as the chunk and every chunk before it are decoded, on the calling thread: while it
    runs, the worker threads decode the next chunks. Concatenated, the tables it received are
    ``Decoded.changes``.
    """
    out = Decoded(changes=empty_changes())
    state = _BatchState()
    plan, several = _chunk_plan(records.data, options.chunk_bytes)

    def work(chunk: tuple[int, int, np.ndarray]) -> _ChunkResult:
        lo, hi, lengths = chunk
        return _decode_whole_chunk(records.slice(lo, hi), options, state, lengths)

    tables: list[pa.Table] = []

    def take(result: _ChunkResult) -> None:
        table = result.merge_into(out)
        if table.num_rows:
            tables.append(table)
            if sink is not None:
                sink(table)

    # Each chunk is decoded whole (joined, screened, parsed, checked, turned into rows) on one of two
    # worker threads, so both cores stay busy (pyarrow and numpy release the GIL); results are taken
    # in chunk order, so the output does not depend on which thread finished first. The sink (the
    # Parquet encoder, which releases the GIL too) runs meanwhile on this thread, so that the
    # batch's file is done shortly after its last chunk instead of after a serial encode of all.
    if not options.use_threads or not several:
        for chunk in plan:
            take(work(chunk))
    else:
        with ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="decode") as pool:
            # map submits each chunk as the plan yields it: the first one decodes while this thread
            # reads the lengths of the others.
            for result in pool.map(work, plan):
                take(result)
    if tables:
        out.changes = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return out


@dataclass
class _ChunkResult:
    """What one chunk gave: its rows, and its rejects, pending payloads, cut values and counts."""

    table: pa.Table
    part: Decoded

    def merge_into(self, out: Decoded) -> pa.Table:
        """Add this chunk's rejects, payloads, cut values and counts to ``out``; return its rows."""
        part = self.part
        out.rejects.extend(part.rejects)
        out.pending.extend(part.pending)
        out.cut_values.extend(part.cut_values)
        out.records_read += part.records_read
        out.records_landed += part.records_landed
        out.records_checked_slowly += part.records_checked_slowly
        out.parser_restarts += part.parser_restarts
        return self.table


def _decode_whole_chunk(
    records: KinesisRecords, options: DecodeOptions, state: _BatchState, lengths: np.ndarray | None = None
) -> _ChunkResult:
    chunk = _Chunk(records.data, lengths)
    part = Decoded(changes=empty_changes())
    kpl_rejects: list[tuple[int, Reject]] = []
    if chunk.may_hold_kpl():
        records, kpl_rejects = _deaggregate(records)
        part.records_read += len(kpl_rejects)
        chunk = _Chunk(records.data)
    for index in _screen(chunk):
        chunk.check(index)
    table = _fast_parse(chunk, state) if options.fast_parse else None
    if table is None:
        screens = state.screens
        chunk.screened.update(screens)
        for index in _member_screen(chunk, screens, 0):
            chunk.check(index)
        table, part.parser_restarts = _parse(chunk, options, state)
    part.records_read += len(records)
    part.records_checked_slowly += chunk.checked
    return _ChunkResult(_decode_chunk(records, chunk, table, options, part, kpl_rejects), part)


@dataclass
class _BatchState:
    """What the chunks of a batch learn about it (shared by the worker threads; updates are guarded
    by the lock)."""

    #: Indices into MEMBER_SCREENS of the screens turned on.
    screens: tuple[int, ...] = ()
    restarts: int = 0
    #: Restarts each member screen would have saved.
    catchable: list[int] = field(default_factory=lambda: [0] * len(MEMBER_SCREENS))
    #: Bytes the reader has gone through (restarts included), in all and when it last restarted.
    bytes_parsed: int = 0
    bytes_at_restart: int = -1
    lock: threading.Lock = field(default_factory=threading.Lock)

    def restarted_lately(self) -> bool:
        """The reader restarted within the last CALM_BYTES read."""
        return self.bytes_at_restart >= 0 and self.bytes_parsed - self.bytes_at_restart < CALM_BYTES

    def parsed(self, nbytes: int) -> None:
        """Count bytes the reader went through."""
        with self.lock:
            self.bytes_parsed += nbytes

    def restarted(self, culprit: bytes) -> None:
        """Count a restart caused by ``culprit``; turn on the member screens that have become worth it."""
        would_catch = [i for i, screen in enumerate(_MEMBER_SCREENS_RE) if screen.search(culprit)]
        with self.lock:
            self.restarts += 1
            self.bytes_at_restart = self.bytes_parsed
            parsed_mb = self.bytes_parsed / 2**20
            new = []
            for i in would_catch:
                self.catchable[i] += 1
                threshold = max(SCREEN_MIN_RESTARTS, MEMBER_SCREENS[i][1] * parsed_mb)
                if i not in self.screens and self.catchable[i] > threshold:
                    new.append(i)
            self.screens = (*self.screens, *new)


def _chunk_plan(data: list[bytes], chunk_bytes: int) -> tuple[Iterator[tuple[int, int, np.ndarray]], bool]:
    """The chunks of :func:`_chunks` with their records' lengths, and whether there are several.

    Reading a record's length is a cache miss on its header (~0.2 µs; 10-14 ms for a 64 MB batch).
    In a batch of at least two chunks, the first chunk is the same whatever the rest (``chunk_bytes``
    from the start), so it is yielded once the lengths of its own records and the next chunk's are
    read, and the rest are read while it decodes.
    """
    n = len(data)
    head: list[np.ndarray] = []
    head_bytes = read = 0
    step = 1024
    while read < n and head_bytes < 2 * chunk_bytes:
        part = np.fromiter(map(len, data[read : read + step]), dtype=np.int64)
        head.append(part)
        head_bytes += int(part.sum()) + len(part)
        read += len(part)
    if read >= n:  # a small batch: every length is known already
        lengths = np.concatenate(head) if head else np.zeros(0, dtype=np.int64)
        chunks = [(lo, hi, lengths[lo:hi]) for lo, hi in _chunks(lengths, chunk_bytes)]
        return iter(chunks), len(chunks) > 1

    def plan() -> Iterator[tuple[int, int, np.ndarray]]:
        known = np.concatenate(head)
        # The lengths read so far cover at least two chunks, so their first chunk is the batch's.
        _, first_hi = next(_chunks(known, chunk_bytes))
        yield 0, first_hi, known[:first_hi]
        rest = np.fromiter(map(len, data[read:]), dtype=np.int64, count=n - read)
        lengths = np.concatenate([known, rest])
        bounds = _chunks(lengths, chunk_bytes)
        if next(bounds) != (0, first_hi):
            raise RuntimeError("decoder invariant broken: the first chunk changed once every length was known")
        for lo, hi in bounds:
            yield lo, hi, lengths[lo:hi]

    return plan(), True


#: The smallest chunk, as a fraction of ``chunk_bytes``: the last ones of a batch get smaller (see ``_chunks``).
TAIL_CHUNK_DIVISOR = 8


def _chunks(lengths: np.ndarray, chunk_bytes: int) -> Iterator[tuple[int, int]]:
    """Bounds of the chunks: ``chunk_bytes`` each, but never more than half of what remains (down to
    ``chunk_bytes / TAIL_CHUNK_DIVISOR``). The worker threads take chunks as they finish, so the
    last one to finish idles for up to one chunk while the other decodes its last: with the tail of
    a batch in ever smaller chunks that is a fraction of a MB instead of a whole chunk. ``lengths``:
    the records' lengths in bytes."""
    n = len(lengths)
    if not n:
        return
    ends = np.cumsum(lengths + 1)
    total = int(ends[-1])
    smallest = max(1, chunk_bytes // TAIL_CHUNK_DIVISOR)
    lo = 0
    while lo < n:
        base = int(ends[lo - 1]) if lo else 0
        size = min(chunk_bytes, max(smallest, (total - base) // DECODE_THREADS))
        if total - base - size < smallest:
            size = total - base  # not a sliver of a chunk at the very end
        hi = int(np.searchsorted(ends, base + size, side="left")) + 1
        hi = min(max(hi, lo + 1), n)
        yield lo, hi
        lo = hi


def _blank_bytes(length: int) -> bytes:
    return b"{}" + b" " * (length - 2)


class _Chunk:
    """One chunk of records joined as NDJSON, with the positions needed to blank a record."""

    def __init__(self, data: list[bytes], lengths: np.ndarray | None = None) -> None:
        #: the records as read (what a reject keeps)
        self.data = data
        self.n = len(data)
        #: record index -> the shape error that made it blank
        self.errors: dict[int, shape.ShapeError] = {}
        self.checked = 0
        self.newlines_fixed = False
        #: MEMBER_SCREENS (indices) already run on the chunk
        self.screened: set[int] = set()
        if lengths is None:
            lengths = np.fromiter(map(len, data), dtype=np.int64, count=self.n)
        else:
            lengths = lengths.copy()  # short records' entries are changed below
        parts = data
        short = np.flatnonzero(lengths < 2)
        if len(short):
            # Too short to be an object, and too short to blank in place: stand "{}" in for them now
            # (the screen sends them to the exact check, which rejects them).
            parts = list(data)
            for index in short.tolist():
                parts[index] = b"{}"
            lengths[short] = 2
        self.short = set(short.tolist())
        self._build(parts, lengths)

    def _build(self, parts: list[bytes], lengths: np.ndarray) -> None:
        self.parts = parts
        self.lengths = lengths
        self.starts = np.zeros(self.n, dtype=np.int64)
        if self.n > 1:
            np.cumsum(lengths[:-1] + 1, out=self.starts[1:])
        # The trailing empty part gives the last newline without resizing (copying) the joined bytes.
        self.blob = bytearray(b"\n").join([*parts, b""])
        for index in self.errors:
            self._blank_in_place(index)

    def block_bytes(self, wanted: int) -> int:
        """A JSON reader block size of at least ``wanted`` that holds the chunk's largest record: the
        reader cannot read an object (nor a blanked record's padding) larger than its block, and
        resolved ``S3Url`` records can be several MB."""
        largest = int(self.lengths.max()) if self.n else 0
        return max(wanted, largest + 2)

    def first_bytes(self) -> np.ndarray:
        """The first byte of every record (as joined)."""
        return np.frombuffer(self.blob, dtype=np.uint8)[self.starts]

    def contains(self, pattern: str) -> bool:
        """The joined bytes match the RE2 ``pattern`` (for a literal: memchr speed, where ``in`` is 10
        times slower)."""
        whole = pa.Array.from_buffers(
            pa.large_binary(),
            1,
            [None, pa.py_buffer(np.array([0, len(self.blob)], dtype=np.int64)), pa.py_buffer(self.blob)],
        )
        return bool(pc.match_substring_regex(whole, pattern)[0].as_py())

    def may_hold_kpl(self) -> bool:
        """Some record starts like a KPL aggregate (0xF3 ...)."""
        return bool(self.n) and bool((self.first_bytes() == KPL_MAGIC[0]).any())

    def fix_newlines(self) -> bool:
        """Compact (or blank, when bad) records spanning several lines; True if the blob changed.

        Done only when the reader has failed: a record with a newline inside always breaks it, and
        counting newlines up front would cost every clean batch a pass over its bytes.
        """
        self.newlines_fixed = True
        # numpy counts 4x faster than bytearray.count
        if np.count_nonzero(np.frombuffer(self.blob, dtype=np.uint8) == _NEWLINE) == self.n:
            return False
        parts = list(self.parts)
        lengths = self.lengths.copy()
        for index, item in enumerate(parts):
            if b"\n" in item:
                self.checked += 1
                error = shape.check_shape(item)
                if error is not None:
                    self.errors[index] = error
                    parts[index] = b"{}"
                else:
                    parts[index] = orjson.dumps(orjson.loads(item))
                lengths[index] = len(parts[index])
        self._build(parts, lengths)
        return True

    def _blank_in_place(self, index: int) -> None:
        start, length = int(self.starts[index]), int(self.lengths[index])
        self.blob[start : start + length] = _blank_bytes(length)

    def blank(self, index: int, error: shape.ShapeError) -> None:
        """Replace record ``index`` by ``{}`` and spaces of the same length: one row, all nulls."""
        self.errors[index] = error
        self._blank_in_place(index)

    def check(self, index: int) -> shape.ShapeError | None:
        """Run the exact check on record ``index``; blank it when it is bad."""
        self.checked += 1
        error = shape.check_shape(self.data[index])
        if error is not None:
            self.blank(index, error)
        return error


def _screen(chunk: _Chunk) -> list[int]:
    """Indices of records that may not parse: cheap vectorized tests over the joined bytes."""
    raw = np.frombuffer(chunk.blob, dtype=np.uint8)
    first = raw[chunk.starts]
    last = raw[chunk.starts + chunk.lengths - 1]
    suspect = (first != _OPEN) | (last != _CLOSE)
    if chunk.short:
        suspect[list(chunk.short)] = True
    # The whole chunk validates fastest as one string (and stops at its first bad byte when it is not).
    if not chunk.blob.isascii() and not _valid_utf8(chunk.blob):
        suspect |= _invalid_utf8_records(chunk)
    return np.flatnonzero(suspect).tolist()


def _records_array(chunk: _Chunk, lo: int = 0, hi: int | None = None) -> pa.Array:
    """The chunk's records ``[lo, hi)`` as a binary array over the joined bytes (no copy)."""
    hi = chunk.n if hi is None else hi
    offsets = np.empty(hi - lo + 1, dtype=np.int64)
    # Element i spans its record and the newline after it (ASCII: harmless to the checks made here).
    offsets[:-1] = chunk.starts[lo:hi]
    offsets[-1] = chunk.starts[hi - 1] + chunk.lengths[hi - 1] if hi > lo else 0
    return pa.Array.from_buffers(pa.large_binary(), hi - lo, [None, pa.py_buffer(offsets), pa.py_buffer(chunk.blob)])


def _valid_utf8(data: bytes | bytearray) -> bool:
    arr = pa.Array.from_buffers(
        pa.large_string(), 1, [None, pa.py_buffer(np.array([0, len(data)], dtype=np.int64)), pa.py_buffer(data)]
    )
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


#: Arrow's UTF-8 validation names the first string that fails.
_UTF8_INDEX = re.compile(r"Invalid UTF8 sequence at string index (\d+)")
#: Bad records of a chunk found one validation call each, before the rest goes by groups of records.
UTF8_NAMED_MAX = 32


def _invalid_utf8_records(chunk: _Chunk, group: int = 64) -> np.ndarray:
    """Which records hold invalid UTF-8 (Python's strict decoder decides).

    The records are validated as one string array: the validation stops at the first bad record and
    names it, and goes on after it (one pass over the chunk in all, one call per bad record; groups of
    64 records validated one by one cost twice as much). Each call costs tens of microseconds (an
    exception), so past UTF8_NAMED_MAX bad records in one chunk (a producer that sends no UTF-8 at all)
    the rest goes by groups, whose cost does not grow with the number of bad records.
    """
    bad = np.zeros(chunk.n, dtype=bool)
    strings = _records_array(chunk).view(pa.large_string())
    lo = named_count = 0
    while lo < chunk.n:
        try:
            strings.slice(lo).validate(full=True)
        except pa.ArrowInvalid as err:
            named = _UTF8_INDEX.search(str(err))
            named_count += 1
            if named is None or named_count > UTF8_NAMED_MAX:
                # Another message, or many bad records: validate groups of records, then single records.
                bad[lo:] = _invalid_utf8_groups(chunk, strings, lo, group)
                break
            index = lo + int(named.group(1))
            bad[index] = _invalid_utf8(chunk.data[index])
            lo = index + 1
            continue
        break
    return bad


def _invalid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _invalid_utf8_groups(chunk: _Chunk, strings: pa.Array, lo: int, group: int) -> np.ndarray:
    """Records from ``lo`` on holding invalid UTF-8: validate groups of records, then single records."""
    bad = np.zeros(chunk.n - lo, dtype=bool)
    for start in range(lo, chunk.n, group):
        try:
            strings.slice(start, group).validate(full=True)
        except pa.ArrowInvalid:
            for i in range(start, min(start + group, chunk.n)):
                bad[i - lo] = _invalid_utf8(chunk.data[i])
    return bad


def _regex_screen(chunk: _Chunk, lo: int, hi: int | None = None, pattern: str = SUSPECT_PATTERN) -> list[int]:
    """Records in ``[lo, hi)`` that the RE2 ``pattern`` finds suspicious (and not yet blanked)."""
    hi = chunk.n if hi is None else min(hi, chunk.n)
    if lo >= hi:
        return []
    matches = pc.match_substring_regex(_records_array(chunk, lo, hi), pattern)
    found = np.flatnonzero(_np(pc.fill_null(matches, False))) + lo
    return [int(i) for i in found if int(i) not in chunk.errors]


def _member_screen(chunk: _Chunk, screens: tuple[int, ...] | list[int], lo: int) -> list[int]:
    """Records from ``lo`` on that the given MEMBER_SCREENS find suspicious, in order."""
    if not screens:
        return []
    found: set[int] = set()
    for i in screens:
        found.update(_regex_screen(chunk, lo, pattern=MEMBER_SCREENS[i][0]))
    return sorted(found)


def _fast_parse(chunk: _Chunk, state: _BatchState) -> pa.Table | None:
    """The chunk parsed by :func:`fastparse.parse`, or None when the pyarrow path must decide.

    Each record the fast parser flags goes to the exact check. Bad ones are blanked, and the fast
    parser already gave a flagged record the all-null row of a blanked one, so the table stands as it
    is. Records over several lines are compacted or blanked (as the pyarrow path does) and the chunk
    parsed again. A flagged record the check accepts (one the fast parser cannot read exactly like
    pyarrow, say a member name with an escape) sends the whole chunk to the pyarrow path, which reads
    it as before; the records already blanked stay blanked, as that path would have blanked them too.
    """
    for _ in range(2):
        parsed = fastparse.parse(chunk.blob, chunk.starts, chunk.lengths, READ_SCHEMA)
        if parsed is None:
            return None
        table, flagged = parsed
        state.parsed(len(chunk.blob))
        newlines = False
        for index in np.flatnonzero(flagged).tolist():
            if not chunk.newlines_fixed and b"\n" in chunk.data[index]:
                # A record over several lines: the pyarrow path compacts (or blanks) it; so does this.
                newlines = True
            elif index in chunk.errors or chunk.check(index) is None:
                # A blanked record parses unflagged; one flagged anyway, or that the check accepts, is
                # not read here exactly as pyarrow reads it.
                return None
        if not newlines:
            return table
        chunk.fix_newlines()
    return None


def _parse(chunk: _Chunk, options: DecodeOptions, state: _BatchState) -> tuple[pa.Table, int]:
    """Parse the chunk's NDJSON into one row per record.

    The chunk is read as a stream of blocks (single-threaded: the chunks of a batch are parsed in
    parallel instead). A failure keeps the blocks read so far: the culprit is found (the reader names
    its row), blanked, and reading resumes at the failing block, never at the start of the chunk.
    """
    buffer = pa.py_buffer(chunk.blob)
    batches: list[pa.RecordBatch] = []
    done = 0  # records parsed into `batches`
    restarts = 0
    while done < chunk.n:
        # Large blocks while the batch is clean (fewer per-block costs); smaller ones once a record
        # broke the reader, since each further one costs a re-read of about half a block.
        block = chunk.block_bytes(options.block_bytes if state.restarted_lately() else options.fast_block_bytes)
        read_options = pj.ReadOptions(use_threads=False, block_size=block)
        start = int(chunk.starts[done])
        got = 0
        try:
            for batch in pj.open_json(
                pa.BufferReader(buffer.slice(start)), read_options=read_options, parse_options=_PARSE_OPTIONS
            ):
                batches.append(batch)
                got += batch.num_rows
        except pa.ArrowInvalid as err:
            if not chunk.newlines_fixed and chunk.fix_newlines():
                buffer, batches, done = pa.py_buffer(chunk.blob), [], 0  # offsets changed: start over
                continue
            failed_at = done + got
            state.parsed(min(len(buffer), int(chunk.starts[min(failed_at, chunk.n - 1)]) + block) - start)
            restarts += 1
            culprit = _explain_failure(chunk, failed_at, str(err), block)
            # Screens turned on since this chunk was screened (by this restart or another chunk's) are
            # run on the rest of it.
            state.restarted(chunk.data[culprit])
            unapplied = [i for i in state.screens if i not in chunk.screened]
            chunk.screened.update(unapplied)
            for index in _member_screen(chunk, unapplied, failed_at):
                chunk.check(index)
            # The batches read before the failure are kept; the next reader starts at the failing block.
            done = failed_at
            continue
        state.parsed(len(buffer) - start)
        done += got
        if got == 0:
            break
    table = pa.Table.from_batches(batches, schema=READ_SCHEMA)
    if len(batches) > 1:
        # The checks and rows after this run some 60 compute kernels over each column: once per
        # block of a fragmented table, which costs more than this one copy.
        table = table.combine_chunks()
    if table.num_rows != chunk.n:
        # A line held more than one JSON document ("{...} {...}"), or a record spanned lines.
        if not chunk.newlines_fixed:
            chunk.fix_newlines()
        for index in range(chunk.n):
            if index not in chunk.errors:
                chunk.check(index)
        table = pj.read_json(
            pa.BufferReader(pa.py_buffer(chunk.blob)),
            read_options=pj.ReadOptions(block_size=chunk.block_bytes(_READER_DEFAULT_BLOCK)),
            parse_options=_PARSE_OPTIONS,
        )
        if table.num_rows != chunk.n:
            raise RuntimeError(
                f"decoder invariant broken: {chunk.n} records parsed into {table.num_rows} rows after the exact check"
            )
    return table, restarts


def _explain_failure(chunk: _Chunk, failed_at: int, message: str, block_bytes: int) -> int:
    """Find and blank the record (at or after ``failed_at``) that made the JSON reader fail; its index."""
    hint = _ROW_HINT.search(message)
    if hint is not None:
        index = failed_at + int(hint.group(1))
        if index < chunk.n and index not in chunk.errors and chunk.check(index) is not None:
            return index
    # No usable row number (a conversion error such as a fraction where an integer is read, or the
    # exact check disagrees): the culprit is in the failing block; look at RE2's suspects there
    # first, then at each record in order.
    window_end = int(np.searchsorted(chunk.starts, chunk.starts[failed_at] + 2 * block_bytes)) + 1
    for index in _regex_screen(chunk, failed_at, window_end):
        if chunk.check(index) is not None:
            return index
    for index in range(failed_at, chunk.n):
        if index not in chunk.errors and chunk.check(index) is not None:
            return index
        if index >= window_end:
            break
    # The exact check accepts every record here but the reader does not: find the record the
    # reader rejects by bisection and quarantine it with the reader's own words.
    index = _bisect_unreadable(chunk, failed_at)
    chunk.blank(index, shape.ShapeError("invalid_json", f"the JSON reader rejected it: {_safe_message(message)}"))
    return index


def _readable(chunk: _Chunk, a: int, b: int) -> bool:
    """The JSON reader reads records ``[a, b)`` into exactly ``b - a`` rows."""
    if a >= b:
        return True
    part = bytes(chunk.blob[int(chunk.starts[a]) : int(chunk.starts[b - 1] + chunk.lengths[b - 1])]) + b"\n"
    read_options = pj.ReadOptions(block_size=chunk.block_bytes(_READER_DEFAULT_BLOCK))
    try:
        table = pj.read_json(pa.BufferReader(part), read_options=read_options, parse_options=_PARSE_OPTIONS)
    except pa.ArrowInvalid:
        return False
    return bool(table.num_rows == b - a)


def _bisect_unreadable(chunk: _Chunk, lo: int) -> int:
    """The first record from ``lo`` on that the reader cannot read."""
    hi = chunk.n
    if _readable(chunk, lo, hi):
        raise RuntimeError("the JSON reader failed on records it reads without error when retried")
    # Invariant: [lo, hi) is unreadable; shrink it to its first unreadable record.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if not _readable(chunk, lo, mid):
            hi = mid
        elif not _readable(chunk, mid, hi):
            lo = mid
        else:
            break  # only the two halves together fail: check records one by one
    for index in range(lo, hi):
        if not _readable(chunk, index, index + 1):
            return index
    raise RuntimeError("the JSON reader failed on records it reads without error one by one")


def _safe_message(message: str) -> str:
    """The reader's message without any fragment of the record (conversion errors quote the value)."""
    message = message.split("couldn't parse:", 1)[0].strip()
    return message.removeprefix("JSON parse error: ")[:200]


# -- semantic checks and rows --------------------------------------------------------------------

#: Cognito Sync's documented shapes (API reference: IdentityPoolId, IdentityId, DatasetName). Their
#: ``\w`` is Java's, ASCII only: spelled out, since RE2's and Python's ``\w`` take any letter (40
#: three-byte letters would pass, and fail Redshift's COPY into varchar(64) with 120 bytes). Matching
#: text is ASCII, so its length in characters is its width in bytes in the warehouse.
ID_PATTERN = "^[A-Za-z0-9_-]+:[0-9a-f-]+$"
DATASET_PATTERN = "^[A-Za-z0-9_.:-]+$"
_WORD = string.ascii_letters + string.digits + "_"
#: The patterns as tables of the bytes allowed (``fastparse.shaped`` reads the dictionaries' bytes).
_ID_REGION_BYTES = np.zeros(256, dtype=bool)
_ID_REGION_BYTES[list((_WORD + "-").encode())] = True
_ID_REST_BYTES = np.zeros(256, dtype=bool)
_ID_REST_BYTES[list(b"0123456789abcdef-")] = True
_DATASET_BYTES = np.zeros(256, dtype=bool)
_DATASET_BYTES[list((_WORD + ".:-").encode())] = True
_COLON = ord(":")
MAX_ID_CHARS = 55
MAX_DATASET_CHARS = 128
#: Cognito's limit on a record key. 1,024 characters take at most 4,096 UTF-8 bytes, the width of
#: ``record_key``, escaped or not (core/values.py: an escape doubles a one-byte character).
MAX_KEY_CHARS = 1024
_ID_SHAPE = "(Cognito's shape: [A-Za-z0-9_-]+:[0-9a-f-]+, at most 55 characters)"

# Reason and detail of each record-level check, in the order they are applied (the first wins).
_CHECKS: list[tuple[str, str]] = [
    ("duplicate_keys", "dataSetName and datasetName are both given and differ"),
    ("missing_field", "identityPoolId is missing or empty"),
    ("missing_field", "identityId is missing or empty"),
    ("missing_field", "dataSetName (or datasetName) is missing or empty"),
    ("missing_field", "operation is missing"),
    ("unknown_op", "operation is not replace or remove"),
    ("missing_field", "payloadType is missing"),
    ("unknown_payload_type", "payloadType is not Inline or S3Url"),
    ("missing_field", "syncCount is missing"),
    ("bad_field_type", "syncCount is negative"),
    ("missing_field", "lastModifiedDate is missing"),
    ("bad_field_type", "lastModifiedDate is not an epoch-millisecond date between 1970 and 9999"),
    ("missing_field", "kinesisSyncRecordsURL is missing or empty (payloadType S3Url)"),
    ("missing_field", "kinesisSyncRecords is missing (operation replace)"),
    ("invalid_identifier", f"identityPoolId is not an identity pool id {_ID_SHAPE}"),
    ("invalid_identifier", f"identityId is not an identity id {_ID_SHAPE}"),
    (
        "invalid_identifier",
        f"the dataset name is not a dataset name (Cognito's shape: [A-Za-z0-9_.:-]+, at most {MAX_DATASET_CHARS} "
        "characters)",
    ),
    ("unknown_identity_pool", "identityPoolId is not one of the configured identity_pool_ids"),
    ("identity_region_mismatch", "the region of identityId (before ':') is not its identityPoolId's region"),
]
# Element-level checks: a record with a bad element is rejected whole (a sync is all or nothing).
_ITEM_CHECKS: list[tuple[str, str]] = [
    ("missing_field", "is null"),
    ("missing_field", ".key is missing or empty"),
    ("missing_field", ".op is missing"),
    ("unknown_op", ".op is not replace or remove"),
    ("missing_field", ".syncCount is missing"),
    ("bad_field_type", ".syncCount is negative"),
    ("missing_field", ".lastModifiedDate is missing"),
    ("bad_field_type", ".lastModifiedDate is not an epoch-millisecond date between 1970 and 9999"),
    ("bad_field_type", ".deviceLastModifiedDate is not an epoch-millisecond date between 1970 and 9999"),
    ("bad_field_type", f".key is longer than {MAX_KEY_CHARS} characters (Cognito's limit)"),
    ("duplicate_keys", ".key repeats the key of an earlier element of the same record"),
]


def _np(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A null-free boolean or integer pyarrow array as numpy.

    Not ``to_numpy(zero_copy_only=False)``: for booleans (bit-packed, never zero-copy) pyarrow converts
    through its pandas layer, a few times slower than unpacking the bits.
    """
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks == 1:
            return _np(values.chunk(0))
        if values.num_chunks == 0:
            return _np(pa.array([], values.type))
        return np.concatenate([_np(chunk) for chunk in values.chunks])
    if values.null_count:
        raise ValueError(f"_np needs an array without nulls, got {values.null_count} null(s)")
    if pa.types.is_boolean(values.type):
        n, offset = len(values), values.offset
        if n == 0:
            return np.zeros(0, dtype=bool)
        bits = np.frombuffer(values.buffers()[1], dtype=np.uint8)
        return np.unpackbits(bits, count=offset + n, bitorder="little")[offset:].view(bool)
    return np.asarray(values.to_numpy(zero_copy_only=True))


# The checks below read the columns' buffers with numpy (validity bits, string offsets, int64 values)
# instead of chaining compute kernels (compare, fill_null, unpack): each kernel call is a pass and an
# allocation, and a chunk's checks made ~60 of them.


def _is_null(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return ~_validity(_array(values))


def _text_sizes(values: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(which slots are not null, each slot's size in bytes) of a string column, from its offsets."""
    array = _array(values)
    n, offset = len(array), array.offset
    offsets = array.buffers()[1]
    if offsets is None:  # no values at all
        return _validity(array), np.zeros(n, dtype=np.int64)
    kind = np.int64 if pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type) else np.int32
    ends = np.frombuffer(offsets, dtype=kind, count=offset + n + 1)[offset:]
    return _validity(array), np.diff(ends)


def _missing_text(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Null or empty string."""
    valid, sizes = _text_sizes(values)
    return ~valid | (sizes == 0)


def _equals(values: pa.ChunkedArray | pa.Array, text: str) -> np.ndarray:
    """Not null and equal to ``text``."""
    result = pc.equal(_array(values), text)
    data = result.buffers()[1]
    if data is None or not len(result):
        return np.zeros(len(result), dtype=bool)
    bits = np.frombuffer(data, dtype=np.uint8)
    equal = np.unpackbits(bits, count=result.offset + len(result), bitorder="little")[result.offset :].view(bool)
    return equal & _validity(result)


def _not_in(values: pa.ChunkedArray | pa.Array, allowed: tuple[str, ...]) -> np.ndarray:
    """Not null and not one of ``allowed``."""
    # For two allowed values, two equality tests take half the time of is_in's hash lookups.
    known = np.zeros(len(values), dtype=bool)
    for value in allowed:
        known |= _equals(values, value)
    return ~known & ~_is_null(values)


def _bad_date(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Not null and outside [0, MAX_DATE_MS]."""
    numbers = _int64s(values)
    return _validity(_array(values)) & ((numbers < 0) | (numbers > MAX_DATE_MS))


def _longer(values: pa.ChunkedArray | pa.Array, chars: int) -> np.ndarray:
    """Not null and longer than ``chars`` characters."""
    # A character takes at least one byte: when no value has more than `chars` bytes (known from the
    # offsets alone), none has more characters, and counting them (a pass over the text) is saved.
    valid, sizes = _text_sizes(values)
    if not (valid & (sizes > chars)).any():
        return np.zeros(len(values), dtype=bool)
    return _np(pc.fill_null(pc.greater(pc.utf8_length(values), chars), False))


def _has_nul(values: pa.ChunkedArray | pa.Array, possible: bool = True) -> np.ndarray:
    """Not null and containing U+0000 (never, when not ``possible``)."""
    if not possible:
        return np.zeros(len(values), dtype=bool)
    return _np(pc.fill_null(pc.match_substring(values, "\x00"), False))


def _per_record(per_entry: np.ndarray, codes: _Codes) -> np.ndarray:
    """A property of each distinct value (``per_entry``, one per dictionary entry) for each record."""
    if not len(per_entry):  # no value at all: every record is null, and rejected for that already
        return np.zeros(len(codes.codes), dtype=bool)
    return per_entry[np.clip(codes.codes, 0, len(per_entry) - 1)]


def _id_shaped(strings: pa.Array) -> np.ndarray:
    """Which of ``strings`` (no nulls) match ID_PATTERN and are at most MAX_ID_CHARS long."""
    return fastparse.shaped(strings, _ID_REGION_BYTES, _ID_REST_BYTES, _COLON, MAX_ID_CHARS)


def _dataset_shaped(strings: pa.Array) -> np.ndarray:
    """Which of ``strings`` (no nulls) match DATASET_PATTERN and are at most MAX_DATASET_CHARS long."""
    return fastparse.shaped(strings, _DATASET_BYTES, _DATASET_BYTES, -1, MAX_DATASET_CHARS)


def _identifier_masks(
    pool: _Codes, identity: _Codes, dataset: _Codes, configured: tuple[str, ...] | None
) -> list[np.ndarray]:
    """The masks of the identifier checks, in ``_CHECKS`` order: pool id, identity id and dataset name
    not of Cognito's shape; pool not configured (never, when ``configured`` is None); identity id of
    another region than its pool. Each is decided once per distinct value (the chunk's dictionaries)."""
    pools, identities = pool.dictionary, identity.dictionary
    pool_shaped = _id_shaped(pools)
    pool_ok = pool_shaped.copy()
    if configured is not None:
        pool_ok &= _np(pc.is_in(pools, value_set=pa.array(configured, pa.string())))
    # The region is what comes before the ':'. One pass over the identities per region of a pool that
    # passed the checks before (the configured ones: a few), records of other pools being rejected anyway.
    same_region = np.zeros(len(pool.codes), dtype=bool)
    by_region: dict[str, list[int]] = {}
    for j in np.flatnonzero(pool_ok).tolist():
        by_region.setdefault(str(pools[j].as_py()).split(":", 1)[0], []).append(j)
    for region, entries in by_region.items():
        of_region = np.zeros(len(pools), dtype=bool)
        of_region[entries] = True
        prefixed = _np(pc.starts_with(identities, region + ":"))
        same_region |= _per_record(of_region, pool) & _per_record(prefixed, identity)
    return [
        ~_per_record(pool_shaped, pool),
        ~_per_record(_id_shaped(identities), identity),
        ~_per_record(_dataset_shaped(dataset.dictionary), dataset),
        ~_per_record(pool_ok, pool),
        ~same_region,
    ]


def _stored_keys(keys: pa.DictionaryArray, nul: bool) -> pa.DictionaryArray:
    """``keys`` with each key in its stored form (:func:`cognito_streams.core.values.stored_key`: escaped
    when it holds U+0000 or the text ``\\0``), decided once per distinct key."""
    dictionary = keys.dictionary
    odd = _np(pc.match_substring(dictionary, ESCAPED_NUL))
    if nul:
        odd |= _has_nul(dictionary)
    if not odd.any():
        return keys
    texts = dictionary.to_pylist()
    for i in np.flatnonzero(odd).tolist():
        texts[i] = stored_key(texts[i])
    return pa.DictionaryArray.from_arrays(keys.indices, pa.array(texts, pa.string()))


def _negative(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Not null and below zero."""
    return _validity(_array(values)) & (_int64s(values) < 0)


def _decode_chunk(
    records: KinesisRecords,
    chunk: _Chunk,
    table: pa.Table,
    options: DecodeOptions,
    out: Decoded,
    early: list[tuple[int, Reject]] | None = None,
) -> pa.Table:
    """Semantic checks and rows for one parsed chunk. ``early`` are rejects made before the records
    were parsed (bad KPL aggregates), each with the number of records before it: they join the
    chunk's rejects in stream order."""
    n = chunk.n
    seqs = records.sequence_numbers
    subs = records.sub_sequence_numbers if records.sub_sequence_numbers is not None else [0] * n
    arrived = records.arrived_at_ms

    reason = np.full(n, -1, dtype=np.int16)  # index into _CHECKS, or -1
    blank = np.zeros(n, dtype=bool)
    if chunk.errors:
        blank[list(chunk.errors)] = True

    pool = table.column("identityPoolId")
    identity = table.column("identityId")
    dataset, conflict = _dataset(table.column("dataSetName"), table.column("datasetName"))
    operation = table.column("operation")
    payload = table.column("payloadType")
    event_sync = table.column("syncCount")
    event_date = table.column("lastModifiedDate")
    url = table.column("kinesisSyncRecordsURL")
    items = table.column("kinesisSyncRecords")

    # JSON text holds U+0000 only as the escape \u0000 (or, invalid, as a raw NUL byte): without either in
    # the chunk, no parsed string holds it, and the searches for it in the keys and values are saved.
    nul = b"\x00" in chunk.blob or chunk.contains(r"\\u0000")
    is_s3url = _equals(payload, PAYLOAD_S3URL)
    inline_like = ~is_s3url if not options.resolved_s3url else np.ones(n, dtype=bool)
    is_remove = _equals(operation, OP_REMOVE)
    items_null = _is_null(items)
    # The rows carry these as codes into a dictionary per chunk; the identifier checks read them there too.
    pool_codes, identity_codes, dataset_codes = _Codes.of(pool), _Codes.of(identity), _Codes.of(dataset)
    masks = [
        conflict,
        _missing_text(pool),
        _missing_text(identity),
        _missing_text(dataset),
        _is_null(operation),
        _not_in(operation, OPERATIONS),
        _is_null(payload),
        _not_in(payload, PAYLOAD_TYPES),
        _is_null(event_sync),
        _negative(event_sync),
        _is_null(event_date),
        _bad_date(event_date),
        is_s3url & ~inline_like & _missing_text(url),
        inline_like & items_null & ~is_remove,
        *_identifier_masks(pool_codes, identity_codes, dataset_codes, options.identity_pool_ids),
    ]
    for check, mask in enumerate(masks):
        np.copyto(reason, check, where=mask & (reason < 0) & ~blank)

    # Elements of kinesisSyncRecords, for the records that carry them inline.
    flat = pc.list_flatten(items)
    parents = _np(pc.list_parent_indices(items)).astype(np.int64, copy=False)
    lengths = _np(pc.fill_null(pc.list_value_length(items), 0)).astype(np.int64, copy=False)
    first_item = np.cumsum(lengths) - lengths
    positions = np.arange(len(parents), dtype=np.int64) - first_item[parents]
    item_reason = np.full(n, -1, dtype=np.int16)
    item_where = np.zeros(n, dtype=np.int64)
    keys = pc.dictionary_encode(pa.array([], pa.string()))
    if len(parents):
        used = inline_like[parents] & ~blank[parents] & (reason[parents] < 0)
        key = pc.struct_field(flat, "key")
        # One hashing pass over the keys serves the repeated-key check and the rows' record_key (codes
        # into it: the Parquet encoder then writes this dictionary instead of hashing the keys again).
        keys = pc.dictionary_encode(_array(key))
        op = pc.struct_field(flat, "op")
        sync = pc.struct_field(flat, "syncCount")
        date = pc.struct_field(flat, "lastModifiedDate")
        device = pc.struct_field(flat, "deviceLastModifiedDate")
        item_masks = [
            _is_null(flat),
            _missing_text(key),
            _is_null(op),
            _not_in(op, OPERATIONS),
            _is_null(sync),
            _negative(sync),
            _is_null(date),
            _bad_date(date),
            _bad_date(device),
            _longer(key, MAX_KEY_CHARS),
            _repeated_keys(parents, lengths, keys, used),
        ]
        for check, mask in enumerate(item_masks):
            bad = mask & used
            if not bad.any():
                continue
            bad_parents = parents[bad]
            fresh = item_reason[bad_parents] < 0
            # The first bad element of a record names the problem (np.unique keeps the first occurrence).
            uniq, first = np.unique(bad_parents[fresh], return_index=True)
            item_reason[uniq] = check
            item_where[uniq] = positions[bad][fresh][first]
            used &= item_reason[parents] < 0
    bad_item_record = (item_reason >= 0) & (reason < 0) & ~blank

    # Rejects, in stream order (whichever check found them, however the batch was cut into chunks) -------
    rejected = blank | (reason >= 0) | bad_item_record
    if rejected.any() or early:
        # A reject made before record i (an aggregate that did not expand) sorts just before it.
        found: list[tuple[float, Reject]] = [(before - 0.5, reject) for before, reject in early or ()]
        ids_needed = np.flatnonzero((reason >= 0) | bad_item_record)
        id_cols = _pylists(ids_needed, pool, identity, dataset)
        for j, index in enumerate(ids_needed.tolist()):
            if reason[index] >= 0:
                why, detail = _CHECKS[reason[index]]
            else:
                why, suffix = _ITEM_CHECKS[item_reason[index]]
                separator = "" if suffix.startswith(".") else " "
                detail = f"kinesisSyncRecords[{item_where[index]}]{separator}{suffix}"
            reject = Reject(
                seqs[index], subs[index], arrived[index], why, detail, chunk.data[index], *(c[j] for c in id_cols)
            )
            found.append((index, reject))
        for index, error in chunk.errors.items():
            ids = (
                shape.identities(chunk.data[index])
                if error.identity_id is None and not error.ids_read
                else {
                    "identity_pool_id": error.identity_pool_id,
                    "identity_id": error.identity_id,
                    "dataset_name": error.dataset_name,
                }
            )
            reject = Reject(
                seqs[index], subs[index], arrived[index], error.reason, error.detail, chunk.data[index], **ids
            )
            found.append((index, reject))
        found.sort(key=lambda pair: pair[0])
        out.rejects.extend(reject for _, reject in found)

    # Pending S3Url payloads -----------------------------------------------------------------------
    ok = ~rejected
    pending = ok & is_s3url & ~inline_like
    if pending.any():
        where = np.flatnonzero(pending)
        urls, pools, idents, datasets = _pylists(where, url, pool, identity, dataset)
        for j, index in enumerate(where.tolist()):
            out.pending.append(
                PendingPayload(
                    seqs[index],
                    subs[index],
                    arrived[index],
                    str(urls[j]),
                    chunk.data[index],
                    pools[j],
                    idents[j],
                    datasets[j],
                )
            )
    landed = ok & ~pending
    out.records_landed += int(landed.sum())

    # Rows -----------------------------------------------------------------------------------------
    n_subs = np.asarray(subs, dtype=np.int64) if records.sub_sequence_numbers is not None else np.zeros(n, np.int64)
    context = _RowContext(
        options=options,
        seqs=pa.array(seqs, pa.string()),
        subs=n_subs,
        arrived=np.asarray(arrived, dtype=np.int64),
        # Rows are taken from landed records only, where these are never null (null is rejected above).
        pool=pool_codes,
        identity=identity_codes,
        dataset=dataset_codes,
        payload=is_s3url.astype(np.int32),
        event_sync=_int64s(event_sync),
        event_date=_int64s(event_date),
        keys=_Codes.encoded(_stored_keys(keys, nul)),
        nul=nul,
    )
    parts: list[pa.Table] = []
    if len(parents):
        keep = landed[parents]
        parts.append(_item_rows(context, flat, parents, positions, keep, out))
    removes = landed & is_remove & (lengths == 0)
    if removes.any():
        parts.append(_dataset_remove_rows(context, np.flatnonzero(removes)))
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return empty_changes()
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def _dataset(ds_a: pa.ChunkedArray, ds_b: pa.ChunkedArray) -> tuple[pa.ChunkedArray | pa.Array, np.ndarray]:
    """Each record's dataset name (``dataSetName``, else ``datasetName``), and which records give both
    spellings with different values.

    ``datasetName`` (the other spelling) is usually absent from a whole chunk: then the dataset is
    ``dataSetName`` as parsed, and nothing conflicts. When a few records carry it (a bad record among
    thousands), only those are compared: kernels over every record (a ``coalesce`` copies all the
    names, and its result dictionary-encodes slower) cost 0.2 ms per 4 MB chunk, a take of the few
    0.05 ms.
    """
    n = len(ds_a)
    conflict = np.zeros(n, dtype=bool)
    if ds_b.null_count == n:
        return ds_a, conflict
    given = np.flatnonzero(~_is_null(ds_b))
    taken = pa.array(given, pa.int64())
    a, b = _array(ds_a).take(taken), _array(ds_b).take(taken)
    conflict[given] = _np(pc.fill_null(pc.not_equal(a, b), False))
    # The coalesce differs from dataSetName only where that is null and datasetName is not.
    if a.null_count:
        return pc.coalesce(ds_a, ds_b), conflict
    return ds_a, conflict


#: Records with up to this many elements are checked for repeated keys by comparing shifted
#: columns (cheap); larger ones through a hash of (record, key).
PAIRWISE_MAX_ITEMS = 8


def _repeated_keys(parents: np.ndarray, lengths: np.ndarray, keys: pa.DictionaryArray, used: np.ndarray) -> np.ndarray:
    """Elements whose key already appeared in an earlier element of the same record (``keys``: the
    elements' keys, dictionary-encoded)."""
    m = len(parents)
    repeated = np.zeros(m, dtype=bool)
    # Equal keys have equal dictionary codes (-1: no key): one hashing pass, then integer comparisons
    # (half the time of comparing the strings shift by shift).
    codes = _np(pc.fill_null(keys.indices, -1)).astype(np.int64)
    longest = int(lengths.max(initial=0))
    # Element i and element i + d belong to the same record only if the record has > d elements.
    for d in range(1, min(longest, PAIRWISE_MAX_ITEMS)):
        same_record = parents[d:] == parents[:-d]
        if not same_record.any():
            break
        repeated[d:] |= same_record & (codes[d:] == codes[:-d]) & (codes[d:] >= 0)
    big = lengths[parents] > PAIRWISE_MAX_ITEMS
    if big.any():
        where = np.flatnonzero(big)
        big_codes = codes[where]
        composite = parents[where] * (int(big_codes.max(initial=0)) + 2) + (big_codes + 1)
        composite = np.where(big_codes >= 0, composite, -1 - np.arange(len(big_codes)))
        _, first = np.unique(composite, return_index=True)
        later = np.ones(len(where), dtype=bool)
        later[first] = False
        repeated[where[later]] = True
    return repeated & used


def _array(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """``values`` as one array (zero-copy when it is one chunk)."""
    if isinstance(values, pa.ChunkedArray):
        return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    return values


def _int64s(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """An int64 column's values as numpy, zero-copy; a null slot holds an arbitrary number (only for
    columns whose null slots are never taken)."""
    array = _array(values)
    data = array.buffers()[1]
    if data is None:
        return np.zeros(len(array), dtype=np.int64)
    return np.frombuffer(data, dtype=np.int64, count=array.offset + len(array))[array.offset :]


def _pylists(indices: np.ndarray, *columns: pa.ChunkedArray | pa.Array) -> list[list[str | None]]:
    taken = pa.array(indices, pa.int64())
    return [pc.take(column, taken).to_pylist() for column in columns]


@dataclass(frozen=True)
class _Codes:
    """A record-level text column dictionary-encoded once per chunk, so that the rows of each change
    carry 4-byte codes into it instead of copies of the text, and the Parquet encoder writes the
    dictionary as it is instead of hashing every row's text again."""

    #: Each record's code (meaningless for a null record: its rows are never taken).
    codes: np.ndarray
    dictionary: pa.Array

    @classmethod
    def of(cls, values: pa.ChunkedArray | pa.Array) -> _Codes:
        """Encode ``values`` (one hashing pass over the records, not the rows)."""
        return cls.encoded(pc.dictionary_encode(_array(values)))

    @classmethod
    def encoded(cls, encoded: pa.DictionaryArray) -> _Codes:
        """Codes of values already dictionary-encoded."""
        indices = encoded.indices
        codes = np.frombuffer(indices.buffers()[1], dtype=np.int32, count=indices.offset + len(indices))
        return cls(codes[indices.offset :], encoded.dictionary)

    def rows(self, where: np.ndarray) -> pa.DictionaryArray:
        """The values of records ``where`` (one per row)."""
        return _coded(self.codes[where], self.dictionary)


#: The dictionaries of ``op`` and ``payload_type``: the same in every chunk, so that the rows of two
#: chunks compare equal and the encoder keeps one dictionary per row group.
_OP_DICTIONARY = pa.array([OP_REPLACE, OP_REMOVE, OP_DATASET_REMOVE], pa.string())
_PAYLOAD_DICTIONARY = pa.array([PAYLOAD_INLINE, PAYLOAD_S3URL], pa.string())


def _coded(codes: np.ndarray, dictionary: pa.Array) -> pa.DictionaryArray:
    """The values ``dictionary[codes]``, dictionary-encoded (int32 codes)."""
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32, copy=False)), dictionary)


@dataclass
class _RowContext:
    options: DecodeOptions
    seqs: pa.Array
    subs: np.ndarray
    arrived: np.ndarray
    pool: _Codes
    identity: _Codes
    dataset: _Codes
    #: 1 for an S3Url record, else 0 (codes into _PAYLOAD_DICTIONARY)
    payload: np.ndarray
    event_sync: np.ndarray
    event_date: np.ndarray
    #: The elements' keys (``kinesisSyncRecords[].key``, flattened), in their stored form
    keys: _Codes
    #: The chunk may hold U+0000 in its text (else no value is searched for it)
    nul: bool

    def record_columns(self, where: np.ndarray) -> dict[str, pa.Array]:
        """The columns every row of record ``where`` repeats from it."""
        taken = pa.array(where, pa.int64())
        return {
            "identity_pool_id": self.pool.rows(where),
            "identity_id": self.identity.rows(where),
            "dataset_name": self.dataset.rows(where),
            "event_sync_count": pa.array(self.event_sync[where]),
            "event_last_modified_at": _ts_of(self.event_date[where]),
            "payload_type": _coded(self.payload[where], _PAYLOAD_DICTIONARY),
            "sequence_number": self.seqs.take(taken),
            "sub_sequence_number": pa.array(self.subs[where]),
            "arrived_at": _ts_of(self.arrived[where]),
        }


def _ts(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Epoch milliseconds (int64, nulls kept) as the contract's UTC microsecond timestamps. Only for dates
    checked to lie in 1970-9999 (``_bad_date``): their microseconds fit in 64 bits."""
    return pc.multiply(_array(values), _US_PER_MS).view(_TS)


def _ts_of(epoch_ms: np.ndarray) -> pa.Array:
    """Epoch milliseconds (int64, no nulls) as the contract's UTC microsecond timestamps."""
    return pa.Array.from_buffers(_TS, len(epoch_ms), [None, pa.py_buffer(epoch_ms * _US_PER_MS)])


def _repeat(value: str, n: int) -> pa.Array:
    """``n`` times ``value``, dictionary-encoded: 4 bytes a row instead of a copy of the text (the
    Parquet file stores these columns as strings; see ``landing.writer.parquet_bytes``)."""
    return _coded(np.zeros(n, dtype=np.int32), pa.array([value], pa.string()))


def _validity(array: pa.Array) -> np.ndarray:
    """Which slots of ``array`` are not null."""
    n, offset = len(array), array.offset
    bitmap = array.buffers()[0]
    if bitmap is None or not array.null_count:
        return np.ones(n, dtype=bool)
    bits = np.frombuffer(bitmap, dtype=np.uint8)
    return np.unpackbits(bits, count=offset + n, bitorder="little")[offset:].view(bool)


def _bitmap(valid: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def _item_rows(
    ctx: _RowContext,
    flat: pa.ChunkedArray,
    parents: np.ndarray,
    positions: np.ndarray,
    keep: np.ndarray,
    out: Decoded,
) -> pa.Table:
    options = ctx.options
    flat = _array(flat)
    is_remove = _equals(pc.struct_field(flat, "op"), OP_REMOVE)
    value = pc.struct_field(flat, "value")
    sync = pc.struct_field(flat, "syncCount")
    date = pc.struct_field(flat, "lastModifiedDate")
    device = pc.struct_field(flat, "deviceLastModifiedDate")
    if keep.all():
        elements = np.arange(len(keep))
    else:
        # Only the fields the rows copy are filtered (key and op become codes): the struct's other
        # children and validity are left alone.
        elements = np.flatnonzero(keep)
        mask = pa.array(keep)
        value, sync, date, device = (pc.filter(field, mask) for field in (value, sync, date, device))
        parents, positions, is_remove = parents[keep], positions[keep], is_remove[keep]
    m = len(parents)
    if m == 0:
        return empty_changes()
    # A removed key's value is null: the same text buffers under a validity bitmap without it (a copy of
    # every value by if_else cost more).
    value = _array(value)
    if value.offset:
        value = pa.concat_arrays([value])  # its offsets then start at row 0
    valid = _validity(value) & ~is_remove
    offsets = np.frombuffer(value.buffers()[1], dtype=np.int32, count=m + 1)
    sizes = np.diff(offsets).astype(np.int64)
    bitmap = _bitmap(valid)
    value = pa.Array.from_buffers(pa.string(), m, [bitmap, *value.buffers()[1:]])
    value_bytes = pa.Array.from_buffers(pa.int64(), m, [bitmap, pa.py_buffer(sizes)])
    # Flagged: cut (too long) or escaped (holds U+0000, which no warehouse text can): core/values.py.
    cut = valid & (sizes > options.value_max_bytes)
    if ctx.nul:
        cut |= valid & _has_nul(value)
    value_ref = pa.nulls(m, pa.string())
    if cut.any():
        value, value_ref = _cut_values(ctx, value, cut, parents, positions, out)
    columns = {
        **ctx.record_columns(parents),
        "record_key": ctx.keys.rows(elements),
        "op": _coded(is_remove.view(np.int8), _OP_DICTIONARY),
        "record_value": value,
        "value_bytes": value_bytes,
        "is_value_cut": pa.array(cut),
        "value_ref": value_ref,
        "sync_count": sync,
        "last_modified_at": _ts(date),
        "device_last_modified_at": _ts(device),
        "stream_name": _repeat(options.stream_name, m),
        "shard_id": _repeat(options.shard_id, m),
        "record_index": pa.array(positions.astype(np.int32)),
        "landed_file": _repeat(options.landed_file, m),
    }
    return _table(columns)


def _cut_values(
    ctx: _RowContext,
    value: pa.Array,
    cut: np.ndarray,
    parents: np.ndarray,
    positions: np.ndarray,
    out: Decoded,
) -> tuple[pa.Array, pa.Array]:
    options = ctx.options
    rows = np.flatnonzero(cut)
    full = pc.take(value, pa.array(rows)).to_pylist()
    refs: list[str | None] = [None] * len(value)
    cut_texts: list[str] = []
    for row, text in zip(rows.tolist(), full, strict=True):
        parent = int(parents[row])
        ref = options.value_ref(ctx.seqs[parent].as_py(), int(ctx.subs[parent]), int(positions[row]))
        refs[row] = ref
        out.cut_values.append(CutValue(ref, text.encode("utf-8")))
        cut_texts.append(stored_value(text, options.value_max_bytes).text)
    value = pc.replace_with_mask(value, pa.array(cut), pa.array(cut_texts, pa.string()))
    return value, pa.array(refs, pa.string())


def _dataset_remove_rows(ctx: _RowContext, where: np.ndarray) -> pa.Table:
    options = ctx.options
    m = len(where)
    record = ctx.record_columns(where)
    columns = {
        **record,
        "record_key": pa.DictionaryArray.from_arrays(pa.nulls(m, pa.int32()), ctx.keys.dictionary),
        "op": _coded(np.full(m, 2, dtype=np.int32), _OP_DICTIONARY),
        "record_value": pa.nulls(m, pa.string()),
        "value_bytes": pa.nulls(m, pa.int64()),
        "is_value_cut": pa.array(np.zeros(m, dtype=bool)),
        "value_ref": pa.nulls(m, pa.string()),
        "sync_count": record["event_sync_count"],
        "last_modified_at": record["event_last_modified_at"],
        "device_last_modified_at": pa.nulls(m, _TS),
        "stream_name": _repeat(options.stream_name, m),
        "shard_id": _repeat(options.shard_id, m),
        "record_index": pa.array(np.zeros(m, dtype=np.int32)),
        "landed_file": _repeat(options.landed_file, m),
    }
    return _table(columns)


def _table(columns: dict[str, pa.Array | pa.ChunkedArray]) -> pa.Table:
    arrays = []
    for schema_field in DECODED_SCHEMA:
        column = columns[schema_field.name]
        if isinstance(column, pa.Array):
            column = pa.chunked_array([column])
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=DECODED_SCHEMA)
