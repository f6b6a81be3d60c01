-- A widget key may send its web callers through an IVR flow (docs/agent-protocol.md, "Web callers"): the
-- call then arrives for the flow, whose queue node decides the queue, instead of straight for the queue.
-- NULL: straight to the token's queue, as before.
ALTER TABLE widget_keys
    ADD COLUMN flow_id uuid REFERENCES flows (id) ON DELETE SET NULL;
