"""Durations as people write them: ``500ms``, ``30s``, ``5m``, ``2h``, ``7d``, ``2w`` or a number of seconds.

The one parser of the package: change files (``watch``, ``build.*``), cache
rules (TTLs), `indexes check --unused-min-history`, `change verify --watch`
and the relative times of `jobs list --since` all read durations here, so a
duration means the same everywhere. A bad one is one line that names the
field and says what to write.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .errors import ConfigError

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
EXAMPLES = "500ms, 30s, 10m, 2h or 7d"


def seconds(value: Any, where: str, *, maximum: float | None = None, whole: bool = False,
            exc: type[Exception] = ConfigError) -> float:
    """The seconds ``value`` stands for (a str with an optional unit, or a
    number), at least 0 and at most ``maximum``; with ``whole``, written as a
    whole number of its unit (``90m``, not ``1.5h``) and a whole number of
    seconds (returned as an int). ``where`` names the field in the
    error, which is raised as ``exc``."""
    found = _parse(value)
    if found is not None and whole and isinstance(value, str) and "." in value:
        found = None
    if found is not None and whole:
        found = round(found, 6)  # 3000ms is 3.0000000000000004 s in floating point
        found = found if found.is_integer() else None
    if found is None or (maximum is not None and found > maximum):
        notes = ["a plain number is seconds"] + (["whole numbers"] if whole else []) + (
            [f"at most {_spell(maximum)}"] if maximum is not None else [])
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise exc(f"{where} = {shown} is not a duration; write {EXAMPLES} ({'; '.join(notes)})")
    return int(found) if whole else found


def _parse(value: Any) -> float | None:
    if isinstance(value, str):
        m = _DURATION.match(value)
        number = float(m.group(1)) * UNITS[m.group(2) or "s"] if m else math.inf
        return number if math.isfinite(number) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int past any float
            return None
        return number if math.isfinite(number) and number >= 0 else None
    return None


def _spell(limit: float) -> str:
    for unit in ("w", "d", "h", "m", "s"):
        if limit >= UNITS[unit] and (limit / UNITS[unit]).is_integer():
            return f"{int(limit / UNITS[unit])}{unit}"
    return f"{limit:g}s"
