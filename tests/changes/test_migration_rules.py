"""Every migration rule: a statement that triggers it, and its safe route, which passes."""

from __future__ import annotations

import psycopg
import pytest

from pgsteady.changes.migration_lint import Catalogue, lint_text, split
from pgsteady.changes.migration_rules import RULES
from pgsteady.queries import for_schema

# rule: (mode, the statement that triggers it, its safe route)
CASES = {
    "add-column-volatile-default": ("change", "ALTER TABLE posts ADD COLUMN uid uuid DEFAULT gen_random_uuid()",
                                    "ALTER TABLE posts ADD COLUMN uid uuid;\n"
                                    "ALTER TABLE posts ALTER COLUMN uid SET DEFAULT gen_random_uuid();\n"
                                    "UPDATE posts SET uid = gen_random_uuid() WHERE id BETWEEN 1 AND 1000"),
    "add-column-default-unknown": ("change", "ALTER TABLE posts ADD COLUMN n int DEFAULT my_counter()",
                                   "ALTER TABLE posts ADD COLUMN n int DEFAULT 0"),
    "add-column-auto-increment": ("change", "ALTER TABLE posts ADD COLUMN n bigserial",
                                  "CREATE SEQUENCE posts_n_seq;\nALTER TABLE posts ADD COLUMN n bigint;\n"
                                  "ALTER TABLE posts ALTER COLUMN n SET DEFAULT nextval('posts_n_seq')"),
    "add-column-stored-generated": ("change",
                                    "ALTER TABLE posts ADD COLUMN slug2 text GENERATED ALWAYS AS (lower(slug)) STORED",
                                    "ALTER TABLE posts ADD COLUMN slug2 text"),
    "add-required-column": ("change", "ALTER TABLE posts ADD COLUMN public boolean NOT NULL",
                            "ALTER TABLE posts ADD COLUMN public boolean NOT NULL DEFAULT false"),
    "add-column-foreign-key": ("change", "ALTER TABLE posts ADD COLUMN author_id bigint REFERENCES authors (id)",
                               "ALTER TABLE posts ADD COLUMN author_id bigint;\n"
                               "ALTER TABLE posts ADD CONSTRAINT posts_author_fk FOREIGN KEY (author_id) "
                               "REFERENCES authors (id) NOT VALID;\n"
                               "ALTER TABLE posts VALIDATE CONSTRAINT posts_author_fk"),
    "constraint-not-valid": ("change", "ALTER TABLE posts ADD CONSTRAINT views_positive CHECK (views >= 0)",
                             "ALTER TABLE posts ADD CONSTRAINT views_positive CHECK (views >= 0) NOT VALID;\n"
                             "ALTER TABLE posts VALIDATE CONSTRAINT views_positive"),
    "foreign-key-not-valid": ("change", "ALTER TABLE posts ADD CONSTRAINT posts_author_fk FOREIGN KEY (author_id) "
                                        "REFERENCES authors (id)",
                              "ALTER TABLE posts ADD CONSTRAINT posts_author_fk FOREIGN KEY (author_id) "
                              "REFERENCES authors (id) NOT VALID;\nALTER TABLE posts VALIDATE CONSTRAINT posts_author_fk"),
    "unique-constraint-builds-index": ("change", "ALTER TABLE posts ADD CONSTRAINT posts_slug_key UNIQUE (slug)",
                                       "CREATE UNIQUE INDEX CONCURRENTLY posts_slug_key ON posts (slug);\n"
                                       "ALTER TABLE posts ADD CONSTRAINT posts_slug_key UNIQUE USING INDEX posts_slug_key"),
    "primary-key-builds-index": ("change", "ALTER TABLE posts ADD PRIMARY KEY (id)",
                                 "CREATE UNIQUE INDEX CONCURRENTLY posts_pkey ON posts (id);\n"
                                 "ALTER TABLE posts ADD CONSTRAINT posts_pkey PRIMARY KEY USING INDEX posts_pkey"),
    "exclusion-constraint": ("change", "ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =)",
                             "CREATE TABLE bookings_new (room int, EXCLUDE USING gist (room WITH =))"),
    "set-not-null": ("change", "ALTER TABLE posts ALTER COLUMN title SET NOT NULL",
                     "ALTER TABLE posts ADD CONSTRAINT posts_title_not_null CHECK (title IS NOT NULL) NOT VALID;\n"
                     "ALTER TABLE posts VALIDATE CONSTRAINT posts_title_not_null;\n"
                     "ALTER TABLE posts ALTER COLUMN title SET NOT NULL;\n"
                     "ALTER TABLE posts DROP CONSTRAINT posts_title_not_null"),
    "drop-not-null": ("change", "ALTER TABLE posts ALTER COLUMN title DROP NOT NULL",
                      "ALTER TABLE posts ALTER COLUMN title SET DEFAULT ''"),
    "domain-constraint": ("change", "ALTER DOMAIN price ADD CONSTRAINT price_positive CHECK (VALUE > 0)",
                          "ALTER DOMAIN price ADD CONSTRAINT price_positive CHECK (VALUE > 0) NOT VALID;\n"
                          "ALTER DOMAIN price VALIDATE CONSTRAINT price_positive"),
    "domain-with-check": ("change", "CREATE DOMAIN price AS numeric CHECK (VALUE > 0)",
                          "ALTER TABLE posts ADD CONSTRAINT price_positive CHECK (price > 0) NOT VALID"),
    "column-type-change": ("change", "ALTER TABLE posts ALTER COLUMN views TYPE bigint",
                           "ALTER TABLE posts ADD COLUMN views_new bigint;\n"
                           "UPDATE posts SET views_new = views WHERE id BETWEEN 1 AND 1000"),
    "column-type-unverified": ("change", "ALTER TABLE posts ALTER COLUMN title TYPE text",
                               "ALTER TABLE posts ADD COLUMN title2 text"),
    "table-rewrite": ("change", "ALTER TABLE posts SET TABLESPACE fast_disk", "ALTER TABLE posts SET (fillfactor = 90)"),
    "rename-column": ("change", "ALTER TABLE posts RENAME COLUMN body TO content",
                      "ALTER TABLE posts ADD COLUMN content text"),
    "rename-table": ("change", "ALTER TABLE posts RENAME TO articles",
                     "CREATE TABLE articles (LIKE posts INCLUDING ALL)"),
    "rename-schema": ("change", "ALTER SCHEMA blog RENAME TO cms", "CREATE SCHEMA cms"),
    "rename-enum-value": ("change", "ALTER TYPE status RENAME VALUE 'done' TO 'completed'",
                          "ALTER TYPE status ADD VALUE 'completed' AFTER 'done'"),
    "enum-value-order": ("change", "ALTER TYPE status ADD VALUE 'pending_review'",
                         "ALTER TYPE status ADD VALUE 'pending_review' BEFORE 'approved'"),
    "enum-value-in-transaction": ("sql", "SET lock_timeout = '2s';\nBEGIN;\nALTER TYPE status ADD VALUE 'archived' AFTER 'done';\n"
                                         "UPDATE posts SET status = 'archived' WHERE id = 1;\nCOMMIT",
                                  "SET lock_timeout = '2s';\nALTER TYPE status ADD VALUE 'archived' AFTER 'done';\n"
                                  "UPDATE posts SET status = 'archived' WHERE id = 1"),
    "drop-column": ("change", "ALTER TABLE posts DROP COLUMN legacy",
                    "-- pgsteady: allow drop-column (the code stopped reading it in release 41)\n"
                    "ALTER TABLE posts DROP COLUMN legacy"),
    "drop-table": ("change", "DROP TABLE old_posts", "-- pgsteady: allow drop-table\nDROP TABLE old_posts"),
    "drop-database": ("change", "DROP DATABASE blog", "SELECT 1"),
    "truncate-cascade": ("change", "TRUNCATE authors CASCADE", "TRUNCATE authors, posts"),
    "detach-partition": ("change", "ALTER TABLE events DETACH PARTITION events_2024",
                         "ALTER TABLE events DETACH PARTITION events_2024 CONCURRENTLY"),
    "attach-partition-scan": ("change", "ALTER TABLE events ATTACH PARTITION events_2027 "
                                        "FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')",
                              "ALTER TABLE events_2027 ADD CONSTRAINT bound CHECK (at >= '2027-01-01') NOT VALID"),
    "explicit-lock": ("change", "LOCK TABLE posts IN ACCESS EXCLUSIVE MODE", "SELECT 1"),
    "refresh-without-concurrently": ("change", "REFRESH MATERIALIZED VIEW popular_posts",
                                     "REFRESH MATERIALIZED VIEW CONCURRENTLY popular_posts"),
    "transaction-nesting": ("sql", "SET lock_timeout = '2s';\nBEGIN;\nBEGIN;\nALTER TABLE posts ADD COLUMN a text;\nCOMMIT",
                            "SET lock_timeout = '2s';\nBEGIN;\nALTER TABLE posts ADD COLUMN a text;\nCOMMIT"),
    "uncommitted-transaction": ("sql", "SET lock_timeout = '2s';\nBEGIN;\nALTER TABLE posts ADD COLUMN a text",
                                "SET lock_timeout = '2s';\nBEGIN;\nALTER TABLE posts ADD COLUMN a text;\nCOMMIT"),
    "backfill-in-transaction": ("sql", "SET lock_timeout = '2s';\nBEGIN;\nALTER TABLE posts ADD COLUMN a text;\n"
                                       "UPDATE posts SET a = 'x' WHERE id < 1000;\nCOMMIT",
                                "SET lock_timeout = '2s';\nBEGIN;\nALTER TABLE posts ADD COLUMN a text;\nCOMMIT;\n"
                                "UPDATE posts SET a = 'x' WHERE id < 1000"),
    "validate-in-transaction": ("sql", "SET lock_timeout = '2s';\nBEGIN;\n"
                                       "ALTER TABLE posts ADD CONSTRAINT c CHECK (views >= 0) NOT VALID;\n"
                                       "ALTER TABLE posts VALIDATE CONSTRAINT c;\nCOMMIT",
                                "SET lock_timeout = '2s';\nBEGIN;\n"
                                "ALTER TABLE posts ADD CONSTRAINT c CHECK (views >= 0) NOT VALID;\nCOMMIT;\n"
                                "ALTER TABLE posts VALIDATE CONSTRAINT c"),
    "unbatched-backfill": ("change", "UPDATE posts SET views = 0",
                           "UPDATE posts SET views = 0 WHERE id >= 1 AND id < 10001 AND views IS NULL"),
    "missing-lock-timeout": ("sql", "ALTER TABLE posts ADD COLUMN a text",
                             "SET lock_timeout = '2s';\nALTER TABLE posts ADD COLUMN a text"),
    "lock-timeout-off": ("change", "SET lock_timeout = 0;\nALTER TABLE posts ADD COLUMN a text",
                         "SET lock_timeout = '2s';\nALTER TABLE posts ADD COLUMN a text"),
    "session-setting": ("change", "SET standard_conforming_strings = off;\nALTER TABLE posts ADD COLUMN a text DEFAULT 'x\\'",
                        "SET work_mem = '64MB';\nALTER TABLE posts ADD COLUMN a text DEFAULT 'x'"),
    "missing-statement-timeout": ("sql", "SET lock_timeout = '2s';\nALTER TABLE posts ADD COLUMN a text",
                                  "SET lock_timeout = '2s';\nSET statement_timeout = '10min';\n"
                                  "ALTER TABLE posts ADD COLUMN a text"),
    "prefer-robust-stmts": ("sql", "SET lock_timeout = '2s';\nALTER TABLE posts ADD COLUMN a text",
                            "SET lock_timeout = '2s';\nALTER TABLE posts ADD COLUMN IF NOT EXISTS a text"),
    "prefer-bigint": ("change", "CREATE TABLE tags (id int PRIMARY KEY, name text)",
                      "CREATE TABLE tags (id bigint PRIMARY KEY, name text)"),
    "prefer-identity": ("change", "CREATE TABLE tags (id bigserial PRIMARY KEY)",
                        "CREATE TABLE tags (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY)"),
    "prefer-text-field": ("change", "ALTER TABLE posts ADD COLUMN subtitle varchar(200)",
                          "ALTER TABLE posts ADD COLUMN subtitle text"),
    "ban-char-field": ("change", "ALTER TABLE posts ADD COLUMN lang char(2)", "ALTER TABLE posts ADD COLUMN lang text"),
    "prefer-timestamptz": ("change", "ALTER TABLE posts ADD COLUMN published_at timestamp",
                           "ALTER TABLE posts ADD COLUMN published_at timestamptz"),
    "prefer-jsonb": ("change", "ALTER TABLE posts ADD COLUMN meta json", "ALTER TABLE posts ADD COLUMN meta jsonb"),
    "wide-index": ("change", "CREATE INDEX CONCURRENTLY posts_wide ON posts (a, b, c, d)",
                   "CREATE INDEX CONCURRENTLY posts_narrow ON posts (d, b)"),
    "identifier-too-long": ("change", "ALTER TABLE posts ADD COLUMN " + "x" * 64 + " text",
                            "ALTER TABLE posts ADD COLUMN " + "x" * 63 + " text"),
    "duplicate-column": ("change", "CREATE TABLE tags (id bigint, name text, name text)",
                         "CREATE TABLE tags (id bigint, name text)"),
}


def rules_of(result) -> set[str]:
    return {f.rule for f in result.findings}


def test_every_rule_has_a_case():
    assert sorted(CASES) == sorted(RULES)


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_triggers_and_its_safe_route_passes(rule):
    mode, bad, safe = CASES[rule]
    flagged = lint_text(bad, mode)
    assert rule in rules_of(flagged), flagged.findings
    hit = next(f for f in flagged.findings if f.rule == rule)
    assert hit.severity == RULES[rule].severity and hit.route == RULES[rule].route and hit.line >= 1
    passed = lint_text(safe, mode)
    assert rule not in {f.rule for f in passed.findings if f.severity == RULES[rule].severity
                        and not f.message.startswith("allowed by comment")}, passed.findings
    if mode == "change":
        assert not passed.refused, passed.findings


def test_inline_unique_and_primary_key_of_a_new_column_build_their_index_under_the_table_lock():
    result = lint_text("ALTER TABLE posts ADD COLUMN slug text UNIQUE;\n"
                       "ALTER TABLE posts ADD COLUMN k bigint PRIMARY KEY DEFAULT 1;\n"
                       "ALTER TABLE posts ADD COLUMN n bigint CHECK (n > 0)", "change")
    assert [(f.rule, f.line) for f in result.findings] == [("unique-constraint-builds-index", 1),
                                                           ("primary-key-builds-index", 2),
                                                           ("constraint-not-valid", 3)]


def test_new_tables_are_exempt_from_lock_and_rewrite_rules():
    text = ("CREATE TABLE tags (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);\n"
            "CREATE INDEX tags_name_idx ON tags (name);\n"
            "ALTER TABLE tags ADD CONSTRAINT tags_name_key UNIQUE (name);\n"
            "ALTER TABLE tags ADD COLUMN uid uuid NOT NULL DEFAULT gen_random_uuid();\n"
            "ALTER TABLE tags ALTER COLUMN name SET NOT NULL")
    result = lint_text(text, "change")
    assert not result.refused, result.findings


def test_constant_and_stable_defaults_do_not_rewrite():
    # PostgreSQL 11+: a non-volatile default is stored once in the catalogue.
    for default in ("0", "'draft'", "now()", "CURRENT_TIMESTAMP", "false"):
        result = lint_text(f"ALTER TABLE posts ADD COLUMN c text NOT NULL DEFAULT {default}", "change")
        assert not result.refused, (default, result.findings)


def test_allow_comment_turns_a_refusal_into_a_note_for_that_statement_only():
    text = ("-- pgsteady: allow rename-column\nALTER TABLE posts RENAME COLUMN a TO b;\n"
            "ALTER TABLE posts RENAME COLUMN c TO d")
    result = lint_text(text, "change")
    by_line = {f.line: f for f in result.findings if f.rule == "rename-column"}
    assert by_line[2].severity == "note" and by_line[2].message.startswith("allowed by comment")
    assert by_line[3].severity == "refuse"
    # In a string, it is not a comment.
    tricked = lint_text("ALTER TABLE posts ADD COLUMN note text DEFAULT '-- pgsteady: allow drop-column';\n"
                        "ALTER TABLE posts DROP COLUMN legacy", "change")
    assert [f.severity for f in tricked.findings if f.rule == "drop-column"] == ["refuse"]


def test_statements_keep_their_line_numbers():
    text = "-- héllo\n\nSET lock_timeout = '1s';\n/* multi\nline */\nALTER TABLE posts\n  DROP COLUMN a;\nSELECT 1"
    assert [(s.index, s.line) for s in split(text)] == [(1, 3), (2, 6), (3, 8)]


@pytest.fixture
def site(conn):
    conn.execute("CREATE TABLE posts (id bigint PRIMARY KEY, title varchar(50), views int, price numeric(8,2), "
                 "body text, at timestamp(3))")
    conn.execute("INSERT INTO posts SELECT g, 't' || g, g, g, 'body' FROM generate_series(1, 100) g")
    conn.execute("CREATE TABLE tiny (id bigint, title text)")
    conn.execute("CREATE FUNCTION next_code() RETURNS int LANGUAGE sql VOLATILE AS 'SELECT 1'")
    conn.execute("CREATE FUNCTION fixed_code() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 1'")
    conn.execute("ALTER TABLE posts ADD CONSTRAINT posts_body_nn CHECK (body IS NOT NULL) NOT VALID")
    conn.execute("ALTER TABLE posts VALIDATE CONSTRAINT posts_body_nn")
    conn.execute("VACUUM ANALYZE posts")
    return Catalogue(conn, for_schema("pgsteady"))


def test_catalogue_tells_widening_type_changes_from_rewrites(site, monkeypatch):
    monkeypatch.setattr("pgsteady.changes.migration_lint.SMALL_TABLE_BYTES", 0)
    safe = ["ALTER TABLE posts ALTER COLUMN title TYPE varchar(100)", "ALTER TABLE posts ALTER COLUMN title TYPE text",
            "ALTER TABLE posts ALTER COLUMN price TYPE numeric(12,2)", "ALTER TABLE posts ALTER COLUMN price TYPE numeric",
            "ALTER TABLE posts ALTER COLUMN at TYPE timestamp(6)"]
    for text in safe:
        assert not lint_text(text, "change", site).findings, text
    rewrites = ["ALTER TABLE posts ALTER COLUMN views TYPE bigint", "ALTER TABLE posts ALTER COLUMN title TYPE varchar(20)",
                "ALTER TABLE posts ALTER COLUMN price TYPE numeric(12,4)", "ALTER TABLE posts ALTER COLUMN at TYPE timestamptz"]
    for text in rewrites:
        assert "column-type-change" in {f.rule for f in lint_text(text, "change", site).findings if f.severity == "refuse"}, text
    # A column a CHECK reads is checked again on every row, rewrite or not (strong_migrations change_column_constraint).
    site.conn.execute("ALTER TABLE posts ADD CONSTRAINT title_short CHECK (length(title) < 60)")
    checked = lint_text("ALTER TABLE posts ALTER COLUMN title TYPE text", "change", site)
    assert checked.refused and "checked again on every row" in checked.findings[0].message


def test_catalogue_answers_volatility_and_not_null_proofs(site, monkeypatch):
    monkeypatch.setattr("pgsteady.changes.migration_lint.SMALL_TABLE_BYTES", 0)
    volatile = lint_text("ALTER TABLE posts ADD COLUMN code bigint DEFAULT next_code()", "change", site)
    assert [f.rule for f in volatile.findings] == ["add-column-volatile-default"], volatile.findings
    fixed = lint_text("ALTER TABLE posts ADD COLUMN code bigint DEFAULT fixed_code()", "change", site)
    assert not fixed.findings, fixed.findings
    # A validated CHECK (body IS NOT NULL) already in the table proves it: SET NOT NULL is instant.
    assert not lint_text("ALTER TABLE posts ALTER COLUMN body SET NOT NULL", "change", site).findings
    assert lint_text("ALTER TABLE posts ALTER COLUMN title SET NOT NULL", "change", site).refused


def test_a_small_table_turns_rewrite_refusals_into_notes(site):
    result = lint_text("ALTER TABLE tiny ALTER COLUMN id TYPE numeric", "change", site)
    assert not result.refused and "only" in result.findings[0].message, result.findings
    big = lint_text("ALTER TABLE tiny DROP COLUMN title", "change", site)
    assert big.refused  # the size does not make a drop safe for the code that reads it


def test_the_docs_list_every_rule_with_its_safe_route():
    from pgsteady.changes.migration_rules import docs_table

    from ..helpers import ROOT

    doc = (ROOT / "docs" / "changes.md").read_text()
    start, end = "<!-- migration-rules:start -->\n", "<!-- migration-rules:end -->"
    assert doc[doc.index(start) + len(start):doc.index(end)] == docs_table(), \
        "docs/changes.md is stale: paste `python -m pgsteady.changes.migration_rules` between the markers"
    for name in RULES:
        assert f"| `{name}` |" in doc


def test_concurrent_builds_in_a_migration_are_refused_on_postgresql_14_0_to_14_3(site):
    text = "ALTER TABLE posts ADD COLUMN a text;\nCREATE INDEX CONCURRENTLY posts_a_idx ON posts (a)"
    assert "concurrent-build-bug" not in {f.rule for f in lint_text(text, "change", site).findings}
    site.version_num = 140003  # what the catalogue reads from a 14.3 server
    assert [(f.rule, f.line) for f in lint_text(text, "change", site).findings if f.severity == "refuse"] == \
        [("concurrent-build-bug", 2)]
