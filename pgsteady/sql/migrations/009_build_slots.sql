-- 009: one index build per table is a lease row with a fencing token, not a
-- session advisory lock. Behind a transaction pooler a session lock is taken
-- and kept by whichever pooled server session ran the statement, so a build
-- could strand the table's slot the way the leader's lock stranded the
-- leadership (007); a row that expires cannot be stranded (changes/slots.py).
CREATE TABLE {schema}.build_slots (
    table_oid     oid PRIMARY KEY,
    holder        text NOT NULL,
    job_id        bigint,
    fencing_token bigint NOT NULL DEFAULT 1,
    taken_at      timestamptz NOT NULL DEFAULT now(),
    renewed_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
