-- The call a busy or wrap-up stretch belongs to (the node's call number, cdrs.call_ref), so
-- reports give each queue the after-call work of its own calls.
ALTER TABLE agent_state_time ADD COLUMN call_ref bigint;
CREATE INDEX agent_state_time_call ON agent_state_time (call_ref, extension)
    WHERE call_ref IS NOT NULL;
