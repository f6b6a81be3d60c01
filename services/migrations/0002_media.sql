-- Media: find a dialled number before the tenant is known, per-tenant call limits, SIP trunks.

-- The SIP edge sets app.lookup_e164 in its lookup transaction and may see exactly that one number row,
-- nothing else (the same shape as key_lookup on api_keys).
CREATE POLICY number_lookup ON numbers FOR SELECT
    USING (e164 = NULLIF(current_setting('app.lookup_e164', true), ''));

ALTER TABLE tenants ADD COLUMN max_concurrent_calls integer NOT NULL DEFAULT 10
    CHECK (max_concurrent_calls BETWEEN 0 AND 100000);

-- A tenant's SIP trunks. Inbound: a call is accepted from a source address in allowed_ips, or after a
-- digest challenge answered with username/password (stored as HA1 per algorithm, never the password).
-- A tenant without any trunk row accepts calls from anywhere (trial and demo tenants).
-- Outbound (originate): INVITEs go to outbound_host:outbound_port.
CREATE TABLE sip_trunks (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    allowed_ips inet[] NOT NULL DEFAULT '{}',
    username text,
    realm text,
    ha1_sha256 text,
    ha1_md5 text,
    outbound_host text,
    outbound_port integer CHECK (outbound_port BETWEEN 1 AND 65535),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    CHECK ((username IS NULL) = (realm IS NULL))
);
CREATE INDEX sip_trunks_tenant ON sip_trunks (tenant_id, id);
ALTER TABLE sip_trunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE sip_trunks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sip_trunks
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
