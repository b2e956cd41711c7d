"""Errors a user can act on.

Every error pgsteady raises on purpose is a PgsteadyError whose message is one
line: what is wrong and how to fix it. The command line prints that line and
exits non-zero; nothing else is printed (no traceback, no DSN password).
"""

from __future__ import annotations

from collections.abc import Iterable


class PgsteadyError(Exception):
    """Base class: a problem the user can fix; str() is the one-line message."""

    exit_code = 2


class ConfigError(PgsteadyError):
    """Bad configuration: DSN, app path, option values."""


class DatabaseUnavailable(PgsteadyError):
    """PostgreSQL could not be reached."""


class UnknownTask(PgsteadyError):
    """A job names a task the App does not know."""


class InvalidPayload(PgsteadyError):
    """Job arguments that are not a JSON object, or too large."""


class SchemaNotReady(PgsteadyError):
    """The pgsteady schema is missing or older than this code."""


class JobNotFound(PgsteadyError):
    """No job with that id."""


class InvalidJobState(PgsteadyError):
    """The job is in a state that does not allow the requested action."""


class EmbeddedError(PgsteadyError):
    """The embedded PostgreSQL could not be started, stopped or found."""


def did_you_mean(name: object, choices: Iterable[str], *, none: str | None = None) -> str:
    """The one did-you-mean of the package: ``did you mean 'x'?`` for the
    closest choice, else the list of choices (``none`` when there are none)."""
    import difflib

    known = sorted(choices)
    if not known and none is not None:
        return none
    close = difflib.get_close_matches(str(name), known, n=1)
    return f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(known)}"


def check_options(given: Iterable[str], allowed: Iterable[str], where: str, *, what: str = "option",
                  exc: type[Exception] = ConfigError) -> None:
    """Refuse the first unknown name (of an option, a field, a threshold) with
    one line and a did-you-mean: ``where: unknown option 'x'; did you mean 'y'?``."""
    allowed = set(allowed)
    for name in given:
        if name not in allowed:
            raise exc(f"{where}: unknown {what} {name!r}; {did_you_mean(name, allowed)}")
