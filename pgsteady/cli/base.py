"""What every command shares: the resolved DSN, the user's App, JSON output."""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import click

from ..database import resolve_dsn, validate_dsn
from ..errors import ConfigError


@dataclass
class State:
    dsn: str | None
    app_path: str | None
    schema_option: str | None
    read_dsn: str | None = None
    _resolved: str | None = field(default=None, repr=False)
    _app: Any = field(default=None, repr=False)

    def resolved_dsn(self) -> str:
        """The DSN (--dsn, PGSTEADY_DSN, the App's, else the embedded server)."""
        if self._resolved is None:
            app = self.app(required=False)
            self._resolved = app.dsn if app is not None else resolve_dsn(self.dsn)
        return self._resolved

    def reading_dsn(self) -> tuple[str, bool]:
        """Where read-only commands read, and whether that is a --read-dsn
        (open it with database.connect(..., read_only=True))."""
        if self.read_dsn:
            return validate_dsn(self.read_dsn), True
        return self.resolved_dsn(), False

    @property
    def schema(self) -> str:
        """--schema, else the App's schema when --app is given, else pgsteady."""
        if self.schema_option:
            return self.schema_option
        app = self.app(required=False)
        return app.schema if app is not None else "pgsteady"

    def app(self, *, required: bool = True):
        """The user's App from --app / PGSTEADY_APP, configured with this DSN and schema."""
        if self._app is None:
            if not self.app_path:
                if not required:
                    return None
                raise ConfigError("this command needs your App: pass --app module:attr or set PGSTEADY_APP")
            self._app = load_app(self.app_path)
            self._app.configure(dsn=self.dsn, schema=self.schema_option)
        return self._app


def load_app(path: str):
    from ..app import App

    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--app {path!r} is not of the form module:attr (for example myproject.jobs:app)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r} for --app: {exc}") from None
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r} (from --app {path})") from None
    if not isinstance(app, App):
        raise ConfigError(f"--app {path} is a {type(app).__name__}, not a pgsteady.App")
    return app


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, sort_keys=False))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")


_RELATIVE = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, *, past: bool) -> datetime:
    """An ISO 8601 time (zone defaults to UTC) or a duration like 90s, 10m, 2h, 1d
    (before now when ``past``, else after now)."""
    text = text.strip()
    if text and text[:-1].replace(".", "", 1).isdigit() and text[-1] in _RELATIVE:
        delta = timedelta(seconds=float(text[:-1]) * _RELATIVE[text[-1]])
        now = datetime.now(timezone.utc)
        return now - delta if past else now + delta
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a time; use ISO 8601 (2026-11-28T09:00:00Z) or a duration like 10m, 2h, 1d") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
