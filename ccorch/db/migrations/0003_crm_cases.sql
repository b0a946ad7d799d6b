-- Contacts and work: interactions in every channel, the classification tree, cases (work
-- orders) of three kinds with a recorded status workflow, SLA rules counted in business
-- hours over a holiday calendar, overdue alarms, and follow-up tasks (callbacks).

CREATE TABLE interactions (
    id              bigserial PRIMARY KEY,
    customer_id     bigint REFERENCES customers(id) ON DELETE SET NULL,
    channel         text NOT NULL CHECK (channel IN ('call', 'voicemail', 'sms', 'email', 'chat')),
    direction       text NOT NULL CHECK (direction IN ('in', 'out')),
    started_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    queue           text,
    agent_id        bigint REFERENCES users(id),
    disposition     text,
    notes           text NOT NULL DEFAULT '',
    recording_ref   text,
    case_id         bigint,
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE INDEX interactions_customer ON interactions (customer_id, started_at DESC, id DESC);

CREATE TABLE topics (
    id          bigserial PRIMARY KEY,
    parent_id   bigint REFERENCES topics(id),
    name        text NOT NULL,
    UNIQUE (parent_id, name)
);

-- Deadline in business hours for a case kind, optionally for one topic (the topic's rule wins).
CREATE TABLE sla_rules (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('instant', 'escalation', 'dispatch')),
    topic_id    bigint REFERENCES topics(id),
    hours       numeric(8, 2) NOT NULL CHECK (hours > 0),
    UNIQUE NULLS NOT DISTINCT (kind, topic_id)
);

CREATE TABLE holidays (
    day     date PRIMARY KEY,
    name    text NOT NULL
);

CREATE TABLE cases (
    id                  bigserial PRIMARY KEY,
    customer_id         bigint REFERENCES customers(id) ON DELETE SET NULL,
    topic_id            bigint REFERENCES topics(id),
    kind                text NOT NULL CHECK (kind IN ('instant', 'escalation', 'dispatch')),
    status              text NOT NULL,
    subject             text NOT NULL,
    description         text NOT NULL DEFAULT '',
    confidential        boolean NOT NULL DEFAULT false,  -- complaints: complaints role only
    callback_required   boolean NOT NULL DEFAULT false,
    department_id       bigint REFERENCES org_units(id),
    assignee_id         bigint REFERENCES users(id),
    created_by          bigint REFERENCES users(id),
    created_at          timestamptz NOT NULL,
    due_at              timestamptz,
    resolved_at         timestamptz,
    overdue_alarmed_at  timestamptz
);
CREATE INDEX cases_customer ON cases (customer_id, created_at DESC);
CREATE INDEX cases_open_due ON cases (due_at) WHERE resolved_at IS NULL;
ALTER TABLE interactions ADD FOREIGN KEY (case_id) REFERENCES cases(id) ON DELETE SET NULL;

CREATE TABLE case_transitions (
    id          bigserial PRIMARY KEY,
    case_id     bigint NOT NULL REFERENCES cases(id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    user_id     bigint REFERENCES users(id),
    from_status text,
    to_status   text NOT NULL,
    comment     text NOT NULL DEFAULT ''
);
CREATE INDEX case_transitions_case ON case_transitions (case_id, at);

CREATE TABLE tasks (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('callback', 'reminder')),
    case_id     bigint REFERENCES cases(id) ON DELETE CASCADE,
    customer_id bigint REFERENCES customers(id) ON DELETE SET NULL,
    due_at      timestamptz NOT NULL,
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done', 'cancelled')),
    created_at  timestamptz NOT NULL
);
CREATE INDEX tasks_open ON tasks (due_at) WHERE status = 'open';
