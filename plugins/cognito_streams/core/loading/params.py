"""The manual-run Params of ``cognito_s3_to_redshift``, validated (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

Mode = Literal["load", "rebuild"]
MODES: tuple[Mode, ...] = ("load", "rebuild")


class LoadParamsError(ValueError):
    """A manual run's params are inconsistent; the message says which and how to fix them."""


@dataclass(frozen=True)
class LoadParams:
    """What one run does: load (new batches, or a day range, optionally forced again) or rebuild."""

    mode: Mode = "load"
    day_from: date | None = None
    day_to: date | None = None
    force: bool = False

    @classmethod
    def parse(cls, params: dict[str, Any] | None) -> LoadParams:
        """From the run's params (missing keys take the defaults of a scheduled run)."""
        params = params or {}
        mode = params.get("mode") or "load"
        if mode not in MODES:
            raise LoadParamsError(f"param mode is {mode!r}; use one of {MODES}")
        day_from, day_to = _day(params, "from_day"), _day(params, "to_day")
        force = _bool(params.get("force", False))
        if mode == "rebuild" and (day_from or day_to or force):
            raise LoadParamsError(
                "mode 'rebuild' rebuilds records and datasets from the whole history: leave from_day, to_day and "
                "force empty (to reload landed files, use mode 'load' with a day range)"
            )
        if day_from and day_to and day_from > day_to:
            raise LoadParamsError(f"from_day {day_from} is after to_day {day_to}; swap them")
        if force and not (day_from or day_to):
            raise LoadParamsError(
                "force reloads every batch of a day range again: give from_day and/or to_day (a forced reload of "
                "the whole landing zone is a mode 'load' run with from_day set to its first day)"
            )
        return cls(mode=mode, day_from=day_from, day_to=day_to, force=force)


def _day(params: dict[str, Any], name: str) -> date | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise LoadParamsError(f"param {name} is {value!r}; use a day as YYYY-MM-DD (UTC), e.g. 2026-03-01") from None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes")
