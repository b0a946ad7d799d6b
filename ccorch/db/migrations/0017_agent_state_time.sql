-- Every stretch of time an operator spent in one state (ready, not ready with its reason,
-- offered, busy, wrap-up), written when the stretch ends, so reports sum time per state and
-- reason without replaying events. agent_state_log keeps what was asked and by whom.
CREATE TABLE agent_state_time (
    id          bigserial PRIMARY KEY,
    extension   text NOT NULL,
    state       text NOT NULL
                CHECK (state IN ('ready', 'not_ready', 'offered', 'busy', 'wrap_up')),
    reason      text,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz NOT NULL,
    CHECK (ended_at >= started_at)
);
CREATE INDEX agent_state_time_agent ON agent_state_time (extension, started_at);
CREATE INDEX agent_state_time_started ON agent_state_time (started_at);
