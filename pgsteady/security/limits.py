"""Upload limits: pgsteady's own (from settings.py) and what a site's answer reveals.

pgsteady's limits are the "upload limits" rows of settings.py, so a limit
someone adds there is reported here without a change to this module. Three
are expected to exist, because each guards a door that takes data from
outside: the job payload (enqueue), a JSONL line (`enqueue --from-file`) and
the dashboard's request body.
"""

from __future__ import annotations

from typing import Any, Iterator

from . import settings
from .report import PASS, SKIP, WARN, Result
from .snapshot import Snapshot
from .web import PROBE_BYTES

AREA = "upload limits"

# What each door is, and the settings.py constant that bounds it.
EXPECTED = {
    "job payload": "MAX_PAYLOAD_BYTES",
    "JSONL line": "MAX_JSONL_LINE_BYTES",
    "dashboard request body": "DASHBOARD_MAX_BODY_BYTES",
}
PAYLOAD_ROW = "App(max_payload_bytes=...)"


def in_effect(app: Any | None = None) -> dict[str, Any]:
    """{setting name: value} of every upload limit, with the App's own payload limit when given."""
    limits = {s.name: s.default for s in settings.SETTINGS if s.area == AREA}
    if app is not None and getattr(app, "max_payload_bytes", None) is not None:
        limits[PAYLOAD_ROW] = app.max_payload_bytes
    return limits


def own_limits(snap: Snapshot) -> Iterator[Result]:
    defaults = {s.name: s.default for s in settings.SETTINGS if s.area == AREA}
    for door, constant in EXPECTED.items():
        if getattr(settings, constant, None) is None:
            yield Result("own_limits", AREA, WARN, door,
                         f"no limit for the {door} is declared in pgsteady/security/settings.py ({constant})",
                         fix=f"add {constant} and its Setting row to settings.py and enforce it where the {door} "
                             "is read")
    for name, value in snap.limits.items():
        default = defaults.get(name)
        evidence = {"value": value, "default": default}
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            yield Result("own_limits", AREA, WARN, name, f"{name} is {value!r}: no limit",
                         fix=f"set it back to its default, {default}", evidence=evidence)
        elif default is not None and value > default:
            yield Result("own_limits", AREA, WARN, name,
                         f"{name} is {value:,}, above its documented default of {default:,}",
                         fix="keep it at the default unless a measured need says otherwise; docs/security.md says why",
                         evidence=evidence)
        else:
            yield Result("own_limits", AREA, PASS, name, f"{name} is {value:,}", evidence=evidence)


def site_limits(snap: Snapshot) -> Iterator[Result]:
    for r in snap.responses:
        probe = r.probe
        if probe is None:
            yield Result("site_upload_limit", AREA, SKIP, r.url,
                         "not probed; --probe-uploads announces a 1 GiB body (and sends none) to see whether the "
                         "site refuses it before reading")
            continue
        evidence = {"outcome": probe.outcome, "status": probe.status, "announced_bytes": PROBE_BYTES}
        if probe.outcome == "refused":
            yield Result("site_upload_limit", AREA, PASS, r.url,
                         f"a 1 GiB body is refused before it is read ({probe.detail})", evidence=evidence)
        elif probe.outcome == "error":
            yield Result("site_upload_limit", AREA, SKIP, r.url, f"the probe failed: {probe.detail}",
                         evidence=evidence)
        else:
            yield Result("site_upload_limit", AREA, WARN, r.url,
                         f"a 1 GiB body was not refused ({probe.detail})",
                         fix="limit request bodies in front of the app (nginx client_max_body_size, the CDN's "
                             "limit) so that a huge upload is refused with 413 before it is read",
                         evidence=evidence)
