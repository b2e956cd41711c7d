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
