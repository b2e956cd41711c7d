"""What every command shares: the connection options, the one way to open a
connection and to answer "no", the user's App, safe output, JSON.

Exit codes: 0 yes/ok; 1 a negative answer (``answer_no()``); 2 an error, as
one line (a PgsteadyError, or anything else turned into one by ``main``).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, NoReturn

import click
import psycopg
from rich.text import Text

from .. import durations
from ..database import connect as _connect
from ..database import has_password, resolve_dsn, validate_dsn
from ..errors import ConfigError
from ..migrations import check_current


@dataclass
class State:
    dsn: str | None
    app_path: str | None
    schema_option: str | None
    read_dsn: str | None = None
    _resolved: str | None = field(default=None, repr=False)
    _app: Any = field(default=None, repr=False)
    _warned: bool = field(default=False, repr=False)

    def set_option(self, name: str, value: str | None, *, from_command_line: bool) -> None:
        """--dsn / --app / --schema, given before or after the command name (the later one wins)."""
        if value is None:
            return
        if self._resolved is not None or self._app is not None:
            raise ConfigError(f"--{name.removesuffix('_path').removesuffix('_option')} came too late; "
                              "give it before the command's arguments")
        setattr(self, name, value)
        if name == "dsn" and from_command_line and has_password(value) and not self._warned:
            self._warned = True
            click.echo("pgsteady: warning: --dsn carries a password, which every local user can read with `ps`; "
                       "use PGSTEADY_DSN, PGPASSWORD, a service file (PGSERVICE) or ~/.pgpass instead", err=True)

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


def connect(state: State, *, schema: bool = True, reading: bool = False,
            connect_timeout: int | None = None) -> psycopg.Connection:
    """The one way a command opens a connection: autocommit, and (by default) refusing
    a schema that is missing or at another version with the one-line fix. With
    ``reading``, a read-only command's: the --read-dsn when one is given (opened
    read-only); without it, never the --read-dsn."""
    dsn, read_only = state.reading_dsn() if reading else (state.resolved_dsn(), False)
    extra = {} if connect_timeout is None else {"connect_timeout": connect_timeout}
    conn = _connect(dsn, autocommit=True, read_only=read_only, **extra)
    if schema:
        try:
            check_current(conn, state.schema)
        except BaseException:
            conn.close()
            raise
    return conn


def answer_no() -> NoReturn:
    """The one way a command answers "no" (unhealthy, worse, stopped, bad lines): exit code 1.

    Whatever the command printed stays printed; click's Exit works both under
    ``main`` (standalone_mode=False) and under CliRunner."""
    raise click.exceptions.Exit(1)


def shared_options(command: click.Command) -> None:
    """Accept --dsn, --app and --schema after the command name too (`pgsteady jobs list --app x:app`)."""
    names = {opt for p in command.params for opt in getattr(p, "opts", ())}
    for name, flag, metavar in (("dsn", "--dsn", "DSN"), ("app_path", "--app", "MODULE:ATTR"),
                                ("schema_option", "--schema", "NAME")):
        if flag in names:  # a command's own option of that name keeps its meaning
            continue
        command.params.append(click.Option(
            [flag, name], metavar=metavar, expose_value=False, is_eager=True, callback=_set_shared,
            help=f"As `pgsteady {flag}` before the command."))


def _set_shared(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    state = ctx.find_object(State)
    if state is not None and not ctx.resilient_parsing:
        state.set_option(param.name, value, from_command_line=True)


# Characters that would move the cursor, recolour or retitle the terminal when
# text from the database is printed (C0 but tab and newline, DEL, C1), and the
# bidirectional overrides that would make shown text read differently.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(value: Any, *, newlines: bool = True) -> str:
    """Text from the database made safe for a terminal: control characters shown as \\xNN."""
    text = "" if value is None else str(value)
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                        text)
    return text if newlines else text.replace("\n", "\\n")


def cell(value: Any, limit: int | None = None) -> Text:
    """A table cell of untrusted text: no rich markup is interpreted, no control character passes."""
    text = clean(value, newlines=False)
    return Text(text[:limit] if limit else text)


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


def parse_time(text: str, *, past: bool) -> datetime:
    """An ISO 8601 time (zone defaults to UTC) or a duration like 90s, 10m, 2h, 1d
    (durations.seconds; before now when ``past``, else after now)."""
    text = text.strip()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    try:
        delta = timedelta(seconds=durations.seconds(text, "time"))
    except (ConfigError, OverflowError):
        raise click.BadParameter(f"{text!r} is not a time; use ISO 8601 (2026-11-28T09:00:00Z) or a duration like 10m, 2h, 1d") from None
    now = datetime.now(timezone.utc)
    try:
        return now - delta if past else now + delta
    except OverflowError:
        raise click.BadParameter(f"{text!r} is too far from now; use ISO 8601 (2026-11-28T09:00:00Z) or a shorter duration") from None
