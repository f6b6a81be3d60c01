-- The agents' CSV lines (0039) in the byte order of their ids: the CSV report merges the kept lines with
-- those computed at read time in Python, which compares ids by their bytes; whatever the database's
-- collation, the key then gives the agents in that order (a day's lines are read in key order, never sorted).
ALTER TABLE rpt_agent_day ALTER COLUMN agent_id TYPE text COLLATE "C";
