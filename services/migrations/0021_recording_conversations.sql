-- Recording, continued (docs/recording.md):
-- * an Opus-in-Ogg copy kept beside the WAV master when the tenant asks for one;
-- * the announcement a caller hears before a recorded call is connected (NULL on a queue: the tenant's;
--   '' on a queue: none for that queue; NULL or '' on the tenant: none);
-- * a conversation recorded in segments: a transfer's next agent is a new recording of the same contact
--   (segment 1, 2, ...), each with its agent. Segment 0 keeps the contact's id as its own id; contact_id
--   NULL means the recording's own id (rows made before segments existed).
ALTER TABLE tenants
    ADD COLUMN recording_opus_copy boolean NOT NULL DEFAULT false,
    ADD COLUMN recording_announcement text
        CHECK (recording_announcement IS NULL OR length(recording_announcement) <= 500);
ALTER TABLE queues
    ADD COLUMN recording_announcement text
        CHECK (recording_announcement IS NULL OR length(recording_announcement) <= 500);
ALTER TABLE recordings
    ADD COLUMN opus_key text,
    ADD COLUMN opus_sha256 text CHECK (opus_sha256 IS NULL OR opus_sha256 ~ '^[0-9a-f]{64}$'),
    ADD COLUMN opus_size_bytes bigint,
    ADD COLUMN contact_id uuid,
    ADD COLUMN segment integer NOT NULL DEFAULT 0 CHECK (segment >= 0),
    ADD COLUMN agent_id uuid;
CREATE INDEX recordings_contact ON recordings (tenant_id, contact_id, segment) WHERE contact_id IS NOT NULL;
