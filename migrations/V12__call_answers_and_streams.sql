-- V12: media-svc decides the answer to a call once, and a call streams once.
--
-- What:
--   * `media.calls.ticket_issued_at`: when the call was first answered with `<Connect><Stream>`.
--     It is the `iat` of the call's stream ticket (valid for 2 minutes from then), so every
--     repeat of the voice webhook (Twilio's retry, a replay, another gateway replica, a gateway
--     restarted in between) is answered with the identical ticket and never a new one. NULL for
--     calls never answered with a stream (refused, or placed and not yet picked up).
--   * `media.calls.stream_started_at`: when `StreamCall` started the call's one stream. A
--     second `start` for the call is refused, so a replayed `start` cannot open a second AI
--     session primed with the caller's memory. (`stream_sid` is bound earlier, by the first
--     `OpenStream`; another StreamSid is refused there.)
--   A call refused at the tenant's concurrent-call limit is recorded too: a row with final
--   status BUSY and end reason `call-limit`, so a repeat of its webhook gets the busy answer
--   again. Its usage is not counted.
--
-- Why: the call row is the record of what the edge answered (the gateway keeps no state), and
-- both columns are tenant data of the row (RLS, grants and keys as in V4; nothing new to grant).

SET LOCAL ROLE neurosphere_owner;

ALTER TABLE media.calls
    ADD COLUMN ticket_issued_at  timestamptz,
    ADD COLUMN stream_started_at timestamptz;

RESET ROLE;
