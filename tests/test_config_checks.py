"""The package's one duration parser and its one did-you-mean, and the callers that share them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgsteady import durations
from pgsteady.cache.rules import MAX_TTL, RulesError, ttl
from pgsteady.changes.files import ChangeFileError
from pgsteady.changes.files import seconds as change_seconds
from pgsteady.errors import ConfigError, check_options, did_you_mean

from .helpers import ROOT


@pytest.mark.parametrize("text, expected", [
    ("30s", 30), ("5m", 300), ("2h", 7200), ("7d", 604800), ("2w", 1209600), ("500ms", 0.5), ("90", 90),
    (" 1.5h ", 5400), ("0", 0), (45, 45), (2.5, 2.5), ("10 m", 600),
])
def test_a_duration_is_read_the_same_everywhere(text, expected):
    assert durations.seconds(text, "x") == expected
    assert change_seconds(text, "watch") == expected
    if float(expected).is_integer() and "." not in str(text):  # a cache TTL is written in whole numbers
        assert ttl(text, "cache.cdn") == expected


@pytest.mark.parametrize("bad", ["", "soon", "-5s", "5 parsecs", "1y", "s", "1e3", True, None, -1, float("nan"),
                                 float("inf"), "9" * 400 + "d", 10**400, [30]])
def test_what_is_not_a_duration_is_one_line_naming_the_field(bad):
    with pytest.raises(ConfigError) as caught:
        durations.seconds(bad, "build.lock_timeout")
    message = str(caught.value)
    assert message.startswith("build.lock_timeout = ") and "is not a duration; write" in message
    assert "\n" not in message and len(message) < 200
    with pytest.raises(ChangeFileError, match="^watch = "):
        change_seconds(bad, "watch")
    with pytest.raises(RulesError, match=r"^rule 'posts'\.cache\.cdn = "):
        ttl(bad, "rule 'posts'.cache.cdn")


def test_cache_ttls_are_whole_seconds_up_to_a_year():
    assert ttl("365d", "cdn") == MAX_TTL and ttl("3000ms", "cdn") == 3
    for bad in ("366d", "1.5s", "1.5h", "100ms", MAX_TTL + 1, 2.5):
        with pytest.raises(RulesError, match="whole numbers; at most 365d"):
            ttl(bad, "cdn")


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted(durations.UNITS)))
def test_any_number_with_a_unit_is_that_many_units(n, unit):
    assert durations.seconds(f"{n}{unit}", "x") == pytest.approx(n * durations.UNITS[unit])
    assert durations.seconds(f" {n} {unit} ", "x") == pytest.approx(n * durations.UNITS[unit])


@given(st.text(max_size=20))
def test_any_text_is_a_duration_or_one_line_error(text):
    try:
        value = durations.seconds(text, "field")
    except ConfigError as exc:
        assert str(exc).startswith("field = ") and "\n" not in str(exc)
    else:
        assert value >= 0


def test_relative_times_of_the_cli_use_the_same_parser():
    from datetime import datetime, timezone

    import click

    from pgsteady.cli.base import parse_time

    now = datetime.now(timezone.utc)
    assert abs((now - parse_time("2d", past=True)).total_seconds() - 2 * 86400) < 60
    assert parse_time("2026-11-28T09:00:00", past=True) == datetime(2026, 11, 28, 9, tzinfo=timezone.utc)
    for bad in ("soon", "99999999999999d"):
        with pytest.raises(click.BadParameter):
            parse_time(bad, past=True)


@pytest.mark.parametrize("call, message", [
    (lambda: check_options({"concurency": 4}, ["concurrency", "queues"], "Worker"),
     "Worker: unknown option 'concurency'; did you mean 'concurrency'?"),
    (lambda: check_options({"zzz": 1}, ["b", "a"], "where", what="field"), "where: unknown field 'zzz'; use one of a, b"),
    (lambda: __import__("pgsteady.indexes", fromlist=["check"]).check("postgresql://x@127.0.0.1:1/x", bloat_ration=0.1),
     "indexes.check: unknown threshold 'bloat_ration'; did you mean 'bloat_ratio'?"),
    (lambda: __import__("pgsteady.dashboard.app", fromlist=["create_app"]).create_app(
        dsn="postgresql://x@127.0.0.1:1/x", read_onyl=True), "create_app: unknown option 'read_onyl'; did you mean 'read_only'?"),
    (lambda: __import__("pgsteady.cache.targets", fromlist=["compile"]).compile(None, "ngnix"),
     "unknown target 'ngnix'; did you mean 'nginx'?"),
    (lambda: __import__("pgsteady.topology", fromlist=["pooler_setting"]).pooler_setting("sesion"),
     "pooler 'sesion' is not known; did you mean 'session'?"),
])
def test_every_unknown_name_gets_the_same_did_you_mean(call, message):
    with pytest.raises(ConfigError) as caught:
        call()
    assert message in str(caught.value)


def test_did_you_mean_without_choices_says_so():
    assert did_you_mean("x", [], none="no schedules yet") == "no schedules yet"
    assert did_you_mean("x", ["y"], none="no schedules yet") == "use one of y"


def test_one_did_you_mean_and_one_duration_parser_in_the_package():
    """No module but errors.py asks difflib for close matches, and none but
    durations.py holds a table of duration units."""
    offenders = []
    for path in sorted((ROOT / "pgsteady").rglob("*.py")):
        tree = ast.parse(path.read_text())
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "get_close_matches" and rel != "pgsteady/errors.py":
                offenders.append(f"{rel}:{node.lineno} get_close_matches")
            if isinstance(node, ast.Dict) and rel != "pgsteady/durations.py":
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                values = {v.value for v in node.values if isinstance(v, ast.Constant)}
                if {"m", "h"} <= keys and {60, 3600} <= values:
                    offenders.append(f"{rel}:{node.lineno} a table of duration units")
    assert offenders == []


def test_the_cache_rules_no_longer_import_the_change_workflow():
    source = Path(ROOT / "pgsteady" / "cache" / "rules.py").read_text()
    assert "changes" not in {n.module.split(".")[-1] if n.module else "" for n in ast.walk(ast.parse(source))
                             if isinstance(n, ast.ImportFrom)}
