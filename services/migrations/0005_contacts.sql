-- Contacts: one row per contact (a call from arrival to wrap-up) with its timeline; how an agent is reached;
-- widget public keys.

-- The contact's id is the caller's call id. Configuration ids (number, flow, queue, agent) carry no foreign
-- keys on purpose: history outlives the queue or agent it mentions, so queue_name keeps the name it had.
CREATE TABLE contacts (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    direction text NOT NULL DEFAULT 'inbound' CHECK (direction IN ('inbound', 'outbound')),
    caller text NOT NULL DEFAULT '',  -- the caller's number; '' when unknown (anonymous)
    caller_name text NOT NULL DEFAULT '',
    dialled text NOT NULL DEFAULT '',
    number_id uuid,
    flow_id uuid,
    queue_id uuid,
    queue_name text NOT NULL DEFAULT '',
    agent_id uuid,
    state text NOT NULL CHECK (length(state) BETWEEN 1 AND 40),
    outcome text,
    cause text,
    disposition text,
    notes text,
    ivr_path text[] NOT NULL DEFAULT '{}',
    ivr_digits text NOT NULL DEFAULT '',
    attributes jsonb NOT NULL DEFAULT '{}',
    transfers jsonb NOT NULL DEFAULT '[]',
    timeline jsonb NOT NULL DEFAULT '[]',
    arrived_at timestamptz NOT NULL,
    queued_at timestamptz,
    offered_at timestamptz,
    connected_at timestamptz,
    ended_at timestamptz,
    wrapped_at timestamptz,
    ivr_s double precision,
    queue_s double precision,
    talk_s double precision,
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    CHECK (jsonb_typeof(attributes) = 'object'),
    CHECK (jsonb_typeof(transfers) = 'array'),
    CHECK (jsonb_typeof(timeline) = 'array')
);
-- Listing newest first (id breaks ties for keyset pagination), a caller's history, a queue's, an agent's.
CREATE INDEX contacts_tenant_arrived ON contacts (tenant_id, arrived_at DESC, id DESC);
CREATE INDEX contacts_tenant_caller ON contacts (tenant_id, caller, arrived_at DESC);
CREATE INDEX contacts_tenant_queue ON contacts (tenant_id, queue_id, arrived_at DESC);
CREATE INDEX contacts_tenant_agent ON contacts (tenant_id, agent_id, arrived_at DESC);

ALTER TABLE contacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE contacts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON contacts
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

-- Where an agent is reached: NULL = the browser over WebRTC; sip:/sips: URI = a softphone or desk phone at
-- a static address; an E.164 number = an outside number dialled through the tenant's trunk.
ALTER TABLE agents ADD COLUMN endpoint text
    CHECK (endpoint IS NULL OR endpoint ~ '^sips?:[^\s]+$' OR endpoint ~ '^\+[1-9][0-9]{6,14}$');

-- Widget public keys: published in a tenant's web page, so stored as is (they are not secrets); a key can
-- only obtain a widget token for the queues in queue_ids, and only from the origins listed (any when empty).
CREATE TABLE widget_keys (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name text NOT NULL DEFAULT '',
    public_key text NOT NULL UNIQUE CHECK (public_key ~ '^pk_[A-Za-z0-9_-]{20,100}$'),
    -- No foreign keys in an array: a deleted queue's id stays here and is refused when a token is asked for.
    queue_ids uuid[] NOT NULL CHECK (cardinality(queue_ids) BETWEEN 1 AND 50),
    origins text[] NOT NULL DEFAULT '{}' CHECK (cardinality(origins) <= 20),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    UNIQUE (tenant_id, id)
);
CREATE INDEX widget_keys_tenant ON widget_keys (tenant_id, id);

-- A widget key is found before the tenant is known, like an API key: the transaction sets
-- app.widget_public_key and may see exactly that one row, nothing else.
ALTER TABLE widget_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE widget_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON widget_keys
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
CREATE POLICY widget_key_lookup ON widget_keys FOR SELECT
    USING (public_key = NULLIF(current_setting('app.widget_public_key', true), ''));
