"""The runner of the demo's day: numbered steps, each saying what it shows,
with progress while it works and the claims it checked when it is done.

A step is a function of the `Day`. It talks to the person through
``day.say`` / ``day.progress`` and records what it promises through
``day.claim(text, held, **figures)``; the demo exits 0 only when every claim
held, so the demo is also a test of the product.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


@dataclass(frozen=True)
class Sizes:
    events: int
    posts: int
    pace: float          # seconds the feed takes per chunk of posts
    watch: float         # seconds `change verify` watches after the build

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        return cls(100_000, 4_000, 0.12, 2.0) if quick else cls(1_000_000, 20_000, 0.04, 5.0)


@dataclass
class Claim:
    text: str
    held: bool
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepRecord:
    number: int
    title: str
    shows: str
    claims: list[Claim] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    look: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Step:
    title: str
    shows: str
    run: Callable[[Day], None]


class Day:
    """What every step shares: where the database and the files are, the
    sizes, the person's console, and the record of claims."""

    def __init__(self, *, dsn: str, schema: str, folder: Path, quick: bool, console: Console, stamp: str) -> None:
        self.dsn = dsn
        self.schema = schema
        self.folder = folder
        self.quick = quick
        self.sizes = Sizes.of(quick)
        self.console = console
        self.stamp = stamp
        self.steps: list[StepRecord] = []
        self.state: dict[str, Any] = {}   # what a later step needs from an earlier one

    @property
    def current(self) -> StepRecord:
        return self.steps[-1]

    def say(self, text: str) -> None:
        """One line for the person; text from the database is escaped by the caller's use of escape()."""
        self.console.print(f"   {text}", highlight=False)

    def claim(self, text: str, held: bool, **figures: Any) -> bool:
        self.current.claims.append(Claim(text, bool(held), figures))
        self.current.figures.update(figures)
        mark = "[green]✓[/green]" if held else "[red]✗ NOT HELD:[/red]"
        self.console.print(f"   {mark} {escape(text)}", highlight=False)
        return bool(held)

    def figure(self, **figures: Any) -> None:
        self.current.figures.update(figures)

    def look(self, command: str) -> None:
        self.current.look.append(command)

    @contextlib.contextmanager
    def progress(self, label: str, total: int | None = None) -> Iterator[Callable[..., None]]:
        """A bar (with a total) or a spinner; yields update(completed=None, description=None, total=None)."""
        columns = [SpinnerColumn(), TextColumn("   {task.description}"), BarColumn()]
        if total is not None:
            columns.append(MofNCompleteColumn())
        columns.append(TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(label, total=total)

            def update(completed: int | None = None, description: str | None = None, total: int | None = None) -> None:
                kwargs: dict[str, Any] = {}
                if completed is not None:
                    kwargs["completed"] = completed
                if description is not None:
                    kwargs["description"] = description
                if total is not None:
                    kwargs["total"] = total
                bar.update(task, **kwargs)

            yield update

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
        """Poll ``predicate`` until it returns something truthy; a demo step
        that waits forever helps nobody, so this gives up after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise DemoStuck(f"gave up waiting {timeout:.0f} s for {what}")
            time.sleep(every)

    # -- the whole walk ---------------------------------------------------------

    def walk(self, steps: list[Step]) -> bool:
        for number, step in enumerate(steps, 1):
            record = StepRecord(number, step.title, step.shows)
            self.steps.append(record)
            self.console.print(f"\n[bold]{number}. {escape(step.title)}[/bold]")
            self.console.print(f"   [dim]{escape(step.shows)}[/dim]", highlight=False)
            started = time.monotonic()
            try:
                step.run(self)
            except Exception as exc:  # a step that breaks is a claim that did not hold, not a traceback
                from ..database import scrub

                self.claim(f"the step ran to the end ({type(exc).__name__}: {scrub(str(exc)).splitlines()[0] if str(exc) else ''})",
                           False)
            record.seconds = time.monotonic() - started
            for command in record.look:
                self.console.print(f"   [dim]look:[/dim] {escape(command)}", highlight=False)
        return self.held

    @property
    def held(self) -> bool:
        return all(c.held for s in self.steps for c in s.claims)

    def to_json(self) -> dict[str, Any]:
        return {
            "held": self.held,
            "quick": self.quick,
            "folder": str(self.folder),
            "seconds": round(sum(s.seconds for s in self.steps), 2),
            "steps": [{"number": s.number, "title": s.title, "seconds": round(s.seconds, 2),
                       "claims": [{"text": c.text, "held": c.held} for c in s.claims],
                       "figures": s.figures, "look": s.look} for s in self.steps],
        }


class DemoStuck(Exception):
    pass
