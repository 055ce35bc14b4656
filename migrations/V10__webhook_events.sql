-- V10: media-svc's post-call webhook events: the durable queue of signed deliveries to tenants'
-- endpoints, its dead letters, and the default key of the caller-number hash.
--
-- What:
--   * `media.webhook_events`: one row per call whose record reached memory-svc while the tenant had
--     a webhook URL, keyed `(customer_id, event_id)`; UNIQUE `(customer_id, call_sid)` so a call
--     yields one event however often the post-call path runs. `body` is the exact JSON sent, built
--     once, so every attempt carries the same event id and bytes. `attempts`, `next_attempt_at`,
--     `last_error` pace the retries; `give_up_at` (= created_at + `retry_for` at first) ends them:
--     the row then gets `dead_at` (a dead letter). `retry_for` is kept so RedeliverDeadLetter can
--     grant the same window again. Rows reference their call (ON DELETE CASCADE), so erasing a
--     caller or a tenant also erases the events that carry their transcripts.
--   * `media.webhook_due_tenants()`: the one cross-tenant read the delivery worker needs. SECURITY
--     DEFINER, it returns only tenant ids that have events due, never row contents; the worker then
--     reads each tenant's rows inside that tenant's own transaction (RLS applies).
--   * `media.caller_hash_key`: one random key (no customer_id) used to hash caller numbers in
--     events when the operator does not configure MEDIA_CALLER_HASH_KEY.
--
-- Why: same conventions as V4 (customer_id first in every key, RLS enabled and forced, grants to
-- media_svc only; see V1). The tenant policy is bound to media_svc rather than PUBLIC so that the
-- owner's due scan is not OR-ed with a policy that raises without tenant context.

SET LOCAL ROLE neurosphere_owner;

CREATE TABLE media.webhook_events (
    customer_id     bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    call_sid        text        NOT NULL,
    body            bytea       NOT NULL CHECK (octet_length(body) <= 1048576),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    retry_for       interval    NOT NULL,
    give_up_at      timestamptz NOT NULL,
    last_error      text        CHECK (char_length(last_error) <= 500),
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    dead_at         timestamptz,
    PRIMARY KEY (customer_id, event_id),
    UNIQUE (customer_id, call_sid),
    FOREIGN KEY (customer_id, call_sid) REFERENCES media.calls (customer_id, call_sid) ON DELETE CASCADE
);

-- The worker's scan: pending rows by due time.
CREATE INDEX webhook_events_due_idx ON media.webhook_events (next_attempt_at)
    WHERE delivered_at IS NULL AND dead_at IS NULL;
-- ListDeadLetters: newest dead first, per tenant.
CREATE INDEX webhook_events_dead_idx ON media.webhook_events (customer_id, dead_at DESC, event_id DESC)
    WHERE dead_at IS NOT NULL;

ALTER TABLE media.webhook_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE media.webhook_events FORCE ROW LEVEL SECURITY;

CREATE POLICY webhook_events_tenant ON media.webhook_events
    TO media_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());

-- The owner role (and so only `media.webhook_due_tenants`, which runs as the owner; no login role
-- is a member of it) may see which events are pending, across tenants. FORCE ROW LEVEL SECURITY
-- binds the owner too, so without this policy the function would fail closed.
CREATE POLICY webhook_events_owner_due_scan ON media.webhook_events
    FOR SELECT TO neurosphere_owner
    USING (delivered_at IS NULL AND dead_at IS NULL);

GRANT SELECT, INSERT, UPDATE, DELETE ON media.webhook_events TO media_svc;

-- Tenants with events due now. Returns ids only (no row contents), so it cannot leak another
-- tenant's data; the caller then works inside each tenant's own transaction.
CREATE FUNCTION media.webhook_due_tenants(max_tenants integer)
    RETURNS TABLE (customer_id bigint)
    LANGUAGE sql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT w.customer_id
    FROM media.webhook_events w
    WHERE w.delivered_at IS NULL AND w.dead_at IS NULL AND w.next_attempt_at <= pg_catalog.now()
    ORDER BY w.customer_id
    LIMIT max_tenants
$$;

REVOKE ALL ON FUNCTION media.webhook_due_tenants(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION media.webhook_due_tenants(integer) TO media_svc;

-- Default key of the caller hash (a deployment-wide random secret; MEDIA_CALLER_HASH_KEY
-- overrides it). 32 bytes from two version-4 UUIDs (244 random bits; gen_random_uuid is built in since
-- PG 13). Read-only for the service.
CREATE TABLE media.caller_hash_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key bytea NOT NULL CHECK (octet_length(key) >= 32)
);
INSERT INTO media.caller_hash_key (key)
VALUES (decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
GRANT SELECT ON media.caller_hash_key TO media_svc;

RESET ROLE;
