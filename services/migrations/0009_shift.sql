-- The agent's shift: people who sign in to the browser with a password (accounts), one-time invitations,
-- browser sessions with rotating refresh tokens, sign-in throttling shared by every API process, and the
-- tenant's desk configuration (disposition codes, away reasons, whether an open wrap-up form extends
-- wrap-up).

-- A person who signs in at /agent/: an agent (linked to its agent row, removed with it), a supervisor or
-- an admin. Emails are unique across tenants, so that a sign-in by email finds one account.
CREATE TABLE accounts (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    role text NOT NULL CHECK (role IN ('agent', 'supervisor', 'admin')),
    agent_id uuid,
    -- argon2id (PHC string); NULL until the invitation is used.
    password_hash text,
    -- Consecutive failed sign-ins; reset by a success. Reaching the limit sets locked_until.
    failed_signins integer NOT NULL DEFAULT 0,
    locked_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    CHECK ((role = 'agent') = (agent_id IS NOT NULL))
);
CREATE UNIQUE INDEX accounts_email ON accounts (lower(email));
CREATE UNIQUE INDEX accounts_agent ON accounts (agent_id) WHERE agent_id IS NOT NULL;

-- A one-time link to set a password: only its SHA-256 is kept.
CREATE TABLE account_invites (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    account_id uuid NOT NULL,
    token_hash bytea NOT NULL UNIQUE,
    created_by_key_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, id) ON DELETE CASCADE
);

-- A browser session: it lasts a shift (expires_at) unless revoked. The refresh token is `<id>.<secret>`;
-- refresh_hash is the current secret's SHA-256, used_hashes the earlier ones of this session: presenting
-- one of those again means the token was copied, and the session is revoked.
CREATE TABLE web_sessions (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    account_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    refreshed_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    revoked_reason text,
    refresh_hash bytea NOT NULL,
    used_hashes bytea[] NOT NULL DEFAULT '{}',
    address text NOT NULL DEFAULT '',
    user_agent text NOT NULL DEFAULT '',
    FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX web_sessions_account ON web_sessions (account_id) WHERE revoked_at IS NULL;

ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON accounts
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
-- A sign-in knows only an email: its transaction sets app.signin_email (lower case) and sees that one row.
CREATE POLICY account_lookup ON accounts FOR SELECT
    USING (lower(email) = NULLIF(current_setting('app.signin_email', true), ''));

ALTER TABLE account_invites ENABLE ROW LEVEL SECURITY;
ALTER TABLE account_invites FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON account_invites
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
CREATE POLICY invite_lookup ON account_invites FOR SELECT
    USING (token_hash = decode(NULLIF(current_setting('app.invite_hash', true), ''), 'hex'));

ALTER TABLE web_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE web_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON web_sessions
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
-- A refresh names its session by id (from the cookie) before the tenant is known.
CREATE POLICY session_lookup ON web_sessions FOR SELECT
    USING (id = NULLIF(current_setting('app.web_session_id', true), '')::uuid);

-- Sign-in attempts per bucket (an account's email hash or a client address) in fixed windows: kept here,
-- not in a process, so that the limits hold across API replicas. No tenant owns a row: a transaction
-- names its bucket in app.throttle_bucket and sees (and counts) that one row only.
CREATE TABLE signin_throttle (
    bucket text PRIMARY KEY,
    window_start timestamptz NOT NULL,
    hits integer NOT NULL
);
ALTER TABLE signin_throttle ENABLE ROW LEVEL SECURITY;
ALTER TABLE signin_throttle FORCE ROW LEVEL SECURITY;
CREATE POLICY bucket_lookup ON signin_throttle
    USING (bucket = NULLIF(current_setting('app.throttle_bucket', true), ''))
    WITH CHECK (bucket = NULLIF(current_setting('app.throttle_bucket', true), ''));

-- The desk's tenant configuration.
ALTER TABLE tenants
    ADD COLUMN dispositions jsonb NOT NULL DEFAULT
        '[{"code": "resolved", "label": "Resolved"}, {"code": "follow_up", "label": "Follow-up needed"},
          {"code": "escalated", "label": "Escalated"}, {"code": "wrong_number", "label": "Wrong number"}]',
    ADD COLUMN away_reasons jsonb NOT NULL DEFAULT
        '[{"code": "break", "label": "Break"}, {"code": "lunch", "label": "Lunch"},
          {"code": "meeting", "label": "Meeting"}, {"code": "training", "label": "Training"}]',
    -- true: while an agent's wrap-up form is open the agent is not offered a contact (the desktop holds
    -- the agent away "wrap_up" until Done); false: wrap-up ends with the queue's timer.
    ADD COLUMN wrap_up_form_extends boolean NOT NULL DEFAULT true;
