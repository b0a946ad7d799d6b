-- An SMS campaign: each contact gets the campaign's text (with the list's columns) by SMS;
-- the attempt is the message handed to the SMSC (its state is the message's).
ALTER TABLE campaigns DROP CONSTRAINT campaigns_mode_check;
ALTER TABLE campaigns ADD CONSTRAINT campaigns_mode_check
    CHECK (mode IN ('preview', 'progressive', 'power', 'predictive', 'broadcast', 'sms'));
ALTER TABLE campaign_attempts DROP CONSTRAINT campaign_attempts_outcome_check;
ALTER TABLE campaign_attempts ADD CONSTRAINT campaign_attempts_outcome_check
    CHECK (outcome IN ('busy', 'no_answer', 'failed', 'machine', 'abandoned', 'connected',
                       'hung_up', 'completed', 'confirmed', 'interrupted', 'skipped', 'sent'));
ALTER TABLE campaign_attempts ADD COLUMN sms_id bigint REFERENCES sms_messages(id) ON DELETE SET NULL;
