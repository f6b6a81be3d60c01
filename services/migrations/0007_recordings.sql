-- Recordings: one per recorded call (its id is the caller's call id, which is also the contact's id), the
-- tenants' data keys (wrapped by the platform master key), and the recording policy of tenants and queues.

CREATE TABLE recordings (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- recording: audio is arriving; available: stored and readable; deleted: the audio is gone (the row
    -- stays as evidence of what existed and who deleted it).
    status text NOT NULL CHECK (status IN ('recording', 'available', 'deleted')),
    partial boolean NOT NULL DEFAULT false,  -- cut short (its media worker was lost): up to the last chunk
    law text NOT NULL DEFAULT 'PCMU' CHECK (law IN ('PCMU', 'PCMA')),
    duration_s double precision NOT NULL DEFAULT 0,
    pauses jsonb NOT NULL DEFAULT '[]',  -- [[start_s, end_s], ...] spans paused (no audio kept)
    started_at timestamptz NOT NULL,
    ended_at timestamptz,
    available_at timestamptz,
    -- Where and how the audio is kept: the store's key, the data key that encrypts it, the SHA-256 of the
    -- plaintext WAV (verified on every read), its size.
    storage_key text,
    key_id uuid,
    sha256 text CHECK (sha256 IS NULL OR sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes bigint,
    retention_days integer CHECK (retention_days IS NULL OR retention_days BETWEEN 1 AND 36500),
    purge_after timestamptz,
    legal_hold boolean NOT NULL DEFAULT false,
    deleted_at timestamptz,
    deleted_reason text CHECK (deleted_reason IS NULL OR deleted_reason IN ('request', 'retention')),
    UNIQUE (tenant_id, id),
    CHECK (jsonb_typeof(pauses) = 'array')
);
CREATE INDEX recordings_tenant_started ON recordings (tenant_id, started_at DESC, id DESC);

-- The purge's schedule: which recording of which tenant is due when. The purge must find due recordings
-- across tenants while RLS shows it one tenant at a time, so this platform table holds ids and times only
-- (no tenant content) and has no RLS; the purge then works on each recording inside its tenant's scope,
-- where the recording's own row (hold, status) decides.
CREATE TABLE recording_purge_schedule (
    recording_id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    purge_after timestamptz NOT NULL
);
CREATE INDEX recording_purge_schedule_due ON recording_purge_schedule (purge_after);

-- One row per data key; the newest key without retired_at encrypts new recordings, every key decrypts
-- what it encrypted. `wrapped` is the key encrypted by the master key named in master_key_id.
CREATE TABLE recording_keys (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    master_key_id text NOT NULL,
    wrapped bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    retired_at timestamptz,
    UNIQUE (tenant_id, id)
);
CREATE INDEX recording_keys_tenant ON recording_keys (tenant_id, created_at DESC);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['recordings', 'recording_keys'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant()) '
                       'WITH CHECK (tenant_id = current_tenant())', t);
    END LOOP;
END $$;

-- Policy: record every call (100), none (0) or a share; NULL on a queue = the tenant's setting.
-- Retention in days (NULL on a queue = the tenant's; NULL on the tenant = keep until deleted).
ALTER TABLE tenants
    ADD COLUMN recording_percent integer NOT NULL DEFAULT 0 CHECK (recording_percent BETWEEN 0 AND 100),
    ADD COLUMN recording_retention_days integer
        CHECK (recording_retention_days IS NULL OR recording_retention_days BETWEEN 1 AND 36500);
ALTER TABLE queues
    ADD COLUMN recording_percent integer CHECK (recording_percent IS NULL OR recording_percent BETWEEN 0 AND 100),
    ADD COLUMN recording_retention_days integer
        CHECK (recording_retention_days IS NULL OR recording_retention_days BETWEEN 1 AND 36500);
