-- The guided service scenario (seed 000): scenarios per topic as YAML (checked when
-- uploaded, kept in versions), and every step an operator takes on a call, joined to the
-- call's interaction when its record is written.
CREATE TABLE service_scenarios (
    name        text PRIMARY KEY,
    topic_id    bigint REFERENCES topics(id),
    source      text NOT NULL,
    version     integer NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  bigint REFERENCES users(id)
);

CREATE TABLE service_scenario_versions (
    name        text NOT NULL,
    version     integer NOT NULL,
    source      text NOT NULL,
    saved_at    timestamptz NOT NULL DEFAULT now(),
    saved_by    bigint REFERENCES users(id),
    PRIMARY KEY (name, version)
);

CREATE TABLE service_steps (
    id              bigserial PRIMARY KEY,
    call_ref        bigint,          -- the node's number for the call
    sip_call_id     text,            -- with call_arrived_at: the CDR this step belongs to
    call_arrived_at timestamptz,
    interaction_id  bigint REFERENCES interactions(id) ON DELETE SET NULL,
    customer_id     bigint REFERENCES customers(id) ON DELETE SET NULL,
    user_id         bigint REFERENCES users(id),
    step            text NOT NULL,
    scenario        text,
    topic_id        bigint REFERENCES topics(id),
    data            jsonb NOT NULL DEFAULT '{}',
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX service_steps_call ON service_steps (sip_call_id, call_arrived_at)
    WHERE interaction_id IS NULL;
CREATE INDEX service_steps_interaction ON service_steps (interaction_id);
