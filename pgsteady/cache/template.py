"""The commented template ``pgsteady cache new`` writes: a content site's cache rules."""

from __future__ import annotations

TEMPLATE = '''\
# Cache rules for the proxy or CDN in front of {site}.
# Written for the person who debugs them later: every rule has a name, an
# owner, the reason it exists, what should happen, and how to undo it, plus
# example URLs that must and must not be cached. The examples are executable:
#
#   pgsteady cache check {path}                   validate, evaluate every example
#   pgsteady cache explain {path} /posts/hello --cookie sessionid=abc
#   pgsteady cache compile {path} --target nginx  (or varnish, headers)
#   pgsteady cache test {path}                    prove the examples on a real nginx (--proxy varnish)
#
# Rules are tried in order; the first whose match holds decides. A request no
# rule matches is passed to the origin and not cached. Methods other than GET
# and HEAD are never cached, whatever a rule says. Durations: 30s, 10m, 1h, 7d.
# Full reference: docs/cache.md.

[site]
name = "{site}"
origin = "http://127.0.0.1:8000"    # where the proxy sends requests
server_name = "www.example.com"
listen = "80"

# -- Bypasses: each defined once, with why it exists. A rule lists the ones
#    that apply to it; the first that fires makes the response uncached and
#    "private, no-store". One condition each: cookie, header, query, path or
#    methods_other_than.

[bypass.session]
why = "A signed-in reader's page shows their name and drafts; it must never be stored or shown to anyone else."
cookie = "sessionid"

[bypass.auth]
why = "A request with credentials gets an answer for that user only."
header = "Authorization"

[bypass.preview]
why = "Editors preview unpublished posts with ?preview=1; a preview must never reach readers."
query = "preview"

[bypass.writes]
why = "Forms and API calls change things; only GET and HEAD are safe to answer from a cache."
methods_other_than = ["GET", "HEAD"]

# -- Rules, most specific first.

[[rules]]
name = "admin"
owner = "platform@example.com"
reason = "The admin area is personal and changes what readers see."
expect = "Every admin request reaches the origin; nothing from it is stored."
rollback = "None needed: removing this rule leaves admin uncached, as no later rule matches /admin."
match = {{ path = ["/admin", "/admin/**"] }}
cache = {{ never = true }}
must_not_cache = ["/admin", "/admin/posts/42/edit"]
must_cache = ["/posts/admin-tips"]    # a neighbour: a post whose slug starts with admin is still a post

[[rules]]
name = "previews"
owner = "editorial@example.com"
reason = "Preview links show drafts to editors before publication."
expect = "Preview pages always come from the origin."
rollback = "Remove the rule; previews then fall through to no rule (not cached)."
match = {{ path = "/preview/**" }}
cache = {{ never = true }}
must_not_cache = ["/preview/posts/draft-7"]
must_cache = ["/posts/draft-7"]

[[rules]]
name = "search"
owner = "search@example.com"
reason = "Every query is a different page; caching them fills the cache with pages nobody asks for twice."
expect = "Search results come from the origin; the database index on posts keeps them fast."
rollback = "Remove the rule to let search fall through to no rule (not cached)."
match = {{ path = ["/search", "/search/**"] }}
cache = {{ never = true }}
must_not_cache = ["/search?q=postgresql+indexing"]
must_cache = ["/posts/searching-well"]

[[rules]]
name = "assets"
owner = "frontend@example.com"
reason = "CSS, JavaScript and images have a content hash in their file name, so a URL never changes content."
expect = "Assets are served from the cache for a year; the origin sees each file about once."
rollback = "Lower cdn/browser to 1h and purge /assets/ if an unhashed file was published here by mistake."
match = {{ path = "/assets/**" }}
cache = {{ cdn = "365d", browser = "365d" }}
bypass = ["writes"]
must_cache = ["/assets/app.3f9a1c.css", {{ url = "/assets/logo.5b2e.svg", cookies = {{ sessionid = "abc" }}, note = "the same file for everyone" }}]
must_not_cache = [{{ url = "/assets/upload", method = "POST" }}]

[[rules]]
name = "feeds"
owner = "editorial@example.com"
reason = "Feed readers poll every few minutes; the origin should see a handful of those requests, not all of them."
expect = "Feeds are at most 5 minutes old; a failing origin still serves the last feed for a day."
rollback = "Set cdn = \\"1m\\" or remove the rule; purge /feed.xml after a bad publish."
match = {{ path = ["/feed.xml", "/tags/*/feed.xml"] }}
cache = {{ cdn = "5m", browser = "1m", stale_while_revalidate = "10m", stale_if_error = "1d" }}
bypass = ["auth", "writes"]
must_cache = ["/feed.xml", "/tags/postgresql/feed.xml"]
must_not_cache = [{{ url = "/feed.xml", headers = {{ Authorization = "Bearer private-feed" }} }}]

[[rules]]
name = "sitemaps"
owner = "seo@example.com"
reason = "Crawlers fetch sitemaps in bursts; they change when posts are published (the sitemap cron job)."
expect = "Sitemaps are at most an hour old; the sitemap job purges them when it writes new ones."
rollback = "Lower cdn to 5m; the sitemap job's purge keeps working either way."
match = {{ path = ["/sitemap.xml", "/sitemaps/*.xml"] }}
cache = {{ cdn = "1h", browser = "10m" }}
bypass = ["writes"]
must_cache = ["/sitemap.xml", "/sitemaps/posts-2026.xml"]
must_not_cache = ["/sitemaps/posts-2026.xml.gz"]   # not a sitemap URL this site serves: no rule, not cached

[[rules]]
name = "posts"
owner = "editorial@example.com"
reason = "Posts are most of the traffic and change rarely; publishing purges the post's URL."
expect = "The origin sees a post about once per 10 minutes per edge; readers see an edit after the purge job runs."
rollback = "Set cdn = \\"1m\\", or remove the rule (posts then reach the origin on every request)."
match = {{ path = "/posts/*" }}
cache = {{ cdn = "10m", browser = "1m", stale_while_revalidate = "1h", stale_if_error = "1d", vary = ["Accept-Encoding"] }}
bypass = ["session", "auth", "preview", "writes"]
must_cache = ["/posts/hello-world", "/posts/hello-world?utm_source=newsletter"]
must_not_cache = [
    {{ url = "/posts/hello-world", cookies = {{ sessionid = "abc" }}, note = "signed in" }},
    {{ url = "/posts/hello-world", headers = {{ Authorization = "Bearer t" }} }},
    "/posts/hello-world?preview=1",
    {{ url = "/posts/hello-world?preview", note = "no value is still a preview" }},
    {{ url = "/posts/hello-world", method = "POST" }},
]

[[rules]]
name = "tags"
owner = "editorial@example.com"
reason = "Tag pages list posts; they may lag a publish by a few minutes."
expect = "Tag pages are at most 10 minutes old."
rollback = "Remove the rule; tag pages then reach the origin on every request."
match = {{ path = ["/tags/*", "/tags/*/page/*"] }}
cache = {{ cdn = "10m", browser = "1m", stale_while_revalidate = "10m" }}
bypass = ["session", "auth", "writes"]
must_cache = ["/tags/postgresql", "/tags/postgresql/page/2"]
must_not_cache = [{{ url = "/tags/postgresql", cookies = {{ sessionid = "abc" }} }}]

[[rules]]
name = "home"
owner = "editorial@example.com"
reason = "The home page lists the newest posts and takes the most traffic at once."
expect = "The home page is at most 2 minutes old; a spike costs the origin one request per 2 minutes."
rollback = "Set cdn = \\"30s\\", or remove the rule."
match = {{ path = "/" }}
cache = {{ cdn = "2m", browser = "30s", stale_while_revalidate = "1m", stale_if_error = "1h" }}
bypass = ["session", "auth", "preview", "writes"]
must_cache = ["/", "/?utm_campaign=spring"]
must_not_cache = [{{ url = "/", cookies = {{ sessionid = "abc" }} }}, "/?preview=1"]
'''


def template(path: str, site: str = "example.com") -> str:
    return TEMPLATE.format(path=path, site=site)
