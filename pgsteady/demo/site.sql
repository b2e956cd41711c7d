-- The demo's content site: authors, posts carrying the meta of the field
-- note's own page, and page-view events. It lives in its own schema
-- (demo_site) so that a demo run against your own database never touches
-- your tables; every run starts it afresh.

-- name: reset_site
DROP SCHEMA IF EXISTS demo_site CASCADE;

-- name: create_schema
CREATE SCHEMA demo_site;

-- name: create_authors
CREATE TABLE demo_site.authors (
    id     integer PRIMARY KEY,
    name   text NOT NULL,
    email  text NOT NULL
);

-- No unique constraint on source_id on purpose: a duplicated import would
-- show up as two rows, and the demo counts them.
-- name: create_posts
CREATE TABLE demo_site.posts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_id    text NOT NULL,
    slug         text NOT NULL,
    author_id    integer NOT NULL REFERENCES demo_site.authors (id),
    title        text NOT NULL,
    topic        text NOT NULL,
    tags         text[] NOT NULL DEFAULT '{}',
    summary      text NOT NULL,
    scores       jsonb NOT NULL,
    revision     jsonb NOT NULL,
    view_count   integer NOT NULL DEFAULT 0,
    imported_at  timestamptz NOT NULL DEFAULT now()
);

-- name: create_posts_author_index
CREATE INDEX posts_author_id ON demo_site.posts (author_id);

-- Page views. No index on created_at: that is the field note's change.
-- name: create_events
CREATE TABLE demo_site.events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    post_id     integer NOT NULL,
    path        text NOT NULL,
    referrer    text,
    created_at  timestamptz NOT NULL
);

-- name: fill_authors
INSERT INTO demo_site.authors (id, name, email)
SELECT i, 'Author ' || i, 'author' || i || '@example.com' FROM generate_series(1, %(n)s) AS i;

-- A month of page views in random order, as a busy site's log would be:
-- created_at is not correlated with the physical order of the rows.
-- name: fill_events
INSERT INTO demo_site.events (post_id, path, referrer, created_at)
SELECT p, '/posts/' || p, CASE WHEN i %% 3 = 0 THEN 'search' WHEN i %% 3 = 1 THEN 'social' END,
       %(now)s::timestamptz - make_interval(secs => ((hashint4(i) & 2147483647) %% (30 * 86400))::float8)
FROM generate_series(%(first)s, %(last)s) AS i, LATERAL (SELECT 1 + (hashint4(i + 7) & 2147483647) %% %(posts)s AS p) AS x;

-- name: analyze_site
ANALYZE demo_site.authors, demo_site.posts, demo_site.events;

-- name: insert_post
INSERT INTO demo_site.posts (source_id, slug, author_id, title, topic, tags, summary, scores, revision)
VALUES (%(source_id)s, %(slug)s, %(author_id)s, %(title)s, %(topic)s, %(tags)s, %(summary)s, %(scores)s, %(revision)s);

-- name: count_posts
SELECT count(*) AS rows, count(DISTINCT source_id) AS distinct_posts FROM demo_site.posts;

-- name: count_events
SELECT count(*) FROM demo_site.events;

-- name: insert_page_view
INSERT INTO demo_site.events (post_id, path, referrer, created_at)
VALUES (%(post_id)s, %(path)s, 'live', clock_timestamp());

-- name: sitemap_rows
SELECT slug, imported_at FROM demo_site.posts ORDER BY id;

-- name: create_sitemaps
CREATE TABLE demo_site.sitemaps (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    generated_at  timestamptz NOT NULL DEFAULT now(),
    urls          integer NOT NULL,
    xml           text NOT NULL
);

-- name: save_sitemap
INSERT INTO demo_site.sitemaps (urls, xml) VALUES (%(urls)s, %(xml)s);

-- name: latest_sitemap
SELECT generated_at, urls FROM demo_site.sitemaps WHERE generated_at > %(since)s ORDER BY id DESC LIMIT 1;

-- name: revise_posts
UPDATE demo_site.posts
SET revision = jsonb_set(revision, '{version}', to_jsonb('1.4.0'::text))
WHERE slug = ANY(%(slugs)s);
