-- Preview mode: an operator may pass over a contact shown to them (it goes back to the
-- list for later); the attempt says so.
ALTER TABLE campaign_attempts DROP CONSTRAINT campaign_attempts_outcome_check;
ALTER TABLE campaign_attempts ADD CONSTRAINT campaign_attempts_outcome_check
    CHECK (outcome IN ('busy', 'no_answer', 'failed', 'machine', 'abandoned', 'connected',
                       'hung_up', 'completed', 'confirmed', 'interrupted', 'skipped'));
ALTER TABLE campaign_attempts ADD COLUMN previewed_by text;  -- the operator it was shown to
