"""Text as the warehouse stores it: widths in bytes, and text it cannot hold as it is.

Redshift's VARCHAR(n) counts bytes, not characters, and no warehouse text (Redshift's VARCHAR,
PostgreSQL's text) can hold U+0000. So:

- a value longer than ``value_max_bytes`` is cut at a character boundary, flagged
  (``is_value_cut``), and its exact bytes are kept at ``value_ref`` (:func:`stored_value`);
- a value holding U+0000 is stored *escaped* (:func:`escape`: ``\\`` doubled, U+0000 written
  ``\\0``), flagged and referenced the same way; a row tells which of the two it holds by
  ``octet_length(record_value) > value_bytes`` (:func:`decoded_value`);
- a record key holding U+0000 is stored escaped too (:func:`stored_key`), in a form that no other
  key has, so distinct keys stay distinct rows;
- free text (failure messages, details) is cut to its column's width in bytes
  (:func:`clip_text`).

docs/semantics.md ("Values the warehouse cannot store as they are") is the contract written out.
"""

from __future__ import annotations

from typing import NamedTuple

#: The escape character of :func:`escape` and the sequence it writes for U+0000.
ESCAPE = "\\"
ESCAPED_NUL = "\\0"


def cut_utf8(data: bytes, max_bytes: int) -> bytes:
    """The longest prefix of the UTF-8 text ``data`` that is at most ``max_bytes`` long and ends on
    a character boundary (so it is itself valid UTF-8)."""
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    if len(data) <= max_bytes:
        return data
    end = max_bytes
    # Continuation bytes are 0b10xxxxxx: step back to the first byte of the character that would be split.
    while end > 0 and (data[end] & 0xC0) == 0x80:
        end -= 1
    return data[:end]


def clip_text(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes at a character boundary: for free text (error
    messages, details) going into a VARCHAR column of that width. Lone surrogates (which no UTF-8
    column holds) become ``?``."""
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes and data.decode("utf-8") == text:
        return text
    return cut_utf8(data, max_bytes).decode("utf-8")


def escape(text: str) -> str:
    """``text`` with ``\\`` doubled and U+0000 written ``\\0``: reversible (:func:`unescape`), and
    free of U+0000."""
    return text.replace(ESCAPE, ESCAPE * 2).replace("\x00", ESCAPED_NUL)


def unescape(text: str) -> str:
    """The inverse of :func:`escape`. A trailing lone ``\\`` (an escape cut in half) is dropped."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = text.find(ESCAPE, i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        if j + 1 < n:
            out.append("\x00" if text[j + 1] == "0" else text[j + 1])
        i = j + 2
    return "".join(out)


class StoredValue(NamedTuple):
    """How one value is stored: the text of ``record_value``, whether the row is flagged
    (``is_value_cut``: the text is not the exact value, which is kept at ``value_ref``), and
    ``value_bytes`` (the exact value's UTF-8 length)."""

    text: str
    flagged: bool
    value_bytes: int


def stored_value(value: str, max_bytes: int) -> StoredValue:
    """The stored form of ``value`` for a column of ``max_bytes`` bytes.

    - Without U+0000: the value, or, when longer than ``max_bytes``, its longest whole-character
      prefix that fits (flagged).
    - With U+0000: its :func:`escape` d form when that fits (flagged; always longer in bytes than
      the value, since each U+0000 takes two bytes), else the value's prefix up to its first U+0000
      cut to fit (flagged; shorter than the value). So a flagged row's text is escaped exactly when
      it is longer in bytes than ``value_bytes`` (:func:`decoded_value`).
    """
    data = value.encode("utf-8")
    size = len(data)
    if "\x00" not in value:
        if size <= max_bytes:
            return StoredValue(value, False, size)
        return StoredValue(cut_utf8(data, max_bytes).decode("utf-8"), True, size)
    escaped = escape(value)
    if len(escaped.encode("utf-8")) <= max_bytes:
        return StoredValue(escaped, True, size)
    return StoredValue(cut_utf8(data[: data.index(0)], max_bytes).decode("utf-8"), True, size)


def decoded_value(text: str, flagged: bool, value_bytes: int | None) -> tuple[str, bool]:
    """What a stored ``record_value`` says of the exact value: ``(text, exact)``. ``exact`` True: the
    text is the value; False: it is a prefix of it (the exact value is at ``value_ref``)."""
    if not flagged:
        return text, True
    if value_bytes is not None and len(text.encode("utf-8")) > value_bytes:
        return unescape(text), True
    return text, False


def stored_key(key: str) -> str:
    """The stored form of a record key: the key itself, unless it holds U+0000 or the text ``\\0``;
    then its :func:`escape` d form. Every escaped form holds ``\\0`` and no key stored as it is does,
    so two keys never share a stored form (:func:`original_key` inverts it)."""
    if "\x00" in key or ESCAPED_NUL in key:
        return escape(key)
    return key


def original_key(stored: str) -> str:
    """The record key whose stored form (:func:`stored_key`) is ``stored``."""
    return unescape(stored) if ESCAPED_NUL in stored else stored
