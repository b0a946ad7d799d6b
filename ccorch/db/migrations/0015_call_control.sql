-- Call control: the operator's wrap-up (disposition code and note) on the CDR and its
-- interaction, the call's direction (an operator's click-to-dial is outgoing), the
-- interaction's CDR (so a disposition set after the call reaches both), and the stretches
-- of a recording that were paused (card numbers must not be recorded), as
-- [[from_ms, to_ms], ...] from the recording's start.
ALTER TABLE cdrs ADD COLUMN disposition text;
ALTER TABLE cdrs ADD COLUMN note text;
ALTER TABLE cdrs ADD COLUMN direction text NOT NULL DEFAULT 'in' CHECK (direction IN ('in', 'out'));
ALTER TABLE interactions ADD COLUMN cdr_id bigint REFERENCES cdrs(id) ON DELETE SET NULL;
CREATE INDEX interactions_cdr ON interactions (cdr_id) WHERE cdr_id IS NOT NULL;
ALTER TABLE recordings ADD COLUMN gaps jsonb NOT NULL DEFAULT '[]';
CREATE INDEX cdrs_call_ref ON cdrs (call_ref, arrived_at DESC);
