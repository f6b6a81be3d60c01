-- IVR: flows as named, versioned documents. A version is immutable once written; a flow's current_version
-- is what new calls get (rollback moves it back). Numbers point at a flow by id.

CREATE TABLE flows (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_\-]{0,62}$'),
    description text NOT NULL DEFAULT '',
    current_version integer NOT NULL CHECK (current_version >= 1),
    latest_version integer NOT NULL CHECK (latest_version >= current_version),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)
);
CREATE INDEX flows_tenant ON flows (tenant_id, id);

CREATE TABLE flow_versions (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    flow_id uuid NOT NULL,
    version integer NOT NULL CHECK (version >= 1),
    source text NOT NULL,
    definition jsonb NOT NULL,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (flow_id, version),
    FOREIGN KEY (tenant_id, flow_id) REFERENCES flows (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX flow_versions_tenant ON flow_versions (tenant_id, flow_id, version);

-- Immutable versions: calls in progress rely on the version they started with never changing.
CREATE FUNCTION flow_versions_immutable() RETURNS trigger
    LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'flow versions are immutable'; END $$;
CREATE TRIGGER flow_versions_no_update BEFORE UPDATE ON flow_versions
    FOR EACH ROW EXECUTE FUNCTION flow_versions_immutable();

ALTER TABLE numbers ADD CONSTRAINT numbers_flow_fk
    FOREIGN KEY (tenant_id, flow_id) REFERENCES flows (tenant_id, id) ON DELETE SET NULL (flow_id);

ALTER TABLE flows ENABLE ROW LEVEL SECURITY;
ALTER TABLE flows FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON flows
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
ALTER TABLE flow_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE flow_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON flow_versions
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
