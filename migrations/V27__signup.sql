-- V27: self sign-up and onboarding (issue 21): the pending status, sign-up requests awaiting
-- their e-mail verification, and the once-only onboarding mails.
--
-- What:
--   * `tenant.customers.status` may be 'pending': a customer that signed up and awaits an
--     operator's approval. tenant-svc treats it like 'suspended' for routing, tenant tokens and
--     the legacy exchange; its owner may sign in to the portal, where only a waiting page shows.
--   * `tenant.customers.approved_mail_at` / `welcome_mail_at`: when the owners were told of the
--     approval ("choose your number") and welcomed with their first routed number. Set in the
--     transaction of the change that causes the mail, so the mail goes once per customer however
--     often the RPC is retried (a repeat finds the column set and mails nothing).
--   * `tenant.signups`: one row per sign-up request until its address is verified: the business
--     and contact names, the address (for the verification mail and the owner user it becomes),
--     the keyed HMAC of the address (the per-address daily limit) and of the client address
--     (the per-client-address daily limit, IPv6 by /64; never the address itself), the Argon2id
--     hash of the chosen password, and the SHA-256 of the verification token (the token itself
--     is only in the mail). Verification sets `verified_at` and clears the address, names and
--     password hash in the transaction that creates the customer and its owner, so a replayed
--     link finds nothing to create. Rows are deleted two days after creation (the limits look
--     back one day), by the sign-up path itself.
--
-- Why a platform-wide table (no customer_id, so no tenant policy): a sign-up exists before any
-- customer does; it is the platform's own intake, read and written only by tenant-svc (grants to
-- tenant_svc only, no other role, no SECURITY DEFINER function). Lookups by token hash and by the
-- two keyed hashes need no cross-tenant read.

SET LOCAL ROLE neurosphere_owner;

ALTER TABLE tenant.customers DROP CONSTRAINT customers_status_check;
ALTER TABLE tenant.customers ADD CONSTRAINT customers_status_check
    CHECK (status IN ('active', 'suspended', 'pending'));
ALTER TABLE tenant.customers ADD COLUMN approved_mail_at timestamptz;
ALTER TABLE tenant.customers ADD COLUMN welcome_mail_at timestamptz;

CREATE TABLE tenant.signups (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash     bytea       NOT NULL CHECK (octet_length(token_hash) = 32),
    email_hash     bytea       NOT NULL CHECK (octet_length(email_hash) = 32),
    address_hash   bytea       NOT NULL CHECK (octet_length(address_hash) = 32),
    email          text        CHECK (email IS NULL OR char_length(email) BETWEEN 3 AND 254),
    business_name  text        CHECK (business_name IS NULL OR char_length(business_name) BETWEEN 1 AND 200),
    contact_name   text,
    password_hash  text        CHECK (password_hash IS NULL OR password_hash LIKE '$argon2id$%'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    verified_at    timestamptz,
    -- Filled at verification and cleared together with it: a verified row keeps no personal data.
    CHECK ((verified_at IS NULL) = (email IS NOT NULL AND password_hash IS NOT NULL))
);
CREATE UNIQUE INDEX signups_token_hash_key ON tenant.signups (token_hash);
CREATE INDEX signups_by_address ON tenant.signups (address_hash, created_at);
CREATE INDEX signups_by_email ON tenant.signups (email_hash, created_at);
CREATE INDEX signups_by_time ON tenant.signups (created_at);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant.signups TO tenant_svc;

RESET ROLE;
