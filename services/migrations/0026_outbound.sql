-- Outbound calls (docs/routing.md, "Outbound calls"): which agents may dial out, and the tenant's numbers
-- never to call (a do-not-call list: a dial to one of them is refused with the reason).
ALTER TABLE agents
    ADD COLUMN can_dial boolean NOT NULL DEFAULT false;

CREATE TABLE do_not_call (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    e164 text NOT NULL CHECK (e164 ~ '^\+[1-9][0-9]{6,14}$'),
    note text NOT NULL DEFAULT '' CHECK (length(note) <= 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, e164)
);

ALTER TABLE do_not_call ENABLE ROW LEVEL SECURITY;
ALTER TABLE do_not_call FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON do_not_call
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
