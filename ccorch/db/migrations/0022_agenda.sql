-- An operator's own schedule on the workbench (seed 004: 日程).
CREATE TABLE agenda_items (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    text        text NOT NULL,
    done        boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agenda_items_user ON agenda_items (user_id, at);
