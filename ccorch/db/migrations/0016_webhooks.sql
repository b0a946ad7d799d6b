-- Webhooks: the enterprise's web services subscribed to event types, and the outbox every
-- matching event is written to before it is sent (so a restart or a receiver that is down
-- loses none). The secret signs the bodies (HMAC-SHA256), so it is kept, not hashed.
CREATE TABLE webhooks (
    id          bigserial PRIMARY KEY,
    url         text NOT NULL,
    secret      text NOT NULL,
    events      text[] NOT NULL,
    active      boolean NOT NULL DEFAULT true,
    created_by  bigint REFERENCES users(id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_outbox (
    id           bigserial PRIMARY KEY,
    webhook_id   bigint NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_type   text NOT NULL,
    body         jsonb NOT NULL,
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts     integer NOT NULL DEFAULT 0,
    next_at      timestamptz NOT NULL DEFAULT now(),
    last_status  integer,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_at, id) WHERE state = 'pending';
CREATE INDEX webhook_outbox_hook ON webhook_outbox (webhook_id, id DESC);
