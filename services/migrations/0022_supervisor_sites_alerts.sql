-- A supervisor's sites (docs/supervisor.md, "Scope"): with queue_ids, the supervisor sees and acts on the
-- queues assigned to them or located at those sites, and on the agents at those sites or serving those
-- queues. Both NULL: the whole tenant.
ALTER TABLE accounts
    ADD COLUMN site_ids uuid[];

-- The tenant's notification policy for queue alerts (docs/supervisor.md, "Alerts"): one row with queue_id
-- NULL (the default for every queue) and optional rows per queue that replace it. NULL thresholds: the
-- longest wait is held to the queue's own SL threshold (sl_seconds) and the service level to the queue's
-- own target (sl_percent); waiting_over and away_over_percent are not watched.
CREATE TABLE alert_policies (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    queue_id uuid,
    longest_wait_seconds integer CHECK (longest_wait_seconds BETWEEN 1 AND 86400),
    service_level_below_percent integer CHECK (service_level_below_percent BETWEEN 1 AND 100),
    waiting_over integer CHECK (waiting_over BETWEEN 1 AND 100000),
    away_over_percent integer CHECK (away_over_percent BETWEEN 1 AND 100),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, queue_id) REFERENCES queues (tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX alert_policies_scope
    ON alert_policies (tenant_id, coalesce(queue_id, '00000000-0000-0000-0000-000000000000'::uuid));

ALTER TABLE alert_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON alert_policies
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
