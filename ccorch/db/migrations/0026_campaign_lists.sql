-- Outbound campaigns and their lists: a campaign's contacts, imported from CSV or XLSX
-- (each row checked: the number in E.164, its time zone, no duplicate, not on a
-- do-not-call list), with where each came from (the file's line) and how far it got.
CREATE TABLE campaigns (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (length(btrim(name)) > 0),
    mode        text NOT NULL
                CHECK (mode IN ('preview', 'progressive', 'power', 'predictive', 'broadcast')),
    status      text NOT NULL DEFAULT 'draft'
                CHECK (status IN ('draft', 'running', 'paused', 'stopped', 'finished')),
    queue       text,                       -- the operators' queue that works it
    created_by  bigint REFERENCES users(id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaign_contacts (
    id              bigserial PRIMARY KEY,
    campaign_id     bigint NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    phone           text NOT NULL,              -- E.164 digits
    name            text,
    time_zone       text NOT NULL,              -- for the calling window, in the contact's time
    customer_id     bigint REFERENCES customers(id) ON DELETE SET NULL,
    variables       jsonb NOT NULL DEFAULT '{}',  -- the list's other columns (a message's)
    source          text NOT NULL,              -- the import's file name
    source_line     integer NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'dialing', 'retry', 'done', 'failed', 'dnc')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, phone)
);
CREATE INDEX campaign_contacts_due ON campaign_contacts (campaign_id, state, next_attempt_at);

-- Do not call: a number on it is never dialed, for every campaign (campaign_id NULL) or one.
CREATE TABLE do_not_call (
    id          bigserial PRIMARY KEY,
    phone       text NOT NULL,
    campaign_id bigint REFERENCES campaigns(id) ON DELETE CASCADE,
    reason      text NOT NULL DEFAULT '',
    added_by    bigint REFERENCES users(id) ON DELETE SET NULL,
    added_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (phone, campaign_id)
);
