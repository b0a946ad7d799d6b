-- Text messages to customers through the carrier's SMSC (SMPP): one-off from the desktop,
-- from case events, or a campaign's. A message is written before it is handed to the
-- SMSC (a restart sends what was queued); the SMSC's answer and its delivery receipt
-- update its state.
CREATE TABLE sms_messages (
    id            bigserial PRIMARY KEY,
    phone         text NOT NULL,                -- E.164 digits
    text          text NOT NULL CHECK (length(text) BETWEEN 1 AND 1600),
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'submitted', 'delivered', 'failed')),
    parts         integer,                      -- SMS segments it took
    smsc_id       text,                         -- the SMSC's message id (the last segment's)
    error         text,
    customer_id   bigint REFERENCES customers(id) ON DELETE SET NULL,
    case_id       bigint REFERENCES cases(id) ON DELETE SET NULL,
    campaign_id   bigint REFERENCES campaigns(id) ON DELETE SET NULL,
    contact_id    bigint REFERENCES campaign_contacts(id) ON DELETE SET NULL,
    created_by    bigint REFERENCES users(id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    submitted_at  timestamptz,
    done_at       timestamptz
);
CREATE INDEX sms_messages_queued ON sms_messages (id) WHERE state = 'queued';
CREATE INDEX sms_messages_customer ON sms_messages (customer_id, created_at);
CREATE INDEX sms_messages_smsc ON sms_messages (smsc_id);
