-- "Call back at": an operator's wrap-up may ask for a callback at a time, for anyone in the
-- queue or for themselves. An inbound call's becomes a callback task (with the operator
-- who is to make it); a campaign call's moves its contact to that time.
ALTER TABLE tasks ADD COLUMN agent text;
CREATE INDEX campaign_contacts_personal ON campaign_contacts (campaign_id, callback_agent)
    WHERE callback_agent IS NOT NULL AND state IN ('pending', 'retry');
