-- A CDR is written once: a retry after a lost acknowledgement, or the replay of the local
-- spool after a database outage, finds the row already there and adds nothing.
CREATE UNIQUE INDEX cdrs_once ON cdrs (sip_call_id, arrived_at);
