"""Upload limits: every "upload limits" row of settings.py, the App's own value, and the doors expected to have one."""

from __future__ import annotations

from pgsteady import App
from pgsteady.security import limits, settings
from pgsteady.security.runner import gather, run


def own(dsn, tmp_path, **options):
    snap = gather(dsn, scan_processes=False, argv=[], environ={}, home=tmp_path, **options)
    return {r.subject: r for r in run(snap) if r.check == "own_limits"}


def test_every_upload_limit_row_is_reported_with_its_value(dsn, tmp_path):
    results = own(dsn, tmp_path)
    rows = [s for s in settings.SETTINGS if s.area == "upload limits"]
    assert rows and all(results[s.name].status == "pass" for s in rows)
    assert results["App(max_payload_bytes=...)"].evidence == {"value": settings.MAX_PAYLOAD_BYTES,
                                                             "default": settings.MAX_PAYLOAD_BYTES}


def test_an_app_that_raises_its_payload_limit_above_the_default_warns(dsn, tmp_path):
    app = App(dsn=dsn, max_payload_bytes=settings.MAX_PAYLOAD_BYTES * 8)
    try:
        result = own(dsn, tmp_path, app=app)["App(max_payload_bytes=...)"]
    finally:
        app.close()
    assert result.status == "warn" and "above its documented default" in result.message


def test_a_door_without_a_declared_limit_warns_and_names_the_constant(dsn, tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "EXPECTED", {**limits.EXPECTED, "webhook body": "MAX_WEBHOOK_BODY_BYTES"})
    result = own(dsn, tmp_path)["webhook body"]
    assert result.status == "warn" and "MAX_WEBHOOK_BODY_BYTES" in result.message
    assert "job payload" not in own(dsn, tmp_path)  # MAX_PAYLOAD_BYTES is declared
