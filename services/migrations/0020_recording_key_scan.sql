-- A master key rotation re-wraps every tenant's data keys under the new master key: the re-wrap finds the
-- tenants that still have keys wrapped by another master with app.recording_key_scan = 'on' in its own
-- read-only transaction (tenant ids and master key ids; the wrapped keys are useless without the master
-- key), then re-wraps each tenant's keys inside that tenant's scope.
CREATE POLICY key_scan ON recording_keys FOR SELECT
    USING (current_setting('app.recording_key_scan', true) = 'on');
