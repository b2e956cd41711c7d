"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright.

Never `playwright install`: the browser is /usr/bin/chromium (installed by
.ci/run). Each page's screenshot is saved under the test's tmp_path.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pgsteady.dashboard import Auth, hash_password

from ..helpers import scalar, wait_until

CHROMIUM = os.environ.get("PGSTEADY_CHROMIUM", "/usr/bin/chromium")
PAGES = {"overview": "/", "queues": "/queues", "jobs": "/jobs", "workers": "/workers", "schedules": "/schedules",
         "indexes": "/indexes", "changes": "/changes", "change": "/changes/2026-12-01-posts-slug",
         "deploys": "/deploys"}

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15000)
    yield pg
    context.close()


# The accessibility pass, run in the page: landmarks, one h1, no skipped heading
# levels, a label for every control, a name for every button/link/image, and
# WCAG AA contrast (4.5:1) for the text of every element that has text.
A11Y = r"""
() => {
  const problems = [];
  const lum = (rgb) => {
    const [r, g, b] = rgb.map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const parse = (c) => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null;
    const p = m[1].split(",").map(s => parseFloat(s)); return {rgb: p.slice(0, 3), a: p.length > 3 ? p[3] : 1}; };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0.5) return c.rgb;
    }
    return [255, 255, 255];
  };
  if (!document.documentElement.lang) problems.push("html has no lang");
  if (document.querySelectorAll("h1").length !== 1) problems.push("not exactly one h1");
  if (!document.querySelector("main")) problems.push("no main landmark");
  if (!document.querySelector("nav[aria-label]")) problems.push("no labelled nav");
  let last = 0;
  for (const h of document.querySelectorAll("h1, h2, h3, h4, h5, h6")) {
    const level = parseInt(h.tagName[1]);
    if (level > last + 1) problems.push(`heading level skips to ${h.tagName}: ${h.textContent.trim().slice(0, 40)}`);
    last = level;
  }
  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    const labelled = el.labels && el.labels.length || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
    if (!labelled) problems.push(`unlabelled control ${el.name}`);
  }
  for (const el of document.querySelectorAll("button, a[href]")) {
    if (!(el.textContent.trim() || el.getAttribute("aria-label"))) problems.push(`nameless ${el.tagName}`);
  }
  for (const el of document.querySelectorAll("svg[role=img], img")) {
    if (!(el.getAttribute("aria-label") || el.getAttribute("alt"))) problems.push("image without a text alternative");
  }
  for (const el of document.querySelectorAll("body *")) {
    const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.closest("svg") || el.closest(".sr-only") || el.offsetParent === null) continue;
    const fg = parse(getComputedStyle(el).color);
    if (!fg) continue;
    const a = lum(fg.rgb), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) problems.push(`contrast ${ratio.toFixed(2)} for "${el.textContent.trim().slice(0, 30)}"`);
  }
  // Colour is never the only signal: every state badge says its state in words.
  for (const el of document.querySelectorAll(".health, .state, .verdict")) {
    if (!/[a-z]/i.test(el.textContent)) problems.push("a badge without words");
  }
  return problems;
}
"""


def test_every_page_loads_from_one_origin_and_passes_the_accessibility_pass(seeded, serve_dashboard, page,
                                                                           tmp_path: Path):
    base = serve_dashboard(seeded.dsn)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    pages = {**PAGES, "job": f"/jobs/{seeded.failed_id}", "running-job": f"/jobs/{seeded.running_id}"}
    for name, path in pages.items():
        response = page.goto(base + path)
        assert response.status == 200, (name, response.status)
        headers = response.headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "same-origin"
        assert headers["cache-control"] == "no-store"
        assert page.evaluate(A11Y) == [], name
        page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    assert requested and all(url.startswith(base + "/") for url in requested), \
        [u for u in requested if not u.startswith(base)]
    assert any(url.endswith("/static/style.css") for url in requested)
    assert any(url.endswith("/static/live.js") for url in requested)
    assert len(list(tmp_path.glob("*.png"))) == len(pages)


def test_keyboard_reaches_the_content_first(seeded, serve_dashboard, page):
    base = serve_dashboard(seeded.dsn)
    page.goto(base + "/jobs")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Skip to content"
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    # After the skip link, the next stop is inside main (the first filter), not the navigation.
    assert page.evaluate("!!document.activeElement.closest('main')")
    # Every control of the filter form is reachable by Tab.
    names = set()
    for _ in range(12):
        names.add(page.evaluate("document.activeElement.name || document.activeElement.textContent.trim()"))
        page.keyboard.press("Tab")
    assert {"state", "queue", "task", "key", "window", "q", "Filter"} <= names


def test_filter_open_retry_cancel_and_pause_in_the_browser(seeded, serve_dashboard, page, tmp_path: Path):
    base = serve_dashboard(seeded.dsn)
    page.on("dialog", lambda d: d.accept())  # the confirmations of live.js
    page.goto(base + "/jobs")
    page.select_option("select[name=state]", "failed")
    page.fill("input[name=queue]", "mail")
    page.click("button:has-text('Filter')")
    assert "state=failed" in page.url and "queue=mail" in page.url
    rows = page.locator("table.jobs tbody tr")
    assert rows.count() == scalar(seeded.dsn, "SELECT count(*) FROM pgsteady.jobs WHERE state = 'failed'")
    page.screenshot(path=str(tmp_path / "jobs-filtered.png"), full_page=True)

    page.click(f"a[href='/jobs/{seeded.failed_id}']")
    assert page.locator("h1").inner_text().startswith(f"Job {seeded.failed_id}")
    assert page.locator("details summary:has-text('Traceback')").count() >= 1
    page.click(f"button:has-text('Retry job {seeded.failed_id}')")
    assert "will run again" in page.locator(".flash").inner_text()
    assert scalar(seeded.dsn, "SELECT state::text FROM pgsteady.jobs WHERE id = %s", [seeded.failed_id]) == "waiting"

    page.goto(base + f"/jobs/{seeded.running_id}")
    page.click(f"button:has-text('Cancel job {seeded.running_id}')")
    assert "cancel" in page.locator(".flash").inner_text()
    assert scalar(seeded.dsn, "SELECT cancel_requested FROM pgsteady.jobs WHERE id = %s", [seeded.running_id])

    page.goto(base + "/queues")
    page.click("tr:has(th:has-text('mail')) button:has-text('Pause')")
    assert "paused" in page.locator(".flash").inner_text()
    assert scalar(seeded.dsn, "SELECT paused FROM pgsteady.queues WHERE queue = 'mail'") is True
    assert "dashboard:local from 127.0.0.1" in page.locator("tr.history").first.inner_text()
    page.screenshot(path=str(tmp_path / "queues-after-pause.png"), full_page=True)


def test_log_in_and_out_in_the_browser(seeded, serve_dashboard, page):
    base = serve_dashboard(seeded.dsn, auth=Auth(password_hash=hash_password("correct horse"), user="ann"))
    page.goto(base + "/queues")
    assert page.url == base + "/login"
    page.fill("#password", "nope")
    page.click("button:has-text('Log in')")
    assert "not right" in page.locator("[role=alert]").inner_text()
    page.fill("#password", "correct horse")
    page.click("button:has-text('Log in')")
    assert page.url == base + "/" and page.locator("h1").inner_text().startswith("Overview")
    cookie = next(c for c in page.context.cookies() if c["name"] == "pgsteady_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # not readable from script
    page.click("button:has-text('Log out')")
    assert page.url == base + "/login"
    page.goto(base + "/jobs")
    assert page.url == base + "/login"


def test_a_post_without_the_csrf_token_is_refused_from_the_browser(seeded, serve_dashboard, page):
    base = serve_dashboard(seeded.dsn)
    page.goto(base + "/queues")
    r = page.request.post(base + "/queues/mail/pause", form={"back": "/queues"})
    assert r.status == 403 and "CSRF" in r.text()
    assert scalar(seeded.dsn, "SELECT count(*) FROM pgsteady.queues WHERE queue = 'mail'") == 0


def test_live_pages_refresh_without_a_reload(seeded, serve_dashboard, page):
    base = serve_dashboard(seeded.dsn, refresh_seconds=1)
    page.goto(base + "/queues")
    page.evaluate("window.__marker = 1")  # survives only if the page is not reloaded
    with __import__("psycopg").connect(seeded.dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO pgsteady.queues (queue, paused) VALUES ('fresh-queue', true)")
    wait_until(lambda: page.locator("th:has-text('fresh-queue')").count() == 1, timeout=15,
               what="the live refresh to show the new queue")
    assert page.evaluate("window.__marker") == 1
