"""One chunk of a batch: its records joined as NDJSON, with the positions needed to blank a record, and
the byte screens that run on every chunk before it is parsed.

What it buys: one buffer per chunk that both parsers read without a copy per record, and a bad record
*blanked* in place (``{}`` and spaces, the same length) so that one parsed row still stands for one
record and no offset moves. The screens are cheap vectorized tests over the joined bytes (the first and
last byte of each record with numpy, one UTF-8 validation of the whole chunk, which stops at its first bad
byte): on the benchmark's 4 MB chunks a fraction of a millisecond, where the exact check of every record
(orjson, then ``json`` for repeated names) would cost more than the whole decode. What it costs: a
record that passes the screens can still be bad; the parsers find it (fast parser: a flag; pyarrow: a
reader error) and send it to the same exact check (:mod:`~cognito_streams.core.decode.shape`).
"""

from __future__ import annotations

import re

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from cognito_streams.core.decode import shape
from cognito_streams.core.decode.kpl import KPL_MAGIC

_OPEN, _CLOSE, _NEWLINE = ord("{"), ord("}"), ord("\n")


def _blank_bytes(length: int) -> bytes:
    return b"{}" + b" " * (length - 2)


class Chunk:
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


def screen(chunk: Chunk) -> list[int]:
    """Indices of records that may not parse: cheap vectorized tests over the joined bytes."""
    raw = np.frombuffer(chunk.blob, dtype=np.uint8)
    first = raw[chunk.starts]
    last = raw[chunk.starts + chunk.lengths - 1]
    suspect = (first != _OPEN) | (last != _CLOSE)
    if chunk.short:
        suspect[list(chunk.short)] = True
    # The whole chunk validates fastest as one string (and stops at its first bad byte when it is not).
    if not chunk.blob.isascii() and not _valid_utf8(chunk.blob):
        suspect |= invalid_utf8_records(chunk)
    return np.flatnonzero(suspect).tolist()


def records_array(chunk: Chunk, lo: int = 0, hi: int | None = None) -> pa.Array:
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


def invalid_utf8_records(chunk: Chunk, group: int = 64) -> np.ndarray:
    """Which records hold invalid UTF-8 (Python's strict decoder decides).

    The records are validated as one string array: the validation stops at the first bad record and
    names it, and goes on after it (one pass over the chunk in all, one call per bad record; groups of
    64 records validated one by one cost twice as much). Each call costs tens of microseconds (an
    exception), so past UTF8_NAMED_MAX bad records in one chunk (a producer that sends no UTF-8 at all)
    the rest goes by groups, whose cost does not grow with the number of bad records.
    """
    bad = np.zeros(chunk.n, dtype=bool)
    strings = records_array(chunk).view(pa.large_string())
    lo = named_count = 0
    while lo < chunk.n:
        try:
            strings.slice(lo).validate(full=True)
        except pa.ArrowInvalid as err:
            named = _UTF8_INDEX.search(str(err))
            named_count += 1
            if named is None or named_count > UTF8_NAMED_MAX:
                # Another message, or many bad records: validate groups of records, then single records.
                bad[lo:] = invalid_utf8_groups(chunk, strings, lo, group)
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


def invalid_utf8_groups(chunk: Chunk, strings: pa.Array, lo: int, group: int) -> np.ndarray:
    """Records from ``lo`` on holding invalid UTF-8: validate groups of records, then single records."""
    bad = np.zeros(chunk.n - lo, dtype=bool)
    for start in range(lo, chunk.n, group):
        try:
            strings.slice(start, group).validate(full=True)
        except pa.ArrowInvalid:
            for i in range(start, min(start + group, chunk.n)):
                bad[i - lo] = _invalid_utf8(chunk.data[i])
    return bad
