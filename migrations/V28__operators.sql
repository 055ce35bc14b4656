-- V28: the operator console (issue 21): operator accounts and sessions, the platform defaults'
-- history, scheduled offboardings, and the dead-letter count across tenants.
--
-- What:
--   * `tenant.operators`: the people who run the platform (not a customer's users). Platform
--     data, so no customer_id and no row-level security: an operator belongs to no tenant, and
--     only tenant-svc's role may read or write the table. `email_hash` is the keyed hash of the
--     normalised address (as V16's users); `password_hash` an Argon2id PHC string;
--     `totp_sealed` the TOTP secret sealed with AES-256-GCM (nonce || ciphertext || tag) under a
--     key tenant-svc derives from the account hash key, never the secret itself; `totp_last_step`
--     the last RFC 6238 time step accepted, so a code is accepted once.
--   * `tenant.operator_sessions`: operator sessions by the SHA-256 of their secret, with idle and
--     absolute expiry and revocation (as V16's sessions). Platform data, as above.
--   * `tenant.operator_signin_failures`: failed sign-ins of an operator (the per-account
--     throttle). The per-address throttle shares V16's `tenant.signin_address_failures`.
--   * `tenant.platform_defaults_history`: every change of `tenant.platform_defaults` (V2, a
--     platform row): when, by whom (`operator:<id>` or `service:<issuer>`), the field paths and
--     the values before and after. Platform data, append-only by grants.
--   * `tenant.offboardings`: a customer an operator offboarded: suspended at once, erased (numbers
--     released at Twilio, then DeleteCustomer's fan-out) at `erase_at` unless cancelled before.
--     Tenant data: RLS enabled and forced with the tenant policy; the background task finds the
--     due ones through `tenant.due_offboardings`, which returns customer ids only.
--   * `media.dead_letter_counts()`: per customer, how many webhook events are dead letters, for
--     the console's dead-letter page (media-svc `MediaAdminService.CountDeadLetters`). Ids and
--     counts only.
--
-- Why: same conventions as V16/V25 (customer_id first in every tenant key, RLS enabled and forced
-- with the tenant policy bound to the owning service, an owner read policy only the definer
-- functions use, grants to the owning service only).

SET LOCAL ROLE neurosphere_owner;

CREATE TABLE tenant.operators (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email_hash     bytea       NOT NULL UNIQUE CHECK (octet_length(email_hash) = 32),
    email          text        NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    password_hash  text        NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    totp_sealed    bytea       NOT NULL CHECK (octet_length(totp_sealed) = 12 + 20 + 16),
    totp_last_step bigint      NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     text        NOT NULL CHECK (char_length(created_by) BETWEEN 1 AND 200),
    disabled_at    timestamptz
);

CREATE TABLE tenant.operator_sessions (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operator_id     bigint      NOT NULL REFERENCES tenant.operators (id) ON DELETE CASCADE,
    secret_hash     bytea       NOT NULL UNIQUE CHECK (octet_length(secret_hash) = 32),
    user_agent      text        NOT NULL DEFAULT '' CHECK (char_length(user_agent) <= 100),
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    idle_expires_at timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz
);
CREATE INDEX operator_sessions_by_operator ON tenant.operator_sessions (operator_id, created_at);

CREATE TABLE tenant.operator_signin_failures (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operator_id bigint      NOT NULL REFERENCES tenant.operators (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operator_signin_failures_by_operator ON tenant.operator_signin_failures (operator_id, at);

CREATE TABLE tenant.platform_defaults_history (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text        NOT NULL CHECK (char_length(changed_by) BETWEEN 1 AND 200),
    paths      text[]      NOT NULL,
    old_values jsonb       NOT NULL CHECK (jsonb_typeof(old_values) = 'object'),
    new_values jsonb       NOT NULL CHECK (jsonb_typeof(new_values) = 'object')
);
CREATE INDEX platform_defaults_history_by_time ON tenant.platform_defaults_history (changed_at DESC, id DESC);

CREATE TABLE tenant.offboardings (
    customer_id  bigint      NOT NULL PRIMARY KEY REFERENCES tenant.customers (customer_id) ON DELETE CASCADE,
    requested_by text        NOT NULL CHECK (char_length(requested_by) BETWEEN 1 AND 200),
    requested_at timestamptz NOT NULL DEFAULT now(),
    erase_at     timestamptz NOT NULL,
    started_at   timestamptz
);
CREATE INDEX offboardings_due ON tenant.offboardings (erase_at);

ALTER TABLE tenant.offboardings ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant.offboardings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant.offboardings TO tenant_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
-- Read-only access for the owner, i.e. for `tenant.due_offboardings` only.
CREATE POLICY definer_lookup ON tenant.offboardings FOR SELECT TO neurosphere_owner USING (true);

-- The offboarding task: customers whose grace has passed. Ids only; the row is read again in the
-- customer's own transaction.
CREATE FUNCTION tenant.due_offboardings(p_limit integer)
RETURNS TABLE (customer_id bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.customer_id FROM tenant.offboardings o
    WHERE o.erase_at <= pg_catalog.now()
    ORDER BY o.erase_at, o.customer_id
    LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION tenant.due_offboardings(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.due_offboardings(integer) TO tenant_svc;

-- The owner may see which events are dead letters (only through the function below); this
-- widens nothing else: `media.webhook_due_tenants` filters on dead_at IS NULL itself.
CREATE POLICY webhook_events_owner_dead_count ON media.webhook_events
    FOR SELECT TO neurosphere_owner
    USING (dead_at IS NOT NULL);

CREATE FUNCTION media.dead_letter_counts()
RETURNS TABLE (customer_id bigint, dead bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT w.customer_id, pg_catalog.count(*) FROM media.webhook_events w
    WHERE w.dead_at IS NOT NULL
    GROUP BY w.customer_id
    ORDER BY w.customer_id
$$;
REVOKE ALL ON FUNCTION media.dead_letter_counts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION media.dead_letter_counts() TO media_svc;

GRANT SELECT, INSERT, UPDATE ON tenant.operators TO tenant_svc;
GRANT SELECT, INSERT, UPDATE ON tenant.operator_sessions TO tenant_svc;
GRANT SELECT, INSERT, DELETE ON tenant.operator_signin_failures TO tenant_svc;
GRANT SELECT, INSERT ON tenant.platform_defaults_history TO tenant_svc;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant.offboardings TO tenant_svc;

RESET ROLE;
