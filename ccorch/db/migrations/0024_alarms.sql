-- The supervisor's alarm log (seed 004: 告警): each alarm with when it was raised and
-- cleared (NULL: active, or open when the node stopped; the next start closes those).
CREATE TABLE alarms (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    subject     text NOT NULL DEFAULT '',   -- the trunk or queue concerned, or ''
    detail      jsonb NOT NULL DEFAULT '{}',
    raised_at   timestamptz NOT NULL,
    cleared_at  timestamptz,
    CHECK (cleared_at IS NULL OR cleared_at >= raised_at)
);
CREATE INDEX alarms_raised ON alarms (raised_at DESC);
