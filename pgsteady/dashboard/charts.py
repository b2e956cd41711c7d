"""Per-minute charts drawn on the server as SVG: no script, no library.

A chart is a polyline over the minutes of a window, a y axis from 0 to a
rounded maximum, and a dashed vertical line at each deploy mark. Values
become coordinates here (numbers only); the template draws them, so nothing
from the database reaches the SVG except through Jinja's escaping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from ..monitoring.counts import Counts
from .reads import Series

WIDTH, HEIGHT, LEFT, BOTTOM = 560, 120, 48, 18


@dataclass
class Chart:
    title: str
    unit: str
    points: str
    top: float
    top_label: str
    last_label: str
    start_label: str
    end_label: str
    marks: list[tuple[float, str]] = field(default_factory=list)
    empty: bool = False
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: int = BOTTOM


# Each metric of a point of `minutes` minutes: counts become a rate per
# minute (a 5-minute point of the day chart shows its average minute).
METRICS: tuple[tuple[str, str, Callable[[Counts, float], float | None]], ...] = (
    ("Finished per minute", "jobs", lambda c, minutes: c.succeeded / minutes),
    ("Failures per minute", "attempts", lambda c, minutes: c.failures / minutes),
    ("Wait p95", "seconds", lambda c, minutes: c.wait_quantile(0.95)),
    ("Run p95", "seconds", lambda c, minutes: c.run_quantile(0.95)),
)


def charts(s: Series) -> list[Chart]:
    minutes = s.step.total_seconds() / 60
    return [chart(title, unit, [value(c, minutes) for c in s.counts], s) for title, unit, value in METRICS]


def chart(title: str, unit: str, values: list[float | None], s: Series) -> Chart:
    n = max(1, len(values) - 1)
    known = [v for v in values if v is not None]
    top = nice(max(known, default=0.0))
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - 4
    pts = []
    for i, v in enumerate(values):
        x = LEFT + plot_w * i / n
        y = 4 + plot_h * (1 - (v or 0.0) / top)
        pts.append(f"{x:.1f},{y:.1f}")
    span = (s.until - s.since).total_seconds() or 1.0
    marks = [(LEFT + plot_w * (at - s.since).total_seconds() / span, version) for at, version in s.deploys]
    return Chart(title, unit, " ".join(pts), top, fmt(top, unit), fmt(known[-1] if known else None, unit),
                 _time(s.since), _time(s.until), marks, empty=not any(known))


def nice(value: float) -> float:
    """A round axis maximum at or above value (1, 2, 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit != "seconds":
        return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def _time(ts: datetime) -> str:
    return ts.strftime("%H:%M")
