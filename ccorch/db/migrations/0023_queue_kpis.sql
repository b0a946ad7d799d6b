-- Supervision's figures from the records themselves: how the call left its (last) queue,
-- as the ACD decided (answered, abandoned, overflowed, timed_out, withdrawn), and how long
-- the operator kept the caller on hold (talk_seconds includes it). Service level, ASA and
-- AHT per interval are computed from these, the same way as on /metrics.
ALTER TABLE cdrs ADD COLUMN queue_outcome text
    CHECK (queue_outcome IN ('answered', 'abandoned', 'overflowed', 'timed_out', 'withdrawn'));
ALTER TABLE cdrs ADD COLUMN hold_seconds real NOT NULL DEFAULT 0;
CREATE INDEX cdrs_queued ON cdrs (queued_at) WHERE queue IS NOT NULL;
