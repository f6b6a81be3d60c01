-- A tenant's plan may give its API keys another request rate than the platform's default
-- (SB_KEY_RATE_PER_MINUTE, docs/security.md "Limits"). NULL: the default. Set by the operator, never
-- through the tenant's own API (a tenant must not raise its own limit).
ALTER TABLE tenants
    ADD COLUMN api_rate_per_minute integer CHECK (api_rate_per_minute > 0);
