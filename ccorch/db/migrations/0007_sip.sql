-- SIP: agents' phone accounts (digest credentials stored as HA1 hashes per algorithm, never
-- the password) and their registered contacts, persisted so a restart keeps registrations.

CREATE TABLE sip_accounts (
    username        text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9._-]{1,64}$'),
    realm           text NOT NULL,
    ha1_md5         text NOT NULL,
    ha1_sha256      text NOT NULL,
    display_name    text NOT NULL DEFAULT '',
    user_id         bigint REFERENCES users(id) ON DELETE SET NULL,
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sip_registrations (
    username        text NOT NULL REFERENCES sip_accounts(username) ON DELETE CASCADE,
    contact         text NOT NULL,          -- the Contact URI as the phone sent it
    expires_at      timestamptz NOT NULL,
    call_id         text NOT NULL,
    cseq            integer NOT NULL,
    source          text NOT NULL,          -- transport:host:port the REGISTER came from
    user_agent      text NOT NULL DEFAULT '',
    q               real NOT NULL DEFAULT 1.0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (username, contact)
);
CREATE INDEX sip_registrations_expiry ON sip_registrations (expires_at);
