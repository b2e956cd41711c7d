"""Header and upload-limit checks against a local http.server with a weak and a hardened page."""

from __future__ import annotations

import pytest

from pgsteady.errors import ConfigError
from pgsteady.security import check
from pgsteady.security.headers import parse_cookie, publicly_cacheable
from pgsteady.security.web import Response, validate_url


def checked(dsn, tmp_path, *urls, **options):
    return check(dsn, urls=list(urls), scan_processes=False, argv=[], environ={}, home=tmp_path, **options)


def statuses(report, url):
    return {r.check: r.status for r in report.results if r.area == "headers" and r.subject == url}


def test_weak_page_fails_csp_nosniff_framing_and_leaks_its_cookie_through_the_cache(dsn, tmp_path, site):
    url = f"{site}/weak"
    report = checked(dsn, tmp_path, url)
    assert statuses(report, url) == {"hsts": "warn", "csp": "fail", "nosniff": "fail", "framing": "fail",
                                     "referrer_policy": "warn", "cacheable_cookie": "fail"}
    [cookie] = report.by_check("cookies")
    assert cookie.subject == f"{url} cookie session"
    # A session cookie that scripts can read fails; no Secure is only a warning on loopback HTTP.
    assert cookie.status == "fail" and "no HttpOnly" in cookie.message and "no SameSite" in cookie.message
    assert "abc123" not in report.to_json()  # cookie values are never kept
    [cached] = report.by_check("cacheable_cookie")
    assert "public, max-age=600" in cached.message


def test_hardened_page_passes_every_header_check(dsn, tmp_path, site):
    url = f"{site}/hardened"
    report = checked(dsn, tmp_path, url)
    assert statuses(report, url) == {"hsts": "pass", "csp": "pass", "nosniff": "pass", "framing": "pass",
                                     "referrer_policy": "pass", "cacheable_cookie": "pass"}
    [cookie] = report.by_check("cookies")
    assert cookie.status == "pass" and cookie.message == "Secure, HttpOnly, SameSite=Strict"


def test_upload_probe_tells_a_site_that_refuses_a_huge_body_from_one_that_asks_for_it(dsn, tmp_path, site):
    report = checked(dsn, tmp_path, f"{site}/weak", f"{site}/hardened", probe_uploads=True)
    probes = {r.subject: r for r in report.by_check("site_upload_limit")}
    assert probes[f"{site}/hardened"].status == "pass" and probes[f"{site}/hardened"].evidence["status"] == 413
    assert probes[f"{site}/weak"].status == "warn" and probes[f"{site}/weak"].evidence["outcome"] == "continue"


def test_upload_probe_to_a_site_that_waits_for_the_body_warns(dsn, tmp_path, site):
    report = checked(dsn, tmp_path, f"{site}/silent", probe_uploads=True, http_timeout=0.5)
    [probe] = report.by_check("site_upload_limit")
    assert probe.status == "warn" and probe.evidence["outcome"] == "waited"


def test_without_the_probe_the_site_limit_is_skipped_with_how_to_ask(dsn, tmp_path, site):
    report = checked(dsn, tmp_path, f"{site}/weak")
    [probe] = report.by_check("site_upload_limit")
    assert probe.status == "skip" and "--probe-uploads" in probe.message


def test_plain_http_to_another_host_fails_hsts():
    from pgsteady.security.headers import hsts

    class Snap:
        responses = [Response("http://example.org/", "http", False, 200, [])]

    [result] = hsts(Snap())
    assert result.status == "fail" and "plain HTTP" in result.message


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/", "example.org",
                                 "http://example.org/\r\nX-Injected: 1", "http:///nohost"])
def test_urls_that_are_not_web_pages_or_smuggle_headers_are_refused(url):
    with pytest.raises(ConfigError):
        validate_url(url)


def test_cookie_attributes_and_shared_cacheability_are_read_as_browsers_and_cdns_do():
    assert parse_cookie("sid=x; Secure; HttpOnly; SameSite=Lax") == ("sid", {"secure": "", "httponly": "",
                                                                             "samesite": "Lax"})

    def cacheable(cc):
        return publicly_cacheable(Response("https://x/", "https", False, 200, [("Cache-Control", cc)]))

    assert cacheable("public") and cacheable("s-maxage=60") and cacheable("max-age=60")
    assert not cacheable("private, max-age=60") and not cacheable("no-store") and not cacheable("max-age=0")


def test_cache_rules_file_is_reported_as_not_compared_yet(dsn, tmp_path, site):
    rules = tmp_path / "rules.toml"
    rules.write_text("")
    report = checked(dsn, tmp_path, f"{site}/weak", cache_rules=str(rules))
    [result] = report.by_check("cache_rules")
    assert result.status == "skip" and "cannot read rules files yet" in result.message
