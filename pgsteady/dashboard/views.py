"""Small formatting helpers for the templates (Jinja filters)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from ..monitoring.questions import ago


def when(ts: datetime | None) -> str:
    if ts is None:
        return "-"
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def isotime(text: str | None) -> str:
    """A timestamp stored as ISO text inside JSON (attempt errors), shown like the others."""
    try:
        return when(datetime.fromisoformat(str(text)))
    except (TypeError, ValueError):
        return str(text or "-")


def since(ts: datetime | None) -> str:
    """How long ago, in words a tired person reads fast ("3m ago", "in 2h")."""
    if ts is None:
        return "-"
    delta = (datetime.now(timezone.utc) - ts).total_seconds()
    return f"{ago(delta)} ago" if delta >= 0 else f"in {ago(-delta)}"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return ago(value)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def number(value: float | int | None) -> str:
    return "-" if value is None else f"{value:,}"


FILTERS = {"when": when, "isotime": isotime, "since": since, "seconds": seconds, "pct": pct, "pretty": pretty, "number": number,
           "ago": ago}
