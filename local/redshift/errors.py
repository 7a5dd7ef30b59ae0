"""Errors the Redshift emulator sends to its clients, shaped like Amazon Redshift's.

Every part of the emulator (the SQL gate, the COPY from S3, the session) raises :class:`RedshiftError`;
the wire server turns it into one PostgreSQL ErrorResponse (severity ERROR) with these fields.
"""

from __future__ import annotations


class RedshiftError(Exception):
    """An error as Redshift reports it.

    ``message``: the primary text (Redshift's own wording where known, e.g. ``value too long for type
    character varying(64)``). ``sqlstate``: the five-character SQLSTATE (``XX000`` is Redshift's most common
    one for its internal errors). ``detail``/``hint``: the optional DETAIL and HINT fields. ``code``: Redshift's
    numeric error code where it has one (1023 for a serializable isolation violation, 1204 for a load error of
    a too-long string, ...), shown in the detail as Redshift does.
    """

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str = "XX000",
        detail: str | None = None,
        hint: str | None = None,
        code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.detail = detail
        self.hint = hint
        self.code = code

    def __str__(self) -> str:
        parts = [self.message]
        if self.detail:
            parts.append(f"DETAIL: {self.detail}")
        if self.hint:
            parts.append(f"HINT: {self.hint}")
        return "\n".join(parts)
