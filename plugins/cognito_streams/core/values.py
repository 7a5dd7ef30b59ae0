"""Values too long for Redshift's VARCHAR: cut at a UTF-8 character boundary, never silently.

The changes file keeps the first ``max_bytes`` bytes of such a value (whole characters only), flags
the row (``is_value_cut``), records the full length (``value_bytes``) and points (``value_ref``) at
the full text, which the landing step writes to ``values/...``.
"""

from __future__ import annotations


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
