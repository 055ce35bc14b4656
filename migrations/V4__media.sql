-- V4: media-svc's tables: call records, transcript turns, monthly usage and the post-call outbox.
--
-- What:
--   * `media.calls`: one row per Twilio call, keyed `(customer_id, call_sid)` so a CallSid is unique
--     per tenant and another tenant's CallSid is indistinguishable from an unused one. `status` is
--     the proto's CallStatus number; the ordering "never backwards, final states terminal" is
--     enforced by the service's UPDATE (`media.call_status_rank`). `usage_counted` makes the
--     monthly usage count each call exactly once, whichever path finalises it first.
--   * `media.transcript_turns`: one row per utterance, written as it happens (a dropped call keeps
--     everything already said), ordered by `seq` within a call.
--   * `media.usage_monthly`: calls, seconds and billed minutes per tenant and month (first day).
--   * `media.outbox`: post-call work that must reach memory-svc (`RecordCall`), kept until it is
--     delivered; the payload is the encoded request, so a restart loses nothing. No credentials
--     are stored: the worker obtains a fresh tenant token at delivery time.
--   * `media.outbox_due_tenants()`: the one cross-tenant read the outbox worker needs. SECURITY
--     DEFINER, it returns only tenant ids that have due work, never row contents; the worker then
--     reads each tenant's rows inside that tenant's own transaction (RLS applies).
--
-- Why: every table has `customer_id`, composite keys, RLS enabled and forced, and grants to
-- media_svc only (see V1 for the conventions).

SET LOCAL ROLE neurosphere_owner;

CREATE TABLE media.calls (
    customer_id      bigint      NOT NULL,
    call_sid         text        NOT NULL,
    account_sid      text        NOT NULL,
    stream_sid       text,
    caller           text,
    called           text        NOT NULL,
    direction        smallint    NOT NULL,
    status           smallint    NOT NULL,
    status_sequence  integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    answered_at      timestamptz,
    ended_at         timestamptz,
    duration_seconds integer     NOT NULL DEFAULT 0 CHECK (duration_seconds >= 0),
    backend          text        NOT NULL DEFAULT '',
    end_reason       text        NOT NULL DEFAULT '',
    usage_counted    boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (customer_id, call_sid)
);

CREATE INDEX calls_newest_idx ON media.calls (customer_id, created_at DESC, call_sid DESC);
CREATE INDEX calls_caller_idx ON media.calls (customer_id, caller);

CREATE TABLE media.transcript_turns (
    customer_id bigint      NOT NULL,
    call_sid    text        NOT NULL,
    seq         integer     NOT NULL,
    speaker     smallint    NOT NULL,
    text        text        NOT NULL CHECK (char_length(text) <= 8000),
    offset_ms   bigint      NOT NULL CHECK (offset_ms >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, call_sid, seq),
    FOREIGN KEY (customer_id, call_sid) REFERENCES media.calls (customer_id, call_sid) ON DELETE CASCADE
);

CREATE TABLE media.usage_monthly (
    customer_id   bigint NOT NULL,
    month         date   NOT NULL,
    total_calls   bigint NOT NULL DEFAULT 0,
    total_seconds bigint NOT NULL DEFAULT 0,
    total_minutes bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (customer_id, month)
);

CREATE TABLE media.outbox (
    customer_id     bigint      NOT NULL,
    id              bigint      GENERATED ALWAYS AS IDENTITY,
    kind            text        NOT NULL,
    call_sid        text        NOT NULL,
    payload         bytea       NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    dead_at         timestamptz,
    PRIMARY KEY (customer_id, id),
    UNIQUE (customer_id, kind, call_sid)
);

CREATE INDEX outbox_due_idx ON media.outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND dead_at IS NULL;

ALTER TABLE media.calls ENABLE ROW LEVEL SECURITY;
ALTER TABLE media.calls FORCE ROW LEVEL SECURITY;
ALTER TABLE media.transcript_turns ENABLE ROW LEVEL SECURITY;
ALTER TABLE media.transcript_turns FORCE ROW LEVEL SECURITY;
ALTER TABLE media.usage_monthly ENABLE ROW LEVEL SECURITY;
ALTER TABLE media.usage_monthly FORCE ROW LEVEL SECURITY;
ALTER TABLE media.outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE media.outbox FORCE ROW LEVEL SECURITY;

CREATE POLICY calls_tenant ON media.calls
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
CREATE POLICY transcript_turns_tenant ON media.transcript_turns
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
CREATE POLICY usage_monthly_tenant ON media.usage_monthly
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
-- Bound to media_svc (the only role with grants) rather than PUBLIC so that the owner's scan below
-- is not OR-ed with a policy that raises without tenant context.
CREATE POLICY outbox_tenant ON media.outbox
    TO media_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());

-- The owner role (and so only `media.outbox_due_tenants`, which runs as the owner; no login role is
-- a member of it) may see which outbox rows are pending, across tenants. FORCE ROW LEVEL SECURITY
-- binds the owner too, so without this policy the function would fail closed.
CREATE POLICY outbox_owner_due_scan ON media.outbox
    FOR SELECT TO neurosphere_owner
    USING (delivered_at IS NULL AND dead_at IS NULL);

GRANT SELECT, INSERT, UPDATE, DELETE ON media.calls TO media_svc;
GRANT SELECT, INSERT, UPDATE, DELETE ON media.transcript_turns TO media_svc;
GRANT SELECT, INSERT, UPDATE, DELETE ON media.usage_monthly TO media_svc;
GRANT SELECT, INSERT, UPDATE, DELETE ON media.outbox TO media_svc;

-- Tenants with outbox rows due now. Returns ids only (no row contents), so it cannot leak another
-- tenant's data; the caller then works inside each tenant's own transaction.
CREATE FUNCTION media.outbox_due_tenants(max_tenants integer)
    RETURNS TABLE (customer_id bigint)
    LANGUAGE sql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT o.customer_id
    FROM media.outbox o
    WHERE o.delivered_at IS NULL AND o.dead_at IS NULL AND o.next_attempt_at <= pg_catalog.now()
    ORDER BY o.customer_id
    LIMIT max_tenants
$$;

REVOKE ALL ON FUNCTION media.outbox_due_tenants(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION media.outbox_due_tenants(integer) TO media_svc;

RESET ROLE;
