-- A conversation recorded in segments (docs/recording.md): what each segment is, a talk between the caller
-- and an agent (agent_id) or a consultation between two agents (agent_id consulting consulted_agent_id
-- while the caller waits on music).
ALTER TABLE recordings
    ADD COLUMN segment_kind text NOT NULL DEFAULT 'talk' CHECK (segment_kind IN ('talk', 'consult')),
    ADD COLUMN consulted_agent_id uuid;
