"""How SQL text that pgsteady did not write is sent to the server.

A change file's DDL and queries, and a proposal given to ``find_overlaps``,
are text from a file a user hands us. They are read with pglast, which lexes
SQL the way a server with the default settings does. Three rules keep the
server from reading more into the text than pglast did:

- the session's lexing settings are pinned (``PINNED``): with
  ``standard_conforming_strings = off`` the server reads ``'x\\'`` as the
  start of a longer string than pglast saw, and text pglast took for a
  string literal would run as SQL;
- the text goes through the extended protocol (``execute_one``), which
  takes exactly one statement: a ``; COMMIT; ...`` after it is a syntax
  error, never a second statement run outside our transaction;
- values go as bound parameters, never spliced into the text.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ..security.settings import CHANGE_FILE_LEXING

# Settings that change how the server splits text into tokens (their one home is security/settings.py).
PINNED = CHANGE_FILE_LEXING


def pin(conn: psycopg.Connection, *, local: bool = False) -> None:
    """Pin the lexing settings for the session (``local``: for the current transaction only)."""
    verb = sql.SQL("SET LOCAL" if local else "SET")
    for name, value in PINNED.items():
        conn.execute(sql.SQL("{} {} = {}").format(verb, sql.Identifier(name), sql.Literal(value)))


def execute_one(cur: psycopg.Cursor, text: str, params: Any = None) -> psycopg.Cursor:
    """Run ``text`` as one statement through the extended protocol (binary results force it,
    also when there are no parameters)."""
    return cur.execute(text, params, binary=True)
