"""Redaction: no malformed DSN, however it is broken, gets its password into a message."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pgsteady import database
from pgsteady.errors import PgsteadyError

# Letters that ordinary messages do not put together, and the characters that break DSNs.
SECRET_LETTERS = "QJZKXVqjzkxv"
BREAKERS = " %@:/?'\"\\=&#\t"
password = st.text(alphabet=SECRET_LETTERS + "78" + BREAKERS, min_size=6, max_size=24).filter(
    lambda p: sum(c in SECRET_LETTERS for c in p) >= 4)

TEMPLATES = [
    "postgresql://app:{pw}@db.example.test:5432/prod",
    "postgres://app:{pw}@db.example.test/prod?sslmode=require",
    "postgresql://app:{pw}%@db.example.test/prod",
    "postgresql://app:{pw}%00@db.example.test/prod",
    "postgresql://app:{pw}@db.example.test:x/prod",
    "postgresql://:{pw}@/prod?host=/tmp",
    "postgresql://app@db.example.test/prod?password={pw}",
    "host=db.example.test user=app password={pw} dbname=prod",
    "host=db.example.test password='{pw}' dbname=prod",
    "host=db.example.test password='{pw} dbname=prod",
    "host=db.example.test password={pw} bogus=1",
]


def leaked(secret: str, message: str) -> list[str]:
    """Runs of 4+ characters of the password with at least 3 secret letters that appear in the message."""
    found = []
    for size in range(4, len(secret) + 1):
        for i in range(len(secret) - size + 1):
            piece = secret[i:i + size]
            if sum(c in SECRET_LETTERS for c in piece) >= 3 and piece in message:
                found.append(piece)
    return found


def messages_for(dsn: str) -> list[str]:
    """Every message pgsteady may build from this DSN: validation, describe, a refused connection."""
    out = [database.describe(dsn)]
    try:
        database.validate_dsn(dsn)
    except PgsteadyError as exc:
        out.append(str(exc))
    try:
        database.connect(dsn, connect_timeout=1).close()
    except PgsteadyError as exc:
        out.append(str(exc))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pw=password, template=st.sampled_from(TEMPLATES), encode=st.booleans())
@example(pw="?J@JJJ/", template=TEMPLATES[0], encode=False)  # a "?" before the "@": found by Hypothesis
def test_no_message_about_a_malformed_dsn_carries_its_password(pw, template, encode):
    # The host does not resolve (.test), so connecting fails fast and offline.
    dsn = template.format(pw=quote(pw, safe="") if encode else pw)
    for message in messages_for(dsn):
        assert "\n" not in message
        assert not leaked(pw, message), (dsn, message)


@pytest.mark.parametrize("dsn", [
    "postgresql://app:QJZKxvqj\0tail@h/db",
    "host=h password=QJZKxvqj\0 dbname=x",
])
def test_a_raw_nul_is_refused_without_quoting_the_dsn(dsn):
    with pytest.raises(PgsteadyError, match="NUL") as exc:
        database.validate_dsn(dsn)
    assert "QJZK" not in str(exc.value)


def test_has_password_tells_a_dsn_with_a_password_from_one_without():
    assert database.has_password("postgresql://app:pw@h/db")
    assert database.has_password("host=h password=x")
    assert database.has_password("postgresql://app:p w@h/db")  # even when libpq cannot parse it
    assert not database.has_password("postgresql://app@h/db")
    assert not database.has_password("service=prod")
