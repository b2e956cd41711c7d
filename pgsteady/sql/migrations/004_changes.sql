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
