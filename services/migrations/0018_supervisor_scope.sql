-- A supervisor's queues: where the tenant assigns them, the supervisor sees and acts on those queues only
-- (docs/supervisor.md, "Scope"). NULL: the whole tenant (admins are never scoped).
ALTER TABLE accounts
    ADD COLUMN queue_ids uuid[];
