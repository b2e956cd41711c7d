"""From raw runs to what a reader needs: medians, ranges, ratios, targets, a table.

Every ratio is taken within one run (pass) of the suite, on the same machine
and server, then summarised like any other figure: median and range over the
runs. A ratio is always pgsteady ÷ other in the metric's own unit, so for
jobs/s above 1 is better for pgsteady and for milliseconds or seconds below 1
is. Scale ratios are loaded ÷ empty.
"""

from __future__ import annotations

import statistics
from typing import Iterable

def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def summarise(scenario: dict) -> None:
    """Fill scenario["summary"] and scenario["ratios"] from scenario["runs"]:
    runs[system] is a list (one per pass) of {metric: value} or None when
    that pass failed for that system."""
    runs = scenario["runs"]
    scenario["summary"] = {
        system: {metric: summary([r[metric] for r in per_run if r]) for metric in _metrics(per_run)}
        for system, per_run in runs.items() if any(per_run)
    }
    ratios = {}
    for a, b in scenario.get("compare", []):
        per_metric = {}
        for metric in _metrics(runs.get(a, [])):
            values = [ra[metric] / rb[metric] for ra, rb in zip(runs.get(a, []), runs.get(b, []))
                      if ra and rb and rb.get(metric)]
            if values:
                per_metric[metric] = summary(values)
        if per_metric:
            ratios[f"{a}/{b}"] = per_metric
    scenario["ratios"] = ratios


def _metrics(per_run: Iterable[dict | None]) -> list[str]:
    for r in per_run:
        if r:
            return list(r)
    return []


def fastest(runs: dict, systems: list[str], metric: str) -> list[dict | None]:
    """Per pass, the best figure among ``systems`` (a synthetic system)."""
    present = [runs[s] for s in systems if s in runs]
    out = []
    for i in range(max((len(p) for p in present), default=0)):
        vals = [p[i][metric] for p in present if i < len(p) and p[i]]
        out.append({metric: max(vals)} if vals else None)
    return out


def lower_is_better(metric: str) -> bool:
    return metric.endswith(("_ms", "_s", "_mb")) and not metric.endswith("per_s")


def fmt(value: float, metric: str) -> str:
    if metric.endswith("_ms"):
        return f"{value:.1f}"
    if lower_is_better(metric) or metric.startswith("growth"):
        return f"{value:.2f}"
    return f"{value:,.0f}"


def table(results: dict) -> str:
    """Markdown: one row per scenario, system and metric; median [min–max]."""
    lines = ["| scenario | system | metric | median | range | runs |", "| --- | --- | --- | ---: | ---: | ---: |"]
    for name, sc in results["scenarios"].items():
        if sc.get("skipped"):
            lines.append(f"| {name} | — | skipped: {sc['skipped']} | | | |")
            continue
        for system, metrics in sc.get("summary", {}).items():
            for metric, s in metrics.items():
                lines.append(f"| {name} | {system} | {metric} | {fmt(s['median'], metric)} | "
                             f"{fmt(s['min'], metric)}–{fmt(s['max'], metric)} | {len(s['runs'])} |")
        for system, err in sc.get("errors", {}).items():
            lines.append(f"| {name} | {system} | failed: {err.splitlines()[0][:120]} | | | |")
    lines += ["", "| scenario | ratio | metric | median | range |", "| --- | --- | --- | ---: | ---: |"]
    for name, sc in results["scenarios"].items():
        for pair, metrics in sc.get("ratios", {}).items():
            for metric, s in metrics.items():
                lines.append(f"| {name} | {pair} | {metric} | {s['median']:.2f}x | {s['min']:.2f}–{s['max']:.2f}x |")
    return "\n".join(lines)


def targets(results: dict) -> list[dict]:
    """The targets of the speed issues, judged on the medians of within-run ratios.

    Drain: pgsteady's best of concurrency 20 and 100 in each pass against the
    fastest PgQueuer configuration and against the plain-SQL queue that
    claims 100 with UPDATE ... RETURNING and deletes them afterwards."""
    sc = results["scenarios"]
    out = []

    def ratio(scenario: str, pair: str, metric: str):
        return sc.get(scenario, {}).get("ratios", {}).get(pair, {}).get(metric, {}).get("median")

    def median(scenario: str, system: str, metric: str):
        return sc.get(scenario, {}).get("summary", {}).get(system, {}).get(metric, {}).get("median")

    def add(text: str, value, ok) -> None:
        out.append({"target": text, "value": value, "holds": None if value is None else ok(value)})

    for d in ("drain_1", "drain_2"):
        best = "pgsteady_best" if "pgsteady_best" in sc.get(d, {}).get("runs", {}) else "pgsteady"
        add(f"{d}: pgsteady (best of c20, c100) >= 2.5x the fastest PgQueuer",
            ratio(d, f"{best}/pgqueuer_fastest", "jobs_per_s"), lambda v: v >= 2.5)
        add(f"{d}: pgsteady (best of c20, c100) >= 0.8x plain SQL (UPDATE-claim 100, then DELETE)",
            ratio(d, f"{best}/plain_sql_update_b100", "jobs_per_s"), lambda v: v >= 0.8)
    add("enqueue_bulk (calls of 1,000): pgsteady >= 1.5x PgQueuer",
        ratio("enqueue_bulk", "pgsteady/pgqueuer", "jobs_per_s"), lambda v: v >= 1.5)
    add("enqueue_one: pgsteady >= 0.9x a plain autocommit INSERT",
        ratio("enqueue_one", "pgsteady/plain_sql", "jobs_per_s"), lambda v: v >= 0.9)
    for p, limit in (("p50_ms", 5), ("p99_ms", 10)):
        ours = median("latency", "pgsteady", p)
        add(f"latency: pgsteady {p[:3]} <= {limit} ms", ours, lambda v, limit=limit: v <= limit)
        theirs = median("latency", "pgqueuer", p)
        if theirs is not None:
            add(f"latency: pgsteady {p[:3]} below PgQueuer's ({theirs:.1f} ms)", ours,
                lambda v, theirs=theirs: v < theirs)
    add("memory: a worker at concurrency 100 stays under 150 MB RSS", median("memory", "pgsteady", "max_rss_mb"),
        lambda v: v < 150)
    add("memory: flat over the drain (end / first tenth <= 1.1)",
        median("memory", "pgsteady", "growth_after_first_tenth"), lambda v: v <= 1.1)
    for name, s in sc.items():
        if not name.startswith("scale_"):
            continue
        for metric, r in s.get("ratios", {}).get("loaded/empty", {}).items():
            add(f"{name} ({metric}): within 10% of an empty history", r["median"],
                (lambda v: v <= 1.1) if lower_is_better(metric) else (lambda v: v >= 0.9))
    check = sc.get("scale_indexes", {}).get("summary", {}).get("loaded", {}).get("wall_s", {}).get("median")
    add("scale_indexes: `indexes check` on the big catalogue under 2 s (issue 4)", check, lambda v: v < 2)
    return out


def targets_table(rows: list[dict]) -> str:
    lines = ["| target | value (median) | holds |", "| --- | ---: | --- |"]
    for t in rows:
        value = "—" if t["value"] is None else f"{t['value']:.2f}"
        holds = "not measured" if t["holds"] is None else ("yes" if t["holds"] else "**no**")
        lines.append(f"| {t['target']} | {value} | {holds} |")
    return "\n".join(lines)
