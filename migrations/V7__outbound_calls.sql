-- V7: media-svc's outbound calls: what the agent presents as and was told on the calls a tenant
-- places, the indexes behind the per-tenant call limits, and the reservations that keep those
-- limits exact while Twilio is being asked to place a call.
--
-- What:
--   * `media.calls.persona`: the persona the agent presents as on an outbound call (one of the
--     tenant's allowed personas, at most 60 characters); empty for inbound calls and for outbound
--     calls that use the tenant's agent profile.
--   * `media.calls.context`: the free text the tenant's website sent with the request, markup and
--     control characters already stripped, at most 2,000 characters; given to the agent fenced as
--     data. It is tenant data like the rest of the row (erased with the call).
--   * `calls_in_progress_idx`: the calls that are not final yet (status < 5: initiated, queued,
--     ringing, in progress; see the proto's CallStatus), by tenant and creation time. It serves
--     the concurrent-call count and stays small because a call leaves it when it ends.
--   * `calls_outbound_idx`: outbound-api calls (direction = 2) by tenant and creation time, for the
--     rolling-hour count of placed calls.
--   * `media.outbound_reservations`: one row per outbound call being placed right now. The limit
--     check takes a per-tenant advisory lock, counts calls plus live reservations, inserts a
--     reservation and commits; Twilio is asked outside any transaction; the reservation is then
--     swapped for the call row (or deleted when Twilio refuses) in one transaction. So no
--     transaction, connection or lock is held while Twilio answers, yet a concurrent placement or
--     inbound registration of the same tenant sees the call being placed. A reservation counts for
--     one minute at most (Twilio's request times out after 10 s), so one left behind by a crash
--     cannot block a tenant; stale ones are deleted by the next placement of that tenant.
--
-- Why: same conventions as V4 (customer_id first in every key, RLS enabled and forced, grants to
-- media_svc only; see V1). The columns are NOT NULL with '' defaults so existing rows and inbound
-- registrations need no change.

SET LOCAL ROLE neurosphere_owner;

ALTER TABLE media.calls
    ADD COLUMN persona text NOT NULL DEFAULT '' CHECK (char_length(persona) <= 60),
    ADD COLUMN context text NOT NULL DEFAULT '' CHECK (char_length(context) <= 2000);

CREATE INDEX calls_in_progress_idx ON media.calls (customer_id, created_at)
    WHERE status < 5;
CREATE INDEX calls_outbound_idx ON media.calls (customer_id, created_at)
    WHERE direction = 2;

CREATE TABLE media.outbound_reservations (
    customer_id bigint      NOT NULL,
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, id)
);

CREATE INDEX outbound_reservations_recent_idx ON media.outbound_reservations (customer_id, created_at);

ALTER TABLE media.outbound_reservations ENABLE ROW LEVEL SECURITY;
ALTER TABLE media.outbound_reservations FORCE ROW LEVEL SECURITY;

CREATE POLICY outbound_reservations_tenant ON media.outbound_reservations
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());

GRANT SELECT, INSERT, DELETE ON media.outbound_reservations TO media_svc;

RESET ROLE;
