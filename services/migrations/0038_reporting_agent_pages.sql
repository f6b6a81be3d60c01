-- The agent report is paged by agent (docs/reporting.md, "Agent report pages"): a page finds its agents by
-- walking the agent ids in order from the cursor (one index seek per agent) and reads each agent's buckets
-- of the range (one seek each). The primary key leads with the bucket, which serves the queue-style scans
-- of a whole range but not a walk by agent.
CREATE INDEX rpt_agent_rollup_by_agent ON rpt_agent_rollup (tenant_id, agent_id, bucket);
