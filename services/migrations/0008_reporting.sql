-- Reporting facts (services/reporting, docs/reporting.md): what the events said, in narrow rows made for
-- scanning. The coordinator's `contacts` table keeps each contact's full timeline (jsonb, written once per
-- transition); reporting keeps its own `rpt_contacts`, partitioned by month, so a month's report scans one
-- partition of small rows and never competes with the coordinator's writes.
--
-- Big tables are partitioned by month. Partitions are made on demand by rpt_ensure_month() (the ingest
-- calls it once per month it meets); anything outside a made month falls into the DEFAULT partition.
-- No foreign keys: ingest writes tens of thousands of rows a second, and history outlives its queue.

-- Every event id ingested: a replayed event is skipped, so counters stay exact (idempotency by event id).
CREATE TABLE rpt_ingested (
    tenant_id uuid NOT NULL,
    event_id uuid NOT NULL,
    at timestamptz NOT NULL,  -- the event's own time: the same on every replay
    PRIMARY KEY (tenant_id, event_id, at)
) PARTITION BY RANGE (at);

-- One row per contact (its id is the caller's call id). `month` is the month of the contact id's UUIDv7
-- time (1970-01 for other ids): every event of the contact finds the same row without a lookup.
CREATE TABLE rpt_contacts (
    tenant_id uuid NOT NULL,
    contact_id uuid NOT NULL,
    month date NOT NULL,
    queue_id text,  -- the queue of the outcome (answered or abandoned there), else the latest queued in
    agent_id text,  -- who answered
    caller text,
    arrived_at timestamptz,
    queued_at timestamptz,  -- first time queued: the contact counts in the interval holding this time
    answered_at timestamptz,
    abandoned_at timestamptz,
    abandon_wait_s double precision,
    ended_at timestamptz,
    wrapped_at timestamptz,
    talk_s double precision,  -- connected to hang-up, holds included
    handle_s double precision,  -- talk + hold + wrap-up
    holds integer NOT NULL DEFAULT 0,
    transfers integer NOT NULL DEFAULT 0,
    ivr_flow text,
    ivr_outcome text,
    ivr_s double precision,
    PRIMARY KEY (tenant_id, contact_id, month)
) PARTITION BY RANGE (month);
CREATE INDEX rpt_contacts_queued ON rpt_contacts (tenant_id, queued_at);
CREATE INDEX rpt_contacts_answered ON rpt_contacts (tenant_id, agent_id, answered_at);

-- Agent states: one row per change; the interval runs to the agent's next row.
CREATE TABLE rpt_agent_states (
    tenant_id uuid NOT NULL,
    agent_id text NOT NULL,
    at timestamptz NOT NULL,
    event_id uuid NOT NULL,
    state text NOT NULL,
    reason text,
    PRIMARY KEY (tenant_id, at, event_id)
) PARTITION BY RANGE (at);
CREATE INDEX rpt_agent_states_agent ON rpt_agent_states (tenant_id, agent_id, at);

-- IVR node visits (one row per node left).
CREATE TABLE rpt_ivr_visits (
    tenant_id uuid NOT NULL,
    at timestamptz NOT NULL,
    event_id uuid NOT NULL,
    contact_id uuid NOT NULL,
    flow text NOT NULL,
    version integer NOT NULL,
    node text NOT NULL,
    result text NOT NULL DEFAULT '',
    seconds double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, at, event_id)
) PARTITION BY RANGE (at);
CREATE INDEX rpt_ivr_visits_flow ON rpt_ivr_visits (tenant_id, flow, at);

-- Queue snapshots from routing's queue.stats: waiting, longest wait, agents by state, over time.
CREATE TABLE rpt_queue_stats (
    tenant_id uuid NOT NULL,
    queue_id text NOT NULL,
    at timestamptz NOT NULL,
    event_id uuid NOT NULL,
    waiting integer NOT NULL,
    longest_wait_s double precision NOT NULL,
    ready integer NOT NULL DEFAULT 0,
    agents jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, at, event_id)
) PARTITION BY RANGE (at);
CREATE INDEX rpt_queue_stats_queue ON rpt_queue_stats (tenant_id, queue_id, at);

-- The latest snapshot per queue (what the real-time view shows).
CREATE TABLE rpt_queue_now (
    tenant_id uuid NOT NULL,
    queue_id text NOT NULL,
    at timestamptz NOT NULL,
    waiting integer NOT NULL,
    longest_wait_s double precision NOT NULL,
    ready integer NOT NULL DEFAULT 0,
    agents jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, queue_id)
);

CREATE TABLE rpt_contacts_default PARTITION OF rpt_contacts DEFAULT;
CREATE TABLE rpt_ingested_default PARTITION OF rpt_ingested DEFAULT;
CREATE TABLE rpt_agent_states_default PARTITION OF rpt_agent_states DEFAULT;
CREATE TABLE rpt_ivr_visits_default PARTITION OF rpt_ivr_visits DEFAULT;
CREATE TABLE rpt_queue_stats_default PARTITION OF rpt_queue_stats DEFAULT;

-- Row-level security on the parents (what the application role queries) and on every partition (so a
-- partition named directly is no way around it).
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['rpt_ingested', 'rpt_contacts', 'rpt_agent_states', 'rpt_ivr_visits',
                             'rpt_queue_stats', 'rpt_queue_now', 'rpt_contacts_default',
                             'rpt_ingested_default', 'rpt_agent_states_default', 'rpt_ivr_visits_default',
                             'rpt_queue_stats_default'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant()) '
                       'WITH CHECK (tenant_id = current_tenant())', t);
    END LOOP;
END $$;

-- Makes the month's partitions (months in UTC) of every partitioned reporting table (idempotent). SECURITY DEFINER because
-- the application role owns no table and cannot create one; the function reads and writes no rows, takes
-- only a date, and gives the new partitions the same forced tenant policy. The application role gets no
-- grant on the new partitions: it reaches them only through their parents.
CREATE FUNCTION rpt_ensure_month(m date) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    t text;
    first date := date_trunc('month', m)::date;
    part text;
BEGIN
    FOREACH t IN ARRAY ARRAY['rpt_ingested', 'rpt_contacts', 'rpt_agent_states', 'rpt_ivr_visits',
                             'rpt_queue_stats'] LOOP
        part := format('%s_%s', t, to_char(first, 'YYYYMM'));
        IF to_regclass(part) IS NULL THEN
            -- One creator at a time: two ingesters meeting a new month together must not collide.
            PERFORM pg_advisory_xact_lock(hashtext(part));
            IF to_regclass(part) IS NULL THEN
                IF t = 'rpt_contacts' THEN
                    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                                   part, t, first, (first + interval '1 month')::date);
                ELSE
                    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                                   part, t, first::timestamp AT TIME ZONE 'UTC',
                                   (first + interval '1 month')::timestamp AT TIME ZONE 'UTC');
                END IF;
                EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', part);
                EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', part);
                EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant()) '
                               'WITH CHECK (tenant_id = current_tenant())', part);
            END IF;
        END IF;
    END LOOP;
END $$;

-- The tenant's time zone: "today" in real-time figures, and day/week/month boundaries of reports.
ALTER TABLE tenants ADD COLUMN timezone text NOT NULL DEFAULT 'UTC' CHECK (length(timezone) BETWEEN 1 AND 64);
