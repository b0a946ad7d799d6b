-- Operators as people: who is logged in to which groups (queues) for this shift, in which
-- state and why, kept so a restart logs them in again; and every change of state, with who
-- made it (the operator, a supervisor, the node), for time-per-state reports.
CREATE TABLE agent_sessions (
    extension   text PRIMARY KEY,
    user_id     bigint REFERENCES users(id) ON DELETE SET NULL,
    queues      text[] NOT NULL,
    state       text NOT NULL CHECK (state IN ('ready', 'not_ready')),
    reason      text,
    since       timestamptz NOT NULL
);

CREATE TABLE agent_state_log (
    id          bigserial PRIMARY KEY,
    extension   text NOT NULL,
    user_id     bigint REFERENCES users(id) ON DELETE SET NULL,
    state       text NOT NULL CHECK (state IN ('logged_in', 'ready', 'not_ready', 'logged_out')),
    reason      text,
    at          timestamptz NOT NULL,
    by_user_id  bigint REFERENCES users(id) ON DELETE SET NULL
);
CREATE INDEX agent_state_log_agent ON agent_state_log (extension, at);
