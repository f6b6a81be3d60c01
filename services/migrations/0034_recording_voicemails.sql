-- Voicemails are recordings (docs/recording.md, "Voicemails"): a message a caller left in the IVR is sealed,
-- indexed, kept and deleted like a call's recording, with segment_kind 'voicemail', its audio as media
-- wrote it (one channel of 16-bit linear PCM: law 'L16'), and `left_on` naming the caller's contact (the
-- call it was left on; the recording's own id is the voicemail task's contact id).
-- `call_id`: the media call a recording is made on. It is the recording's id for a plain call, but not for
-- a callback (the customer's call, dialled out) or a consultation (an agent's leg): a lost media worker's
-- call.ended names that call, and its recordings are found by it.
ALTER TABLE recordings
    ADD COLUMN call_id uuid,
    ADD COLUMN left_on uuid,
    DROP CONSTRAINT recordings_law_check,
    ADD CONSTRAINT recordings_law_check CHECK (law IN ('PCMU', 'PCMA', 'L16')),
    DROP CONSTRAINT recordings_segment_kind_check,
    ADD CONSTRAINT recordings_segment_kind_check CHECK (segment_kind IN ('talk', 'consult', 'voicemail'));
CREATE INDEX recordings_call_recording ON recordings (tenant_id, call_id) WHERE status = 'recording';
CREATE INDEX recordings_left_on ON recordings (tenant_id, left_on) WHERE left_on IS NOT NULL;
