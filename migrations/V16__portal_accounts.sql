-- V16: the tenant portal's accounts (issue 19): users, invitations, sessions, sign-in failures,
-- password resets, and the tenant's audit log.
--
-- What:
--   * `tenant.account_hash_key`: one random key (no customer_id) for the keyed hashes below
--     (e-mail addresses, client addresses) when the operator does not configure
--     TENANT_ACCOUNT_HASH_KEY. Read-only for the service.
--   * `tenant.users`: the people of a customer who sign in, with a role ('owner' or 'staff') and
--     an Argon2id password hash (PHC string). `email_hash` is HMAC-SHA256 of the normalised
--     (trimmed, lower-cased) address: sign-in looks users up by it before any tenant is known.
--     The address is unique PER CUSTOMER: an invitation or sign-up in one tenant never collides
--     with, and so never reveals, another tenant's user. `email` is kept for display and mail (it
--     is the user's own). TOTP columns stay NULL unless the user enrolls a second factor.
--   * `tenant.invitations`: one-time invitations (72 h), by the SHA-256 of their token.
--   * `tenant.sessions`: server-side portal sessions, by the SHA-256 of their secret, with idle
--     and absolute expiry and revocation.
--   * `tenant.signin_failures`: failed sign-ins of a user (the per-account throttle).
--   * `tenant.signin_address_failures`: failed sign-ins per client address, by a keyed hash of
--     the address (never the address). Not tenant data (no customer_id): an address is throttled
--     before, and whatever, the tenant it tries.
--   * `tenant.password_resets`: one-time reset tokens (1 h), by their SHA-256.
--   * `tenant.audit_log`: the tenant's security events written by tenant-svc (sign-ins, failed
--     sign-ins, password changes, invitations, team, key and setting changes). Append-only by
--     grants. `detail` holds no secret, no raw phone number, no e-mail address.
--   * Four SECURITY DEFINER functions, each returning ids only, for the lookups that must happen
--     before a tenant is known: the users with an e-mail hash, the invitation, the reset and the
--     session with a token hash. Everything else is read inside the tenant's own transaction.
--
-- Why: same conventions as V2/V13/V15 (customer_id first in every key, RLS enabled and forced
-- with the tenant policy bound to tenant_svc, an owner read policy only the definer functions
-- use, grants to tenant_svc only). Every row goes with its customer (ON DELETE CASCADE): a
-- customer's erasure takes its users, sessions and audit log with it.

SET LOCAL ROLE neurosphere_owner;

-- 32 bytes from two version-4 UUIDs (244 random bits), as media.caller_hash_key (V10).
CREATE TABLE tenant.account_hash_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key       bytea   NOT NULL CHECK (octet_length(key) >= 32)
);
INSERT INTO tenant.account_hash_key (key)
VALUES (decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
GRANT SELECT ON tenant.account_hash_key TO tenant_svc;

CREATE TABLE tenant.users (
    customer_id         bigint      NOT NULL REFERENCES tenant.customers (customer_id) ON DELETE CASCADE,
    id                  bigint      GENERATED ALWAYS AS IDENTITY,
    email_hash          bytea       NOT NULL CHECK (octet_length(email_hash) = 32),
    email               text        NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    role                text        NOT NULL CHECK (role IN ('owner', 'staff')),
    password_hash       text        NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    totp_secret         bytea       CHECK (totp_secret IS NULL OR octet_length(totp_secret) >= 20),
    totp_enabled_at     timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    disabled_at         timestamptz,
    PRIMARY KEY (customer_id, id),
    UNIQUE (customer_id, email_hash)
);
CREATE INDEX users_by_email_hash ON tenant.users (email_hash);

CREATE TABLE tenant.invitations (
    customer_id bigint      NOT NULL REFERENCES tenant.customers (customer_id) ON DELETE CASCADE,
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    token_hash  bytea       NOT NULL CHECK (octet_length(token_hash) = 32),
    email_hash  bytea       NOT NULL CHECK (octet_length(email_hash) = 32),
    email       text        NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    role        text        NOT NULL CHECK (role IN ('owner', 'staff')),
    created_by  text        NOT NULL CHECK (char_length(created_by) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    user_id     bigint,
    PRIMARY KEY (customer_id, id)
);
CREATE UNIQUE INDEX invitations_token_hash_key ON tenant.invitations (token_hash);

CREATE TABLE tenant.sessions (
    customer_id     bigint      NOT NULL,
    id              bigint      GENERATED ALWAYS AS IDENTITY,
    user_id         bigint      NOT NULL,
    secret_hash     bytea       NOT NULL CHECK (octet_length(secret_hash) = 32),
    user_agent      text        NOT NULL DEFAULT '' CHECK (char_length(user_agent) <= 100),
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    idle_expires_at timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    PRIMARY KEY (customer_id, id),
    FOREIGN KEY (customer_id, user_id) REFERENCES tenant.users (customer_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX sessions_secret_hash_key ON tenant.sessions (secret_hash);
CREATE INDEX sessions_by_user ON tenant.sessions (customer_id, user_id, created_at);

CREATE TABLE tenant.signin_failures (
    customer_id bigint      NOT NULL,
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    user_id     bigint      NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, id),
    FOREIGN KEY (customer_id, user_id) REFERENCES tenant.users (customer_id, id) ON DELETE CASCADE
);
CREATE INDEX signin_failures_by_user ON tenant.signin_failures (customer_id, user_id, at);

CREATE TABLE tenant.signin_address_failures (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address_hash bytea       NOT NULL CHECK (octet_length(address_hash) = 32),
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signin_address_failures_by_address ON tenant.signin_address_failures (address_hash, at);
CREATE INDEX signin_address_failures_by_time ON tenant.signin_address_failures (at);
GRANT SELECT, INSERT, DELETE ON tenant.signin_address_failures TO tenant_svc;

CREATE TABLE tenant.password_resets (
    customer_id bigint      NOT NULL,
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    user_id     bigint      NOT NULL,
    token_hash  bytea       NOT NULL CHECK (octet_length(token_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    PRIMARY KEY (customer_id, id),
    FOREIGN KEY (customer_id, user_id) REFERENCES tenant.users (customer_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX password_resets_token_hash_key ON tenant.password_resets (token_hash);
CREATE INDEX password_resets_by_user ON tenant.password_resets (customer_id, user_id, created_at);

CREATE TABLE tenant.audit_log (
    customer_id bigint      NOT NULL REFERENCES tenant.customers (customer_id) ON DELETE CASCADE,
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL CHECK (char_length(actor) BETWEEN 1 AND 200),
    action      text        NOT NULL CHECK (action ~ '^[a-z][a-z_]*(\.[a-z][a-z_]*)+$' AND char_length(action) <= 100),
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(detail) = 'object'),
    PRIMARY KEY (customer_id, id)
);
CREATE INDEX audit_log_by_time ON tenant.audit_log (customer_id, at DESC, id DESC);

ALTER TABLE tenant.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant.users FORCE ROW LEVEL SECURITY;
ALTER TABLE tenant.invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant.invitations FORCE ROW LEVEL SECURITY;
ALTER TABLE tenant.sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant.sessions FORCE ROW LEVEL SECURITY;
ALTER TABLE tenant.signin_failures ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant.signin_failures FORCE ROW LEVEL SECURITY;
ALTER TABLE tenant.password_resets ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant.password_resets FORCE ROW LEVEL SECURITY;
ALTER TABLE tenant.audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant.audit_log FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant_isolation ON tenant.users TO tenant_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
CREATE POLICY tenant_isolation ON tenant.invitations TO tenant_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
CREATE POLICY tenant_isolation ON tenant.sessions TO tenant_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
CREATE POLICY tenant_isolation ON tenant.signin_failures TO tenant_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
CREATE POLICY tenant_isolation ON tenant.password_resets TO tenant_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
CREATE POLICY tenant_isolation ON tenant.audit_log TO tenant_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());

-- Read-only access for the owner, i.e. for the SECURITY DEFINER functions below only.
CREATE POLICY definer_lookup ON tenant.users FOR SELECT TO neurosphere_owner USING (true);
CREATE POLICY definer_lookup ON tenant.invitations FOR SELECT TO neurosphere_owner USING (true);
CREATE POLICY definer_lookup ON tenant.sessions FOR SELECT TO neurosphere_owner USING (true);
CREATE POLICY definer_lookup ON tenant.password_resets FOR SELECT TO neurosphere_owner USING (true);

-- Sign-in and reset requests: every (customer, user) whose address has this keyed hash. Ids only;
-- the password hash is read inside each tenant's transaction.
CREATE FUNCTION tenant.user_ids_by_email_hash(p_email_hash bytea)
RETURNS TABLE (customer_id bigint, user_id bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.customer_id, u.id FROM tenant.users u
    WHERE u.email_hash = p_email_hash
    ORDER BY u.customer_id, u.id
    LIMIT 100
$$;

-- The invitation page and its acceptance: the invitation whose token has this SHA-256.
CREATE FUNCTION tenant.invitation_id_by_token_hash(p_token_hash bytea)
RETURNS TABLE (customer_id bigint, invitation_id bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.customer_id, i.id FROM tenant.invitations i WHERE i.token_hash = p_token_hash
$$;

-- A password reset: the reset whose token has this SHA-256.
CREATE FUNCTION tenant.password_reset_id_by_token_hash(p_token_hash bytea)
RETURNS TABLE (customer_id bigint, reset_id bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.customer_id, r.id FROM tenant.password_resets r WHERE r.token_hash = p_token_hash
$$;

-- Every request of a signed-in user: the session whose secret has this SHA-256.
CREATE FUNCTION tenant.session_id_by_secret_hash(p_secret_hash bytea)
RETURNS TABLE (customer_id bigint, session_id bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.customer_id, s.id FROM tenant.sessions s WHERE s.secret_hash = p_secret_hash
$$;

REVOKE ALL ON FUNCTION tenant.user_ids_by_email_hash(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.invitation_id_by_token_hash(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.password_reset_id_by_token_hash(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.session_id_by_secret_hash(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.user_ids_by_email_hash(bytea) TO tenant_svc;
GRANT EXECUTE ON FUNCTION tenant.invitation_id_by_token_hash(bytea) TO tenant_svc;
GRANT EXECUTE ON FUNCTION tenant.password_reset_id_by_token_hash(bytea) TO tenant_svc;
GRANT EXECUTE ON FUNCTION tenant.session_id_by_secret_hash(bytea) TO tenant_svc;

GRANT SELECT, INSERT, UPDATE, DELETE ON tenant.users TO tenant_svc;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant.invitations TO tenant_svc;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant.sessions TO tenant_svc;
GRANT SELECT, INSERT, DELETE ON tenant.signin_failures TO tenant_svc;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant.password_resets TO tenant_svc;
GRANT SELECT, INSERT ON tenant.audit_log TO tenant_svc;

RESET ROLE;
