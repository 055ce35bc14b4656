-- V29: usage that can be billed (issue 21): the realtime model's tokens per call and month,
-- packages, versioned rate cards, each tenant's package over time, and the cap notices sent.
--
-- What:
--   * `media.calls.model_*_tokens`: the realtime model's usage of the call, summed by the call
--     driver from every `response.done` (`response.usage`) of every session of the call and set
--     ONCE when the call is finalised after its stream (`WHERE model_input_text_tokens IS NULL`),
--     so a call finalised twice, or at shutdown, is counted once. `input_*` count every input
--     token of the kind, cached ones included; `cached_*` are the cached part. A backend that
--     reports nothing (the local one) stores zeros; a call that never streamed keeps NULLs.
--   * `media.usage_monthly.*_tokens`: the same counts per tenant and month (the month of the
--     call's end, UTC, as `total_minutes`), added in the transaction that sets the call's.
--   * `media.billing_packages`: platform-wide (no customer_id: a package is the platform's
--     offer, not a tenant's data): name, ISO 4217 currency, the monthly cap on Twilio minutes
--     (NULL: none) and what happens past it (`over_cap`: 1 message flow, 2 refuse, the proto's
--     OverCapAction).
--   * `media.rate_cards`: platform-wide, versioned per package; a version applies from the first
--     day of `effective_month` (UTC) until a later version's month. Prices are integer minor units
--     of the package's currency per unit (per Twilio minute, per recorded minute, per million
--     tokens of each kind). Rows are never updated (no UPDATE grant) and media-svc refuses an
--     `effective_month` before the current month, so a closed month is never repriced.
--   * `media.billing_default_packages`: platform-wide: which package applies, from a month on, to
--     tenants with no assignment of their own (same not-before-the-current-month rule).
--   * `media.package_assignments`: a tenant's package from `effective_month` on (operator
--     assigned; same rule), so a month is always priced by the package it had.
--   * `media.cap_notices`: one row per tenant, month, cap and level (80: the `usage.warning`
--     event and the owners' e-mail were queued; 100: reached), so each is sent once; `notice_id`
--     names the notice to tenant-svc's `NotifyOwners` (its per-owner rows make a redelivery
--     harmless, as for a message's task).
--   * `media.usage_tenants(month, after, limit)`: customer ids with usage in a month, a page at
--     a time, for the operator's every-tenant totals. SECURITY DEFINER, ids only; each tenant's
--     figures are then read in its own transaction. It reads `media.usage_monthly` through the
--     owner read policy added here (the tenant policy is re-bound to media_svc so the owner's
--     scan is not OR-ed with a policy that raises without tenant context, as V4 did for the
--     outbox).
--
-- Why: same conventions as V20-V25 (customer_id first in every tenant key, RLS enabled and
-- forced with the tenant policy, grants to media_svc only; the definer function pins
-- search_path, is not executable by PUBLIC and is in mesh's allow-list).

SET LOCAL ROLE neurosphere_owner;

ALTER TABLE media.calls
    ADD COLUMN model_input_text_tokens   bigint CHECK (model_input_text_tokens >= 0),
    ADD COLUMN model_input_audio_tokens  bigint CHECK (model_input_audio_tokens >= 0),
    ADD COLUMN model_cached_text_tokens  bigint CHECK (model_cached_text_tokens >= 0),
    ADD COLUMN model_cached_audio_tokens bigint CHECK (model_cached_audio_tokens >= 0),
    ADD COLUMN model_output_text_tokens  bigint CHECK (model_output_text_tokens >= 0),
    ADD COLUMN model_output_audio_tokens bigint CHECK (model_output_audio_tokens >= 0);

ALTER TABLE media.usage_monthly
    ADD COLUMN input_text_tokens   bigint NOT NULL DEFAULT 0,
    ADD COLUMN input_audio_tokens  bigint NOT NULL DEFAULT 0,
    ADD COLUMN cached_text_tokens  bigint NOT NULL DEFAULT 0,
    ADD COLUMN cached_audio_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN output_text_tokens  bigint NOT NULL DEFAULT 0,
    ADD COLUMN output_audio_tokens bigint NOT NULL DEFAULT 0;

CREATE TABLE media.billing_packages (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    currency    text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    cap_minutes bigint      CHECK (cap_minutes > 0),
    over_cap    smallint    NOT NULL CHECK (over_cap IN (1, 2)),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE media.rate_cards (
    package_id               bigint      NOT NULL REFERENCES media.billing_packages (id),
    version                  integer     NOT NULL CHECK (version > 0),
    effective_month          date        NOT NULL CHECK (extract(day FROM effective_month) = 1),
    per_twilio_minute        bigint      NOT NULL CHECK (per_twilio_minute >= 0),
    per_recorded_minute      bigint      NOT NULL CHECK (per_recorded_minute >= 0),
    per_million_input_text   bigint      NOT NULL CHECK (per_million_input_text >= 0),
    per_million_input_audio  bigint      NOT NULL CHECK (per_million_input_audio >= 0),
    per_million_cached_text  bigint      NOT NULL CHECK (per_million_cached_text >= 0),
    per_million_cached_audio bigint      NOT NULL CHECK (per_million_cached_audio >= 0),
    per_million_output_text  bigint      NOT NULL CHECK (per_million_output_text >= 0),
    per_million_output_audio bigint      NOT NULL CHECK (per_million_output_audio >= 0),
    created_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (package_id, version)
);

CREATE INDEX rate_cards_month_idx ON media.rate_cards (package_id, effective_month DESC, version DESC);

CREATE TABLE media.billing_default_packages (
    effective_month date        PRIMARY KEY CHECK (extract(day FROM effective_month) = 1),
    package_id      bigint      NOT NULL REFERENCES media.billing_packages (id),
    set_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE media.package_assignments (
    customer_id     bigint      NOT NULL,
    effective_month date        NOT NULL CHECK (extract(day FROM effective_month) = 1),
    package_id      bigint      NOT NULL REFERENCES media.billing_packages (id),
    assigned_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, effective_month)
);

CREATE TABLE media.cap_notices (
    customer_id bigint      NOT NULL,
    month       date        NOT NULL,
    cap         text        NOT NULL CHECK (cap IN ('minutes')),
    level       smallint    NOT NULL CHECK (level IN (80, 100)),
    notice_id   uuid        NOT NULL DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, month, cap, level)
);

ALTER TABLE media.package_assignments ENABLE ROW LEVEL SECURITY;
ALTER TABLE media.package_assignments FORCE ROW LEVEL SECURITY;
CREATE POLICY package_assignments_tenant ON media.package_assignments
    TO media_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());

ALTER TABLE media.cap_notices ENABLE ROW LEVEL SECURITY;
ALTER TABLE media.cap_notices FORCE ROW LEVEL SECURITY;
CREATE POLICY cap_notices_tenant ON media.cap_notices
    TO media_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());

-- Re-bound to media_svc (the only role with grants) so the owner's scan below is not OR-ed with a
-- policy that raises without tenant context.
ALTER POLICY usage_monthly_tenant ON media.usage_monthly TO media_svc;
-- The owner role (and so only `media.usage_tenants`, which runs as the owner; no login role is a
-- member of it) may see which tenants have usage, across tenants.
CREATE POLICY usage_monthly_owner_scan ON media.usage_monthly
    FOR SELECT TO neurosphere_owner
    USING (true);

GRANT SELECT, INSERT ON media.billing_packages TO media_svc;
GRANT SELECT, INSERT ON media.rate_cards TO media_svc;
GRANT SELECT, INSERT, UPDATE ON media.billing_default_packages TO media_svc;
GRANT SELECT, INSERT, UPDATE, DELETE ON media.package_assignments TO media_svc;
GRANT SELECT, INSERT, DELETE ON media.cap_notices TO media_svc;

-- Customer ids with usage in a month, after `after`, at most `max_rows`. Ids only, never row
-- contents.
CREATE FUNCTION media.usage_tenants(for_month date, after bigint, max_rows integer)
    RETURNS TABLE (customer_id bigint)
    LANGUAGE sql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.customer_id
    FROM media.usage_monthly u
    WHERE u.month = for_month AND u.customer_id > after
    ORDER BY u.customer_id
    LIMIT max_rows
$$;
REVOKE ALL ON FUNCTION media.usage_tenants(date, bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION media.usage_tenants(date, bigint, integer) TO media_svc;

RESET ROLE;
