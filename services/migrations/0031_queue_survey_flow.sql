-- After the agent: a queue can hand its callers to an IVR flow when the agent leaves (a post-call survey;
-- docs/ivr.md, "After the agent"). Deleting the flow ends calls with the agent again.
ALTER TABLE queues
    ADD COLUMN survey_flow_id uuid,
    ADD CONSTRAINT queues_survey_flow FOREIGN KEY (tenant_id, survey_flow_id)
        REFERENCES flows (tenant_id, id) ON DELETE SET NULL (survey_flow_id);
