-- The agents' CSV lines (0039) cost the live ingest about 9 us of PostgreSQL CPU per event (22-23 -> 31-32,
-- the benchmark's live-like stream): a batch touches one or two half hours of each of its agents, and each
-- of those agent-days went through rpt_overlay (48 elements unnested and aggregated again, 25-57 us a call
-- at load 12) and a rewrite of its 1.5 kB row with its index entry. Now the touched half hours are assigned
-- in place (plpgsql on an expanded array: as many steps as half hours touched), and rows leave room on
-- their page for the next version so that an update does not touch the key (HOT).
CREATE FUNCTION rpt_lines_set(stored text[], idx integer[], vals text[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    FOR k IN 1 .. coalesce(array_length(idx, 1), 0) LOOP
        stored[idx[k]] := vals[k];
    END LOOP;
    RETURN stored;
END
$$;

CREATE OR REPLACE FUNCTION rpt_agent_day_refresh(agents text[], buckets timestamptz[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    a text[];
    d date[];
    i integer[];
    v text[];
BEGIN
    WITH k AS (
        SELECT DISTINCT u.agent_id, date_bin('30 minutes', u.bucket, timestamptz '2000-01-01 00:00:00+00') AS slot
        FROM unnest(agents, buckets) AS u(agent_id, bucket)
    ), s AS (
        SELECT k.agent_id, k.slot, coalesce(sum(r.handled), 0) AS handled,
               coalesce(sum(r.handle_sum), 0) AS handle_sum, coalesce(sum(r.wrapped), 0) AS wrapped,
               coalesce(sum(r.transfers), 0) AS transfers, sum(r.available_s) AS available, sum(r.away_s) AS away,
               sum(r.reserved_s) AS reserved, sum(r.on_contact_s) AS on_contact, sum(r.wrap_up_s) AS wrap_up
        FROM k LEFT JOIN rpt_agent_rollup r
            ON r.agent_id = k.agent_id AND r.bucket >= k.slot AND r.bucket < k.slot + interval '30 minutes'
        GROUP BY k.agent_id, k.slot
    )
    -- Over the sums as columns, so that the line's expression is inlined (no function call per line).
    SELECT array_agg(agent_id), array_agg((slot AT TIME ZONE 'UTC')::date),
           array_agg(1 + (extract(epoch FROM slot)::bigint % 86400 / 1800)::integer),
           array_agg(coalesce(rpt_agent_csv_line(slot, agent_id, handled, handle_sum, wrapped, transfers,
                                                 available, away, reserved, on_contact, wrap_up), ''))
    INTO a, d, i, v FROM s;
    -- A day's row first (a separate statement, so that the update below sees it, also one another batch
    -- made meanwhile), then the touched half hours set in place.
    INSERT INTO rpt_agent_day (tenant_id, agent_id, day, lines)
    SELECT DISTINCT current_tenant(), u.agent_id, u.day, array_fill(NULL::text, ARRAY[48])
    FROM unnest(a, d) AS u(agent_id, day)
    ON CONFLICT (tenant_id, day, agent_id) DO NOTHING;
    UPDATE rpt_agent_day t SET lines = rpt_lines_set(t.lines, g.idx, g.vals)
    FROM (SELECT u.agent_id, u.day, array_agg(u.idx) AS idx, array_agg(u.line) AS vals
          FROM unnest(a, d, i, v) AS u(agent_id, day, idx, line) GROUP BY 1, 2) g
    WHERE t.agent_id = g.agent_id AND t.day = g.day;
END
$$;

ALTER TABLE rpt_agent_day SET (fillfactor = 50);
