-- V22: call-handling settings (issue 20, lane S) and the one cross-tenant read media-svc's
-- retention task needs.
--
-- What:
--   * `tenant.call_handling`: at most one row per customer with the `CallHandling` of the API:
--     recording policy ('off', 'on', 'on_with_consent'), the announcement, consent prompt and
--     message prompt texts, retention in days, the longest message in seconds, the weekly opening
--     hours (JSON, `{"monday": [[open_minute, close_minute], ...], ...}`, minutes in the
--     customer's time zone) and whether calls after hours go to the message flow. No row means
--     the defaults (`mesh::call_handling::defaults`: off, 90 days, 120 s, always open); the row is
--     created by the first update. tenant-svc validates and normalises every value; the CHECKs
--     mirror those bounds so that a bug cannot store what the API refuses.
--   * `media.retention_tenants(older_than, max_tenants)`: customer ids that have a call created
--     before `older_than`, for media-svc's retention task (which then reads each tenant's
--     retention through tenant-svc and deletes inside that tenant's own transaction). SECURITY
--     DEFINER, ids only.
--
-- Why: same conventions as V5 (customer_id first, RLS enabled and forced with the tenant policy
-- bound to the owning service, grants to it only, rows go with their customer). media_svc gets
-- nothing on the tenant table: it reads the settings through `GetCallHandling`. The owner read
-- policy on `media.calls` serves the definer function only (no login role is the owner), like
-- V4's outbox scan.

SET LOCAL ROLE neurosphere_owner;

CREATE TABLE tenant.call_handling (
    customer_id            bigint PRIMARY KEY REFERENCES tenant.customers (customer_id) ON DELETE CASCADE,
    recording_policy       text NOT NULL DEFAULT 'off'
                           CHECK (recording_policy IN ('off', 'on', 'on_with_consent')),
    recording_announcement text NOT NULL CHECK (char_length(recording_announcement) BETWEEN 1 AND 500),
    consent_prompt         text NOT NULL CHECK (char_length(consent_prompt) BETWEEN 1 AND 500),
    retention_days         integer NOT NULL DEFAULT 90 CHECK (retention_days BETWEEN 1 AND 3650),
    message_prompt         text NOT NULL CHECK (char_length(message_prompt) BETWEEN 1 AND 500),
    message_max_seconds    integer NOT NULL DEFAULT 120 CHECK (message_max_seconds BETWEEN 10 AND 300),
    opening_hours          jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(opening_hours) = 'object'),
    messages_after_hours   boolean NOT NULL DEFAULT false,
    updated_at             timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE tenant.call_handling ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant.call_handling FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant_isolation ON tenant.call_handling TO tenant_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());

-- No DELETE: the row goes with its customer (cascade); settings are reset by updating them.
GRANT SELECT, INSERT, UPDATE ON tenant.call_handling TO tenant_svc;

-- The owner (and so only `media.retention_tenants`, which runs as the owner) may see which
-- tenants have calls, across tenants. FORCE ROW LEVEL SECURITY binds the owner too.
CREATE POLICY calls_owner_retention_scan ON media.calls
    FOR SELECT TO neurosphere_owner
    USING (true);

-- Tenants with a call created before `older_than` (at most `max_tenants`, lowest ids first).
-- Returns ids only, never row contents; the caller then works inside each tenant's own
-- transaction with that tenant's own retention.
CREATE FUNCTION media.retention_tenants(older_than timestamptz, max_tenants integer)
    RETURNS TABLE (customer_id bigint)
    LANGUAGE sql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT c.customer_id
    FROM media.calls c
    WHERE c.created_at < older_than
    ORDER BY c.customer_id
    LIMIT greatest(max_tenants, 0)
$$;

REVOKE ALL ON FUNCTION media.retention_tenants(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION media.retention_tenants(timestamptz, integer) TO media_svc;

RESET ROLE;
