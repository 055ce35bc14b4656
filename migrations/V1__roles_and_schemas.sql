-- V1: roles, schemas and the tenant-context helper that every row-level-security policy uses.
--
-- What:
--   * Cluster-wide roles: `neurosphere_owner` (NOLOGIN) owns every schema, table, view and function
--     created by migrations; `tenant_svc`, `memory_svc`, `media_svc` are the LOGIN roles the services
--     connect as (no password here: operators set passwords, dev/test clusters use trust auth).
--   * Schemas `app` (shared helpers), `tenant`, `memory`, `media` (one per service), owned by
--     `neurosphere_owner`, with USAGE granted to the services that need them.
--   * `app.current_customer_id()`: the tenant id of the current transaction, taken from the
--     transaction-local setting `app.customer_id` that `mesh::db::Db::tenant_tx` sets with
--     `set_config(..., true)`. It raises (SQLSTATE 42501) when no tenant is set, so a policy written as
--     `USING (customer_id = app.current_customer_id())` fails closed, loudly.
--
-- Why:
--   * Services must never own tables, be superuser or have BYPASSRLS: owners, superusers and
--     BYPASSRLS roles skip row-level security. A separate NOLOGIN owner role keeps ownership away
--     from every login role, and tables additionally use FORCE ROW LEVEL SECURITY.
--   * Roles are cluster-wide while migrations run per database, and test harnesses migrate several
--     databases of one cluster at the same time: role creation therefore tolerates the role already
--     existing (`duplicate_object`) and losing a race with a concurrent creator (`unique_violation`).
--
-- Conventions for every later migration file:
--   * right after its header comment: `SET LOCAL ROLE neurosphere_owner;` so that every object it
--     creates is owned by the owner role (refinery runs each migration in its own transaction, so
--     SET LOCAL ends with it);
--   * as its last statement: `RESET ROLE;` because refinery records the migration in its history
--     table (owned by the migrating role) inside the same transaction, after this file's SQL;
--   * tenant tables: composite keys `(customer_id, ...)`, ENABLE + FORCE ROW LEVEL SECURITY, a policy
--     `USING (customer_id = app.current_customer_id()) WITH CHECK (customer_id = app.current_customer_id())`,
--     explicit per-table grants to the one service role that needs them; views WITH (security_invoker = true).

-- Owner role: owns everything, never logs in.
DO $$
BEGIN
    CREATE ROLE neurosphere_owner NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL; -- created earlier, or concurrently by another database's migration
END
$$;

-- Service login roles: ordinary roles, subject to row-level security.
DO $$
DECLARE
    service_role text;
BEGIN
    FOREACH service_role IN ARRAY ARRAY['tenant_svc', 'memory_svc', 'media_svc'] LOOP
        BEGIN
            EXECUTE format(
                'CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION',
                service_role
            );
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;
        END;
    END LOOP;
END
$$;

-- The migrating role must be able to SET ROLE neurosphere_owner. Superusers can already; a
-- CREATEROLE migration role (production) is made a member.
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
       AND NOT pg_catalog.pg_has_role(current_user, 'neurosphere_owner', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT neurosphere_owner TO %I', current_user);
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;
        END;
    END IF;
END
$$;

-- Nobody but the database owner (and superusers) may use the public schema, where only refinery's
-- history table lives. Skipped when the migrating role cannot change it (it is not the schema owner).
DO $$
BEGIN
    IF EXISTS (
        SELECT 1
        FROM pg_catalog.pg_namespace
        WHERE nspname = 'public'
          AND pg_catalog.pg_has_role(current_user, nspowner, 'USAGE')
    ) OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        REVOKE ALL ON SCHEMA public FROM PUBLIC;
    END IF;
END
$$;

-- Schemas need CREATE on the database, which the owner role does not have: create them here with
-- the owner role as their owner.
CREATE SCHEMA app AUTHORIZATION neurosphere_owner;
CREATE SCHEMA tenant AUTHORIZATION neurosphere_owner;
CREATE SCHEMA memory AUTHORIZATION neurosphere_owner;
CREATE SCHEMA media AUTHORIZATION neurosphere_owner;

-- From here on every object is created by, and owned by, the owner role.
SET LOCAL ROLE neurosphere_owner;

-- Functions are executable by PUBLIC by default; functions created by the owner role are not.
-- Each function is granted explicitly to the service roles that call it.
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

GRANT USAGE ON SCHEMA app TO tenant_svc, memory_svc, media_svc;
GRANT USAGE ON SCHEMA tenant TO tenant_svc;
GRANT USAGE ON SCHEMA memory TO memory_svc;
GRANT USAGE ON SCHEMA media TO media_svc;

-- The tenant of the current transaction. STABLE, so `customer_id = app.current_customer_id()` is
-- evaluated once per index scan and a btree index on customer_id stays usable. Fails closed: NULL
-- (fresh session) and '' (after any earlier transaction-local setting) both raise.
CREATE FUNCTION app.current_customer_id() RETURNS bigint
    LANGUAGE plpgsql
    STABLE
    PARALLEL SAFE
AS $$
DECLARE
    raw text := pg_catalog.current_setting('app.customer_id', true);
BEGIN
    IF raw IS NULL OR raw = '' THEN
        RAISE EXCEPTION 'no tenant context: app.customer_id is not set'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'run tenant queries through mesh::db::Db::tenant_tx';
    END IF;
    RETURN raw::bigint;
END
$$;

COMMENT ON FUNCTION app.current_customer_id() IS
    'Tenant id of the current transaction (transaction-local setting app.customer_id); raises 42501 when unset. Used by every RLS policy.';

REVOKE ALL ON FUNCTION app.current_customer_id() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.current_customer_id() TO tenant_svc, memory_svc, media_svc;

RESET ROLE;
