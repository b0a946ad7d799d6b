-- Call detail records: one row per call, written when it ends, with every timestamp of its
-- path (arrival, IVR end, queue entry, offer, answer, end), who it reached and how it ended.

CREATE TABLE cdrs (
    id              bigserial PRIMARY KEY,
    call_ref        bigint NOT NULL,          -- the node's number for the call (logs, events)
    sip_call_id     text NOT NULL,            -- the caller's Call-ID
    ani             text NOT NULL,
    dnis            text NOT NULL,
    origin          text NOT NULL,            -- trunk name, or agent:<extension>
    flow            text,
    queue           text,
    agent           text,                     -- the extension that answered
    customer_id     bigint REFERENCES customers(id) ON DELETE SET NULL,
    outcome         text NOT NULL,            -- caller-hangup, agent-hangup, ivr-flow, abandoned...
    status          integer NOT NULL,         -- SIP status the caller got
    arrived_at      timestamptz NOT NULL,
    ivr_ended_at    timestamptz,
    queued_at       timestamptz,
    offered_at      timestamptz,
    answered_at     timestamptz,              -- by an operator (not by the IVR)
    ended_at        timestamptz NOT NULL,
    waited_ms       integer,                  -- in queue, until answered or abandoned
    talk_seconds    real NOT NULL DEFAULT 0,  -- with the operator
    recording_path  text,
    CHECK (ended_at >= arrived_at)
);
CREATE INDEX cdrs_arrived ON cdrs (arrived_at DESC);
CREATE INDEX cdrs_customer ON cdrs (customer_id, arrived_at DESC) WHERE customer_id IS NOT NULL;
