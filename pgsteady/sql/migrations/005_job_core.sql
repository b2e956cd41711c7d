-- 005: job core. Who asked a running job to stop (the worker acts on this
-- row, never on a notification alone), and how many runs of a schedule may
-- wait unclaimed at once.

-- Written by `jobs cancel` together with cancel_requested; the worker's
-- "cancelled" event names this actor.
ALTER TABLE {schema}.jobs ADD COLUMN cancel_requested_by text;

-- A schedule whose earlier runs still wait (no worker serves its queue) does
-- not pile up a backlog that later runs as a burst; NULL means no limit.
ALTER TABLE {schema}.schedules ADD COLUMN max_waiting integer DEFAULT 1 CHECK (max_waiting > 0);
