-- How long a signed-in agent whose client lost its socket keeps its seat and calls before it is signed out
-- (docs/agent-protocol.md, Reconnecting). Per tenant; routing reads it with the tenant's configuration.
ALTER TABLE tenants
    ADD COLUMN agent_grace_seconds integer NOT NULL DEFAULT 20 CHECK (agent_grace_seconds BETWEEN 0 AND 600);
