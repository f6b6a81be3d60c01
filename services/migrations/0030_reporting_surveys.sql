-- Survey answers in reporting (docs/reporting.md): each answer scaled to 0-1 ((score - min) / (max - min));
-- a contact row keeps their sum (survey_score, from 0024) and count, the queue and IVR flow rollups sum both.
ALTER TABLE rpt_contacts ADD COLUMN survey_n integer NOT NULL DEFAULT 0;
ALTER TABLE rpt_ivr_rollup
    ADD COLUMN survey_n integer NOT NULL DEFAULT 0,
    ADD COLUMN survey_sum double precision NOT NULL DEFAULT 0;
