-- A closed queue (hours, holiday) can hand callers on its numbers to an IVR flow (a voicemail, a menu, an
-- emergency line): closed_treatment 'flow' and the flow it names. Deleting the flow falls back to the
-- closed message.
ALTER TABLE queues DROP CONSTRAINT queues_closed_treatment_check;
ALTER TABLE queues
    ADD CONSTRAINT queues_closed_treatment_check CHECK (closed_treatment IN ('message', 'queue', 'flow')),
    ADD COLUMN closed_flow_id uuid,
    ADD CONSTRAINT queues_closed_flow FOREIGN KEY (tenant_id, closed_flow_id)
        REFERENCES flows (tenant_id, id) ON DELETE SET NULL (closed_flow_id);
