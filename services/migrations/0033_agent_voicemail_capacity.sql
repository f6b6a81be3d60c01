-- Voicemails are a routing channel of their own (docs/routing.md, "Voicemails"): how many an agent may
-- hold at once (0: never offered one).
ALTER TABLE agents
    ADD COLUMN voicemail_capacity smallint NOT NULL DEFAULT 1 CHECK (voicemail_capacity BETWEEN 0 AND 10);
