-- The utility's line (seed 003: an electricity distributor): where each account takes its
-- power (a service point with a structured address, so outages can be matched to it), the
-- meter there and its readings, planned and emergency outages by address, and technological
-- connection requests with their stages.

-- A tariff: how many zones a reading has (1, or 2: day and night) and how much a household
-- on it plausibly uses a day (a new reading above the last by more than this per day since
-- it is refused as a likely typing error).
CREATE TABLE tariffs (
    code            text PRIMARY KEY CHECK (code ~ '^[a-z0-9_-]{1,40}$'),
    name            text NOT NULL,
    zones           smallint NOT NULL CHECK (zones IN (1, 2)),
    max_daily_kwh   integer NOT NULL CHECK (max_daily_kwh > 0)
);

CREATE TABLE service_points (
    id          bigserial PRIMARY KEY,
    account_id  bigint NOT NULL UNIQUE REFERENCES accounts(id) ON DELETE CASCADE,
    locality    text NOT NULL CHECK (length(btrim(locality)) > 0),
    street      text NOT NULL CHECK (length(btrim(street)) > 0),
    house       text NOT NULL CHECK (house ~ '^[0-9]+'),   -- "12", "12A", "12/2"
    -- the house's number, for house ranges of outages
    house_no    integer GENERATED ALWAYS AS ((substring(house FROM '^[0-9]+'))::integer) STORED,
    apartment   text,
    tariff      text NOT NULL REFERENCES tariffs(code)
);
CREATE INDEX service_points_street ON service_points (lower(locality), lower(street));

CREATE TABLE meters (
    id                  bigserial PRIMARY KEY,
    service_point_id    bigint NOT NULL REFERENCES service_points(id) ON DELETE CASCADE,
    serial              text NOT NULL UNIQUE,
    installed_on        date NOT NULL,
    removed_on          date
);
CREATE UNIQUE INDEX meters_one_in_service ON meters (service_point_id) WHERE removed_on IS NULL;

-- Whole kWh, as customers read them off the register. A one-zone meter has day_kwh only.
CREATE TABLE meter_readings (
    id          bigserial PRIMARY KEY,
    meter_id    bigint NOT NULL REFERENCES meters(id) ON DELETE CASCADE,
    day_kwh     bigint NOT NULL CHECK (day_kwh >= 0),
    night_kwh   bigint CHECK (night_kwh >= 0),
    taken_at    timestamptz NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('ivr', 'voice', 'operator', 'initial')),
    entered_by  bigint REFERENCES users(id),
    sip_call_id text
);
CREATE INDEX meter_readings_meter ON meter_readings (meter_id, taken_at DESC, id DESC);

-- An outage covers a locality, or one street of it, or a range of house numbers there.
-- It is on from starts_at until ended_at when power came back, else until expected_end.
CREATE TABLE outages (
    id              bigserial PRIMARY KEY,
    ref             text UNIQUE,   -- the operations department's own id (imports update by it)
    kind            text NOT NULL CHECK (kind IN ('planned', 'emergency')),
    locality        text NOT NULL CHECK (length(btrim(locality)) > 0),
    street          text,
    house_from      integer CHECK (house_from >= 0),
    house_to        integer,
    starts_at       timestamptz NOT NULL,
    expected_end    timestamptz NOT NULL,
    ended_at        timestamptz,
    reason          text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (expected_end > starts_at),
    CHECK (ended_at IS NULL OR ended_at >= starts_at),
    CHECK ((house_from IS NULL) = (house_to IS NULL)),
    CHECK (house_to >= house_from),
    CHECK (street IS NOT NULL OR house_from IS NULL)
);
CREATE INDEX outages_place ON outages (lower(locality), lower(street));
CREATE INDEX outages_open ON outages (expected_end) WHERE ended_at IS NULL;

-- Technological connection (технологическое присоединение): a request goes through fixed
-- stages in order (or is cancelled); every stage reached is kept with its date.
CREATE TABLE connection_requests (
    id              bigserial PRIMARY KEY,
    number          text NOT NULL UNIQUE CHECK (number ~ '^[0-9]{1,12}$'),
    customer_id     bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    address         text NOT NULL,
    power_kw        numeric(8, 1) NOT NULL CHECK (power_kw > 0),
    stage           text NOT NULL CHECK (stage IN ('registered', 'documents_sent', 'contract_signed',
                                                   'works', 'inspection', 'connected', 'cancelled')),
    submitted_at    timestamptz NOT NULL,
    due_on          date
);
CREATE INDEX connection_requests_customer ON connection_requests (customer_id);

CREATE TABLE connection_request_stages (
    id          bigserial PRIMARY KEY,
    request_id  bigint NOT NULL REFERENCES connection_requests(id) ON DELETE CASCADE,
    stage       text NOT NULL,
    at          timestamptz NOT NULL,
    user_id     bigint REFERENCES users(id),
    note        text NOT NULL DEFAULT ''
);
CREATE INDEX connection_request_stages_request ON connection_request_stages (request_id, at, id);
