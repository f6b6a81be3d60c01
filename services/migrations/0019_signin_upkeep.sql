-- Sign-in upkeep (#14): sign-in attempt counters are pruned by time, and a lost refresh response is not
-- taken for a stolen cookie.

-- A counter whose window closed long ago counts nothing: any transaction may see and delete it (bucket
-- names are hashes of an email or a client address), so every attempt clears a few and the table stays
-- bounded by the attempts of the last hour. The one-bucket policy still governs live counters.
CREATE INDEX signin_throttle_window ON signin_throttle (window_start);
CREATE POLICY expired_read ON signin_throttle FOR SELECT
    USING (window_start < now() - interval '1 hour');
CREATE POLICY expired_prune ON signin_throttle FOR DELETE
    USING (window_start < now() - interval '1 hour');

-- The previous refresh secret is accepted once more within a short grace after it was traded (its answer
-- may have been lost on the way to the browser); true once that grace was used, until the next rotation.
ALTER TABLE web_sessions
    ADD COLUMN refresh_grace_spent boolean NOT NULL DEFAULT false;
