-- The whole current schema, for a fresh install. Every change here is also a
-- numbered migration; tests/test_migrations.py proves the two give the same schema.
-- {schema} is replaced by the quoted schema name (psycopg.sql.Identifier).

CREATE TYPE {schema}.job_state AS ENUM ('waiting', 'running', 'succeeded', 'failed', 'cancelled');

CREATE TABLE {schema}.jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue            text NOT NULL,
    task             text NOT NULL,
    args             jsonb NOT NULL,
    -- The idempotency key as given; key_active says whether it still blocks a
    -- new job with the same key (waiting, running, or succeeded within the
    -- key retention). The unique index below enforces it.
    key              text,
    key_active       boolean NOT NULL DEFAULT false,
    state            {schema}.job_state NOT NULL DEFAULT 'waiting',
    priority         smallint NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL CHECK (max_attempts > 0),
    -- The lease of the current attempt: every write about the attempt must
    -- present lease_token, so a late worker cannot overwrite a newer attempt.
    lease_token      uuid,
    lease_expires_at timestamptz,
    worker_id        text,
    release          text,
    cancel_requested boolean NOT NULL DEFAULT false,
    checkpoint       jsonb,
    errors           jsonb NOT NULL DEFAULT jsonb_build_array(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    CONSTRAINT jobs_key_active_needs_key CHECK (NOT key_active OR key IS NOT NULL)
);

-- The claim query walks this index in claim order and stops at its LIMIT.
CREATE INDEX jobs_claim_idx ON {schema}.jobs (priority, run_at, id) WHERE state = 'waiting';
CREATE UNIQUE INDEX jobs_key_idx ON {schema}.jobs (key) WHERE key_active;
CREATE INDEX jobs_lease_idx ON {schema}.jobs (lease_expires_at) WHERE state = 'running';

CREATE FUNCTION {schema}.notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One notification per queue per statement; delivered only on commit, so
    -- a worker never wakes for a job it cannot see yet.
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_jobs', q.queue)
    FROM (SELECT DISTINCT queue FROM new_rows WHERE run_at <= now()) AS q;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify AFTER INSERT ON {schema}.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_jobs();

-- The history of each job: failures, retries, rescues, cancellations, manual
-- actions, rejected late writes and ctx.log() lines. Partitioned by day so
-- that old history is dropped a partition at a time, never row by row.
CREATE SEQUENCE {schema}.events_id_seq;

CREATE TABLE {schema}.events (
    id         bigint NOT NULL DEFAULT nextval('{schema}.events_id_seq'),
    created_at timestamptz NOT NULL DEFAULT now(),
    job_id     bigint,
    attempt    integer,
    worker_id  text,
    release    text,
    kind       text NOT NULL,
    message    text,
    data       jsonb
) PARTITION BY RANGE (created_at);

-- Catches rows for days whose partition does not exist yet; kept empty in
-- practice because partitions are created days ahead.
CREATE TABLE {schema}.events_default PARTITION OF {schema}.events DEFAULT;

CREATE INDEX events_job_idx ON {schema}.events (job_id, created_at);

-- Creates the daily partitions from yesterday to days_ahead days from now.
-- Rows that already landed in the default partition for such a day are moved
-- into the new partition, so creating a day late never fails.
CREATE FUNCTION {schema}.ensure_event_partitions(days_ahead integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    day date;
    lo timestamptz;
    part text;
    created integer := 0;
    -- Days are UTC days whatever the session's TimeZone, so two sessions in
    -- different zones never try to create overlapping partitions.
    utc_today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    -- Workers starting together would otherwise race to create the same day.
    PERFORM pg_advisory_xact_lock(hashtext('{schema}.ensure_event_partitions'));
    FOR day IN SELECT d::date FROM generate_series(utc_today - 1, utc_today + days_ahead, interval '1 day') AS d LOOP
        part := 'events_' || to_char(day, 'YYYYMMDD');
        lo := day::timestamp AT TIME ZONE 'UTC';
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
            WHERE i.inhparent = '{schema}.events'::regclass AND c.relname = part);
        EXECUTE format('CREATE TABLE {schema}.%I (LIKE {schema}.events INCLUDING DEFAULTS)', part);
        EXECUTE format(
            'WITH moved AS (DELETE FROM {schema}.events_default WHERE created_at >= %L AND created_at < %L RETURNING *) '
            'INSERT INTO {schema}.%I SELECT * FROM moved', lo, lo + interval '1 day', part);
        EXECUTE format('ALTER TABLE {schema}.events ATTACH PARTITION {schema}.%I FOR VALUES FROM (%L) TO (%L)',
                       part, lo, lo + interval '1 day');
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;

CREATE TABLE {schema}.workers (
    id           text PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    queues       text[],
    concurrency  integer NOT NULL,
    release      text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- 002 maintenance

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

-- Who leads the maintenance duties: a lease row (see "007 leader lease" below).
CREATE TABLE {schema}.leader (
    name       text PRIMARY KEY,
    worker_id  text NOT NULL,
    elected_at timestamptz NOT NULL DEFAULT now(),
    renewed_at timestamptz NOT NULL DEFAULT now()
);

-- 003 monitoring

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

-- 004 changes

-- Index changes (`pgsteady change ...`): one row per change file, and one row
-- per run of a step, so the record keeps the whole timeline: who ran what,
-- with which command line, against which version of the file, and how it went.
CREATE TABLE {schema}.changes (
    id          text PRIMARY KEY,
    title       text NOT NULL,
    owner       text NOT NULL,
    reason      text NOT NULL,
    file_path   text NOT NULL,
    statement   text NOT NULL,
    rollback    text,
    -- A hash of the change file's content: steps recorded for another content
    -- are stale and run again.
    file_sha    text NOT NULL,
    status      text NOT NULL DEFAULT 'new',
    verdict     text,
    -- The figures each step measured, kept whole for the note and for verify.
    plan        jsonb,
    rehearsal   jsonb,
    verify      jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.change_steps (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    change_id    text NOT NULL REFERENCES {schema}.changes (id) ON DELETE CASCADE,
    step         text NOT NULL CHECK (step IN ('lint', 'plan', 'rehearse', 'apply', 'verify', 'rollback')),
    status       text NOT NULL CHECK (status IN ('running', 'queued', 'done', 'failed', 'skipped')),
    command      text,
    file_sha     text NOT NULL,
    job_id       bigint,
    summary      text,
    details      jsonb,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);

CREATE INDEX change_steps_change_idx ON {schema}.change_steps (change_id, id);

-- 005 job core

-- Written by `jobs cancel` together with cancel_requested; the worker's
-- "cancelled" event names this actor.
ALTER TABLE {schema}.jobs ADD COLUMN cancel_requested_by text;

-- A schedule whose earlier runs still wait (no worker serves its queue) does
-- not pile up a backlog that later runs as a burst; NULL means no limit.
ALTER TABLE {schema}.schedules ADD COLUMN max_waiting integer DEFAULT 1 CHECK (max_waiting > 0);

-- 006 histogram arrays
-- The run and wait histograms of the counters become one bigint[] column each
-- (cumulative counts, one element per bound of BOUNDS in
-- pgsteady/monitoring/counts.py, the only list of the bounds), so adding a
-- bucket changes that list instead of seven hand-written column lists.
-- add_counts/sum_counts add such arrays element by element.
CREATE FUNCTION {schema}.add_counts(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(coalesce(x, 0) + coalesce(y, 0) ORDER BY i), '{{}}')
    FROM unnest(a, b) WITH ORDINALITY AS u(x, y, i)
$$;

CREATE AGGREGATE {schema}.sum_counts(bigint[]) (
    SFUNC = {schema}.add_counts, STYPE = bigint[], INITCOND = '{{}}', PARALLEL = SAFE
);

ALTER TABLE {schema}.job_stats ADD COLUMN run_le bigint[] NOT NULL DEFAULT '{{}}',
    ADD COLUMN wait_le bigint[] NOT NULL DEFAULT '{{}}';
UPDATE {schema}.job_stats SET run_le = ARRAY[run_le_5ms, run_le_10ms, run_le_25ms, run_le_50ms, run_le_100ms, run_le_250ms, run_le_500ms, run_le_1s, run_le_2500ms, run_le_5s, run_le_10s, run_le_30s, run_le_1m, run_le_5m, run_le_15m, run_le_1h, run_le_4h],
    wait_le = ARRAY[wait_le_5ms, wait_le_10ms, wait_le_25ms, wait_le_50ms, wait_le_100ms, wait_le_250ms, wait_le_500ms, wait_le_1s, wait_le_2500ms, wait_le_5s, wait_le_10s, wait_le_30s, wait_le_1m, wait_le_5m, wait_le_15m, wait_le_1h, wait_le_4h];
ALTER TABLE {schema}.job_stats
    DROP COLUMN run_le_5ms,
    DROP COLUMN run_le_10ms,
    DROP COLUMN run_le_25ms,
    DROP COLUMN run_le_50ms,
    DROP COLUMN run_le_100ms,
    DROP COLUMN run_le_250ms,
    DROP COLUMN run_le_500ms,
    DROP COLUMN run_le_1s,
    DROP COLUMN run_le_2500ms,
    DROP COLUMN run_le_5s,
    DROP COLUMN run_le_10s,
    DROP COLUMN run_le_30s,
    DROP COLUMN run_le_1m,
    DROP COLUMN run_le_5m,
    DROP COLUMN run_le_15m,
    DROP COLUMN run_le_1h,
    DROP COLUMN run_le_4h,
    DROP COLUMN wait_le_5ms,
    DROP COLUMN wait_le_10ms,
    DROP COLUMN wait_le_25ms,
    DROP COLUMN wait_le_50ms,
    DROP COLUMN wait_le_100ms,
    DROP COLUMN wait_le_250ms,
    DROP COLUMN wait_le_500ms,
    DROP COLUMN wait_le_1s,
    DROP COLUMN wait_le_2500ms,
    DROP COLUMN wait_le_5s,
    DROP COLUMN wait_le_10s,
    DROP COLUMN wait_le_30s,
    DROP COLUMN wait_le_1m,
    DROP COLUMN wait_le_5m,
    DROP COLUMN wait_le_15m,
    DROP COLUMN wait_le_1h,
    DROP COLUMN wait_le_4h;

ALTER TABLE {schema}.job_stats_hourly ADD COLUMN run_le bigint[] NOT NULL DEFAULT '{{}}',
    ADD COLUMN wait_le bigint[] NOT NULL DEFAULT '{{}}';
UPDATE {schema}.job_stats_hourly SET run_le = ARRAY[run_le_5ms, run_le_10ms, run_le_25ms, run_le_50ms, run_le_100ms, run_le_250ms, run_le_500ms, run_le_1s, run_le_2500ms, run_le_5s, run_le_10s, run_le_30s, run_le_1m, run_le_5m, run_le_15m, run_le_1h, run_le_4h],
    wait_le = ARRAY[wait_le_5ms, wait_le_10ms, wait_le_25ms, wait_le_50ms, wait_le_100ms, wait_le_250ms, wait_le_500ms, wait_le_1s, wait_le_2500ms, wait_le_5s, wait_le_10s, wait_le_30s, wait_le_1m, wait_le_5m, wait_le_15m, wait_le_1h, wait_le_4h];
ALTER TABLE {schema}.job_stats_hourly
    DROP COLUMN run_le_5ms,
    DROP COLUMN run_le_10ms,
    DROP COLUMN run_le_25ms,
    DROP COLUMN run_le_50ms,
    DROP COLUMN run_le_100ms,
    DROP COLUMN run_le_250ms,
    DROP COLUMN run_le_500ms,
    DROP COLUMN run_le_1s,
    DROP COLUMN run_le_2500ms,
    DROP COLUMN run_le_5s,
    DROP COLUMN run_le_10s,
    DROP COLUMN run_le_30s,
    DROP COLUMN run_le_1m,
    DROP COLUMN run_le_5m,
    DROP COLUMN run_le_15m,
    DROP COLUMN run_le_1h,
    DROP COLUMN run_le_4h,
    DROP COLUMN wait_le_5ms,
    DROP COLUMN wait_le_10ms,
    DROP COLUMN wait_le_25ms,
    DROP COLUMN wait_le_50ms,
    DROP COLUMN wait_le_100ms,
    DROP COLUMN wait_le_250ms,
    DROP COLUMN wait_le_500ms,
    DROP COLUMN wait_le_1s,
    DROP COLUMN wait_le_2500ms,
    DROP COLUMN wait_le_5s,
    DROP COLUMN wait_le_10s,
    DROP COLUMN wait_le_30s,
    DROP COLUMN wait_le_1m,
    DROP COLUMN wait_le_5m,
    DROP COLUMN wait_le_15m,
    DROP COLUMN wait_le_1h,
    DROP COLUMN wait_le_4h;

ALTER TABLE {schema}.job_totals ADD COLUMN run_le bigint[] NOT NULL DEFAULT '{{}}',
    ADD COLUMN wait_le bigint[] NOT NULL DEFAULT '{{}}';
UPDATE {schema}.job_totals SET run_le = ARRAY[run_le_5ms, run_le_10ms, run_le_25ms, run_le_50ms, run_le_100ms, run_le_250ms, run_le_500ms, run_le_1s, run_le_2500ms, run_le_5s, run_le_10s, run_le_30s, run_le_1m, run_le_5m, run_le_15m, run_le_1h, run_le_4h],
    wait_le = ARRAY[wait_le_5ms, wait_le_10ms, wait_le_25ms, wait_le_50ms, wait_le_100ms, wait_le_250ms, wait_le_500ms, wait_le_1s, wait_le_2500ms, wait_le_5s, wait_le_10s, wait_le_30s, wait_le_1m, wait_le_5m, wait_le_15m, wait_le_1h, wait_le_4h];
ALTER TABLE {schema}.job_totals
    DROP COLUMN run_le_5ms,
    DROP COLUMN run_le_10ms,
    DROP COLUMN run_le_25ms,
    DROP COLUMN run_le_50ms,
    DROP COLUMN run_le_100ms,
    DROP COLUMN run_le_250ms,
    DROP COLUMN run_le_500ms,
    DROP COLUMN run_le_1s,
    DROP COLUMN run_le_2500ms,
    DROP COLUMN run_le_5s,
    DROP COLUMN run_le_10s,
    DROP COLUMN run_le_30s,
    DROP COLUMN run_le_1m,
    DROP COLUMN run_le_5m,
    DROP COLUMN run_le_15m,
    DROP COLUMN run_le_1h,
    DROP COLUMN run_le_4h,
    DROP COLUMN wait_le_5ms,
    DROP COLUMN wait_le_10ms,
    DROP COLUMN wait_le_25ms,
    DROP COLUMN wait_le_50ms,
    DROP COLUMN wait_le_100ms,
    DROP COLUMN wait_le_250ms,
    DROP COLUMN wait_le_500ms,
    DROP COLUMN wait_le_1s,
    DROP COLUMN wait_le_2500ms,
    DROP COLUMN wait_le_5s,
    DROP COLUMN wait_le_10s,
    DROP COLUMN wait_le_30s,
    DROP COLUMN wait_le_1m,
    DROP COLUMN wait_le_5m,
    DROP COLUMN wait_le_15m,
    DROP COLUMN wait_le_1h,
    DROP COLUMN wait_le_4h;

-- A queue's history (pause, resume, limits: who and from where) is events
-- without a job; this finds them by queue.
CREATE INDEX events_queue_idx ON {schema}.events ((data ->> 'queue'), created_at)
    WHERE job_id IS NULL AND kind IN ('queue_paused', 'queue_resumed', 'queue_limits');

-- The same counters per minute over every queue and task, for the
-- dashboard's day charts: 1,440 rows a day, whatever the number of tasks.
CREATE TABLE {schema}.job_stats_all (
    minute     timestamptz PRIMARY KEY,
    succeeded  integer NOT NULL DEFAULT 0,
    retried    integer NOT NULL DEFAULT 0,
    failed     integer NOT NULL DEFAULT 0,
    discarded  integer NOT NULL DEFAULT 0,
    rescued    integer NOT NULL DEFAULT 0,
    rejected   integer NOT NULL DEFAULT 0,
    cancelled  integer NOT NULL DEFAULT 0,
    run_sum    double precision NOT NULL DEFAULT 0,
    wait_sum   double precision NOT NULL DEFAULT 0,
    run_le     bigint[] NOT NULL DEFAULT '{{}}',
    wait_le    bigint[] NOT NULL DEFAULT '{{}}'
);
INSERT INTO {schema}.job_stats_all
SELECT minute, sum(succeeded), sum(retried), sum(failed), sum(discarded), sum(rescued), sum(rejected),
       sum(cancelled), sum(run_sum), sum(wait_sum), {schema}.sum_counts(run_le), {schema}.sum_counts(wait_le)
FROM {schema}.job_stats
GROUP BY minute;
-- 007 leader lease

-- The leadership is this row, not a lock: it is held until expires_at, which
-- the leader pushes forward while it lives, and taken over by another worker
-- once it has passed. Every takeover increments fencing_token, and every
-- renewal and leader-only pass presents the token it won
-- (maintenance/leader.py), so a leader that was paused past its lease learns
-- it lost before doing anything more.
ALTER TABLE {schema}.leader
    ADD COLUMN expires_at    timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN fencing_token bigint NOT NULL DEFAULT 1;

-- 008 change states

-- The change record's status is one of the states of pgsteady/changes/states.py,
-- moved only there; the database refuses anything else.
ALTER TABLE {schema}.changes ADD CONSTRAINT changes_status_check CHECK (status IN (
    'new', 'linted', 'refused', 'planned', 'rehearsed', 'applying', 'applied', 'rolling back',
    'rolled back', 'verified', 'lint failed', 'plan failed', 'rehearse failed', 'apply failed',
    'rollback failed', 'verify failed'));

-- 009 build slots

-- One index build per table: the build holds this row (holder, fencing token)
-- until expires_at, renewing it while the build runs; another build takes it
-- over only once it has passed (pgsteady/changes/slots.py). No session lock,
-- so no pooler, killed backend or cut link can strand a table's slot.
CREATE TABLE {schema}.build_slots (
    table_oid     oid PRIMARY KEY,
    holder        text NOT NULL,
    job_id        bigint,
    fencing_token bigint NOT NULL DEFAULT 1,
    taken_at      timestamptz NOT NULL DEFAULT now(),
    renewed_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);

-- 010 dashboard job indexes

-- The dashboard's job list (sql/jobs.sql): failed and cancelled jobs
-- newest first, and every job that was given a key, by key.
CREATE INDEX jobs_ended_badly_idx ON {schema}.jobs (state, id) WHERE state IN ('failed', 'cancelled');
CREATE INDEX jobs_key_history_idx ON {schema}.jobs (key, id) WHERE key IS NOT NULL;

-- 011 jobs fillfactor

-- Half of each new page of jobs is left free (fillfactor 50), so that the two
-- updates of a job's life (claimed, then finished) write their new row
-- version on the same page. No job update can be HOT (state is in every
-- partial index's predicate), but an update that finds its page full must
-- also lock the old version in a WAL record of its own, extend the table and
-- dirty a second page: on a full page that was about 1.8 extra WAL records
-- per job, and the drain's rounds took about 30% longer (docs/benchmarks.md,
-- "Round two"). The cost: finished history takes up to twice the heap
-- space until the pruner removes it. Pages written before this stay as they
-- are.
ALTER TABLE {schema}.jobs SET (fillfactor = 50);
