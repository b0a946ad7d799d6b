-- The e-mail channel: every message in and out, kept whole (its raw bytes) with its parsed
-- headers and text; attachments apart so they can be listed and fetched one by one; the
-- mailbox position (IMAP UID under its UIDVALIDITY) so a restart reads on from there; and
-- the rules that classify a new thread.
CREATE TABLE email_messages (
    id              bigserial PRIMARY KEY,
    direction       text NOT NULL CHECK (direction IN ('in', 'out')),
    message_id      text NOT NULL UNIQUE,          -- RFC 5322 Message-ID, without <>
    in_reply_to     text,
    refs            text[] NOT NULL DEFAULT '{}',  -- References, oldest first
    from_addr       text NOT NULL,
    from_name       text NOT NULL DEFAULT '',
    to_addrs        text[] NOT NULL DEFAULT '{}',
    cc_addrs        text[] NOT NULL DEFAULT '{}',
    subject         text NOT NULL DEFAULT '',
    body_text       text NOT NULL DEFAULT '',
    sent_at         timestamptz,                   -- its Date header (in), or when the server took it (out)
    received_at     timestamptz NOT NULL DEFAULT now(),
    raw             bytea,                         -- the message as it arrived or went out
    -- out: queued (committed, not yet taken by the SMTP server), sent, failed
    state           text NOT NULL DEFAULT 'received'
                    CHECK (state IN ('received', 'queued', 'sent', 'failed')),
    error           text,
    customer_id     bigint REFERENCES customers(id) ON DELETE SET NULL,
    case_id         bigint REFERENCES cases(id) ON DELETE SET NULL,
    interaction_id  bigint REFERENCES interactions(id) ON DELETE SET NULL,
    created_by      bigint REFERENCES users(id) ON DELETE SET NULL
);
CREATE INDEX email_messages_case ON email_messages (case_id, received_at, id);
CREATE INDEX email_messages_queued ON email_messages (id) WHERE state = 'queued';

CREATE TABLE email_attachments (
    id              bigserial PRIMARY KEY,
    message_id      bigint NOT NULL REFERENCES email_messages(id) ON DELETE CASCADE,
    filename        text NOT NULL,
    content_type    text NOT NULL,
    size            integer NOT NULL,
    sha256          text NOT NULL,
    data            bytea NOT NULL
);
CREATE INDEX email_attachments_message ON email_attachments (message_id);

CREATE TABLE email_mailbox (
    folder          text PRIMARY KEY,
    uidvalidity     bigint NOT NULL,
    last_uid        bigint NOT NULL
);

-- A new thread's classification: the first rule (by position) whose pattern is found in
-- the field gives the case its topic, kind and confidentiality.
CREATE TABLE email_rules (
    position        integer PRIMARY KEY,
    field           text NOT NULL CHECK (field IN ('subject', 'body', 'from', 'any')),
    pattern         text NOT NULL,                 -- a regular expression, case-insensitive
    topic_id        bigint REFERENCES topics(id),
    kind            text NOT NULL DEFAULT 'instant' CHECK (kind IN ('instant', 'escalation', 'dispatch')),
    confidential    boolean NOT NULL DEFAULT false
);
