-- Campaigns dial: each attempt is written before its INVITE leaves (a crash loses none),
-- and what became of it after: answered, what detection heard, the operator who took it,
-- how it ended. A contact keeps its attempts per outcome for the retry rules.
ALTER TABLE campaigns ADD COLUMN dialing jsonb NOT NULL DEFAULT '{}';

CREATE TABLE campaign_attempts (
    id           bigserial PRIMARY KEY,
    campaign_id  bigint NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    contact_id   bigint NOT NULL REFERENCES campaign_contacts(id) ON DELETE CASCADE,
    phone        text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    answered_at  timestamptz,               -- the far end answered
    detected     text CHECK (detected IN ('human', 'machine', 'silence', 'not_run')),
    live_at      timestamptz,               -- counted as a live answer (end of greeting)
    connected_at timestamptz,               -- an operator took it
    agent        text,
    ended_at     timestamptz,
    outcome      text CHECK (outcome IN ('busy', 'no_answer', 'failed', 'machine', 'abandoned',
                                         'connected', 'hung_up', 'completed', 'confirmed',
                                         'interrupted')),
    keys         text,                      -- what a broadcast's listener pressed
    sip_call_id  text
);
CREATE INDEX campaign_attempts_by_campaign ON campaign_attempts (campaign_id, started_at);
CREATE INDEX campaign_attempts_open ON campaign_attempts (campaign_id) WHERE ended_at IS NULL;

ALTER TABLE campaign_contacts ADD COLUMN tried jsonb NOT NULL DEFAULT '{}';
ALTER TABLE campaign_contacts ADD COLUMN last_outcome text;
