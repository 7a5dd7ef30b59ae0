"""The pyarrow path: a chunk parsed by a streaming ``pyarrow.json`` reader with the explicit READ_SCHEMA,
kept as the exact fallback of the fast parser (``DecodeOptions.fast_parse=False`` takes it always).

It runs when the fast parser flags a record that the exact check accepts (one it cannot read exactly
as pyarrow does, e.g. a member name with an escape), or when a column outgrows 32-bit offsets: rare.
What it buys: pyarrow's reading of JSON is the reference the fast parser is tested against, so a chunk
the fast parser is unsure of is still read exactly. What it costs: half to a third of the fast
parser's speed (pyarrow.json alone ~190 MB/s, 154 MB per CPU-second vs 335 for the fast parser on the
benchmark's chunks, docs/performance.md), and machinery to survive bad records: a record the screens
let through breaks the reader (a string where an integer is read, a repeated member), so the reader's
row number points at it, it is checked and blanked, and reading resumes at the failing block (the
blocks read before are kept). Each restart costs a reader start and the re-read of its block (about
0.5–1 ms), so after a restart the blocks shrink to 128 KiB, and RE2 screens per kind of reader-breaking
record (:data:`MEMBER_SCREENS`, 2–9 GB/s each) are turned on for the rest of the batch once they would
have saved more restarts than they cost. A record the exact check accepts but the reader still refuses
is found by bisection and rejected with the reader's words.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from cognito_streams.core.decode import shape
from cognito_streams.core.decode.chunk import Chunk, records_array
from cognito_streams.core.decode.columns import as_numpy
from cognito_streams.core.decode.model import DecodeOptions
from cognito_streams.core.decode.rules import (
    ITEM_FIELDS,
    ITEM_INT_FIELDS,
    ITEM_STRING_FIELDS,
    READ_SCHEMA,
    TOP_FIELDS,
    TOP_INT_FIELDS,
    TOP_STRING_FIELDS,
)

PARSE_OPTIONS = pj.ParseOptions(explicit_schema=READ_SCHEMA, unexpected_field_behavior="ignore")
#: pyarrow.json's default block size.
_READER_DEFAULT_BLOCK = 2**20
_ROW_HINT = re.compile(r" in row (\d+)\s*$")

# Records that would break the JSON reader for a reason the first screen cannot see: a non-integer
# where an integer is read, a non-string where a string is read, a non-array kinesisSyncRecords.
# A match is only a suspicion: the exact check decides. SUSPECT_PATTERN looks for one in the block
# where the reader failed without naming a row; MEMBER_SCREENS screen whole chunks.
_INT_MEMBERS = "|".join(dict.fromkeys((*TOP_INT_FIELDS, *ITEM_INT_FIELDS)))
_STR_MEMBERS = "|".join(dict.fromkeys((*TOP_STRING_FIELDS, *ITEM_STRING_FIELDS)))
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
#: have caught cost more than its threshold in restarts per MB read (see ``BatchState``). A restart costs
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
        for name in dict.fromkeys(TOP_FIELDS + ITEM_FIELDS)
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


@dataclass
class BatchState:
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


def _regex_screen(chunk: Chunk, lo: int, hi: int | None = None, pattern: str = SUSPECT_PATTERN) -> list[int]:
    """Records in ``[lo, hi)`` that the RE2 ``pattern`` finds suspicious (and not yet blanked)."""
    hi = chunk.n if hi is None else min(hi, chunk.n)
    if lo >= hi:
        return []
    matches = pc.match_substring_regex(records_array(chunk, lo, hi), pattern)
    found = np.flatnonzero(as_numpy(pc.fill_null(matches, False))) + lo
    return [int(i) for i in found if int(i) not in chunk.errors]


def member_screen(chunk: Chunk, screens: tuple[int, ...] | list[int], lo: int) -> list[int]:
    """Records from ``lo`` on that the given MEMBER_SCREENS find suspicious, in order."""
    if not screens:
        return []
    found: set[int] = set()
    for i in screens:
        found.update(_regex_screen(chunk, lo, pattern=MEMBER_SCREENS[i][0]))
    return sorted(found)


def parse(chunk: Chunk, options: DecodeOptions, state: BatchState) -> tuple[pa.Table, int]:
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
                pa.BufferReader(buffer.slice(start)), read_options=read_options, parse_options=PARSE_OPTIONS
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
            for index in member_screen(chunk, unapplied, failed_at):
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
            parse_options=PARSE_OPTIONS,
        )
        if table.num_rows != chunk.n:
            raise RuntimeError(
                f"decoder invariant broken: {chunk.n} records parsed into {table.num_rows} rows after the exact check"
            )
    return table, restarts


def _explain_failure(chunk: Chunk, failed_at: int, message: str, block_bytes: int) -> int:
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


def _readable(chunk: Chunk, a: int, b: int) -> bool:
    """The JSON reader reads records ``[a, b)`` into exactly ``b - a`` rows."""
    if a >= b:
        return True
    part = bytes(chunk.blob[int(chunk.starts[a]) : int(chunk.starts[b - 1] + chunk.lengths[b - 1])]) + b"\n"
    read_options = pj.ReadOptions(block_size=chunk.block_bytes(_READER_DEFAULT_BLOCK))
    try:
        table = pj.read_json(pa.BufferReader(part), read_options=read_options, parse_options=PARSE_OPTIONS)
    except pa.ArrowInvalid:
        return False
    return bool(table.num_rows == b - a)


def _bisect_unreadable(chunk: Chunk, lo: int) -> int:
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
