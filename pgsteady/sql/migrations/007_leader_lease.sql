-- 007: the maintenance leader holds a lease row with a fencing token, not a
-- session advisory lock. A transaction pooler keeps a server session (and a
-- session lock) alive after its client is gone, which stranded the
-- leadership; a row that expires cannot be stranded (maintenance/leader.py).
ALTER TABLE {schema}.leader
    ADD COLUMN expires_at    timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN fencing_token bigint NOT NULL DEFAULT 1;
