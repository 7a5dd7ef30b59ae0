"""The exact, per-record check of a Cognito Streams record's *shape*: is it UTF-8, valid JSON, an
object, free of duplicate members, and are the members the decoder reads (:mod:`.rules`: the fields
and their types) of the right JSON type?

This is the slow path of :mod:`cognito_streams.core.decode`: the screens and parsers send here only
the few records they could not read (or found suspicious), and this module says exactly why, in the
words of :data:`cognito_streams.core.landing_format.REJECT_REASONS`. What it costs: orjson, and a second
parse with ``json`` for repeated member names, per record (tens of microseconds): fine for the few.

It mirrors what the columnar JSON reader accepts for the decoder's schema, no more: a record this
module accepts parses in the fast path, and a record it rejects would have broken the fast path.
Semantic checks (missing ids, unknown ``op``, negative counts, ...) are not done here; they are
the vectorized RECORD_CHECKS and ITEM_CHECKS of :mod:`.rules`, and apply to every record alike.

Details never contain record values: only field names, positions and types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from cognito_streams.core.decode.rules import (
    INT64_MAX,
    INT64_MIN,
    ITEM_FIELDS,
    ITEM_INT_FIELDS,
    ITEM_STRING_FIELDS,
    RECORDS_FIELD,
    TOP_FIELDS,
    TOP_INT_FIELDS,
    TOP_STRING_FIELDS,
)


@dataclass(frozen=True, slots=True)
class ShapeError:
    """Why a record cannot be decoded: a reason code and a detail without record values."""

    reason: str
    detail: str
    identity_pool_id: str | None = None
    identity_id: str | None = None
    dataset_name: str | None = None
    #: The ids above are the record's as :func:`identities` reads them (None included): the rejects
    #: file need not parse the record again for them.
    ids_read: bool = False


class Members(dict[str, Any]):
    """A JSON object that remembers which member names it saw more than once (``json.loads``'s
    ``object_pairs_hook``)."""

    __slots__ = ("repeated",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.repeated: set[str] = set()
        if len(self) != len(pairs):
            seen: set[str] = set()
            for name, _ in pairs:
                if name in seen:
                    self.repeated.add(name)
                seen.add(name)


def reject_constant(name: str) -> Any:
    """For ``json.loads(parse_constant=...)``: refuse NaN and Infinity."""
    # json accepts NaN/Infinity; the JSON grammar (and the fast reader) does not.
    raise ValueError(f"{name} is not valid JSON")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number with a fraction or exponent"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _int_problem(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return "an integer outside the signed 64-bit range"
    return f"a JSON {_json_type(value)}"


def _is_int64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def _ids(obj: dict[str, Any]) -> dict[str, str | None]:
    def text(name: str) -> str | None:
        value = obj.get(name)
        return value if isinstance(value, str) else None

    return {
        "identity_pool_id": text("identityPoolId"),
        "identity_id": text("identityId"),
        "dataset_name": text("dataSetName") or text("datasetName"),
    }


def parse_object(data: bytes) -> tuple[dict[str, Any] | None, ShapeError | None]:
    """Parse ``data`` as one JSON object, strictly (UTF-8, RFC 8259, no NaN, no lone surrogates).

    Returns ``(object, None)`` or ``(None, error)``. Duplicate member names are kept visible on the
    returned object (see :func:`check_shape`).
    """
    value, error = _strict(data)
    if error is not None:
        return None, error
    try:
        # json gives the member pairs, so repeated names can be seen; orjson keeps only the last.
        value = json.loads(data.decode("utf-8"), object_pairs_hook=Members, parse_constant=reject_constant)
    except (ValueError, RecursionError) as err:  # unreachable after orjson accepted it, kept for safety
        return None, ShapeError("invalid_json", f"not valid JSON: {type(err).__name__}")
    return value, None


def _strict(data: bytes) -> tuple[Any, ShapeError | None]:
    """orjson's strict parse (grammar, UTF-8, lone surrogates, control characters, trailing data).

    Its errors carry the ids :func:`identities` would read, none: orjson cannot read the record as
    an object.
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, ShapeError(
            "invalid_utf8", f"not UTF-8: byte 0x{data[err.start]:02x} at offset {err.start}", ids_read=True
        )
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        return None, ShapeError("invalid_json", f"not valid JSON: {err.msg} at offset {err.pos}", ids_read=True)
    if not isinstance(value, dict):
        return None, ShapeError("not_an_object", f"a JSON {_json_type(value)}, not an object", ids_read=True)
    return value, None


def check_shape(data: bytes) -> ShapeError | None:
    """``None`` when ``data`` is a record the fast decoder can read, else the first problem found.

    Types are checked on orjson's parse first; only a record that passes is parsed a second time
    (slower) to see repeated member names.
    """
    value, error = _strict(data)
    if error is not None:
        return error
    error = check_object_shape(value)
    if error is not None:
        return error
    obj, error = parse_object(data)
    if error is not None or obj is None:
        return error
    return check_object_shape(obj)


def check_object_shape(obj: dict[str, Any]) -> ShapeError | None:
    """The type checks of :func:`check_shape` on an already parsed object."""
    ids: dict[str, Any] = {**_ids(obj), "ids_read": True}
    repeated: set[str] = getattr(obj, "repeated", set()) & set(TOP_FIELDS)
    if repeated:
        return ShapeError("duplicate_keys", f"member {sorted(repeated)[0]!r} appears more than once", **ids)
    for name in TOP_STRING_FIELDS:
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            return ShapeError("bad_field_type", f"{name} is a JSON {_json_type(value)}, expected a string", **ids)
    for name in TOP_INT_FIELDS:
        value = obj.get(name)
        if value is not None and not _is_int64(value):
            return ShapeError("bad_field_type", f"{name} is {_int_problem(value)}, expected an integer", **ids)
    items = obj.get(RECORDS_FIELD)
    if items is None:
        return None
    if not isinstance(items, list):
        return ShapeError("bad_field_type", f"{RECORDS_FIELD} is a JSON {_json_type(items)}, expected an array", **ids)
    for index, item in enumerate(items):
        where = f"{RECORDS_FIELD}[{index}]"
        if item is None:
            continue  # the decoder rejects it as a missing element, like the fast path
        if not isinstance(item, dict):
            return ShapeError("bad_field_type", f"{where} is a JSON {_json_type(item)}, expected an object", **ids)
        repeated_here: set[str] = getattr(item, "repeated", set()) & set(ITEM_FIELDS)
        if repeated_here:
            return ShapeError(
                "duplicate_keys", f"{where}: member {sorted(repeated_here)[0]!r} appears more than once", **ids
            )
        for name in ITEM_STRING_FIELDS:
            value = item.get(name)
            if value is not None and not isinstance(value, str):
                return ShapeError(
                    "bad_field_type", f"{where}.{name} is a JSON {_json_type(value)}, expected a string", **ids
                )
        for name in ITEM_INT_FIELDS:
            value = item.get(name)
            if value is not None and not _is_int64(value):
                return ShapeError(
                    "bad_field_type", f"{where}.{name} is {_int_problem(value)}, expected an integer", **ids
                )
    return None


def identities(data: bytes) -> dict[str, str | None]:
    """The record's ids when they can be read (for the rejects file), else nulls."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {"identity_pool_id": None, "identity_id": None, "dataset_name": None}
    if not isinstance(obj, dict):
        return {"identity_pool_id": None, "identity_id": None, "dataset_name": None}
    return _ids(obj)
