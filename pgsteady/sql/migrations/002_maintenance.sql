-- 002: cron schedules, queue pause and limits, the maintenance leader, and
-- the index that pruning needs.

-- Finished jobs are pruned by age per state; this index keeps that cheap.
CREATE INDEX jobs_finished_idx ON {schema}.jobs (state, finished_at) WHERE finished_at IS NOT NULL;

-- Counting running jobs of a limited queue at claim time.
CREATE INDEX jobs_running_queue_idx ON {schema}.jobs (queue) WHERE state = 'running';

-- One row per cron schedule, written by workers from the App's definitions.
-- paused and last_run_at belong to the database: redeploying keeps them.
CREATE TABLE {schema}.schedules (
    name         text PRIMARY KEY,
    cron         text NOT NULL,
    tz           text NOT NULL,
    task         text NOT NULL,
    queue        text NOT NULL,
    priority     smallint NOT NULL,
    max_attempts integer NOT NULL,
    args         jsonb NOT NULL,
    on_missed    text NOT NULL CHECK (on_missed IN ('skip', 'once', 'all')),
    paused       boolean NOT NULL DEFAULT false,
    last_run_at  timestamptz,
    next_run_at  timestamptz,
    last_job_id  bigint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Each scheduled time of each schedule becomes at most one job: this key,
-- not the hope that one process runs the scheduler, is the guarantee.
CREATE TABLE {schema}.schedule_runs (
    schedule     text NOT NULL,
    scheduled_at timestamptz NOT NULL,
    job_id       bigint,
    enqueued_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule, scheduled_at)
);

-- Per-queue controls, enforced in the claim: a paused queue is not claimed
-- from; a limited queue is claimed from only under its row lock, so the limit
-- holds however many workers there are.
CREATE TABLE {schema}.queues (
    queue          text PRIMARY KEY,
    paused         boolean NOT NULL DEFAULT false,
    max_running    integer CHECK (max_running > 0),
    max_per_second integer CHECK (max_per_second > 0),
    window_start   timestamptz,
    window_count   integer NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Who leads the maintenance duties. The lock is a session advisory lock held
-- by the leader's connection; this row only tells people who holds it.
CREATE TABLE {schema}.leader (
    name       text PRIMARY KEY,
    worker_id  text NOT NULL,
    elected_at timestamptz NOT NULL DEFAULT now(),
    renewed_at timestamptz NOT NULL DEFAULT now()
);
