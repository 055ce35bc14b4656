-- V17: API keys of a tenant's developers (issue 19, `/portal/tokens`), and the revocation of one
-- subject's tenant tokens.
--
-- What:
--   * `tenant.api_keys`: keys an owner creates for their developers, exchanged at the gateway's
--     `POST /v1/tokens` (`ApiKeyExchangeService.ExchangeApiKey`) for short-lived tenant tokens
--     with the key's scopes. The secret (`nsk_` + 43 base64url characters) is shown once; only
--     its SHA-256 is kept (`secret_hash`), with `hint` (`nsk_` + its last 4 characters) to
--     recognise it. `last_used_at` is the last exchange, written at most once a minute.
--     `revoked_at` set: the key no longer exchanges. A name is unique among a tenant's active
--     keys.
--   * `tenant.api_key_id_by_secret_hash(bytea)`: the exchange happens before a tenant is known;
--     this SECURITY DEFINER function returns only (customer id, key id) for a secret hash. The key
--     itself (revoked? scopes? lifetime?) is read inside that tenant's transaction.
--   * `tenant.token_subject_revocations`: per tenant and token subject (`api-key:<id>`,
--     `user:<id>`), the second at or before which that subject's tenant tokens are refused by
--     every service, exactly like V13's per-tenant `not_before` but narrower: revoking one key
--     (or demoting one user) kills the tokens already minted for it, not the tenant's others.
--   * `app.token_subject_revocations()`: every service's refresher reads it with V13's (every
--     few seconds). SECURITY DEFINER; it returns ids (customer id, subject) and timestamps only,
--     and only revocations of the last 25 hours: no tenant token lives longer than 24 hours
--     (`IssueTenantToken`'s maximum), so older ones cannot refuse anything any more.
--
-- Why: same conventions as V2/V13/V15 (customer_id first in every key, RLS enabled and forced
-- with the tenant policy bound to tenant_svc, an owner read policy only the definer functions
-- use, grants to tenant_svc only). Keys go with their customer (ON DELETE CASCADE); subject
-- revocations, like V13's, have no foreign key (they must outlive a deleted customer's rows for
-- the lifetime of its last tokens).

SET LOCAL ROLE neurosphere_owner;

CREATE TABLE tenant.api_keys (
    customer_id           bigint      NOT NULL REFERENCES tenant.customers (customer_id) ON DELETE CASCADE,
    id                    uuid        NOT NULL,
    name                  text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 60),
    hint                  text        NOT NULL CHECK (hint ~ '^nsk_[A-Za-z0-9_-]{4}$'),
    secret_hash           bytea       NOT NULL CHECK (octet_length(secret_hash) = 32),
    scopes                text[]      NOT NULL CHECK (cardinality(scopes) >= 1),
    max_token_ttl_seconds integer     NOT NULL CHECK (max_token_ttl_seconds BETWEEN 60 AND 3600),
    created_by            text        NOT NULL CHECK (char_length(created_by) BETWEEN 1 AND 200),
    created_at            timestamptz NOT NULL DEFAULT now(),
    last_used_at          timestamptz,
    revoked_at            timestamptz,
    PRIMARY KEY (customer_id, id)
);
CREATE UNIQUE INDEX api_keys_secret_hash_key ON tenant.api_keys (secret_hash);
CREATE UNIQUE INDEX api_keys_active_name_key ON tenant.api_keys (customer_id, name)
    WHERE revoked_at IS NULL;
CREATE INDEX api_keys_by_time ON tenant.api_keys (customer_id, created_at DESC, id DESC);

CREATE TABLE tenant.token_subject_revocations (
    customer_id bigint      NOT NULL CHECK (customer_id > 0),
    subject     text        NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 200),
    not_before  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, subject)
);
CREATE INDEX token_subject_revocations_by_time ON tenant.token_subject_revocations (not_before);

ALTER TABLE tenant.api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant.api_keys FORCE ROW LEVEL SECURITY;
ALTER TABLE tenant.token_subject_revocations ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant.token_subject_revocations FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant_isolation ON tenant.api_keys TO tenant_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
CREATE POLICY tenant_isolation ON tenant.token_subject_revocations TO tenant_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());

-- Read-only access for the owner, i.e. for the SECURITY DEFINER functions below only.
CREATE POLICY definer_lookup ON tenant.api_keys FOR SELECT TO neurosphere_owner USING (true);
CREATE POLICY definer_lookup ON tenant.token_subject_revocations FOR SELECT TO neurosphere_owner USING (true);

-- The exchange: the key whose secret has this SHA-256. Ids only.
CREATE FUNCTION tenant.api_key_id_by_secret_hash(p_secret_hash bytea)
RETURNS TABLE (customer_id bigint, key_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k.customer_id, k.id FROM tenant.api_keys k WHERE k.secret_hash = p_secret_hash
$$;

-- Every revoked subject of the last 25 hours and its second, for the services' auth layers.
CREATE FUNCTION app.token_subject_revocations()
RETURNS TABLE (customer_id bigint, subject text, not_before timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.customer_id, r.subject, r.not_before FROM tenant.token_subject_revocations r
    WHERE r.not_before > now() - interval '25 hours'
$$;

REVOKE ALL ON FUNCTION tenant.api_key_id_by_secret_hash(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION app.token_subject_revocations() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.api_key_id_by_secret_hash(bytea) TO tenant_svc;
GRANT EXECUTE ON FUNCTION app.token_subject_revocations() TO tenant_svc, memory_svc, media_svc;

GRANT SELECT, INSERT, UPDATE ON tenant.api_keys TO tenant_svc;
GRANT SELECT, INSERT, UPDATE ON tenant.token_subject_revocations TO tenant_svc;

RESET ROLE;
