-- Callbacks from inbound: a callback task keeps the number to call and the queue the
-- caller left; a callback campaign takes its queue's open tasks as contacts (linked to the
-- task and its case) and dials them to that queue.
ALTER TABLE tasks ADD COLUMN phone text;
ALTER TABLE tasks ADD COLUMN queue text;
ALTER TABLE campaign_contacts ADD COLUMN task_id bigint REFERENCES tasks(id) ON DELETE SET NULL;
ALTER TABLE campaign_contacts ADD COLUMN case_id bigint REFERENCES cases(id) ON DELETE SET NULL;
CREATE UNIQUE INDEX campaign_contacts_task ON campaign_contacts (campaign_id, task_id)
    WHERE task_id IS NOT NULL;
