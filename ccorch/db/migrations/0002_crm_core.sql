-- CRM core: organization and access (org units, users, roles, sessions, an append-only
-- audit log), customers with their phones, addresses and groups (with per-group access),
-- the number-prefix table that gives a caller's region, and self-service accounts
-- (contracts with balance and a slow-hashed PIN with attempt counting and lockout).

CREATE TABLE org_units (
    id          bigserial PRIMARY KEY,
    parent_id   bigint REFERENCES org_units(id),
    name        text NOT NULL,
    kind        text NOT NULL DEFAULT 'department' CHECK (kind IN ('company', 'division', 'department', 'team')),
    UNIQUE (parent_id, name)
);

CREATE TABLE users (
    id              bigserial PRIMARY KEY,
    login           text NOT NULL UNIQUE CHECK (login ~ '^[a-z0-9._-]{2,64}$'),
    full_name       text NOT NULL,
    org_unit_id     bigint REFERENCES org_units(id),
    password_hash   text NOT NULL,
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- The fixed role set; permissions are checked in code against these names.
CREATE TABLE user_roles (
    user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('operator', 'supervisor', 'complaints', 'admin')),
    PRIMARY KEY (user_id, role)
);

-- Session tokens are stored as their SHA-256, so a database dump yields no usable token.
CREATE TABLE sessions (
    token_sha256    bytea PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Every change made through the API: who, what, before and after. Rows can be added,
-- never changed or removed (the trigger refuses), not even by the application's role.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    user_id     bigint REFERENCES users(id),
    action      text NOT NULL,
    entity      text NOT NULL,
    entity_id   text,
    before      jsonb,
    after       jsonb
);
CREATE INDEX audit_log_entity ON audit_log (entity, entity_id, at);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

-- Customer groups with access control: who may see and who may edit a group's customers.
CREATE TABLE customer_groups (
    id      bigserial PRIMARY KEY,
    name    text NOT NULL UNIQUE
);
CREATE TABLE customer_group_access (
    group_id    bigint NOT NULL REFERENCES customer_groups(id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('operator', 'supervisor', 'complaints', 'admin')),
    can_edit    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (group_id, role)
);

-- Number prefixes (country code + area or mobile operator code) and the region they mean.
CREATE TABLE phone_prefixes (
    prefix      text PRIMARY KEY CHECK (prefix ~ '^[0-9]{1,10}$'),
    country     text NOT NULL,
    region      text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('geographic', 'mobile', 'country'))
);

CREATE TABLE customers (
    id              bigserial PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('person', 'organization')),
    name            text NOT NULL CHECK (length(btrim(name)) > 0),
    segment         text NOT NULL DEFAULT 'standard',
    manager_id      bigint REFERENCES users(id),
    group_id        bigint REFERENCES customer_groups(id),
    region          text,
    birthday        date,
    email           text,
    notes           text NOT NULL DEFAULT '',
    attributes      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_name_trgm ON customers USING gin (lower(name) gin_trgm_ops);
CREATE INDEX customers_group ON customers (group_id);

-- Several numbers per customer, normalized to E.164 digits (no '+'). The last seven
-- digits are kept apart for "caller sent a national or short form" matching.
CREATE TABLE customer_phones (
    id              bigserial PRIMARY KEY,
    customer_id     bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    e164            text NOT NULL CHECK (e164 ~ '^[1-9][0-9]{6,14}$'),
    tail7           text GENERATED ALWAYS AS (right(e164, 7)) STORED,
    label           text NOT NULL DEFAULT 'main',
    UNIQUE (customer_id, e164)
);
CREATE INDEX customer_phones_e164 ON customer_phones (e164);
CREATE INDEX customer_phones_tail7 ON customer_phones (tail7);
CREATE INDEX customer_phones_trgm ON customer_phones USING gin (e164 gin_trgm_ops);

CREATE TABLE customer_addresses (
    id              bigserial PRIMARY KEY,
    customer_id     bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    kind            text NOT NULL DEFAULT 'service',
    text            text NOT NULL
);
CREATE INDEX customer_addresses_customer ON customer_addresses (customer_id);
CREATE INDEX customer_addresses_trgm ON customer_addresses USING gin (lower(text) gin_trgm_ops);

-- Reminders shown when the customer calls: birthdays, renewals, any dated note.
CREATE TABLE customer_reminders (
    id              bigserial PRIMARY KEY,
    customer_id     bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('birthday', 'renewal', 'custom')),
    due_on          date NOT NULL,
    yearly          boolean NOT NULL DEFAULT false,
    text            text NOT NULL
);
CREATE INDEX customer_reminders_customer ON customer_reminders (customer_id);

-- Self-service accounts (contracts): balance, and a PIN kept only as a slow salted hash.
CREATE TABLE accounts (
    id                  bigserial PRIMARY KEY,
    customer_id         bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    contract_no         text NOT NULL UNIQUE CHECK (contract_no ~ '^[0-9A-Za-z-]{1,32}$'),
    balance             numeric(14, 2) NOT NULL DEFAULT 0,
    currency            text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    pin_hash            text,
    failed_attempts     integer NOT NULL DEFAULT 0,
    locked_until        timestamptz,
    last_payment_at     timestamptz,
    last_payment_amount numeric(14, 2)
);
CREATE INDEX accounts_customer ON accounts (customer_id);
CREATE INDEX accounts_contract_trgm ON accounts USING gin (contract_no gin_trgm_ops);
