-- How long an offer rings at an agent before it counts as missed (routing's offer_timeout_s).
ALTER TABLE queues
    ADD COLUMN offer_timeout_seconds integer NOT NULL DEFAULT 20
    CHECK (offer_timeout_seconds BETWEEN 5 AND 300);
