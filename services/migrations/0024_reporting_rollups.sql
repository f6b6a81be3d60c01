-- Reporting rollups (docs/reporting.md): additive counters and sums per tenant, queue / agent / IVR flow /
-- IVR node and 15-minute bucket, kept by the ingest in the same transaction as the facts they sum. Every
-- report (15 minutes to a month, in any time zone whose offset is a multiple of 15 minutes) is a sum over
-- these rows, so its cost follows the number of buckets, not the number of contacts.
--
-- How the ingest keeps them exact: a contact row is read (FOR UPDATE), the batch's new events are applied
-- to it, and the rollups get (contribution after) - (contribution before); an agent state inserted between
-- two others moves the seconds of the span it splits. Idempotency: a contact row lists the event ids folded
-- into it (`events`), the other facts are keyed by event id.

ALTER TABLE rpt_contacts
    ADD COLUMN requeued_at timestamptz,       -- latest queued: the queue of a contact with no outcome yet
    ADD COLUMN sl_met boolean,                -- answered within the queue's T (as classified at ingest)
    ADD COLUMN abandon_long boolean,          -- abandoned after the queue's short-abandon threshold
    ADD COLUMN repeat_24h boolean NOT NULL DEFAULT false,  -- the same caller came back within 24 h
    ADD COLUMN repeat_7d boolean NOT NULL DEFAULT false,   -- ... within 7 days
    ADD COLUMN survey_score double precision,
    ADD COLUMN events uuid[] NOT NULL DEFAULT '{}';       -- event ids folded in (replays change nothing)
CREATE INDEX rpt_contacts_caller ON rpt_contacts (tenant_id, caller, arrived_at) WHERE caller IS NOT NULL;
CREATE INDEX rpt_ivr_visits_contact ON rpt_ivr_visits (tenant_id, contact_id);

CREATE TABLE rpt_queue_rollup (
    tenant_id uuid NOT NULL,
    queue_id text NOT NULL,
    bucket timestamptz NOT NULL,  -- 15 minutes holding the contacts' first queued time
    offered integer NOT NULL DEFAULT 0,
    answered integer NOT NULL DEFAULT 0,
    answered_within integer NOT NULL DEFAULT 0,
    abandoned_short integer NOT NULL DEFAULT 0,
    abandoned_long integer NOT NULL DEFAULT 0,
    wait_sum double precision NOT NULL DEFAULT 0,    -- queued -> answered, answered contacts
    handle_sum double precision NOT NULL DEFAULT 0,  -- talk + hold + wrap-up
    handled integer NOT NULL DEFAULT 0,              -- contacts wrapped up
    transfers integer NOT NULL DEFAULT 0,
    repeat_24h integer NOT NULL DEFAULT 0,
    repeat_7d integer NOT NULL DEFAULT 0,
    survey_n integer NOT NULL DEFAULT 0,
    survey_sum double precision NOT NULL DEFAULT 0,
    stats_n integer NOT NULL DEFAULT 0,        -- queue.stats snapshots in the bucket
    logged_in_sum bigint NOT NULL DEFAULT 0,   -- agents logged in, summed over those snapshots
    logged_in_max integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, bucket, queue_id)
);

CREATE TABLE rpt_agent_rollup (
    tenant_id uuid NOT NULL,
    agent_id text NOT NULL,
    bucket timestamptz NOT NULL,
    handled integer NOT NULL DEFAULT 0,  -- contacts answered in the bucket
    handle_sum double precision NOT NULL DEFAULT 0,
    wrapped integer NOT NULL DEFAULT 0,
    talk_sum double precision NOT NULL DEFAULT 0,
    transfers integer NOT NULL DEFAULT 0,
    -- Seconds in each state within the bucket, closed spans only (the open one is added at read time).
    available_s double precision NOT NULL DEFAULT 0,
    away_s double precision NOT NULL DEFAULT 0,
    reserved_s double precision NOT NULL DEFAULT 0,
    on_contact_s double precision NOT NULL DEFAULT 0,
    wrap_up_s double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, bucket, agent_id)
);

CREATE TABLE rpt_ivr_rollup (
    tenant_id uuid NOT NULL,
    flow text NOT NULL,
    bucket timestamptz NOT NULL,  -- 15 minutes holding the contact's arrival
    completed integer NOT NULL DEFAULT 0,
    self_served integer NOT NULL DEFAULT 0,
    transferred integer NOT NULL DEFAULT 0,
    abandoned integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, bucket, flow)
);

CREATE TABLE rpt_ivr_node_rollup (
    tenant_id uuid NOT NULL,
    flow text NOT NULL,
    node text NOT NULL,
    bucket timestamptz NOT NULL,
    visits integer NOT NULL DEFAULT 0,
    reached integer NOT NULL DEFAULT 0,  -- a contact's first visit of the node (later ones are loops)
    failed integer NOT NULL DEFAULT 0,   -- left by timeout, invalid input or error
    seconds_sum double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, bucket, flow, node)
);

-- Each agent's latest state row: the open span of every report and the real-time state.
CREATE TABLE rpt_agent_now (
    tenant_id uuid NOT NULL,
    agent_id text NOT NULL,
    at timestamptz NOT NULL,
    event_id uuid NOT NULL,
    state text NOT NULL,
    reason text,
    PRIMARY KEY (tenant_id, agent_id)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['rpt_queue_rollup', 'rpt_agent_rollup', 'rpt_ivr_rollup', 'rpt_ivr_node_rollup',
                             'rpt_agent_now'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant()) '
                       'WITH CHECK (tenant_id = current_tenant())', t);
    END LOOP;
END $$;

-- Idempotency now lives in the facts themselves (contact rows list their event ids, the rest are keyed by
-- event id): the separate log of every event id is gone, and with it one index insert per event.
DROP TABLE rpt_ingested;
CREATE OR REPLACE FUNCTION rpt_ensure_month(m date) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    t text;
    first date := date_trunc('month', m)::date;
    part text;
BEGIN
    FOREACH t IN ARRAY ARRAY['rpt_contacts', 'rpt_agent_states', 'rpt_ivr_visits', 'rpt_queue_stats'] LOOP
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
