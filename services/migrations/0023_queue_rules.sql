-- Queue rules as configuration (docs/routing.md, "Queue rules"): the routing core's strategy, overflow,
-- opening hours and holidays with a closed treatment, priority rules, preferred-site spill thresholds and
-- position announcements, stored per queue and loaded by routing on config.changed. The API validates
-- the JSON documents (shape, targets of the tenant); the checks here keep the scalars in range.
ALTER TABLE queues
    ADD COLUMN strategy text NOT NULL DEFAULT 'longest_idle'
        CHECK (strategy IN ('longest_idle', 'most_skilled', 'round_robin', 'least_occupied')),
    -- [{"target_queue_id": uuid, "after_seconds": n | null, "expected_wait_over_seconds": n | null}]
    ADD COLUMN overflow jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(overflow) = 'array'),
    -- {"mon": ["09:00-17:00", ...], ...} in the tenant's time zone; null: open every day, all day.
    ADD COLUMN hours jsonb CHECK (hours IS NULL OR jsonb_typeof(hours) = 'object'),
    ADD COLUMN holidays date[] NOT NULL DEFAULT '{}',
    ADD COLUMN closed_treatment text NOT NULL DEFAULT 'message' CHECK (closed_treatment IN ('message', 'queue')),
    ADD COLUMN closed_message text CHECK (closed_message IS NULL OR length(closed_message) BETWEEN 1 AND 500),
    ADD COLUMN closed_queue_id uuid,
    -- [{"attribute": text, "equals": text, "raise_by": n}]
    ADD COLUMN priority_rules jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(priority_rules) = 'array'),
    ADD COLUMN spill_after_seconds integer CHECK (spill_after_seconds BETWEEN 0 AND 86400),
    ADD COLUMN spill_expected_wait_seconds integer CHECK (spill_expected_wait_seconds BETWEEN 0 AND 86400),
    -- How often callers waiting on a number routed straight to the queue hear their position; null: never.
    ADD COLUMN announce_seconds integer DEFAULT 60 CHECK (announce_seconds BETWEEN 5 AND 3600),
    ADD CONSTRAINT queues_closed_queue FOREIGN KEY (tenant_id, closed_queue_id)
        REFERENCES queues (tenant_id, id) ON DELETE SET NULL (closed_queue_id);

-- A drained site's agents finish what they hold and get nothing new; its waiting contacts spill.
ALTER TABLE sites ADD COLUMN drained_at timestamptz;

-- The language of what the platform says to callers (position announcements, closed messages).
ALTER TABLE tenants
    ADD COLUMN language text NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'fr', 'es', 'de'));
