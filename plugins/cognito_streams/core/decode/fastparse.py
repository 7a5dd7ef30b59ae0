"""A schema-specific JSON parser for Cognito Streams records: the decoder's fast parse.

Why write a parser by hand: the decoder's parse was ``pyarrow.json`` with an explicit schema
(:data:`~cognito_streams.core.decode.READ_SCHEMA`), about half of its CPU; no maintained library
parses these records faster (measured: polars, duckdb, msgspec, arro3-io/arrow-rs all at or below
pyarrow, see docs/performance.md). This parser knows the one record shape, so it skips the work a
general reader does (type inference per value, builders per field, block chunking) and runs two to three
times as fast per CPU-second, compiled by numba (``nogil``: the decoder's two threads run it at once).
What it buys, measured on the benchmark's records on one thread: 517–569 MB per CPU-second for this parse
alone (2026-12, interleaved runs; 335 against pyarrow's 154 in docs/performance.md's full run), the
decode+land throughput from 98 to 295 MB/s with fixes around it. What it costs: numba (about 110 MiB of
RSS per process, a 20–40 s compile on first use, cached on disk and seeded by ``core/warm.py``), and this
module to keep exact to pyarrow (tests/unit/test_fastparse.py compares them, hypothesis included). The
members it reads are rules.py's, compiled in as constants (see :func:`_compiled_for`).

Contract (what :func:`parse` promises): a table with schema exactly ``READ_SCHEMA`` whose rows equal
what ``pyarrow.json.read_json(..., parse_options=fallback.PARSE_OPTIONS)`` reads from the same records, for
every record not *flagged*. A record is flagged whenever the parser is not sure it reads it exactly as
pyarrow would (a syntax error, a wrong JSON type for a read field, a repeated read member, a member name
with an escape, a number with a fraction, an exponent, a leading zero or 19+ digits in a read field, a
lone surrogate, a raw control character or newline, anything after the object...). A flagged record's
row is all nulls with a null ``kinesisSyncRecords``: exactly the row of a blanked record (``{}`` and
spaces), so once the decoder has blanked every flagged record, the table is already right.

What pyarrow accepts in ignored members is accepted here too (RapidJSON's ``NaN``/``Inf``/``Infinity``,
numbers of any length and depth of nesting, repeated unknown names): the exact check rejects some of
those, so flagging them would turn a record the pyarrow path lands into a reject.
The input is valid UTF-8 (the decoder screens it before parsing): bytes >= 0x80 are copied as they are.
"""

from __future__ import annotations

import zlib

import numba as nb
import numpy as np
import pyarrow as pa

from cognito_streams.core.decode.rules import (
    ITEM_INT_FIELDS,
    ITEM_STRING_FIELDS,
    RECORDS_FIELD,
    TOP_INT_FIELDS,
    TOP_STRING_FIELDS,
)

# The members read (rules.py states them): their indices as the numba code reads them. Top level: the
# strings, then the integers, then the array of items; items: the strings, then the integers. numba compiles
# these in as constants (a third faster than reading them from arrays given at run time), so its cache,
# keyed by this file's source alone, must be checked against them: see _compiled_for.
_TOP_NAMES = tuple(name.encode() for name in (*TOP_STRING_FIELDS, *TOP_INT_FIELDS, RECORDS_FIELD))
_TOP_STRINGS = len(TOP_STRING_FIELDS)
_TOP_INTS = len(TOP_INT_FIELDS)
_LIST = _TOP_STRINGS + _TOP_INTS
_ITEM_NAMES = tuple(name.encode() for name in (*ITEM_STRING_FIELDS, *ITEM_INT_FIELDS))
_ITEM_STRINGS = len(ITEM_STRING_FIELDS)
_ITEM_INTS = len(ITEM_INT_FIELDS)
#: The bits of a record's (and an item's) flags: one per integer member given, then the list's (item's) own.
_LIST_BIT = 1 << _TOP_INTS
_ITEM_BIT = 1 << _ITEM_INTS
if _TOP_INTS > 7 or _ITEM_INTS > 7:
    raise ValueError("fastparse keeps a record's flags in 8 bits: at most 7 integer members per level")
#: What the compiled code was compiled for (see _compiled_for).
_LAYOUT_ID = zlib.crc32(b"|".join(_TOP_NAMES) + b"/" + b"|".join(_ITEM_NAMES))
#: Initial nesting room for an ignored member's value; it grows, as RapidJSON reads any depth (the exact
#: check does not, so flagging deep values would reject records the pyarrow path lands).
_DEPTH = 64
#: RapidJSON (pyarrow's parser) rejects a number whose explicit positive exponent exceeds this plus its
#: count of fraction digits ("Number too big to be stored in double": 1e309, 0e309, but 1.5e309 and
#: 1e-99999 are read); it reads any other number of the JSON grammar, however long. Measured with
#: pyarrow 26.0.1 (tests/unit/test_fastparse.py holds the cases).
_MAX_EXPONENT = 308
#: An exponent is not accumulated past this (its digits are still read): far beyond any limit above.
_EXPONENT_CAP = 10**9

#: What _record returns when the item arrays are full (they are grown and the record parsed again).
_NO_ROOM = -2
_INT32_MAX = 2**31 - 1
#: Set on a string's recorded end when the string holds escapes (ends are far below it): the others
#: are copied as they are.
_ESCAPED = 1 << 62
_WS_SPACE, _WS_TAB, _WS_CR = 32, 9, 13
_QUOTE, _BACKSLASH, _COLON, _COMMA = 34, 92, 58, 44
_LBRACE, _RBRACE, _LBRACKET, _RBRACKET = 123, 125, 91, 93


def _name_table(names: tuple[bytes, ...]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(names) + 1, dtype=np.int64)
    for i, name in enumerate(names):
        offsets[i + 1] = offsets[i] + len(name)
    return np.frombuffer(b"".join(names), dtype=np.uint8).copy(), offsets


_TOP_TEXT, _TOP_OFFS = _name_table(_TOP_NAMES)
_ITEM_TEXT, _ITEM_OFFS = _name_table(_ITEM_NAMES)


@nb.njit(cache=True, nogil=True, inline="always")
def _ws(b: np.ndarray, i: int, n: int) -> int:
    # A raw newline is not whitespace here: pyarrow splits records at it.
    while i < n and (b[i] == _WS_SPACE or b[i] == _WS_TAB or b[i] == _WS_CR):
        i += 1
    return i


@nb.njit(cache=True, nogil=True)
def _hex4(b: np.ndarray, i: int, n: int) -> int:
    if i + 4 > n:
        return -1
    v = 0
    for j in range(i, i + 4):
        c = b[j]
        if 48 <= c <= 57:
            d = c - 48
        elif 97 <= c <= 102:
            d = c - 87
        elif 65 <= c <= 70:
            d = c - 55
        else:
            return -1
        v = v * 16 + d
    return v


@nb.njit(cache=True, nogil=True)
def _string(b: np.ndarray, i: int, n: int) -> tuple[int, bool]:
    """``i`` at an opening quote: the index of the closing quote (-1 when the string is not valid
    JSON or holds a lone surrogate) and whether it holds escapes."""
    i += 1
    escaped = False
    while i < n:
        c = b[i]
        if c == _QUOTE:
            return i, escaped
        if c < 32:
            return -1, escaped
        if c != _BACKSLASH:
            i += 1
            continue
        escaped = True
        if i + 1 >= n:
            return -1, escaped
        d = b[i + 1]
        if d == 117:  # u
            cp = _hex4(b, i + 2, n)
            if cp < 0 or 0xDC00 <= cp <= 0xDFFF:
                return -1, escaped
            i += 6
            if 0xD800 <= cp <= 0xDBFF:
                if i + 1 >= n or b[i] != _BACKSLASH or b[i + 1] != 117:
                    return -1, escaped
                low = _hex4(b, i + 2, n)
                if low < 0xDC00 or low > 0xDFFF:
                    return -1, escaped
                i += 6
        elif d == 34 or d == 92 or d == 47 or d == 98 or d == 102 or d == 110 or d == 114 or d == 116:
            i += 2
        else:
            return -1, escaped
    return -1, escaped


@nb.njit(cache=True, nogil=True)
def _literal(b: np.ndarray, i: int, n: int, word: int) -> int:
    """The index after the literal at ``i`` (0 null, 1 true, 2 false, 3 NaN, 4 Infinity, 5 Inf), or -1."""
    if word == 0:
        text = (110, 117, 108, 108)
        if i + 4 <= n and b[i] == text[0] and b[i + 1] == text[1] and b[i + 2] == text[2] and b[i + 3] == text[3]:
            return i + 4
        return -1
    if word == 1:
        if i + 4 <= n and b[i] == 116 and b[i + 1] == 114 and b[i + 2] == 117 and b[i + 3] == 101:
            return i + 4
        return -1
    if word == 2:
        if i + 5 <= n and b[i] == 102 and b[i + 1] == 97 and b[i + 2] == 108 and b[i + 3] == 115 and b[i + 4] == 101:
            return i + 5
        return -1
    if word == 3:
        if i + 3 <= n and b[i] == 78 and b[i + 1] == 97 and b[i + 2] == 78:
            return i + 3
        return -1
    # Inf or Infinity
    if i + 3 <= n and b[i] == 73 and b[i + 1] == 110 and b[i + 2] == 102:
        i += 3
        if i + 5 <= n and b[i] == 105 and b[i + 1] == 110 and b[i + 2] == 105 and b[i + 3] == 116 and b[i + 4] == 121:
            return i + 5
        return i
    return -1


@nb.njit(cache=True, nogil=True)
def _null(b: np.ndarray, i: int, n: int) -> int:
    return _literal(b, i, n, 0)


@nb.njit(cache=True, nogil=True)
def _skipped_number(b: np.ndarray, i: int, n: int) -> int:
    """A number of an ignored member, read as RapidJSON reads it (the JSON grammar, NaN/Inf/Infinity,
    the _MAX_EXPONENT limit): the index after it, or -1 when RapidJSON would reject it."""
    if i < n and b[i] == 45:
        i += 1
    if i >= n:
        return -1
    if b[i] == 78:
        return _literal(b, i, n, 3)
    if b[i] == 73:
        return _literal(b, i, n, 4)
    if b[i] == 48:
        i += 1
    else:
        digits = 0
        while i < n and 48 <= b[i] <= 57:
            i += 1
            digits += 1
        if digits == 0:
            return -1
    fraction = 0
    if i < n and b[i] == 46:
        i += 1
        while i < n and 48 <= b[i] <= 57:
            i += 1
            fraction += 1
        if fraction == 0:
            return -1
    if i < n and (b[i] == 101 or b[i] == 69):
        i += 1
        negative = False
        if i < n and (b[i] == 43 or b[i] == 45):
            negative = b[i] == 45
            i += 1
        exponent = 0
        exponent_digits = 0
        while i < n and 48 <= b[i] <= 57:
            if exponent < _EXPONENT_CAP:
                exponent = exponent * 10 + (b[i] - 48)
            i += 1
            exponent_digits += 1
        if exponent_digits == 0:
            return -1
        if not negative and exponent > _MAX_EXPONENT + fraction:
            return -1
    return i


@nb.njit(cache=True, nogil=True)
def _skip(b: np.ndarray, i: int, n: int, stack: np.ndarray) -> int:
    """Validate and skip the value at ``i`` (an ignored member's); the index after it, or -1."""
    depth = 0
    while True:
        # A value starts at i.
        i = _ws(b, i, n)
        if i >= n:
            return -1
        c = b[i]
        if c in (_LBRACE, _LBRACKET):
            j = _ws(b, i + 1, n)
            if j < n and b[j] == (_RBRACE if c == _LBRACE else _RBRACKET):
                i = j + 1
            else:
                if depth >= len(stack):
                    grown = np.empty(2 * len(stack), dtype=np.uint8)
                    grown[:depth] = stack[:depth]
                    stack = grown
                stack[depth] = c
                depth += 1
                i = j
                if c == _LBRACE:
                    if i >= n or b[i] != _QUOTE:
                        return -1
                    e, _ = _string(b, i, n)
                    if e < 0:
                        return -1
                    i = _ws(b, e + 1, n)
                    if i >= n or b[i] != _COLON:
                        return -1
                    i += 1
                continue
        elif c == _QUOTE:
            e, _ = _string(b, i, n)
            if e < 0:
                return -1
            i = e + 1
        elif c == 45 or 48 <= c <= 57 or c == 78 or c == 73:
            i = _skipped_number(b, i, n)
        elif c == 116:
            i = _literal(b, i, n, 1)
        elif c == 102:
            i = _literal(b, i, n, 2)
        elif c == 110:
            i = _literal(b, i, n, 0)
        else:
            return -1
        if i < 0:
            return -1
        # A value ended at i: close containers until one continues.
        while True:
            if depth == 0:
                return i
            i = _ws(b, i, n)
            if i >= n:
                return -1
            c = b[i]
            if stack[depth - 1] == _LBRACE:
                if c == _RBRACE:
                    depth -= 1
                    i += 1
                    continue
                if c != _COMMA:
                    return -1
                i = _ws(b, i + 1, n)
                if i >= n or b[i] != _QUOTE:
                    return -1
                e, _ = _string(b, i, n)
                if e < 0:
                    return -1
                i = _ws(b, e + 1, n)
                if i >= n or b[i] != _COLON:
                    return -1
                i += 1
                break
            if c == _RBRACKET:
                depth -= 1
                i += 1
                continue
            if c != _COMMA:
                return -1
            i += 1
            break


# The per-member helpers (_int, _name, _member, _text) are inlined at numba's level into the record and
# item loops: left to LLVM, they stay calls, and the scan ran at about 560 MB/s instead of about 770
# (60,000 benchmark records, one thread). Inlining _string, _null or _item too made it slower.
@nb.njit(cache=True, nogil=True, inline="always")
def _int(b: np.ndarray, i: int, n: int) -> tuple[int, int]:
    """An integer of a read member: (value, index after it), index -1 when not exactly an int64 pyarrow
    reads the same way (fraction, exponent, leading zero, 19+ digits, no digit)."""
    negative = False
    if i < n and b[i] == 45:
        negative = True
        i += 1
    value = 0
    digits = 0
    start = i
    while i < n and 48 <= b[i] <= 57:
        value = value * 10 + (b[i] - 48)
        i += 1
        digits += 1
        if digits > 18:
            return 0, -1
    if digits == 0 or (digits > 1 and b[start] == 48):
        return 0, -1
    if i < n and (b[i] == 46 or b[i] == 101 or b[i] == 69):
        return 0, -1
    return (-value if negative else value), i


@nb.njit(cache=True, nogil=True, inline="always")
def _name(b: np.ndarray, i: int, n: int, text: np.ndarray, offs: np.ndarray) -> tuple[int, int]:
    """``i`` at a member's opening quote: (the index of the read name spelled there, without escapes, and
    the index of its closing quote), or (-1, -1) when the name is none of them (then ``_string`` reads
    it). Comparing the names directly reads a read name's bytes once, not a scan and then a compare."""
    s = i + 1
    first = b[s] if s < n else 0
    for k in range(len(offs) - 1):
        o = offs[k]
        if text[o] != first:
            continue
        length = offs[k + 1] - o
        e = s + length
        if e >= n or b[e] != _QUOTE:
            continue
        j = 1
        while j < length and b[s + j] == text[o + j]:
            j += 1
        if j == length:
            return k, e
    return -1, -1


@nb.njit(cache=True, nogil=True, inline="always")
def _member(b: np.ndarray, i: int, n: int, text: np.ndarray, offs: np.ndarray, seen: int) -> tuple[int, int, int]:
    """``i`` at a member's opening quote: (the name's index in ``text``/``offs``, -1 for a name not read;
    the index of the value's first byte; ``seen``, the bit set of read names met in the object, with
    this one). The second is -1 when the bytes are not a name without escapes, a colon and the start of
    a value, or the name is a read one met before in the same object."""
    if i >= n or b[i] != _QUOTE:
        return -1, -1, seen
    k, ke = _name(b, i, n, text, offs)
    if k < 0:
        ke, escaped = _string(b, i, n)
        if ke < 0 or escaped:
            return -1, -1, seen
    i = _ws(b, ke + 1, n)
    if i >= n or b[i] != _COLON:
        return -1, -1, seen
    i = _ws(b, i + 1, n)
    if i >= n:
        return -1, -1, seen
    if k >= 0:
        if seen & (1 << k):
            return -1, -1, seen
        seen |= 1 << k
    return k, i, seen


@nb.njit(cache=True, nogil=True, inline="always")
def _text(b: np.ndarray, i: int, n: int) -> tuple[int, int]:
    """``i`` at the value of a read string member: (its end as recorded: the closing quote's index,
    with _ESCAPED set when it holds escapes; the index after it), or (-1, -1) when it is not a string."""
    if b[i] != _QUOTE:
        return -1, -1
    e, escaped = _string(b, i, n)
    if e < 0:
        return -1, -1
    return (e | _ESCAPED if escaped else e), e + 1


@nb.njit(cache=True, nogil=True)
def _item(b: np.ndarray, i: int, n: int, items: np.ndarray, item_bits: np.ndarray, it: int, stack: np.ndarray) -> int:
    """Parse the item object at ``i`` (at its ``{``) into row ``it``; the index after it, or -1."""
    for k in range(_ITEM_STRINGS):
        items[k, it] = -1
    bits = _ITEM_BIT  # the struct is valid
    seen = 0
    i = _ws(b, i + 1, n)
    if i < n and b[i] == _RBRACE:
        item_bits[it] = bits
        return i + 1
    while True:
        k, i, seen = _member(b, i, n, _ITEM_TEXT, _ITEM_OFFS, seen)
        if i < 0:
            return -1
        c = b[i]
        if k < 0:
            i = _skip(b, i, n, stack)
        elif c == 110:
            i = _null(b, i, n)
        elif k < _ITEM_STRINGS:
            end, after = _text(b, i, n)
            if after < 0:
                return -1
            items[k, it] = i + 1
            items[_ITEM_STRINGS + k, it] = end
            i = after
        else:
            v, i = _int(b, i, n)
            if i >= 0:
                items[_ITEM_STRINGS + k, it] = v
                bits |= 1 << (k - _ITEM_STRINGS)
        if i < 0:
            return -1
        i = _ws(b, i, n)
        if i >= n:
            return -1
        if b[i] == _RBRACE:
            item_bits[it] = bits
            return i + 1
        if b[i] != _COMMA:
            return -1
        i = _ws(b, i + 1, n)


@nb.njit(cache=True, nogil=True)
def _record(
    b: np.ndarray,
    r: int,
    i: int,
    n: int,
    top: np.ndarray,
    top_ints: np.ndarray,
    top_bits: np.ndarray,
    items: np.ndarray,
    item_bits: np.ndarray,
    it: int,
    stack: np.ndarray,
) -> int:
    """Parse record ``r`` (bytes ``[i, n)``); the number of items after it, -1 when flagged, or
    _NO_ROOM when the item arrays are full."""
    i = _ws(b, i, n)
    if i >= n or b[i] != _LBRACE:
        return -1
    bits = 0
    seen = 0
    i = _ws(b, i + 1, n)
    if i < n and b[i] == _RBRACE:
        i += 1
    else:
        while True:
            k, i, seen = _member(b, i, n, _TOP_TEXT, _TOP_OFFS, seen)
            if i < 0:
                return -1
            c = b[i]
            if k < 0:
                i = _skip(b, i, n, stack)
            elif c == 110:
                i = _null(b, i, n)
            elif k < _TOP_STRINGS:
                end, after = _text(b, i, n)
                if after < 0:
                    return -1
                top[k, r] = i + 1
                top[_TOP_STRINGS + k, r] = end
                i = after
            elif k < _LIST:
                v, i = _int(b, i, n)
                if i >= 0:
                    top_ints[k - _TOP_STRINGS, r] = v
                    bits |= 1 << (k - _TOP_STRINGS)
            else:
                if c != _LBRACKET:
                    return -1
                bits |= _LIST_BIT
                i = _ws(b, i + 1, n)
                if i < n and b[i] == _RBRACKET:
                    i += 1
                else:
                    while True:
                        if i >= n:
                            return -1
                        if it >= len(item_bits):
                            return _NO_ROOM
                        if b[i] == _LBRACE:
                            i = _item(b, i, n, items, item_bits, it, stack)
                        else:
                            # A null element is a null struct (as pyarrow reads it).
                            i = _null(b, i, n)
                            for j in range(_ITEM_STRINGS):
                                items[j, it] = -1
                            item_bits[it] = 0
                        if i < 0:
                            return -1
                        it += 1
                        i = _ws(b, i, n)
                        if i < n and b[i] == _RBRACKET:
                            i += 1
                            break
                        if i >= n or b[i] != _COMMA:
                            return -1
                        i = _ws(b, i + 1, n)
            if i < 0:
                return -1
            i = _ws(b, i, n)
            if i < n and b[i] == _RBRACE:
                i += 1
                break
            if i >= n or b[i] != _COMMA:
                return -1
            i = _ws(b, i + 1, n)
    if _ws(b, i, n) != n:
        return -1
    top_bits[r] = bits
    return it


@nb.njit(cache=True, nogil=True)
def _scan(
    b: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    nrec = len(starts)
    # Room for an item per 128 bytes (the benchmark's items take ~140): the arrays grow (doubling) for
    # more. Counting the braces instead cost a pass over every byte, ~5 % of the scan.
    opens = len(b) // 128 + 16
    top = np.empty((2 * _TOP_STRINGS, nrec), dtype=np.int64)
    top_ints = np.zeros((_TOP_INTS, nrec), dtype=np.int64)
    top_bits = np.zeros(nrec, dtype=np.uint8)
    items = np.empty((2 * _ITEM_STRINGS + _ITEM_INTS, opens), dtype=np.int64)
    item_bits = np.zeros(opens, dtype=np.uint8)
    list_offsets = np.zeros(nrec + 1, dtype=np.int32)
    flagged = np.zeros(nrec, dtype=np.bool_)
    stack = np.zeros(_DEPTH, dtype=np.uint8)
    it = 0
    for r in range(nrec):
        while True:
            for k in range(_TOP_STRINGS):
                top[k, r] = -1
            s = starts[r]
            got = _record(b, r, s, s + lengths[r], top, top_ints, top_bits, items, item_bits, it, stack)
            if got != _NO_ROOM:
                break
            grown = np.empty((items.shape[0], 2 * items.shape[1]), dtype=np.int64)
            grown[:, :it] = items[:, :it]
            items = grown
            grown_bits = np.zeros(2 * len(item_bits), dtype=np.uint8)
            grown_bits[:it] = item_bits[:it]
            item_bits = grown_bits
        if got < 0:
            # The row of a blanked record: all nulls, a null list.
            flagged[r] = True
            for k in range(_TOP_STRINGS):
                top[k, r] = -1
            for k in range(_TOP_INTS):
                top_ints[k, r] = 0
            top_bits[r] = 0
        else:
            it = got
        list_offsets[r + 1] = it
    for j in range(_ITEM_INTS):
        for t in range(it):
            if not item_bits[t] & (1 << j):
                items[2 * _ITEM_STRINGS + j, t] = 0
    return top, top_ints, top_bits, items, item_bits, list_offsets, flagged, it


@nb.njit(cache=True, nogil=True)
def _unescape(b: np.ndarray, t: int, end: int, data: np.ndarray, p: int) -> int:
    """Decode the JSON string text ``b[t:end]`` (already validated) into ``data`` at ``p``; the end."""
    while t < end:
        c = b[t]
        if c != _BACKSLASH:
            data[p] = c
            p += 1
            t += 1
            continue
        d = b[t + 1]
        t += 2
        if d == 117:
            cp = _hex4(b, t, end)
            t += 4
            if 0xD800 <= cp <= 0xDBFF:
                cp = 0x10000 + ((cp - 0xD800) << 10) + (_hex4(b, t + 2, end) - 0xDC00)
                t += 6
            if cp < 0x80:
                data[p] = cp
                p += 1
            elif cp < 0x800:
                data[p] = 0xC0 | (cp >> 6)
                data[p + 1] = 0x80 | (cp & 0x3F)
                p += 2
            elif cp < 0x10000:
                data[p] = 0xE0 | (cp >> 12)
                data[p + 1] = 0x80 | ((cp >> 6) & 0x3F)
                data[p + 2] = 0x80 | (cp & 0x3F)
                p += 3
            else:
                data[p] = 0xF0 | (cp >> 18)
                data[p + 1] = 0x80 | ((cp >> 12) & 0x3F)
                data[p + 2] = 0x80 | ((cp >> 6) & 0x3F)
                data[p + 3] = 0x80 | (cp & 0x3F)
                p += 4
        elif d == 110:
            data[p] = 10
            p += 1
        elif d == 116:
            data[p] = 9
            p += 1
        elif d == 114:
            data[p] = 13
            p += 1
        elif d == 98:
            data[p] = 8
            p += 1
        elif d == 102:
            data[p] = 12
            p += 1
        else:  # \" \\ \/
            data[p] = d
            p += 1
    return p


@nb.njit(cache=True, nogil=True)
def _strings(
    b: np.ndarray, spans: np.ndarray, columns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Arrow string buffers of ``columns`` string columns whose spans are ``spans[k]`` (starts, -1 for
    null) and ``spans[columns + k]`` (ends; with _ESCAPED set, escapes to decode to UTF-8).

    Returns (data, where each column's data starts and ends in it, int32 offsets per column, validity
    per column, whether a column is beyond 32-bit offsets: then the caller falls back). Rows are
    filled one at a time across the columns: one pass over the record bytes instead of one per column.
    A decoded string is never longer than its JSON text, so each column's room is its spans' total.
    """
    m = spans.shape[1]
    bases = np.zeros(columns + 1, dtype=np.int64)
    for k in range(columns):
        size = 0
        for j in range(m):
            t = spans[k, j]
            if t >= 0:
                size += (spans[columns + k, j] & ~_ESCAPED) - t
        bases[k + 1] = bases[k] + size
        if size > _INT32_MAX:
            return (
                np.zeros(0, np.uint8),
                bases,
                np.zeros((columns, 1), np.int32),
                np.zeros((columns, 0), np.bool_),
                True,
            )
    data = np.empty(bases[columns], dtype=np.uint8)
    offsets = np.empty((columns, m + 1), dtype=np.int32)
    valid = np.empty((columns, m), dtype=np.bool_)
    cursor = bases[:columns].copy()
    for k in range(columns):
        offsets[k, 0] = 0
    for j in range(m):
        for k in range(columns):
            t = spans[k, j]
            p = cursor[k]
            valid[k, j] = t >= 0
            if t >= 0:
                end = spans[columns + k, j]
                if end & _ESCAPED:
                    p = _unescape(b, t, end & ~_ESCAPED, data, p)
                else:
                    # Byte by byte: most values are a few bytes, and numba's slice copy costs more
                    # to set up than it saves on them.
                    while t < end:
                        data[p] = b[t]
                        p += 1
                        t += 1
                cursor[k] = p
            offsets[k, j + 1] = p - bases[k]
    return data, bases, offsets, valid, False


def _validity(valid: np.ndarray) -> pa.Buffer | None:
    if valid.all():
        return None
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def _string_arrays(b: np.ndarray, spans: np.ndarray, columns: int) -> list[pa.Array] | None:
    data, bases, offsets, valid, too_big = _strings(b, spans, columns)
    if too_big:
        return None  # pa.string() cannot hold it: the caller falls back
    buffer = pa.py_buffer(data)
    m = spans.shape[1]
    return [
        pa.Array.from_buffers(
            pa.string(),
            m,
            [_validity(valid[k]), pa.py_buffer(offsets[k]), buffer.slice(int(bases[k]), int(bases[k + 1] - bases[k]))],
        )
        for k in range(columns)
    ]


def _int_array(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(pa.int64(), len(values), [_validity(valid), pa.py_buffer(values)])


@nb.njit(cache=True, nogil=True)
def _compiled_for() -> int:
    """The _LAYOUT_ID this module's machine code was compiled with: numba compiles globals in as constants
    and caches the code by this file's source, so after a change to the members in rules.py alone it
    would load code that reads the old ones."""
    return _LAYOUT_ID


def parse(
    blob: bytes | bytearray, starts: np.ndarray, lengths: np.ndarray, schema: pa.Schema
) -> tuple[pa.Table, np.ndarray] | None:
    """Parse the records ``blob[starts[i] : starts[i] + lengths[i]]`` into a table of ``schema`` (the
    decoder's READ_SCHEMA) and a boolean per record: flagged (its row is all nulls and means nothing).

    Returns None when a column would be too large for Arrow's 32-bit offsets (the caller falls back).
    """
    if _compiled_for() != _LAYOUT_ID:
        raise RuntimeError(
            "numba's cache of core/decode/fastparse.py holds code compiled for other members than those "
            "core/decode/rules.py reads now (rules.py changed, fastparse.py did not, and numba keys its cache by "
            "fastparse.py alone): delete core/decode/__pycache__/fastparse.* (or the NUMBA_CACHE_DIR folder) and "
            "run python -m cognito_streams.core.warm"
        )
    b = np.frombuffer(blob, dtype=np.uint8)
    top, top_ints, top_bits, items, item_bits, list_offsets, flagged, nitems = _scan(
        b, np.ascontiguousarray(starts, dtype=np.int64), np.ascontiguousarray(lengths, dtype=np.int64)
    )
    top_strings = _string_arrays(b, top, _TOP_STRINGS)
    if top_strings is None:
        return None
    columns: dict[bytes, pa.Array] = dict(zip(_TOP_NAMES, top_strings, strict=False))
    for k in range(_TOP_INTS):
        columns[_TOP_NAMES[_TOP_STRINGS + k]] = _int_array(top_ints[k], (top_bits & (1 << k)) != 0)
    items = items[:, :nitems]
    item_bits = item_bits[:nitems]
    item_strings = _string_arrays(b, np.ascontiguousarray(items[: 2 * _ITEM_STRINGS]), _ITEM_STRINGS)
    if item_strings is None:
        return None
    children = list(item_strings)
    for k in range(_ITEM_INTS):
        values = np.ascontiguousarray(items[2 * _ITEM_STRINGS + k])
        children.append(_int_array(values, (item_bits & (1 << k)) != 0))
    list_type = schema.field(RECORDS_FIELD).type
    item_type = list_type.value_type
    by_name = dict(zip((name.decode() for name in _ITEM_NAMES), children, strict=True))
    struct = pa.Array.from_buffers(
        item_type,
        nitems,
        [_validity((item_bits & _ITEM_BIT) != 0)],
        children=[by_name[item_type.field(i).name] for i in range(item_type.num_fields)],
    )
    columns[_TOP_NAMES[_LIST]] = pa.Array.from_buffers(
        list_type, len(starts), [_validity((top_bits & _LIST_BIT) != 0), pa.py_buffer(list_offsets)], children=[struct]
    )
    arrays = [columns[name.encode()] for name in schema.names]
    return pa.Table.from_arrays(arrays, schema=schema), flagged
