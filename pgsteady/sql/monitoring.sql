-- Monitoring: the counter pass that fills job_stats, and what `pgsteady
-- status`, `pgsteady deploy` and the metrics endpoint read. Nothing here
-- scans the jobs or events history: status reads the per-minute and hourly
-- counters, the small workers/leader/deploys tables, and the waiting jobs
-- through their index.

-- name: _histogram_sums
-- The element-by-element sums of run_le and wait_le, one per bound of
-- counts.BOUNDS (a test checks that the two lists have the same length).
-- Plain sums of subscripts cost what the old per-bucket columns cost; an
-- aggregate over arrays (sum_counts) or unnest and regroup are five to ten
-- times slower, which status and the dashboard would feel. Adding a bucket:
-- one element in BOUNDS and one sum in each array here.
ARRAY[sum(run_le[1]), sum(run_le[2]), sum(run_le[3]), sum(run_le[4]), sum(run_le[5]), sum(run_le[6]),
      sum(run_le[7]), sum(run_le[8]), sum(run_le[9]), sum(run_le[10]), sum(run_le[11]), sum(run_le[12]),
      sum(run_le[13]), sum(run_le[14]), sum(run_le[15]), sum(run_le[16]), sum(run_le[17])]::bigint[] AS
      run_le,
ARRAY[sum(wait_le[1]), sum(wait_le[2]), sum(wait_le[3]), sum(wait_le[4]), sum(wait_le[5]), sum(wait_le[6]),
      sum(wait_le[7]), sum(wait_le[8]), sum(wait_le[9]), sum(wait_le[10]), sum(wait_le[11]), sum(wait_le[12]),
      sum(wait_le[13]), sum(wait_le[14]), sum(wait_le[15]), sum(wait_le[16]), sum(wait_le[17])]::bigint[] AS
      wait_le


-- name: counter_lock
-- Counter passes on several processes take turns; the loser skips its pass.
SELECT pg_try_advisory_xact_lock(hashtext(%(lock)s));

-- name: counter_start
-- The first pass starts where the history starts: at the earliest ending
-- (through jobs_finished_idx and events_counted_idx), at most backfill ago,
-- and at now() - settle on a fresh install, so a new install's counters are
-- current from the first pass instead of catching up on empty hours.
INSERT INTO {schema}.counter_progress (counted_until)
SELECT greatest(now() - %(backfill)s::interval, least(
    (SELECT min(finished_at) FROM {schema}.jobs WHERE state = 'succeeded' AND finished_at IS NOT NULL),
    (SELECT min(created_at) FROM {schema}.events
     WHERE kind IN ('retry_scheduled', 'failed', 'rescued', 'late_write_rejected', 'cancelled')),
    now() - %(settle)s::interval))
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
), a AS (
    DELETE FROM {schema}.job_stats_all WHERE minute < now() - %(keep)s::interval RETURNING 1
)
SELECT (SELECT count(*) FROM m) + (SELECT count(*) FROM h) + (SELECT count(*) FROM e) + (SELECT count(*) FROM a);

-- name: count_attempts
-- One pass of the counter: every attempt that ended in [lo, hi) is added to
-- its minute (job_stats) and hour (job_stats_hourly), to the running totals
-- (job_totals) and, when it failed, to its error group (error_stats), all in
-- one statement. Succeeded attempts are found by jobs.finished_at (the
-- success path writes no event, and must not start to); every other ending
-- by its event. A failed event says whether it was a discard (the task
-- raised Discard); older events without that flag count as a discard when
-- attempts were left. Minutes and hours are cut in UTC whatever the
-- session's TimeZone, so every process agrees on them. The histogram bounds
-- come from Python (counts.BOUNDS) as %(bounds)s: run_le[i] and wait_le[i]
-- count the succeeded attempts whose run or wait was at most bounds[i].
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
), bucketed AS (
    -- Per key and bound: how many succeeded attempts ran (waited) at most that long.
    SELECT s.minute, s.queue, s.task, s.release, b.i,
           count(*) FILTER (WHERE s.run <= b.bound) AS run_n, count(*) FILTER (WHERE s.wait <= b.bound) AS wait_n
    FROM succeeded s CROSS JOIN unnest(%(bounds)s::float8[]) WITH ORDINALITY AS b(bound, i)
    GROUP BY s.minute, s.queue, s.task, s.release, b.i
), histograms AS (
    SELECT minute, queue, task, release, array_agg(run_n ORDER BY i) AS run_le, array_agg(wait_n ORDER BY i) AS wait_le
    FROM bucketed
    GROUP BY minute, queue, task, release
), per_minute AS (
    SELECT a.minute, a.queue, a.task, a.release,
           count(*) FILTER (WHERE outcome = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE outcome = 'retried') AS retried,
           count(*) FILTER (WHERE outcome = 'failed') AS failed,
           count(*) FILTER (WHERE outcome = 'discarded') AS discarded,
           count(*) FILTER (WHERE outcome = 'rescued') AS rescued,
           count(*) FILTER (WHERE outcome = 'rejected') AS rejected,
           count(*) FILTER (WHERE outcome = 'cancelled') AS cancelled,
           coalesce(sum(run), 0) AS run_sum, coalesce(sum(wait), 0) AS wait_sum,
           coalesce(min(h.run_le), array_fill(0::bigint, ARRAY[cardinality(%(bounds)s::float8[])])) AS run_le,
           coalesce(min(h.wait_le), array_fill(0::bigint, ARRAY[cardinality(%(bounds)s::float8[])])) AS wait_le
    FROM attempts a
    LEFT JOIN histograms h USING (minute, queue, task, release)
    GROUP BY a.minute, a.queue, a.task, a.release
), minutes AS (
    INSERT INTO {schema}.job_stats AS t (
        minute, queue, task, release, succeeded, retried, failed, discarded, rescued, rejected, cancelled,
        run_sum, wait_sum, run_le, wait_le)
    SELECT minute, queue, task, release, succeeded, retried, failed, discarded, rescued, rejected, cancelled,
           run_sum, wait_sum, run_le, wait_le
    FROM per_minute
    ON CONFLICT (minute, queue, task, release) DO UPDATE SET
        succeeded = t.succeeded + EXCLUDED.succeeded, retried = t.retried + EXCLUDED.retried,
        failed = t.failed + EXCLUDED.failed, discarded = t.discarded + EXCLUDED.discarded,
        rescued = t.rescued + EXCLUDED.rescued, rejected = t.rejected + EXCLUDED.rejected,
        cancelled = t.cancelled + EXCLUDED.cancelled, run_sum = t.run_sum + EXCLUDED.run_sum,
        wait_sum = t.wait_sum + EXCLUDED.wait_sum, run_le = {schema}.add_counts(t.run_le, EXCLUDED.run_le),
        wait_le = {schema}.add_counts(t.wait_le, EXCLUDED.wait_le)
), totals AS (
    INSERT INTO {schema}.job_totals AS t (
        queue, task, succeeded, retried, failed, discarded, rescued, rejected, cancelled, run_sum, wait_sum,
        run_le, wait_le)
    SELECT queue, task, sum(succeeded), sum(retried), sum(failed), sum(discarded), sum(rescued), sum(rejected),
           sum(cancelled), sum(run_sum), sum(wait_sum), {_histogram_sums}
    FROM per_minute
    GROUP BY queue, task
    ON CONFLICT (queue, task) DO UPDATE SET
        succeeded = t.succeeded + EXCLUDED.succeeded, retried = t.retried + EXCLUDED.retried,
        failed = t.failed + EXCLUDED.failed, discarded = t.discarded + EXCLUDED.discarded,
        rescued = t.rescued + EXCLUDED.rescued, rejected = t.rejected + EXCLUDED.rejected,
        cancelled = t.cancelled + EXCLUDED.cancelled, run_sum = t.run_sum + EXCLUDED.run_sum,
        wait_sum = t.wait_sum + EXCLUDED.wait_sum, run_le = {schema}.add_counts(t.run_le, EXCLUDED.run_le),
        wait_le = {schema}.add_counts(t.wait_le, EXCLUDED.wait_le)
), hours AS (
    INSERT INTO {schema}.job_stats_hourly AS t (
        hour, queue, task, release, succeeded, retried, failed, discarded, rescued, rejected, cancelled,
        run_sum, wait_sum, run_le, wait_le)
    SELECT date_trunc('hour', minute, 'UTC'), queue, task, release,
           sum(succeeded), sum(retried), sum(failed), sum(discarded), sum(rescued), sum(rejected),
           sum(cancelled), sum(run_sum), sum(wait_sum), {_histogram_sums}
    FROM per_minute
    GROUP BY date_trunc('hour', minute, 'UTC'), queue, task, release
    ON CONFLICT (hour, queue, task, release) DO UPDATE SET
        succeeded = t.succeeded + EXCLUDED.succeeded, retried = t.retried + EXCLUDED.retried,
        failed = t.failed + EXCLUDED.failed, discarded = t.discarded + EXCLUDED.discarded,
        rescued = t.rescued + EXCLUDED.rescued, rejected = t.rejected + EXCLUDED.rejected,
        cancelled = t.cancelled + EXCLUDED.cancelled, run_sum = t.run_sum + EXCLUDED.run_sum,
        wait_sum = t.wait_sum + EXCLUDED.wait_sum, run_le = {schema}.add_counts(t.run_le, EXCLUDED.run_le),
        wait_le = {schema}.add_counts(t.wait_le, EXCLUDED.wait_le)
), everything AS (
    INSERT INTO {schema}.job_stats_all AS t (
        minute, succeeded, retried, failed, discarded, rescued, rejected, cancelled, run_sum, wait_sum, run_le, wait_le)
    SELECT minute, sum(succeeded), sum(retried), sum(failed), sum(discarded), sum(rescued), sum(rejected),
           sum(cancelled), sum(run_sum), sum(wait_sum), {_histogram_sums}
    FROM per_minute
    GROUP BY minute
    ON CONFLICT (minute) DO UPDATE SET
        succeeded = t.succeeded + EXCLUDED.succeeded, retried = t.retried + EXCLUDED.retried,
        failed = t.failed + EXCLUDED.failed, discarded = t.discarded + EXCLUDED.discarded,
        rescued = t.rescued + EXCLUDED.rescued, rejected = t.rejected + EXCLUDED.rejected,
        cancelled = t.cancelled + EXCLUDED.cancelled, run_sum = t.run_sum + EXCLUDED.run_sum,
        wait_sum = t.wait_sum + EXCLUDED.wait_sum, run_le = {schema}.add_counts(t.run_le, EXCLUDED.run_le),
        wait_le = {schema}.add_counts(t.wait_le, EXCLUDED.wait_le)
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
       sum(cancelled) AS cancelled, sum(run_sum) AS run_sum, sum(wait_sum) AS wait_sum,
       {_histogram_sums}
FROM counted
GROUP BY queue, task, part;

-- name: minute_series
-- Per minute of [since, until) over every queue and task: what the
-- dashboard's charts draw (finished, failures, and the histograms for the
-- wait and run p95). job_stats_all has one row per minute, so a day is
-- 1,440 rows whatever the number of tasks, read by its primary key.
SELECT minute, succeeded, retried, failed, discarded, rescued, rejected, cancelled, run_sum, wait_sum,
       run_le, wait_le
FROM {schema}.job_stats_all
WHERE minute >= %(since)s AND minute < %(until)s
ORDER BY minute;

-- name: step_series
-- The same as minute_series in points of %(step)s (a whole number of
-- minutes, counted from %(since)s): the sums of their minutes, histograms
-- included, so a point's p95 is the p95 of its minutes together. The day
-- chart draws 288 points of 5 minutes (560 pixels wide could not show
-- 1,440), which also spares the page turning 1,440 rows into counts.
SELECT %(since)s::timestamptz + %(step)s::interval * floor(
           extract(epoch FROM minute - %(since)s::timestamptz) / extract(epoch FROM %(step)s::interval)) AS minute,
       sum(succeeded) AS succeeded, sum(retried) AS retried, sum(failed) AS failed, sum(discarded) AS discarded,
       sum(rescued) AS rescued, sum(rejected) AS rejected, sum(cancelled) AS cancelled,
       sum(run_sum) AS run_sum, sum(wait_sum) AS wait_sum, {_histogram_sums}
FROM {schema}.job_stats_all
WHERE minute >= %(since)s AND minute < %(until)s
GROUP BY 1
ORDER BY 1;

-- name: job_totals
SELECT queue, task, succeeded, retried, failed, discarded, rescued, rejected, cancelled, run_sum, wait_sum,
       run_le, wait_le
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
-- The lease row is the leadership (maintenance/leader.py): alive while expires_at lies ahead.
SELECT name, worker_id, elected_at, renewed_at, expires_at,
       extract(epoch FROM now() - renewed_at)::float8 AS renewed_age,
       extract(epoch FROM expires_at - now())::float8 AS expires_in
FROM {schema}.leader
ORDER BY name;

-- name: queue_depths
-- Every queue with jobs waiting or running, or with a row of controls:
-- waiting jobs through jobs_waiting_queue_idx, running ones through
-- jobs_running_queue_idx, no scan of finished history. The one answer to
-- "how deep is this queue" (status, /readyz, metrics, `queues list`, the
-- dashboard).
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
), known AS (
    SELECT queue FROM waiting
    UNION SELECT queue FROM running
    UNION SELECT queue FROM {schema}.queues WHERE %(queue)s::text IS NULL OR queue = %(queue)s
)
SELECT k.queue, coalesce(w.waiting, 0)::int AS waiting, coalesce(w.scheduled, 0)::int AS scheduled,
       coalesce(r.running, 0)::int AS running, coalesce(w.oldest_age, 0)::float8 AS oldest_age,
       coalesce(q.paused, false) AS paused, q.max_running, q.max_per_second
FROM known k
LEFT JOIN waiting w USING (queue)
LEFT JOIN running r USING (queue)
LEFT JOIN {schema}.queues q USING (queue)
ORDER BY k.queue;

-- name: past_lease
-- Running jobs whose lease has expired and that nobody rescued yet, through
-- jobs_lease_idx: a few in passing are normal (the rescuer runs every third
-- of a lease), an old one means rescue is not running.
SELECT count(*)::int AS jobs, extract(epoch FROM now() - min(lease_expires_at))::float8 AS oldest_seconds
FROM {schema}.jobs
WHERE state = 'running' AND lease_expires_at < now() AND (%(queue)s::text IS NULL OR queue = %(queue)s);

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

-- name: dashboard_deploys_between
SELECT id, version, marked_at FROM {schema}.deploys
WHERE marked_at >= %(since)s AND marked_at < %(until)s
ORDER BY marked_at;
