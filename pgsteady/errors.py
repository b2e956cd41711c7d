"""Errors a user can act on.

Every error pgsteady raises on purpose is a PgsteadyError whose message is one
line: what is wrong and how to fix it. The command line prints that line and
exits non-zero; nothing else is printed (no traceback, no DSN password).
"""

from __future__ import annotations


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
