-- A campaign's script (a survey graph) shown to the operator who takes its call, and the
-- response linked to the attempt (so to the campaign and the call); the operator's
-- disposition ends the attempt (a callback asked for moves the contact's next attempt).
ALTER TABLE campaigns ADD COLUMN survey_id bigint REFERENCES surveys(id) ON DELETE SET NULL;
ALTER TABLE survey_responses
    ADD COLUMN campaign_attempt_id bigint REFERENCES campaign_attempts(id) ON DELETE SET NULL;
CREATE INDEX survey_responses_attempt ON survey_responses (campaign_attempt_id)
    WHERE campaign_attempt_id IS NOT NULL;
ALTER TABLE campaign_attempts ADD COLUMN disposition text;
ALTER TABLE campaign_contacts ADD COLUMN callback_agent text;  -- a personal callback's operator
