-- V26: the platform's phone numbers at Twilio (issue 21, numbers): what media-svc bought,
-- imported or is buying, per tenant.
--
-- What:
--   * `media.numbers`: one row per number a tenant holds or held through this platform, keyed
--     `(customer_id, number_id)`. `state`: 1 PURCHASING (the intent, committed BEFORE Twilio is
--     asked to buy: after a lost answer the number is looked up at Twilio, never bought twice),
--     2 ACTIVE (held, routed by tenant-svc), 3 RELEASING (routing stopped, Twilio's release
--     pending), 4 RELEASED (kept as history), 5 FAILED (a lost purchase that Twilio never made).
--     `origin`: 1 purchased, 2 imported, 3 ported (the proto's `NumberOrigin`). `request_id` is
--     the client's idempotency key, UNIQUE per tenant: the same request again answers the same
--     row. `twilio_sid` is Twilio's IncomingPhoneNumber sid once known. `webhooks_ok`: whether
--     Twilio's VoiceUrl / VoiceMethod / StatusCallback were this platform's at the last check.
--     The monthly price is stored as Twilio's Pricing API showed it when bought (integer minor
--     units).
--   * A platform-wide UNIQUE index on `phone_number` over the held states (1-3): one number is
--     held by at most one tenant at a time (a second tenant's intent for it fails on the index,
--     which names nobody); released and failed rows do not count, so a number can come back.
--   * `media.number_tenants()`: the customer ids holding a number in states 1-3, for the
--     reconcile task (which then reads each tenant's rows inside that tenant's own
--     transaction). SECURITY DEFINER, ids only.
--
-- Why: same conventions as V20-V25 (customer_id first in every key, RLS enabled and forced with
-- the tenant policy bound to media_svc, grants to media_svc only). Which customer a call to a
-- number reaches stays tenant-svc's (`tenant.phone_numbers`); media-svc keeps it in step through
-- `AssignPhoneNumber` / `ReleasePhoneNumber`, and reconcile repairs the two when they drift. The
-- owner read policy serves the definer function only (no login role is the owner), like V22's.

SET LOCAL ROLE neurosphere_owner;

CREATE TABLE media.numbers (
    customer_id    bigint      NOT NULL CHECK (customer_id > 0),
    number_id      bigint      GENERATED ALWAYS AS IDENTITY,
    phone_number   text        NOT NULL CHECK (phone_number ~ '^\+[1-9][0-9]{6,14}$'),
    request_id     uuid,
    twilio_sid     text        CHECK (twilio_sid ~ '^PN[0-9a-f]{32}$'),
    state          smallint    NOT NULL CHECK (state BETWEEN 1 AND 5),
    origin         smallint    NOT NULL CHECK (origin BETWEEN 1 AND 3),
    price_currency text        CHECK (price_currency ~ '^[A-Z]{3}$'),
    price_minor    bigint      CHECK (price_minor >= 0),
    webhooks_ok    boolean     NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    acquired_at    timestamptz,
    released_at    timestamptz,
    PRIMARY KEY (customer_id, number_id),
    UNIQUE (customer_id, request_id)
);

-- One holder per number across the platform (held states only).
CREATE UNIQUE INDEX numbers_held_once_idx ON media.numbers (phone_number) WHERE state IN (1, 2, 3);
-- A tenant's numbers by number.
CREATE INDEX numbers_tenant_number_idx ON media.numbers (customer_id, phone_number);

ALTER TABLE media.numbers ENABLE ROW LEVEL SECURITY;
ALTER TABLE media.numbers FORCE ROW LEVEL SECURITY;
CREATE POLICY numbers_tenant ON media.numbers
    TO media_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON media.numbers TO media_svc;

-- The owner (and so only `media.number_tenants`, which runs as the owner) may see which tenants
-- hold numbers. FORCE ROW LEVEL SECURITY binds the owner too.
CREATE POLICY numbers_owner_reconcile_scan ON media.numbers
    FOR SELECT TO neurosphere_owner
    USING (true);

-- Tenants holding a number in a held state (purchasing, active, releasing). Ids only.
CREATE FUNCTION media.number_tenants()
    RETURNS TABLE (customer_id bigint)
    LANGUAGE sql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT n.customer_id
    FROM media.numbers n
    WHERE n.state IN (1, 2, 3)
    ORDER BY n.customer_id
$$;

REVOKE ALL ON FUNCTION media.number_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION media.number_tenants() TO media_svc;

RESET ROLE;
