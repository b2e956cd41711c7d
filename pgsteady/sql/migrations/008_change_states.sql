-- The change record's status is one of the states of pgsteady/changes/states.py,
-- moved only there; the database refuses anything else.
ALTER TABLE {schema}.changes ADD CONSTRAINT changes_status_check CHECK (status IN (
    'new', 'linted', 'refused', 'planned', 'rehearsed', 'applying', 'applied', 'rolling back',
    'rolled back', 'verified', 'lint failed', 'plan failed', 'rehearse failed', 'apply failed',
    'rollback failed', 'verify failed'));
