-- How many web calls one widget key may hold at once, over every media worker (docs/security.md,
-- "Limits"); NULL: only the tenant's concurrent-call limit applies. Set by the tenant's admin.
ALTER TABLE widget_keys
    ADD COLUMN max_concurrent_calls integer CHECK (max_concurrent_calls > 0);
