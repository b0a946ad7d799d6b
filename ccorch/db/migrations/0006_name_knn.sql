-- Nearest-neighbour ordering for the search form: a GiST trigram index lets "the 20 names
-- most like this" stop after 20 rows instead of ranking every namesake (a common surname
-- matches tens of thousands of customers among a million).
CREATE INDEX customers_name_gist ON customers USING gist (lower(name) gist_trgm_ops);
