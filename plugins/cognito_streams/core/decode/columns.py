"""Column helpers for the decoder's checks and rows: numpy over the Arrow buffers of a parsed chunk.

What it buys: the checks and rows read the columns' validity bits, string offsets and int64 values with
numpy instead of chaining compute kernels (compare, fill_null, unpack): each kernel call is a pass and an
allocation, and a 4 MB chunk's checks made about 60 of them (docs/landing.md, "Decoding", step 4). What it
costs: these helpers know Arrow's buffer layout (offsets, bit-packed booleans), which a kernel would hide;
each says which columns it may be given (e.g. :func:`int64s` only where null slots are never read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: A column of a parsed chunk, whole or in pieces.
Column: TypeAlias = "pa.ChunkedArray | pa.Array"


def one_array(values: Column) -> pa.Array:
    """``values`` as one array (zero-copy when it is one chunk)."""
    if isinstance(values, pa.ChunkedArray):
        return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    return values


def as_numpy(values: Column) -> np.ndarray:
    """A null-free boolean or integer pyarrow array as numpy.

    Not ``to_numpy(zero_copy_only=False)``: for booleans (bit-packed, never zero-copy) pyarrow converts
    through its pandas layer, a few times slower than unpacking the bits.
    """
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks == 1:
            return as_numpy(values.chunk(0))
        if values.num_chunks == 0:
            return as_numpy(pa.array([], values.type))
        return np.concatenate([as_numpy(chunk) for chunk in values.chunks])
    if values.null_count:
        raise ValueError(f"as_numpy needs an array without nulls, got {values.null_count} null(s)")
    if pa.types.is_boolean(values.type):
        n, offset = len(values), values.offset
        if n == 0:
            return np.zeros(0, dtype=bool)
        bits = np.frombuffer(values.buffers()[1], dtype=np.uint8)
        return np.unpackbits(bits, count=offset + n, bitorder="little")[offset:].view(bool)
    return np.asarray(values.to_numpy(zero_copy_only=True))


def validity(array: pa.Array) -> np.ndarray:
    """Which slots of ``array`` are not null."""
    n, offset = len(array), array.offset
    bitmap = array.buffers()[0]
    if bitmap is None or not array.null_count:
        return np.ones(n, dtype=bool)
    bits = np.frombuffer(bitmap, dtype=np.uint8)
    return np.unpackbits(bits, count=offset + n, bitorder="little")[offset:].view(bool)


def bitmap(valid: np.ndarray) -> pa.Buffer:
    """A validity bitmap of ``valid``."""
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def is_null(values: Column) -> np.ndarray:
    """Null."""
    return ~validity(one_array(values))


def text_sizes(values: Column) -> tuple[np.ndarray, np.ndarray]:
    """(which slots are not null, each slot's size in bytes) of a string column, from its offsets."""
    array = one_array(values)
    n, offset = len(array), array.offset
    offsets = array.buffers()[1]
    if offsets is None:  # no values at all
        return validity(array), np.zeros(n, dtype=np.int64)
    kind = np.int64 if pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type) else np.int32
    ends = np.frombuffer(offsets, dtype=kind, count=offset + n + 1)[offset:]
    return validity(array), np.diff(ends)


def missing_text(values: Column) -> np.ndarray:
    """Null or empty string."""
    valid, sizes = text_sizes(values)
    return ~valid | (sizes == 0)


def equals(values: Column, text: str) -> np.ndarray:
    """Not null and equal to ``text``."""
    result = pc.equal(one_array(values), text)
    data = result.buffers()[1]
    if data is None or not len(result):
        return np.zeros(len(result), dtype=bool)
    bits = np.frombuffer(data, dtype=np.uint8)
    equal = np.unpackbits(bits, count=result.offset + len(result), bitorder="little")[result.offset :].view(bool)
    return equal & validity(result)


def not_in(values: Column, allowed: tuple[str, ...]) -> np.ndarray:
    """Not null and not one of ``allowed``."""
    # For two allowed values, two equality tests take half the time of is_in's hash lookups.
    known = np.zeros(len(values), dtype=bool)
    for value in allowed:
        known |= equals(values, value)
    return ~known & ~is_null(values)


def int64s(values: Column) -> np.ndarray:
    """An int64 column's values as numpy, zero-copy; a null slot holds an arbitrary number (only for
    columns whose null slots are never taken)."""
    array = one_array(values)
    data = array.buffers()[1]
    if data is None:
        return np.zeros(len(array), dtype=np.int64)
    return np.frombuffer(data, dtype=np.int64, count=array.offset + len(array))[array.offset :]


def negative(values: Column) -> np.ndarray:
    """Not null and below zero."""
    return validity(one_array(values)) & (int64s(values) < 0)


def outside(values: Column, lowest: int, highest: int) -> np.ndarray:
    """Not null and outside [``lowest``, ``highest``]."""
    numbers = int64s(values)
    return validity(one_array(values)) & ((numbers < lowest) | (numbers > highest))


def longer(values: Column, chars: int) -> np.ndarray:
    """Not null and longer than ``chars`` characters."""
    # A character takes at least one byte: when no value has more than `chars` bytes (known from the
    # offsets alone), none has more characters, and counting them (a pass over the text) is saved.
    valid, sizes = text_sizes(values)
    if not (valid & (sizes > chars)).any():
        return np.zeros(len(values), dtype=bool)
    return as_numpy(pc.fill_null(pc.greater(pc.utf8_length(values), chars), False))


def has_nul(values: Column, possible: bool = True) -> np.ndarray:
    """Not null and containing U+0000 (never, when not ``possible``)."""
    if not possible:
        return np.zeros(len(values), dtype=bool)
    return as_numpy(pc.fill_null(pc.match_substring(values, "\x00"), False))


def pylists(indices: np.ndarray, *columns: Column) -> list[list[str | None]]:
    """The values at ``indices`` of each column, as Python lists."""
    taken = pa.array(indices, pa.int64())
    return [pc.take(column, taken).to_pylist() for column in columns]


def coded(codes: np.ndarray, dictionary: pa.Array) -> pa.DictionaryArray:
    """The values ``dictionary[codes]``, dictionary-encoded (int32 codes)."""
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32, copy=False)), dictionary)


@dataclass(frozen=True)
class Codes:
    """A record-level text column dictionary-encoded once per chunk, so that the rows of each change
    carry 4-byte codes into it instead of copies of the text, and the Parquet encoder writes the
    dictionary as it is instead of hashing every row's text again."""

    #: Each record's code (meaningless for a null record: its rows are never taken).
    codes: np.ndarray
    dictionary: pa.Array

    @classmethod
    def of(cls, values: Column) -> Codes:
        """Encode ``values`` (one hashing pass over the records, not the rows)."""
        return cls.encoded(pc.dictionary_encode(one_array(values)))

    @classmethod
    def encoded(cls, encoded: pa.DictionaryArray) -> Codes:
        """Codes of values already dictionary-encoded."""
        indices = encoded.indices
        codes = np.frombuffer(indices.buffers()[1], dtype=np.int32, count=indices.offset + len(indices))
        return cls(codes[indices.offset :], encoded.dictionary)

    def rows(self, where: np.ndarray) -> pa.DictionaryArray:
        """The values of records ``where`` (one per row)."""
        return coded(self.codes[where], self.dictionary)

    def per_record(self, per_entry: np.ndarray) -> np.ndarray:
        """A property of each distinct value (``per_entry``, one per dictionary entry) for each record."""
        if not len(per_entry):  # no value at all: every record is null, and rejected for that already
            return np.zeros(len(self.codes), dtype=bool)
        return per_entry[np.clip(self.codes, 0, len(per_entry) - 1)]


# -- shapes of ids (the identifier checks of rules.py) ------------------------------------------------


@nb.njit(cache=True, nogil=True)
def _shaped(
    data: np.ndarray, offsets: np.ndarray, head: np.ndarray, tail: np.ndarray, separator: int, max_len: int
) -> np.ndarray:
    n = len(offsets) - 1
    out = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        a, b = offsets[i], offsets[i + 1]
        if b - a < 1 or b - a > max_len:
            continue
        cut = -1  # where the separator is
        ok = True
        for j in range(a, b):
            c = data[j]
            if separator >= 0 and c == separator:
                if cut >= 0:
                    ok = False
                    break
                cut = j
            elif not (head[c] if cut < 0 else tail[c]):
                ok = False
                break
        out[i] = ok and (separator < 0 or a < cut < b - 1)
    return out


def shaped(strings: pa.Array, head: np.ndarray, tail: np.ndarray, separator: int, max_len: int) -> np.ndarray:
    """Which of ``strings`` (a string array without nulls) are 1 to ``max_len`` bytes of ``head`` bytes
    (a 256-entry table of the bytes allowed), or, with a ``separator`` byte (>= 0), ``head`` bytes, the
    separator once, and ``tail`` bytes, neither part empty: ``[head]+`` or ``[head]+:[tail]+``.

    The decoder's identifier checks (Cognito's patterns): a regular-expression kernel costs a compile
    and ~0.4 us a value, ten times this per 4 MB chunk.
    """
    n, offset = len(strings), strings.offset
    if n == 0:
        return np.zeros(0, dtype=bool)
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int32, count=offset + n + 1)[offset:]
    data = strings.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(1, dtype=np.uint8)
    return np.asarray(_shaped(raw, offsets.astype(np.int64), head, tail, separator, max_len))
