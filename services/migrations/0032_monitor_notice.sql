-- Who is told when a supervisor steps into a call (docs/supervisor.md, Telling the parties): nobody by
-- default; the agent (a desk message), the caller (a short announcement) or both. Per tenant.
ALTER TABLE tenants
    ADD COLUMN monitor_notice text NOT NULL DEFAULT 'none' CHECK (monitor_notice IN ('none', 'agent', 'caller', 'both'));
