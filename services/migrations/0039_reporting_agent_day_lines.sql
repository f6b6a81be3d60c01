-- The agent report as CSV (docs/reporting.md, "The whole day at once: CSV"): each agent's 30-minute lines
-- of a UTC day, kept as text by the ingest in the same transaction as the rollups they come from, so a
-- day's report over 10,000 agents reads 10,000 rows of ready text instead of summing 330,000 rollup rows
-- and formatting 170,000 lines (a plain COPY of pre-aggregated rows alone took 550-850 ms under load).
-- A line holds closed spans only, as the rollups do: an agent whose latest state is open over the range
-- gets its lines computed at read time instead.

-- One line of the agent report: the same figures as the JSON rows (queries.py), rounded to the
-- millisecond first so occupancy comes from the rounded seconds; a state under half a millisecond is
-- empty; '' when the interval holds nothing (no contact, no state). Written as one expression so that
-- PostgreSQL inlines it into the query that calls it (no function call per line).
CREATE FUNCTION rpt_ms(seconds double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN seconds > 5e-4 THEN round(seconds * 1000) / 1000 END
$$;

CREATE FUNCTION rpt_agent_csv_line(
    at timestamptz, agent text, handled bigint, handle_sum double precision, wrapped bigint, transfers bigint,
    available double precision, away double precision, reserved double precision,
    on_contact double precision, wrap_up double precision
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN handled <> 0 OR coalesce(rpt_ms(available), rpt_ms(away), rpt_ms(reserved),
                                              rpt_ms(on_contact), rpt_ms(wrap_up)) IS NOT NULL THEN
        to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"')
        || ',' || CASE WHEN agent ~ '[",\r\n]' THEN '"' || replace(agent, '"', '""') || '"' ELSE agent END
        || ',' || handled
        || ',' || coalesce((round(handle_sum / nullif(wrapped, 0) * 1000) / 1000)::text, '')
        || ',' || coalesce(((coalesce(rpt_ms(on_contact), 0) + coalesce(rpt_ms(wrap_up), 0))
                            / nullif(coalesce(rpt_ms(on_contact), 0) + coalesce(rpt_ms(wrap_up), 0)
                                     + coalesce(rpt_ms(available), 0) + coalesce(rpt_ms(reserved), 0), 0))::text, '')
        || ',' || transfers
        || ',' || coalesce(rpt_ms(available)::text, '') || ',' || coalesce(rpt_ms(away)::text, '')
        || ',' || coalesce(rpt_ms(reserved)::text, '') || ',' || coalesce(rpt_ms(on_contact)::text, '')
        || ',' || coalesce(rpt_ms(wrap_up)::text, '') || chr(10)
    ELSE '' END
$$;

CREATE TABLE rpt_agent_day (
    tenant_id uuid NOT NULL,
    agent_id text NOT NULL,
    day date NOT NULL,       -- a UTC day
    -- 48 half hours from the day's midnight (UTC): a CSV line each, '' when empty, NULL when never written.
    lines text[] NOT NULL,
    PRIMARY KEY (tenant_id, day, agent_id)
);
ALTER TABLE rpt_agent_day ENABLE ROW LEVEL SECURITY;
ALTER TABLE rpt_agent_day FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON rpt_agent_day USING (tenant_id = current_tenant())
    WITH CHECK (tenant_id = current_tenant());

-- 48 slots with `vals` at the 1-based positions `idx` and NULL elsewhere.
CREATE FUNCTION rpt_slots(idx integer[], vals text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(u.v ORDER BY g.i) FROM generate_series(1, 48) AS g(i)
    LEFT JOIN unnest(idx, vals) AS u(i, v) ON u.i = g.i
$$;

-- The stored slots with the new ones laid over them (a NULL new slot keeps the stored one).
CREATE FUNCTION rpt_overlay(stored text[], fresh text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(coalesce(n, o) ORDER BY i) FROM unnest(stored, fresh) WITH ORDINALITY AS u(o, n, i)
$$;

-- The lines of the half hours holding these (agent, 15-minute bucket) keys, computed again from the
-- rollups as they now are (the ingest calls it after writing the rollups; the caller's tenant only:
-- SECURITY INVOKER, row-level security applies to every table it reads and writes).
CREATE FUNCTION rpt_agent_day_refresh(agents text[], buckets timestamptz[]) RETURNS void
LANGUAGE sql AS $$
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
    ), l AS (
        -- Over the sums as columns, so that the line's expression is inlined (over the aggregates it was
        -- a function call per line, several times slower).
        SELECT agent_id, slot, coalesce(rpt_agent_csv_line(slot, agent_id, handled, handle_sum, wrapped, transfers,
                                                           available, away, reserved, on_contact, wrap_up), '') AS line
        FROM s
    ), d AS (
        SELECT agent_id, (slot AT TIME ZONE 'UTC')::date AS day,
               rpt_slots(array_agg(1 + (extract(epoch FROM slot)::bigint % 86400 / 1800)::integer), array_agg(line))
                   AS lines
        FROM l GROUP BY 1, 2
    )
    INSERT INTO rpt_agent_day AS t (tenant_id, agent_id, day, lines)
    SELECT current_tenant(), agent_id, day, lines FROM d
    ON CONFLICT (tenant_id, day, agent_id) DO UPDATE SET lines = rpt_overlay(t.lines, EXCLUDED.lines)
$$;

-- The lines of the rollups already there (every tenant's: the migration runs as the owner).
INSERT INTO rpt_agent_day (tenant_id, agent_id, day, lines)
SELECT tenant_id, agent_id, (slot AT TIME ZONE 'UTC')::date,
       rpt_slots(array_agg(1 + (extract(epoch FROM slot)::bigint % 86400 / 1800)::integer),
                 array_agg(coalesce(rpt_agent_csv_line(slot, agent_id, handled, handle_sum, wrapped, transfers,
                                                       available, away, reserved, on_contact, wrap_up), '')))
FROM (
    SELECT tenant_id, agent_id, date_bin('30 minutes', bucket, timestamptz '2000-01-01 00:00:00+00') AS slot,
           sum(handled) AS handled, sum(handle_sum) AS handle_sum, sum(wrapped) AS wrapped,
           sum(transfers) AS transfers, sum(available_s) AS available, sum(away_s) AS away,
           sum(reserved_s) AS reserved, sum(on_contact_s) AS on_contact, sum(wrap_up_s) AS wrap_up
    FROM rpt_agent_rollup GROUP BY 1, 2, 3
) s
GROUP BY 1, 2, 3;
