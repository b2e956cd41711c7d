-- 003: monitoring. Per-minute counters that `pgsteady status` and the metrics
-- endpoint read instead of scanning jobs and events, deploy marks, and the two
-- indexes that keep the counter pass and the queue depths cheap.

-- Attempts that ended, per minute, queue, task and release. Filled by the
-- counter pass (pgsteady/monitoring/counters.py) from jobs.finished_at and
-- the events, never by the worker, so the success path writes nothing more.
-- run_le_* and wait_le_* are cumulative histogram buckets (attempts whose
-- run or wait time was at most that long) of the succeeded attempts; the
-- bounds are listed once more in pgsteady/monitoring/buckets.py.
CREATE TABLE {schema}.job_stats (
    minute           timestamptz NOT NULL,
    queue            text NOT NULL,
    task             text NOT NULL,
    -- '' when the attempt ran without a release, so it can be in the key.
    release          text NOT NULL,
    succeeded        integer NOT NULL DEFAULT 0,
    retried          integer NOT NULL DEFAULT 0,
    failed           integer NOT NULL DEFAULT 0,
    discarded        integer NOT NULL DEFAULT 0,
    rescued          integer NOT NULL DEFAULT 0,
    rejected         integer NOT NULL DEFAULT 0,
    cancelled        integer NOT NULL DEFAULT 0,
    run_sum          double precision NOT NULL DEFAULT 0,
    wait_sum         double precision NOT NULL DEFAULT 0,
    run_le_5ms       integer NOT NULL DEFAULT 0,
    run_le_10ms      integer NOT NULL DEFAULT 0,
    run_le_25ms      integer NOT NULL DEFAULT 0,
    run_le_50ms      integer NOT NULL DEFAULT 0,
    run_le_100ms     integer NOT NULL DEFAULT 0,
    run_le_250ms     integer NOT NULL DEFAULT 0,
    run_le_500ms     integer NOT NULL DEFAULT 0,
    run_le_1s        integer NOT NULL DEFAULT 0,
    run_le_2500ms    integer NOT NULL DEFAULT 0,
    run_le_5s        integer NOT NULL DEFAULT 0,
    run_le_10s       integer NOT NULL DEFAULT 0,
    run_le_30s       integer NOT NULL DEFAULT 0,
    run_le_1m        integer NOT NULL DEFAULT 0,
    run_le_5m        integer NOT NULL DEFAULT 0,
    run_le_15m       integer NOT NULL DEFAULT 0,
    run_le_1h        integer NOT NULL DEFAULT 0,
    run_le_4h        integer NOT NULL DEFAULT 0,
    wait_le_5ms      integer NOT NULL DEFAULT 0,
    wait_le_10ms     integer NOT NULL DEFAULT 0,
    wait_le_25ms     integer NOT NULL DEFAULT 0,
    wait_le_50ms     integer NOT NULL DEFAULT 0,
    wait_le_100ms    integer NOT NULL DEFAULT 0,
    wait_le_250ms    integer NOT NULL DEFAULT 0,
    wait_le_500ms    integer NOT NULL DEFAULT 0,
    wait_le_1s       integer NOT NULL DEFAULT 0,
    wait_le_2500ms   integer NOT NULL DEFAULT 0,
    wait_le_5s       integer NOT NULL DEFAULT 0,
    wait_le_10s      integer NOT NULL DEFAULT 0,
    wait_le_30s      integer NOT NULL DEFAULT 0,
    wait_le_1m       integer NOT NULL DEFAULT 0,
    wait_le_5m       integer NOT NULL DEFAULT 0,
    wait_le_15m      integer NOT NULL DEFAULT 0,
    wait_le_1h       integer NOT NULL DEFAULT 0,
    wait_le_4h       integer NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, queue, task, release)
);

-- The same counters per hour, so that a day is read as 24 rows per key
-- rather than 1,440 (status reads whole hours here, the edges from minutes).
CREATE TABLE {schema}.job_stats_hourly (LIKE {schema}.job_stats INCLUDING ALL);
ALTER TABLE {schema}.job_stats_hourly RENAME COLUMN minute TO hour;

-- The same counts since the beginning, per queue and task: the Prometheus
-- counters, which must never go down when old minutes are pruned.
CREATE TABLE {schema}.job_totals (
    queue            text NOT NULL,
    task             text NOT NULL,
    succeeded        bigint NOT NULL DEFAULT 0,
    retried          bigint NOT NULL DEFAULT 0,
    failed           bigint NOT NULL DEFAULT 0,
    discarded        bigint NOT NULL DEFAULT 0,
    rescued          bigint NOT NULL DEFAULT 0,
    rejected         bigint NOT NULL DEFAULT 0,
    cancelled        bigint NOT NULL DEFAULT 0,
    run_sum          double precision NOT NULL DEFAULT 0,
    wait_sum         double precision NOT NULL DEFAULT 0,
    run_le_5ms       bigint NOT NULL DEFAULT 0,
    run_le_10ms      bigint NOT NULL DEFAULT 0,
    run_le_25ms      bigint NOT NULL DEFAULT 0,
    run_le_50ms      bigint NOT NULL DEFAULT 0,
    run_le_100ms     bigint NOT NULL DEFAULT 0,
    run_le_250ms     bigint NOT NULL DEFAULT 0,
    run_le_500ms     bigint NOT NULL DEFAULT 0,
    run_le_1s        bigint NOT NULL DEFAULT 0,
    run_le_2500ms    bigint NOT NULL DEFAULT 0,
    run_le_5s        bigint NOT NULL DEFAULT 0,
    run_le_10s       bigint NOT NULL DEFAULT 0,
    run_le_30s       bigint NOT NULL DEFAULT 0,
    run_le_1m        bigint NOT NULL DEFAULT 0,
    run_le_5m        bigint NOT NULL DEFAULT 0,
    run_le_15m       bigint NOT NULL DEFAULT 0,
    run_le_1h        bigint NOT NULL DEFAULT 0,
    run_le_4h        bigint NOT NULL DEFAULT 0,
    wait_le_5ms      bigint NOT NULL DEFAULT 0,
    wait_le_10ms     bigint NOT NULL DEFAULT 0,
    wait_le_25ms     bigint NOT NULL DEFAULT 0,
    wait_le_50ms     bigint NOT NULL DEFAULT 0,
    wait_le_100ms    bigint NOT NULL DEFAULT 0,
    wait_le_250ms    bigint NOT NULL DEFAULT 0,
    wait_le_500ms    bigint NOT NULL DEFAULT 0,
    wait_le_1s       bigint NOT NULL DEFAULT 0,
    wait_le_2500ms   bigint NOT NULL DEFAULT 0,
    wait_le_5s       bigint NOT NULL DEFAULT 0,
    wait_le_10s      bigint NOT NULL DEFAULT 0,
    wait_le_30s      bigint NOT NULL DEFAULT 0,
    wait_le_1m       bigint NOT NULL DEFAULT 0,
    wait_le_5m       bigint NOT NULL DEFAULT 0,
    wait_le_15m      bigint NOT NULL DEFAULT 0,
    wait_le_1h       bigint NOT NULL DEFAULT 0,
    wait_le_4h       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, task)
);

-- Failed attempts per minute, grouped by task and error message (the first
-- 200 characters), for the "top errors" of `pgsteady status`.
CREATE TABLE {schema}.error_stats (
    minute       timestamptz NOT NULL,
    queue        text NOT NULL,
    task         text NOT NULL,
    message      text NOT NULL,
    failures     integer NOT NULL,
    last_job_id  bigint,
    PRIMARY KEY (minute, queue, task, message)
);

-- How far the counter pass has counted: everything that finished before
-- counted_until is in job_stats. One row, written under the pass's lock in
-- the same transaction as the counts, so a pass is counted once or not at all.
CREATE TABLE {schema}.counter_progress (
    only_row       boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    counted_until  timestamptz NOT NULL,
    passed_at      timestamptz NOT NULL DEFAULT now()
);

-- `pgsteady deploy mark`: status compares equal windows before and after the
-- latest mark.
CREATE TABLE {schema}.deploys (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version    text NOT NULL,
    note       text,
    marked_at  timestamptz NOT NULL DEFAULT now(),
    marked_by  text
);

CREATE INDEX deploys_marked_idx ON {schema}.deploys (marked_at);

-- The counter pass reads the events of a few seconds at a time by created_at;
-- without this it would scan the whole day's partition on every pass. Only
-- the kinds it counts are indexed, so ctx.log() lines cost nothing extra.
CREATE INDEX events_counted_idx ON {schema}.events (created_at)
    WHERE kind IN ('retry_scheduled', 'failed', 'rescued', 'late_write_rejected', 'cancelled');

-- Depth and oldest due job per queue by an index-only scan, so `status` stays
-- fast with a backlog of millions (the claim index is not ordered by queue).
CREATE INDEX jobs_waiting_queue_idx ON {schema}.jobs (queue, run_at) WHERE state = 'waiting';
