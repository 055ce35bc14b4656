-- V13: one revocation mechanism for tenant tokens, read by every service.
--
-- What:
--   * `tenant.token_revocations`: per tenant, `not_before`: every tenant token of that tenant
--     issued at or before that second is refused by every service (the auth layer checks it after
--     the verified-token cache, so a cached verification cannot bypass it). tenant-svc writes it
--     when it suspends a tenant (SetCustomerStatus) or deletes one; the portal's "revoke all
--     tokens" will write it the same way. Reinstating a tenant leaves it: tokens issued before the
--     suspension stay dead, tokens issued after the reinstatement work. No foreign key to
--     `tenant.customers`: a deleted tenant's revocation outlives its row.
--   * `app.token_revocations()`: the one cross-tenant read, for every service's refresher (every
--     few seconds). SECURITY DEFINER, it returns customer ids and timestamps only.
--
-- Why: same conventions as V2 (customer_id first, RLS enabled and forced, writes by tenant_svc
-- only through the tenant policy, an owner read policy that only the definer function uses).

SET LOCAL ROLE neurosphere_owner;

CREATE TABLE tenant.token_revocations (
    customer_id bigint      NOT NULL CHECK (customer_id > 0),
    not_before  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id)
);

ALTER TABLE tenant.token_revocations ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant.token_revocations FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant_isolation ON tenant.token_revocations TO tenant_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
-- Read-only access for the owner, i.e. for `app.token_revocations()` only.
CREATE POLICY definer_lookup ON tenant.token_revocations FOR SELECT TO neurosphere_owner USING (true);

GRANT SELECT, INSERT, UPDATE ON tenant.token_revocations TO tenant_svc;

-- Every tenant with a revocation and its second, for the services' auth layers.
CREATE FUNCTION app.token_revocations()
RETURNS TABLE (customer_id bigint, not_before timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.customer_id, r.not_before FROM tenant.token_revocations r
$$;

REVOKE ALL ON FUNCTION app.token_revocations() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.token_revocations() TO tenant_svc, memory_svc, media_svc;

RESET ROLE;
