-- Monitoring: the counter pass that fills job_stats, and what `pgsteady
-- status`, `pgsteady deploy` and the metrics endpoint read. Nothing here
-- scans the jobs or events history: status reads the per-minute and hourly
-- counters, the small workers/leader/deploys tables, and the waiting jobs
-- through their index.

-- name: counter_lock
-- Counter passes on several processes take turns; the loser skips its pass.
SELECT pg_try_advisory_xact_lock(hashtext(%(lock)s));

-- name: counter_start
-- The first pass ever counts the recent past (backfill) rather than nothing.
INSERT INTO {schema}.counter_progress (counted_until) VALUES (now() - %(backfill)s::interval)
ON CONFLICT (only_row) DO NOTHING;

-- name: counter_bounds
-- What this pass counts: from the watermark to a little before now (rows
-- stamped just before now may still be committing), at most max_span.
SELECT counted_until AS lo,
       greatest(counted_until, least(now() - %(settle)s::interval, counted_until + %(max_span)s::interval)) AS hi,
       now() - %(settle)s::interval > counted_until + %(max_span)s::interval AS behind
FROM {schema}.counter_progress
FOR UPDATE;

-- name: counter_advance
UPDATE {schema}.counter_progress SET counted_until = %(hi)s, passed_at = now();

-- name: prune_counters
WITH m AS (
    DELETE FROM {schema}.job_stats WHERE minute < now() - %(keep)s::interval RETURNING 1
), h AS (
    DELETE FROM {schema}.job_stats_hourly WHERE hour < now() - %(keep)s::interval RETURNING 1
), e AS (
    DELETE FROM {schema}.error_stats WHERE minute < now() - %(keep)s::interval RETURNING 1
)
SELECT (SELECT count(*) FROM m) + (SELECT count(*) FROM h) + (SELECT count(*) FROM e);

-- name: count_attempts
-- One pass of the counter: every attempt that ended in [lo, hi) is added to
-- its minute (job_stats) and hour (job_stats_hourly), to the running totals
-- (job_totals) and, when it failed, to its error group (error_stats), all in
-- one statement. Succeeded attempts are found by jobs.finished_at (the
-- success path writes no event, and must not start to); every other ending
-- by its event. A failed event says whether it was a discard (the task
-- raised Discard); older events without that flag count as a discard when
-- attempts were left. Minutes and hours are cut in UTC whatever the
-- session's TimeZone, so every process agrees on them.
WITH succeeded AS (
    SELECT date_trunc('minute', finished_at, 'UTC') AS minute, queue, task, coalesce(release, '') AS release,
           'succeeded' AS outcome, NULL::text AS message, id AS job_id,
           extract(epoch FROM finished_at - started_at)::float8 AS run,
           extract(epoch FROM started_at - run_at)::float8 AS wait
    FROM {schema}.jobs
    WHERE state = 'succeeded' AND finished_at >= %(lo)s AND finished_at < %(hi)s
), ended AS (
    SELECT date_trunc('minute', e.created_at, 'UTC') AS minute, coalesce(j.queue, '') AS queue,
           coalesce(j.task, '') AS task, coalesce(e.release, '') AS release,
           CASE e.kind WHEN 'retry_scheduled' THEN 'retried'
                       WHEN 'failed' THEN CASE WHEN coalesce((e.data ->> 'discarded')::boolean, e.attempt < j.max_attempts)
                                               THEN 'discarded' ELSE 'failed' END
                       WHEN 'rescued' THEN 'rescued'
                       WHEN 'late_write_rejected' THEN 'rejected'
                       ELSE 'cancelled' END AS outcome,
           left(split_part(coalesce(e.message, ''), E'\n', 1), 200) AS message, e.job_id,
           NULL::float8 AS run, NULL::float8 AS wait
    FROM {schema}.events e LEFT JOIN {schema}.jobs j ON j.id = e.job_id
    WHERE e.created_at >= %(lo)s AND e.created_at < %(hi)s
      AND e.kind IN ('retry_scheduled', 'failed', 'rescued', 'late_write_rejected', 'cancelled')
), attempts AS (
    SELECT * FROM succeeded UNION ALL SELECT * FROM ended
), per_minute AS (
    SELECT minute, queue, task, release,
           count(*) FILTER (WHERE outcome = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE outcome = 'retried') AS retried,
           count(*) FILTER (WHERE outcome = 'failed') AS failed,
           count(*) FILTER (WHERE outcome = 'discarded') AS discarded,
           count(*) FILTER (WHERE outcome = 'rescued') AS rescued,
           count(*) FILTER (WHERE outcome = 'rejected') AS rejected,
           count(*) FILTER (WHERE outcome = 'cancelled') AS cancelled,
           coalesce(sum(run), 0) AS run_sum, coalesce(sum(wait), 0) AS wait_sum,
           count(*) FILTER (WHERE run <= 0.005) AS run_le_5ms,
           count(*) FILTER (WHERE run <= 0.01) AS run_le_10ms,
           count(*) FILTER (WHERE run <= 0.025) AS run_le_25ms,
           count(*) FILTER (WHERE run <= 0.05) AS run_le_50ms,
           count(*) FILTER (WHERE run <= 0.1) AS run_le_100ms,
           count(*) FILTER (WHERE run <= 0.25) AS run_le_250ms,
           count(*) FILTER (WHERE run <= 0.5) AS run_le_500ms,
           count(*) FILTER (WHERE run <= 1) AS run_le_1s,
           count(*) FILTER (WHERE run <= 2.5) AS run_le_2500ms,
           count(*) FILTER (WHERE run <= 5) AS run_le_5s,
           count(*) FILTER (WHERE run <= 10) AS run_le_10s,
           count(*) FILTER (WHERE run <= 30) AS run_le_30s,
           count(*) FILTER (WHERE run <= 60) AS run_le_1m,
           count(*) FILTER (WHERE run <= 300) AS run_le_5m,
           count(*) FILTER (WHERE run <= 900) AS run_le_15m,
           count(*) FILTER (WHERE run <= 3600) AS run_le_1h,
           count(*) FILTER (WHERE run <= 14400) AS run_le_4h,
           count(*) FILTER (WHERE wait <= 0.005) AS wait_le_5ms,
           count(*) FILTER (WHERE wait <= 0.01) AS wait_le_10ms,
           count(*) FILTER (WHERE wait <= 0.025) AS wait_le_25ms,
           count(*) FILTER (WHERE wait <= 0.05) AS wait_le_50ms,
           count(*) FILTER (WHERE wait <= 0.1) AS wait_le_100ms,
           count(*) FILTER (WHERE wait <= 0.25) AS wait_le_250ms,
           count(*) FILTER (WHERE wait <= 0.5) AS wait_le_500ms,
           count(*) FILTER (WHERE wait <= 1) AS wait_le_1s,
           count(*) FILTER (WHERE wait <= 2.5) AS wait_le_2500ms,
           count(*) FILTER (WHERE wait <= 5) AS wait_le_5s,
           count(*) FILTER (WHERE wait <= 10) AS wait_le_10s,
           count(*) FILTER (WHERE wait <= 30) AS wait_le_30s,
           count(*) FILTER (WHERE wait <= 60) AS wait_le_1m,
           count(*) FILTER (WHERE wait <= 300) AS wait_le_5m,
           count(*) FILTER (WHERE wait <= 900) AS wait_le_15m,
           count(*) FILTER (WHERE wait <= 3600) AS wait_le_1h,
           count(*) FILTER (WHERE wait <= 14400) AS wait_le_4h
    FROM attempts
    GROUP BY minute, queue, task, release
), minutes AS (
    INSERT INTO {schema}.job_stats AS t (
        minute, queue, task, release, succeeded, retried, failed, discarded, rescued, rejected, cancelled,
        run_sum, wait_sum, run_le_5ms, run_le_10ms, run_le_25ms, run_le_50ms, run_le_100ms, run_le_250ms,
        run_le_500ms, run_le_1s, run_le_2500ms, run_le_5s, run_le_10s, run_le_30s, run_le_1m, run_le_5m,
        run_le_15m, run_le_1h, run_le_4h, wait_le_5ms, wait_le_10ms, wait_le_25ms, wait_le_50ms,
        wait_le_100ms, wait_le_250ms, wait_le_500ms, wait_le_1s, wait_le_2500ms, wait_le_5s, wait_le_10s,
        wait_le_30s, wait_le_1m, wait_le_5m, wait_le_15m, wait_le_1h, wait_le_4h)
    SELECT minute, queue, task, release,
           succeeded, retried, failed, discarded, rescued, rejected, cancelled, run_sum, wait_sum,
           run_le_5ms, run_le_10ms, run_le_25ms, run_le_50ms, run_le_100ms, run_le_250ms, run_le_500ms,
           run_le_1s, run_le_2500ms, run_le_5s, run_le_10s, run_le_30s, run_le_1m, run_le_5m, run_le_15m,
           run_le_1h, run_le_4h, wait_le_5ms, wait_le_10ms, wait_le_25ms, wait_le_50ms, wait_le_100ms,
           wait_le_250ms, wait_le_500ms, wait_le_1s, wait_le_2500ms, wait_le_5s, wait_le_10s, wait_le_30s,
           wait_le_1m, wait_le_5m, wait_le_15m, wait_le_1h, wait_le_4h
    FROM per_minute
    ON CONFLICT (minute, queue, task, release) DO UPDATE SET
        succeeded = t.succeeded + EXCLUDED.succeeded, retried = t.retried + EXCLUDED.retried,
        failed = t.failed + EXCLUDED.failed, discarded = t.discarded + EXCLUDED.discarded,
        rescued = t.rescued + EXCLUDED.rescued, rejected = t.rejected + EXCLUDED.rejected,
        cancelled = t.cancelled + EXCLUDED.cancelled, run_sum = t.run_sum + EXCLUDED.run_sum,
        wait_sum = t.wait_sum + EXCLUDED.wait_sum, run_le_5ms = t.run_le_5ms + EXCLUDED.run_le_5ms,
        run_le_10ms = t.run_le_10ms + EXCLUDED.run_le_10ms,
        run_le_25ms = t.run_le_25ms + EXCLUDED.run_le_25ms,
        run_le_50ms = t.run_le_50ms + EXCLUDED.run_le_50ms,
        run_le_100ms = t.run_le_100ms + EXCLUDED.run_le_100ms,
        run_le_250ms = t.run_le_250ms + EXCLUDED.run_le_250ms,
        run_le_500ms = t.run_le_500ms + EXCLUDED.run_le_500ms, run_le_1s = t.run_le_1s + EXCLUDED.run_le_1s,
        run_le_2500ms = t.run_le_2500ms + EXCLUDED.run_le_2500ms,
        run_le_5s = t.run_le_5s + EXCLUDED.run_le_5s, run_le_10s = t.run_le_10s + EXCLUDED.run_le_10s,
        run_le_30s = t.run_le_30s + EXCLUDED.run_le_30s, run_le_1m = t.run_le_1m + EXCLUDED.run_le_1m,
        run_le_5m = t.run_le_5m + EXCLUDED.run_le_5m, run_le_15m = t.run_le_15m + EXCLUDED.run_le_15m,
        run_le_1h = t.run_le_1h + EXCLUDED.run_le_1h, run_le_4h = t.run_le_4h + EXCLUDED.run_le_4h,
        wait_le_5ms = t.wait_le_5ms + EXCLUDED.wait_le_5ms,
        wait_le_10ms = t.wait_le_10ms + EXCLUDED.wait_le_10ms,
        wait_le_25ms = t.wait_le_25ms + EXCLUDED.wait_le_25ms,
        wait_le_50ms = t.wait_le_50ms + EXCLUDED.wait_le_50ms,
        wait_le_100ms = t.wait_le_100ms + EXCLUDED.wait_le_100ms,
        wait_le_250ms = t.wait_le_250ms + EXCLUDED.wait_le_250ms,
        wait_le_500ms = t.wait_le_500ms + EXCLUDED.wait_le_500ms,
        wait_le_1s = t.wait_le_1s + EXCLUDED.wait_le_1s,
        wait_le_2500ms = t.wait_le_2500ms + EXCLUDED.wait_le_2500ms,
        wait_le_5s = t.wait_le_5s + EXCLUDED.wait_le_5s, wait_le_10s = t.wait_le_10s + EXCLUDED.wait_le_10s,
        wait_le_30s = t.wait_le_30s + EXCLUDED.wait_le_30s, wait_le_1m = t.wait_le_1m + EXCLUDED.wait_le_1m,
        wait_le_5m = t.wait_le_5m + EXCLUDED.wait_le_5m, wait_le_15m = t.wait_le_15m + EXCLUDED.wait_le_15m,
        wait_le_1h = t.wait_le_1h + EXCLUDED.wait_le_1h, wait_le_4h = t.wait_le_4h + EXCLUDED.wait_le_4h
), totals AS (
    INSERT INTO {schema}.job_totals AS t (
        queue, task, succeeded, retried, failed, discarded, rescued, rejected, cancelled, run_sum, wait_sum,
        run_le_5ms, run_le_10ms, run_le_25ms, run_le_50ms, run_le_100ms, run_le_250ms, run_le_500ms,
        run_le_1s, run_le_2500ms, run_le_5s, run_le_10s, run_le_30s, run_le_1m, run_le_5m, run_le_15m,
        run_le_1h, run_le_4h, wait_le_5ms, wait_le_10ms, wait_le_25ms, wait_le_50ms, wait_le_100ms,
        wait_le_250ms, wait_le_500ms, wait_le_1s, wait_le_2500ms, wait_le_5s, wait_le_10s, wait_le_30s,
        wait_le_1m, wait_le_5m, wait_le_15m, wait_le_1h, wait_le_4h)
    SELECT queue, task,
       sum(succeeded), sum(retried), sum(failed), sum(discarded), sum(rescued), sum(rejected),
       sum(cancelled), sum(run_sum), sum(wait_sum), sum(run_le_5ms), sum(run_le_10ms), sum(run_le_25ms),
       sum(run_le_50ms), sum(run_le_100ms), sum(run_le_250ms), sum(run_le_500ms), sum(run_le_1s),
       sum(run_le_2500ms), sum(run_le_5s), sum(run_le_10s), sum(run_le_30s), sum(run_le_1m), sum(run_le_5m),
       sum(run_le_15m), sum(run_le_1h), sum(run_le_4h), sum(wait_le_5ms), sum(wait_le_10ms),
       sum(wait_le_25ms), sum(wait_le_50ms), sum(wait_le_100ms), sum(wait_le_250ms), sum(wait_le_500ms),
       sum(wait_le_1s), sum(wait_le_2500ms), sum(wait_le_5s), sum(wait_le_10s), sum(wait_le_30s),
       sum(wait_le_1m), sum(wait_le_5m), sum(wait_le_15m), sum(wait_le_1h), sum(wait_le_4h)
    FROM per_minute
    GROUP BY queue, task
    ON CONFLICT (queue, task) DO UPDATE SET
        succeeded = t.succeeded + EXCLUDED.succeeded, retried = t.retried + EXCLUDED.retried,
        failed = t.failed + EXCLUDED.failed, discarded = t.discarded + EXCLUDED.discarded,
        rescued = t.rescued + EXCLUDED.rescued, rejected = t.rejected + EXCLUDED.rejected,
        cancelled = t.cancelled + EXCLUDED.cancelled, run_sum = t.run_sum + EXCLUDED.run_sum,
        wait_sum = t.wait_sum + EXCLUDED.wait_sum, run_le_5ms = t.run_le_5ms + EXCLUDED.run_le_5ms,
        run_le_10ms = t.run_le_10ms + EXCLUDED.run_le_10ms,
        run_le_25ms = t.run_le_25ms + EXCLUDED.run_le_25ms,
        run_le_50ms = t.run_le_50ms + EXCLUDED.run_le_50ms,
        run_le_100ms = t.run_le_100ms + EXCLUDED.run_le_100ms,
        run_le_250ms = t.run_le_250ms + EXCLUDED.run_le_250ms,
        run_le_500ms = t.run_le_500ms + EXCLUDED.run_le_500ms, run_le_1s = t.run_le_1s + EXCLUDED.run_le_1s,
        run_le_2500ms = t.run_le_2500ms + EXCLUDED.run_le_2500ms,
        run_le_5s = t.run_le_5s + EXCLUDED.run_le_5s, run_le_10s = t.run_le_10s + EXCLUDED.run_le_10s,
        run_le_30s = t.run_le_30s + EXCLUDED.run_le_30s, run_le_1m = t.run_le_1m + EXCLUDED.run_le_1m,
        run_le_5m = t.run_le_5m + EXCLUDED.run_le_5m, run_le_15m = t.run_le_15m + EXCLUDED.run_le_15m,
        run_le_1h = t.run_le_1h + EXCLUDED.run_le_1h, run_le_4h = t.run_le_4h + EXCLUDED.run_le_4h,
        wait_le_5ms = t.wait_le_5ms + EXCLUDED.wait_le_5ms,
        wait_le_10ms = t.wait_le_10ms + EXCLUDED.wait_le_10ms,
        wait_le_25ms = t.wait_le_25ms + EXCLUDED.wait_le_25ms,
        wait_le_50ms = t.wait_le_50ms + EXCLUDED.wait_le_50ms,
        wait_le_100ms = t.wait_le_100ms + EXCLUDED.wait_le_100ms,
        wait_le_250ms = t.wait_le_250ms + EXCLUDED.wait_le_250ms,
        wait_le_500ms = t.wait_le_500ms + EXCLUDED.wait_le_500ms,
        wait_le_1s = t.wait_le_1s + EXCLUDED.wait_le_1s,
        wait_le_2500ms = t.wait_le_2500ms + EXCLUDED.wait_le_2500ms,
        wait_le_5s = t.wait_le_5s + EXCLUDED.wait_le_5s, wait_le_10s = t.wait_le_10s + EXCLUDED.wait_le_10s,
        wait_le_30s = t.wait_le_30s + EXCLUDED.wait_le_30s, wait_le_1m = t.wait_le_1m + EXCLUDED.wait_le_1m,
        wait_le_5m = t.wait_le_5m + EXCLUDED.wait_le_5m, wait_le_15m = t.wait_le_15m + EXCLUDED.wait_le_15m,
        wait_le_1h = t.wait_le_1h + EXCLUDED.wait_le_1h, wait_le_4h = t.wait_le_4h + EXCLUDED.wait_le_4h
), hours AS (
    INSERT INTO {schema}.job_stats_hourly AS t (
        hour, queue, task, release, succeeded, retried, failed, discarded, rescued, rejected, cancelled,
        run_sum, wait_sum, run_le_5ms, run_le_10ms, run_le_25ms, run_le_50ms, run_le_100ms, run_le_250ms,
        run_le_500ms, run_le_1s, run_le_2500ms, run_le_5s, run_le_10s, run_le_30s, run_le_1m, run_le_5m,
        run_le_15m, run_le_1h, run_le_4h, wait_le_5ms, wait_le_10ms, wait_le_25ms, wait_le_50ms,
        wait_le_100ms, wait_le_250ms, wait_le_500ms, wait_le_1s, wait_le_2500ms, wait_le_5s, wait_le_10s,
        wait_le_30s, wait_le_1m, wait_le_5m, wait_le_15m, wait_le_1h, wait_le_4h)
    SELECT date_trunc('hour', minute, 'UTC'), queue, task, release,
       sum(succeeded), sum(retried), sum(failed), sum(discarded), sum(rescued), sum(rejected),
       sum(cancelled), sum(run_sum), sum(wait_sum), sum(run_le_5ms), sum(run_le_10ms), sum(run_le_25ms),
       sum(run_le_50ms), sum(run_le_100ms), sum(run_le_250ms), sum(run_le_500ms), sum(run_le_1s),
       sum(run_le_2500ms), sum(run_le_5s), sum(run_le_10s), sum(run_le_30s), sum(run_le_1m), sum(run_le_5m),
       sum(run_le_15m), sum(run_le_1h), sum(run_le_4h), sum(wait_le_5ms), sum(wait_le_10ms),
       sum(wait_le_25ms), sum(wait_le_50ms), sum(wait_le_100ms), sum(wait_le_250ms), sum(wait_le_500ms),
       sum(wait_le_1s), sum(wait_le_2500ms), sum(wait_le_5s), sum(wait_le_10s), sum(wait_le_30s),
       sum(wait_le_1m), sum(wait_le_5m), sum(wait_le_15m), sum(wait_le_1h), sum(wait_le_4h)
    FROM per_minute
    GROUP BY date_trunc('hour', minute, 'UTC'), queue, task, release
    ON CONFLICT (hour, queue, task, release) DO UPDATE SET
        succeeded = t.succeeded + EXCLUDED.succeeded, retried = t.retried + EXCLUDED.retried,
        failed = t.failed + EXCLUDED.failed, discarded = t.discarded + EXCLUDED.discarded,
        rescued = t.rescued + EXCLUDED.rescued, rejected = t.rejected + EXCLUDED.rejected,
        cancelled = t.cancelled + EXCLUDED.cancelled, run_sum = t.run_sum + EXCLUDED.run_sum,
        wait_sum = t.wait_sum + EXCLUDED.wait_sum, run_le_5ms = t.run_le_5ms + EXCLUDED.run_le_5ms,
        run_le_10ms = t.run_le_10ms + EXCLUDED.run_le_10ms,
        run_le_25ms = t.run_le_25ms + EXCLUDED.run_le_25ms,
        run_le_50ms = t.run_le_50ms + EXCLUDED.run_le_50ms,
        run_le_100ms = t.run_le_100ms + EXCLUDED.run_le_100ms,
        run_le_250ms = t.run_le_250ms + EXCLUDED.run_le_250ms,
        run_le_500ms = t.run_le_500ms + EXCLUDED.run_le_500ms, run_le_1s = t.run_le_1s + EXCLUDED.run_le_1s,
        run_le_2500ms = t.run_le_2500ms + EXCLUDED.run_le_2500ms,
        run_le_5s = t.run_le_5s + EXCLUDED.run_le_5s, run_le_10s = t.run_le_10s + EXCLUDED.run_le_10s,
        run_le_30s = t.run_le_30s + EXCLUDED.run_le_30s, run_le_1m = t.run_le_1m + EXCLUDED.run_le_1m,
        run_le_5m = t.run_le_5m + EXCLUDED.run_le_5m, run_le_15m = t.run_le_15m + EXCLUDED.run_le_15m,
        run_le_1h = t.run_le_1h + EXCLUDED.run_le_1h, run_le_4h = t.run_le_4h + EXCLUDED.run_le_4h,
        wait_le_5ms = t.wait_le_5ms + EXCLUDED.wait_le_5ms,
        wait_le_10ms = t.wait_le_10ms + EXCLUDED.wait_le_10ms,
        wait_le_25ms = t.wait_le_25ms + EXCLUDED.wait_le_25ms,
        wait_le_50ms = t.wait_le_50ms + EXCLUDED.wait_le_50ms,
        wait_le_100ms = t.wait_le_100ms + EXCLUDED.wait_le_100ms,
        wait_le_250ms = t.wait_le_250ms + EXCLUDED.wait_le_250ms,
        wait_le_500ms = t.wait_le_500ms + EXCLUDED.wait_le_500ms,
        wait_le_1s = t.wait_le_1s + EXCLUDED.wait_le_1s,
        wait_le_2500ms = t.wait_le_2500ms + EXCLUDED.wait_le_2500ms,
        wait_le_5s = t.wait_le_5s + EXCLUDED.wait_le_5s, wait_le_10s = t.wait_le_10s + EXCLUDED.wait_le_10s,
        wait_le_30s = t.wait_le_30s + EXCLUDED.wait_le_30s, wait_le_1m = t.wait_le_1m + EXCLUDED.wait_le_1m,
        wait_le_5m = t.wait_le_5m + EXCLUDED.wait_le_5m, wait_le_15m = t.wait_le_15m + EXCLUDED.wait_le_15m,
        wait_le_1h = t.wait_le_1h + EXCLUDED.wait_le_1h, wait_le_4h = t.wait_le_4h + EXCLUDED.wait_le_4h
), errors AS (
    INSERT INTO {schema}.error_stats AS t (minute, queue, task, message, failures, last_job_id)
    SELECT minute, queue, task, message, count(*), max(job_id)
    FROM ended
    WHERE outcome IN ('retried', 'failed', 'discarded')
    GROUP BY minute, queue, task, message
    ON CONFLICT (minute, queue, task, message) DO UPDATE SET
        failures = t.failures + EXCLUDED.failures, last_job_id = greatest(t.last_job_id, EXCLUDED.last_job_id)
)
SELECT count(*) FROM attempts;

-- name: window_sums
-- The counters of [since, until) per queue and task, in three parts: part 0
-- before split_a, 1 from split_a, 2 from split_b (split_a <= split_b).
-- Status asks for a day split at the last hour and the last 15 minutes; the
-- deploy comparison for before, the mark's own minute, and after. Whole
-- hours in [hours_from, hours_to) are read from job_stats_hourly, the rest
-- from job_stats, so a day costs about 24 + 180 rows per key, not 1,440.
-- hours_to must not pass split_a: an hour row cannot be split into parts.
WITH counted AS (
    SELECT * FROM {schema}.job_stats
    WHERE minute >= %(since)s AND minute < %(until)s
      AND NOT (minute >= %(hours_from)s AND minute < %(hours_to)s)
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    UNION ALL
    SELECT * FROM {schema}.job_stats_hourly
    WHERE hour >= %(hours_from)s AND hour < %(hours_to)s
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
)
SELECT queue, task, (minute >= %(split_a)s)::int + (minute >= %(split_b)s)::int AS part,
       sum(succeeded) AS succeeded, sum(retried) AS retried, sum(failed) AS failed,
       sum(discarded) AS discarded, sum(rescued) AS rescued, sum(rejected) AS rejected,
       sum(cancelled) AS cancelled, sum(run_le_5ms) AS run_le_5ms, sum(run_le_10ms) AS run_le_10ms,
       sum(run_le_25ms) AS run_le_25ms, sum(run_le_50ms) AS run_le_50ms, sum(run_le_100ms) AS run_le_100ms,
       sum(run_le_250ms) AS run_le_250ms, sum(run_le_500ms) AS run_le_500ms, sum(run_le_1s) AS run_le_1s,
       sum(run_le_2500ms) AS run_le_2500ms, sum(run_le_5s) AS run_le_5s, sum(run_le_10s) AS run_le_10s,
       sum(run_le_30s) AS run_le_30s, sum(run_le_1m) AS run_le_1m, sum(run_le_5m) AS run_le_5m,
       sum(run_le_15m) AS run_le_15m, sum(run_le_1h) AS run_le_1h, sum(run_le_4h) AS run_le_4h,
       sum(wait_le_5ms) AS wait_le_5ms, sum(wait_le_10ms) AS wait_le_10ms,
       sum(wait_le_25ms) AS wait_le_25ms, sum(wait_le_50ms) AS wait_le_50ms,
       sum(wait_le_100ms) AS wait_le_100ms, sum(wait_le_250ms) AS wait_le_250ms,
       sum(wait_le_500ms) AS wait_le_500ms, sum(wait_le_1s) AS wait_le_1s,
       sum(wait_le_2500ms) AS wait_le_2500ms, sum(wait_le_5s) AS wait_le_5s,
       sum(wait_le_10s) AS wait_le_10s, sum(wait_le_30s) AS wait_le_30s, sum(wait_le_1m) AS wait_le_1m,
       sum(wait_le_5m) AS wait_le_5m, sum(wait_le_15m) AS wait_le_15m, sum(wait_le_1h) AS wait_le_1h,
       sum(wait_le_4h) AS wait_le_4h,
       sum(run_sum) AS run_sum, sum(wait_sum) AS wait_sum
FROM counted
GROUP BY queue, task, part;

-- name: job_totals
SELECT queue, task,
       succeeded, retried, failed, discarded, rescued, rejected, cancelled, run_sum, wait_sum, run_le_5ms,
       run_le_10ms, run_le_25ms, run_le_50ms, run_le_100ms, run_le_250ms, run_le_500ms, run_le_1s,
       run_le_2500ms, run_le_5s, run_le_10s, run_le_30s, run_le_1m, run_le_5m, run_le_15m, run_le_1h,
       run_le_4h, wait_le_5ms, wait_le_10ms, wait_le_25ms, wait_le_50ms, wait_le_100ms, wait_le_250ms,
       wait_le_500ms, wait_le_1s, wait_le_2500ms, wait_le_5s, wait_le_10s, wait_le_30s, wait_le_1m,
       wait_le_5m, wait_le_15m, wait_le_1h, wait_le_4h
FROM {schema}.job_totals
ORDER BY queue, task;


-- name: counter_progress
SELECT counted_until, passed_at, extract(epoch FROM now() - counted_until)::float8 AS lag_seconds
FROM {schema}.counter_progress;

-- name: status_clock
SELECT now() AS now, current_setting('server_version') AS server_version;

-- name: status_workers
SELECT id, host, pid, queues, concurrency, release, started_at, heartbeat_at,
       extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age,
       extract(epoch FROM now() - started_at)::float8 AS uptime
FROM {schema}.workers
ORDER BY heartbeat_at DESC, id;

-- name: status_leader
SELECT name, worker_id, elected_at, renewed_at, extract(epoch FROM now() - renewed_at)::float8 AS renewed_age
FROM {schema}.leader
ORDER BY name;

-- name: queue_depths
-- Waiting jobs through jobs_waiting_queue_idx, running ones through
-- jobs_running_queue_idx: no scan of finished history.
WITH waiting AS (
    SELECT queue,
           count(*) FILTER (WHERE run_at <= now()) AS waiting,
           count(*) FILTER (WHERE run_at > now()) AS scheduled,
           extract(epoch FROM now() - min(run_at) FILTER (WHERE run_at <= now()))::float8 AS oldest_age
    FROM {schema}.jobs
    WHERE state = 'waiting' AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    GROUP BY queue
), running AS (
    SELECT queue, count(*) AS running
    FROM {schema}.jobs
    WHERE state = 'running' AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    GROUP BY queue
)
SELECT coalesce(w.queue, r.queue) AS queue, coalesce(w.waiting, 0) AS waiting,
       coalesce(w.scheduled, 0) AS scheduled, coalesce(r.running, 0) AS running,
       coalesce(w.oldest_age, 0) AS oldest_age, coalesce(q.paused, false) AS paused
FROM waiting w
FULL JOIN running r ON r.queue = w.queue
LEFT JOIN {schema}.queues q ON q.queue = coalesce(w.queue, r.queue)
ORDER BY 1;

-- name: top_errors
SELECT task, message, sum(failures)::bigint AS failures, max(last_job_id) AS last_job_id,
       max(minute) AS last_minute, array_agg(DISTINCT queue ORDER BY queue) AS queues
FROM {schema}.error_stats
WHERE minute >= %(since)s AND minute < %(until)s AND (%(queue)s::text IS NULL OR queue = %(queue)s)
GROUP BY task, message
ORDER BY failures DESC, last_job_id DESC
LIMIT %(limit)s;

-- name: mark_deploy
INSERT INTO {schema}.deploys (version, note, marked_by) VALUES (%(version)s, %(note)s, %(marked_by)s)
RETURNING id, version, note, marked_at, marked_by;

-- name: list_deploys
SELECT id, version, note, marked_at, marked_by
FROM {schema}.deploys
ORDER BY marked_at DESC, id DESC
LIMIT %(limit)s;

-- name: get_deploy
-- The mark to compare (the latest unless an id is given) and the mark before
-- it, which bounds the "before" window.
SELECT d.id, d.version, d.note, d.marked_at, d.marked_by,
       (SELECT max(p.marked_at) FROM {schema}.deploys p WHERE p.marked_at < d.marked_at) AS previous_at
FROM {schema}.deploys d
WHERE %(id)s::bigint IS NULL OR d.id = %(id)s
ORDER BY d.marked_at DESC, d.id DESC
LIMIT 1;

-- name: live_workers
SELECT count(*) FROM {schema}.workers WHERE heartbeat_at > now() - %(stale)s::interval;
