-- 010: two partial indexes for the dashboard's job list (sql/jobs.sql).
-- Failed and cancelled jobs newest first: a few percent of the history, so
-- a page of them is a short backward walk of this index rather than a scan
-- of the newest jobs that may hold none. Only a job that ends failed or
-- cancelled adds an entry; the enqueue, claim and success paths never do.
CREATE INDEX jobs_ended_badly_idx ON {schema}.jobs (state, id) WHERE state IN ('failed', 'cancelled');
-- Every job that was given an idempotency key, active or not (jobs_key_idx
-- holds only the active ones), so a search by key finds a week-old job at
-- once. Jobs without a key never touch it.
CREATE INDEX jobs_key_history_idx ON {schema}.jobs (key, id) WHERE key IS NOT NULL;
