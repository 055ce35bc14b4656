-- V5: tenant-svc's outbound-call and post-call webhook settings, and the webhook signing secrets.
--
-- What:
--   * `tenant.outbound_settings`: at most one row per customer with the `OutboundSettings` of the
--     API (allowed country calling codes, persona allow-list, do-not-call list, CORS origins of the
--     public calls endpoint, greet-first, webhook URL, raw-number opt-in, per-hour limit). No row
--     means the defaults (empty lists, false, '', 0); the row is created by the first update that
--     changes something. Values are validated and normalised by tenant-svc; the CHECKs here only
--     bound what a bug could store.
--   * `tenant.webhook_secrets`: at most one row per customer: the current signing secret and, while
--     a rotation's overlap lasts, the previous one with the end of its overlap. Secrets are the
--     base64url text shown once by RotateWebhookSecret (receivers key their HMAC with that text).
--
-- Why:
--   * Same conventions as V2 (see V1): keys start with customer_id, RLS enabled and forced with the
--     usual policy bound to tenant_svc, explicit grants to tenant_svc only, rows go with their
--     customer (ON DELETE CASCADE, offboarding). memory_svc and media_svc get nothing: media-svc
--     reads the settings through GetOutboundSettings and has deliveries signed by SignWebhookEvent,
--     so a secret never leaves tenant-svc.
--   * Secrets live in their own table rather than in columns of `outbound_settings` so that the
--     frequent settings read (every outbound call, every webhook event) never selects them and the
--     two kinds of change can be reasoned about separately. Neither table has an owner policy: no
--     SECURITY DEFINER function needs to read them across tenants.
--   * Changes to either table are recorded in `tenant.customer_configurations` (config_type
--     'outbound') by tenant-svc; a rotation is recorded as key 'webhook_secret' with the values
--     "<rotated>", never the secret.

SET LOCAL ROLE neurosphere_owner;

CREATE TABLE tenant.outbound_settings (
    customer_id           bigint PRIMARY KEY REFERENCES tenant.customers (customer_id) ON DELETE CASCADE,
    allowed_country_codes text[] NOT NULL DEFAULT '{}' CHECK (cardinality(allowed_country_codes) <= 50),
    allowed_personas      text[] NOT NULL DEFAULT '{}' CHECK (cardinality(allowed_personas) <= 20),
    do_not_call           text[] NOT NULL DEFAULT '{}' CHECK (cardinality(do_not_call) <= 10000),
    cors_origins          text[] NOT NULL DEFAULT '{}' CHECK (cardinality(cors_origins) <= 20),
    greet_first_outbound  boolean NOT NULL DEFAULT false,
    webhook_url           text NOT NULL DEFAULT '' CHECK (char_length(webhook_url) <= 2000),
    webhook_raw_numbers   boolean NOT NULL DEFAULT false,
    public_calls_per_hour integer NOT NULL DEFAULT 0 CHECK (public_calls_per_hour BETWEEN 0 AND 10000),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenant.webhook_secrets (
    customer_id         bigint PRIMARY KEY REFERENCES tenant.customers (customer_id) ON DELETE CASCADE,
    -- 32 random bytes as base64url without padding: 43 characters.
    secret              text NOT NULL CHECK (secret ~ '^[A-Za-z0-9_-]{43,}$'),
    previous_secret     text CHECK (previous_secret ~ '^[A-Za-z0-9_-]{43,}$'),
    previous_expires_at timestamptz,
    rotated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((previous_secret IS NULL) = (previous_expires_at IS NULL))
);

ALTER TABLE tenant.outbound_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant.outbound_settings FORCE ROW LEVEL SECURITY;
ALTER TABLE tenant.webhook_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant.webhook_secrets FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant_isolation ON tenant.outbound_settings TO tenant_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
CREATE POLICY tenant_isolation ON tenant.webhook_secrets TO tenant_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());

-- No DELETE: a customer's rows go only with the customer (cascade). Settings are reset by
-- updating them to their defaults; a secret is replaced by rotating.
GRANT SELECT, INSERT, UPDATE ON tenant.outbound_settings TO tenant_svc;
GRANT SELECT, INSERT, UPDATE ON tenant.webhook_secrets TO tenant_svc;

RESET ROLE;
