-- Recordings are the node's own records, not references a client may write. An interaction
-- points at a recording by id; who may hear it is decided on the recording itself: its
-- customer's group, and whether any case it belongs to (directly, or through an interaction
-- that carries it) is confidential. Paths stay inside the database.
CREATE TABLE recordings (
    id          bigserial PRIMARY KEY,
    path        text NOT NULL UNIQUE,         -- the file, under the node's recordings folder
    kind        text NOT NULL CHECK (kind IN ('call', 'voicemail')),
    sip_call_id text,                         -- the caller's Call-ID
    customer_id bigint REFERENCES customers(id) ON DELETE SET NULL,
    case_id     bigint REFERENCES cases(id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE interactions ADD COLUMN recording_id bigint REFERENCES recordings(id);
CREATE INDEX interactions_recording ON interactions (recording_id) WHERE recording_id IS NOT NULL;

-- Existing links move over; a reference no node wrote (a client's) is dropped with the column.
INSERT INTO recordings (path, kind, customer_id, case_id, created_at)
SELECT DISTINCT ON (recording_ref) recording_ref,
       CASE WHEN channel = 'voicemail' THEN 'voicemail' ELSE 'call' END,
       customer_id, case_id, started_at
FROM interactions i
WHERE recording_ref IS NOT NULL
  AND EXISTS (SELECT 1 FROM cdrs c WHERE c.recording_path = i.recording_ref)
   OR (recording_ref IS NOT NULL AND channel = 'voicemail' AND agent_id IS NULL)
ORDER BY recording_ref, id;
UPDATE interactions i SET recording_id = r.id FROM recordings r WHERE r.path = i.recording_ref;
ALTER TABLE interactions DROP COLUMN recording_ref;

-- The operator who answered, on interactions the node wrote before this was filled in.
UPDATE interactions i SET agent_id = u.id
FROM cdrs c JOIN users u ON u.extension = c.agent
WHERE i.agent_id IS NULL AND i.channel = 'call' AND c.customer_id = i.customer_id
  AND c.arrived_at = i.started_at;
