"""Logging: the server's settings, and pgsteady's own formatters judged by calling them."""

from __future__ import annotations

import json
import logging
import re

from pgsteady.database import scrub
from pgsteady.monitoring.logs import JsonFormatter, TextFormatter
from pgsteady.security.logs import _statement
from pgsteady.security.runner import gather, run
from pgsteady.security.settings import mask_secrets


class LeakyFormatter(logging.Formatter):
    """What logging gives by default: the message as is."""


class CarefulFormatter(logging.Formatter):
    """Redacts passwords and secret-looking extra fields; escapes newlines."""

    def format(self, record: logging.LogRecord) -> str:
        fields = mask_secrets({k: v for k, v in vars(record).items() if k in ("password", "api_token")})
        text = scrub(record.getMessage()).replace("\n", "\\n")
        return f"{record.levelname} {text} {json.dumps(fields)}"


def own_results(dsn, tmp_path, formatters):
    snap = gather(dsn, scan_processes=False, argv=[], environ={}, home=tmp_path, formatters=formatters)
    return {r.subject: r for r in run(snap) if r.check == "own_log_format"}


def test_a_formatter_that_prints_passwords_and_raw_newlines_fails(dsn, tmp_path):
    [result] = own_results(dsn, tmp_path, {"text": LeakyFormatter}).values()
    assert result.status == "fail"
    assert result.evidence["problems"] == ["prints a password given in the message or in an extra= field",
                                           "lets a newline in the message start a forged log line"]


def test_a_formatter_that_redacts_and_escapes_passes(dsn, tmp_path):
    [result] = own_results(dsn, tmp_path, {"text": CarefulFormatter}).values()
    assert result.status == "pass"


def test_a_formatter_that_raises_fails_instead_of_breaking_the_check(dsn, tmp_path):
    class Raising(logging.Formatter):
        def format(self, record):
            raise ValueError("no")

    [result] = own_results(dsn, tmp_path, {"text": Raising}).values()
    assert result.status == "fail" and "raised ValueError" in result.message


def test_pgsteady_formatters_are_judged_by_what_they_actually_print(dsn, tmp_path):
    """Whatever pgsteady/monitoring/logs.py does today, the verdict matches its output."""
    results = own_results(dsn, tmp_path, {"text": TextFormatter, "json": JsonFormatter})
    secret = "other-Secret-42"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "dsn postgresql://u:%s@h/d\nforged", (secret,), None)
    record.password = secret
    text, js = TextFormatter().format(record), JsonFormatter().format(record)
    text_leaks = secret in text or bool(re.search(r"\nforged", text))
    assert (results["pgsteady text log format"].status == "fail") == text_leaks
    assert (results["pgsteady json log format"].status == "fail") == (secret in js)


def test_log_statement_mod_without_parameters_keeps_arguments_out():
    assert _statement("mod", "0").status == "pass"
    assert _statement("mod", "-1").status == "warn"
    assert _statement("all", "64").status == "warn"
    assert _statement("ddl", "-1").status == "pass"
