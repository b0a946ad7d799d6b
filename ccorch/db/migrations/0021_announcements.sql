-- The supervisors' bulletin board on the operators' workbench (seed 004).
CREATE TABLE announcements (
    id          bigserial PRIMARY KEY,
    author_id   bigint REFERENCES users(id),
    text        text NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX announcements_showing ON announcements (expires_at);
