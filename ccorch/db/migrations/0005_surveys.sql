-- Surveys and conversation scripts: a question graph (each answer says which question comes
-- next), and the answers given, per response, tied to the interaction and the customer.

CREATE TABLE surveys (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    graph       jsonb NOT NULL,      -- {"start": key, "questions": {key: {...}}}, checked on save
    created_at  timestamptz NOT NULL,
    created_by  bigint REFERENCES users(id)
);

CREATE TABLE survey_responses (
    id              bigserial PRIMARY KEY,
    survey_id       bigint NOT NULL REFERENCES surveys(id),
    interaction_id  bigint REFERENCES interactions(id) ON DELETE SET NULL,
    customer_id     bigint REFERENCES customers(id) ON DELETE SET NULL,
    agent_id        bigint REFERENCES users(id),
    current_key     text,            -- NULL once completed
    started_at      timestamptz NOT NULL,
    completed_at    timestamptz
);
CREATE INDEX survey_responses_survey ON survey_responses (survey_id, completed_at);

CREATE TABLE survey_answers (
    response_id     bigint NOT NULL REFERENCES survey_responses(id) ON DELETE CASCADE,
    seq             integer NOT NULL,
    question_key    text NOT NULL,
    answer          text NOT NULL,
    answered_at     timestamptz NOT NULL,
    PRIMARY KEY (response_id, seq)
);
