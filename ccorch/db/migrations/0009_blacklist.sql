-- Numbers refused before the IVR says a word (nuisance callers, fraud): E.164 digits.
CREATE TABLE blacklist (
    number      text PRIMARY KEY CHECK (number ~ '^[0-9]{7,15}$'),
    reason      text NOT NULL DEFAULT '',
    added_at    timestamptz NOT NULL DEFAULT now()
);
