-- V19: what the tenant portal's webhooks page shows of each delivery (issue 19).
--
-- What:
--   * `media.webhook_events.last_response_code`: the HTTP status the receiver gave the last
--     attempt (NULL when no answer came: a connection error, a timeout, a refused destination,
--     or no attempt yet). `last_error` already says what went wrong, as text.
--   * `media.webhook_events.last_attempt_at`: when the last attempt ended.
--   * An index for `ListWebhookDeliveries`: a tenant's events, newest first.
--
-- Why: the owner of a webhook needs to see, per event, whether it arrived, how often it was
-- tried and what their endpoint answered. Nothing here is new data about callers: a status code
-- and a time per event. RLS, grants and the policy of the table are unchanged (V10).

SET LOCAL ROLE neurosphere_owner;

ALTER TABLE media.webhook_events
    ADD COLUMN last_response_code smallint CHECK (last_response_code BETWEEN 100 AND 599),
    ADD COLUMN last_attempt_at    timestamptz;

CREATE INDEX webhook_events_recent_idx
    ON media.webhook_events (customer_id, created_at DESC, event_id DESC);

RESET ROLE;
