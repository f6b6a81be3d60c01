-- Calls the platform places for a tenant (docs/routing.md, "Callbacks"): callbacks are agent first (the agent
-- accepts, then the customer is dialled) unless the tenant chooses customer first (the customer answers,
-- then waits at the front of the line for the next agent); attempts and the gap between them; how long a
-- customer's phone rings; the caller ID shown (one of the tenant's own numbers; NULL: the number the
-- customer called, or the tenant's first number).
ALTER TABLE tenants
    ADD COLUMN callback_mode text NOT NULL DEFAULT 'agent_first'
        CHECK (callback_mode IN ('agent_first', 'customer_first')),
    ADD COLUMN callback_attempts integer NOT NULL DEFAULT 3 CHECK (callback_attempts BETWEEN 1 AND 10),
    ADD COLUMN callback_retry_seconds integer NOT NULL DEFAULT 300
        CHECK (callback_retry_seconds BETWEEN 1 AND 86400),
    ADD COLUMN callback_ring_seconds integer NOT NULL DEFAULT 30 CHECK (callback_ring_seconds BETWEEN 5 AND 120),
    ADD COLUMN caller_id text CHECK (caller_id IS NULL OR caller_id ~ '^\+[1-9][0-9]{6,14}$');
