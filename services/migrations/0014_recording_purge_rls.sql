-- The purge schedule under row-level security like every other table: a tenant's transaction sees its own
-- rows; the purge's scan sets app.recording_purge_scan = 'on' in its own read-only transaction and may then
-- read (never change) every row: ids and due dates, no tenant content. Each deletion then runs in its
-- recording's tenant scope.
ALTER TABLE recording_purge_schedule ENABLE ROW LEVEL SECURITY;
ALTER TABLE recording_purge_schedule FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON recording_purge_schedule
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
CREATE POLICY purge_scan ON recording_purge_schedule FOR SELECT
    USING (current_setting('app.recording_purge_scan', true) = 'on');
