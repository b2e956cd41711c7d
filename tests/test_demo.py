"""The demo is the product's first impression and a test of it: every claim
it prints is checked, and its exit code says whether all of them held."""

from __future__ import annotations

import io
import json

from rich.console import Console

from pgsteady.demo.walk import Day, Step

from .test_cli import pgsteady


def _figures(summary: dict) -> dict:
    merged: dict = {}
    for step in summary["steps"]:
        merged.update(step["figures"])
    return merged


def test_quick_demo_holds_every_claim_twice_in_a_row(dsn, tmp_path):
    for run in (1, 2):  # the second run starts the site afresh and still holds
        r = pgsteady("demo", "--quick", "--json", "--dir", str(tmp_path / "demo"), dsn=dsn)
        assert r.returncode == 0, r.stderr[-3000:]
        summary = json.loads(r.stdout)
        failed = [c["text"] for s in summary["steps"] for c in s["claims"] if not c["held"]]
        assert summary["held"] and not failed, failed
        f = _figures(summary)
        assert f["posts"] == 4_000 and f["duplicates"] == 0
        assert 0 < f["checkpoint_at_kill"] < 4_000 and f["resumed_from"] == f["checkpoint_at_kill"]
        assert f["attempts"] == 2 and f["digest_attempts"] == 3
        assert f["speedup"] > 1 and f["writes_during_build"] > 0
    notes = sorted((tmp_path / "demo" / "changes").glob("*.md"))
    assert len(notes) == 2 and "## Files touched" in notes[-1].read_text()


def _day(tmp_path) -> Day:
    return Day(dsn="postgresql:///unused", schema="pgsteady", folder=tmp_path, quick=True,
               console=Console(file=io.StringIO(), width=120), stamp="t")


def test_a_claim_that_does_not_hold_fails_the_walk(tmp_path):
    day = _day(tmp_path)
    held = day.walk([Step("fine", "", lambda d: d.claim("one", True)),
                     Step("broken promise", "", lambda d: d.claim("two", False))])
    assert held is False and [c.held for s in day.steps for c in s.claims] == [True, False]


def test_a_step_that_raises_is_a_claim_that_did_not_hold_not_a_traceback(tmp_path):
    def boom(d: Day) -> None:
        raise RuntimeError("password=hunter2 host=db")

    day = _day(tmp_path)
    assert day.walk([Step("boom", "", boom), Step("after", "", lambda d: d.claim("still runs", True))]) is False
    texts = [c.text for s in day.steps for c in s.claims]
    assert "still runs" in texts and "hunter2" not in " ".join(texts)
