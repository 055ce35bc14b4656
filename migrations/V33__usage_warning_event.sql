-- V33: the `usage.warning` webhook event (issue 21): when a finalised call takes a tenant past
-- 80 % of a monthly cap of its package, media-svc queues one `usage.warning` event (once per
-- tenant, month and cap: `media.cap_notices`, V29, records it in the same transaction) on the
-- existing `media.webhook_events` model, keyed to the call that crossed the threshold.
--
-- What: `media.webhook_events.event_type` accepts 'usage.warning' besides 'call.completed' and
-- 'message.created' (V23).
--
-- Why: same conventions as V23; no new table, grant or function.

SET LOCAL ROLE neurosphere_owner;

ALTER TABLE media.webhook_events
    DROP CONSTRAINT webhook_events_event_type_check;
ALTER TABLE media.webhook_events
    ADD CONSTRAINT webhook_events_event_type_check
        CHECK (event_type IN ('call.completed', 'message.created', 'usage.warning'));

RESET ROLE;
