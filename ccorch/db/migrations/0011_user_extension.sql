-- The operator's phone: the extension the ACD rings for this user. It links the CRM's
-- people (a customer's assigned manager) with the ACD's agents (preferred-agent routing).
ALTER TABLE users ADD COLUMN extension text UNIQUE CHECK (extension ~ '^[0-9]{2,10}$');
