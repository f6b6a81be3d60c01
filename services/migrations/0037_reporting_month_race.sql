-- rpt_ensure_month (0024) could fail with "relation ... already exists" when two ingesters met a new month
-- together: the loser waited on the advisory lock, but an advisory lock does not make PostgreSQL read the
-- catalog changes committed meanwhile, so its second to_regclass still saw no partition. Measured in
-- `make bench BENCH=reporting` (a batch failed and was retried). A creator that loses the race now finds
-- the partition made, whole (table, RLS and policy come in the winner's one transaction), and moves on.
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
            PERFORM pg_advisory_xact_lock(hashtext(part));
            BEGIN
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
            EXCEPTION WHEN duplicate_table THEN
                NULL;  -- another ingester made it in the meantime
            END;
        END IF;
    END LOOP;
END $$;
