-- V18: what the tenant portal's data pages need from memory-svc and media-svc.
--
-- What:
--   * `memory.caller_profiles.caller_ref`: an opaque id per caller profile (a random UUID), so the
--     portal addresses a caller in URLs without the phone number (`/portal/callers/<id>`). It is
--     unique per tenant only; under row-level security another tenant's id finds nothing, exactly
--     like an unknown one. A caller erased and met again gets a new id (the old one finds
--     nothing).
--   * `caller_profiles_by_ref`: `GetCaller` by that id.
--   * `caller_profiles_recent`: `ListCallers`, latest activity first (the last call, or the
--     profile's creation for a caller never recorded on a call), paginated by (activity,
--     caller_ref).
--   * `calls_created_covering`: the dashboard's counts (`GetCallStats`) read a range of one
--     tenant's calls by creation time with their status and duration from the index alone.
--
-- Why: no new table; the columns and indexes keep V3/V4's conventions (customer_id first in every
-- key; the tables' RLS and grants are unchanged).

SET LOCAL ROLE neurosphere_owner;

ALTER TABLE memory.caller_profiles
    ADD COLUMN caller_ref uuid NOT NULL DEFAULT gen_random_uuid();

CREATE UNIQUE INDEX caller_profiles_by_ref ON memory.caller_profiles (customer_id, caller_ref);
CREATE INDEX caller_profiles_recent
    ON memory.caller_profiles (customer_id, (coalesce(last_call_at, created_at)) DESC, caller_ref DESC);

CREATE INDEX calls_created_covering ON media.calls (customer_id, created_at)
    INCLUDE (status, duration_seconds);

RESET ROLE;
