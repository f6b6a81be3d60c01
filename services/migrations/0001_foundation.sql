-- Foundation: tenants, keys, seats and their ledger, sites, agents, queues, numbers, audit, idempotency.
-- Every tenant table has row-level security, FORCEd so that even the owner obeys it, and policies that
-- fail closed: with app.tenant_id unset, current_tenant() is NULL and no row matches.

CREATE FUNCTION current_tenant() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;

CREATE TABLE tenants (
    id uuid PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    admin_email text NOT NULL,
    seats_purchased integer NOT NULL DEFAULT 2 CHECK (seats_purchased >= 0),
    plan text NOT NULL DEFAULT 'trial' CHECK (plan IN ('trial', 'paid')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name text NOT NULL DEFAULT '',
    role text NOT NULL CHECK (role IN ('admin', 'supervisor', 'developer')),
    -- First characters of the key, shown in listings so a user can tell keys apart; never enough to use.
    prefix text NOT NULL,
    -- SHA-256 of the whole key: keys are 256-bit random, so a fast hash is safe and lookups stay O(1).
    key_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

CREATE TABLE sites (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name text NOT NULL,
    timezone text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('office', 'home')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE agents (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name text NOT NULL,
    email text NOT NULL,
    site_id uuid,
    skills jsonb NOT NULL DEFAULT '{}',
    languages text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    -- Composite keys: a row can only point at an object of its own tenant (FK checks bypass RLS).
    FOREIGN KEY (tenant_id, site_id) REFERENCES sites (tenant_id, id) ON DELETE RESTRICT
);
CREATE UNIQUE INDEX agents_email ON agents (tenant_id, lower(email));

-- Agents logged in now; routing writes it under a lock on the tenant row so seats are never exceeded.
CREATE TABLE agent_sessions (
    agent_id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    logged_in_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX agent_sessions_tenant ON agent_sessions (tenant_id);

CREATE TABLE queues (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name text NOT NULL,
    skills jsonb NOT NULL DEFAULT '{}',
    priority integer NOT NULL DEFAULT 50 CHECK (priority BETWEEN 1 AND 99),
    sl_percent integer NOT NULL DEFAULT 80 CHECK (sl_percent BETWEEN 1 AND 100),
    sl_seconds integer NOT NULL DEFAULT 20 CHECK (sl_seconds BETWEEN 1 AND 3600),
    short_abandon_seconds integer NOT NULL DEFAULT 5 CHECK (short_abandon_seconds BETWEEN 0 AND 600),
    wrap_up_seconds integer NOT NULL DEFAULT 30 CHECK (wrap_up_seconds BETWEEN 0 AND 3600),
    site_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, name),
    FOREIGN KEY (tenant_id, site_id) REFERENCES sites (tenant_id, id) ON DELETE RESTRICT
);

CREATE TABLE numbers (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Globally unique: a number belongs to exactly one tenant.
    e164 text NOT NULL UNIQUE CHECK (e164 ~ '^\+[1-9][0-9]{6,14}$'),
    queue_id uuid,
    flow_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, queue_id) REFERENCES queues (tenant_id, id) ON DELETE SET NULL (queue_id)
);
CREATE INDEX numbers_tenant ON numbers (tenant_id, id);

-- Every change of purchased seats; usage integrates seats over time from it (seat-seconds, pro rata).
CREATE TABLE seat_ledger (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    delta integer NOT NULL,
    seats_after integer NOT NULL CHECK (seats_after >= 0),
    reason text NOT NULL,
    actor_key_id uuid
);
CREATE INDEX seat_ledger_tenant_at ON seat_ledger (tenant_id, at);

CREATE TABLE audit_log (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor_key_id uuid,
    actor_role text,
    action text NOT NULL,
    target_type text NOT NULL,
    target_id text,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);

-- Stored responses for POSTs retried with the same Idempotency-Key.
CREATE TABLE idempotency_keys (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    method text NOT NULL,
    path text NOT NULL,
    request_hash bytea NOT NULL,
    status integer NOT NULL,
    body bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = current_tenant()) WITH CHECK (id = current_tenant());

-- A key is found by its hash before the tenant is known: the authenticating transaction sets
-- app.api_key_hash (hex) and may see exactly that one row, nothing else.
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
CREATE POLICY key_lookup ON api_keys FOR SELECT
    USING (key_hash = decode(NULLIF(current_setting('app.api_key_hash', true), ''), 'hex'));

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['sites', 'agents', 'agent_sessions', 'queues', 'numbers', 'seat_ledger',
                             'audit_log', 'idempotency_keys'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant()) '
                       'WITH CHECK (tenant_id = current_tenant())', t);
    END LOOP;
END $$;
