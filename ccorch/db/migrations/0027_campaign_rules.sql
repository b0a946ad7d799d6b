-- A campaign's calling rules (ccorch/dialer/rules.py): the calling window in the contact's
-- time, weekdays, holidays, start and end, retries per outcome.
ALTER TABLE campaigns ADD COLUMN rules jsonb NOT NULL DEFAULT '{}';
