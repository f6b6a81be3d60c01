-- Rollup backfill (services/reporting/backfill.py, docs/reporting.md): which tenant days have had their
-- rollups computed from the facts, and by which version of the rollup definitions. Facts older than the
-- rollups (before 0024) and any day of a rollup added or redefined later get theirs from the backfill; a
-- run skips the days already built at the current version, so a stopped run goes on where it stopped.
CREATE TABLE rpt_rollup_builds (
    tenant_id uuid NOT NULL,
    day date NOT NULL,          -- a UTC day: the rollup buckets from its midnight to the next
    version integer NOT NULL,   -- backfill.ROLLUP_VERSION when it was built
    built_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, day)
);
ALTER TABLE rpt_rollup_builds ENABLE ROW LEVEL SECURITY;
ALTER TABLE rpt_rollup_builds FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON rpt_rollup_builds USING (tenant_id = current_tenant())
    WITH CHECK (tenant_id = current_tenant());

-- The tenants the backfill visits: their ids only (no other column, no row of theirs). SECURITY DEFINER
-- because the application role sees one tenant at a time; every read and write of the backfill itself
-- runs in that tenant's transaction under row-level security.
CREATE FUNCTION rpt_tenant_ids() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT id FROM tenants ORDER BY id
$$;
