-- V21: recording policy and consent on each call, recorded time in usage (issue 20, lane C).
--
-- What:
--   * `media.calls.recording_policy`: the tenant's recording policy as the call started
--     ('' = not read: calls before V21; 'off', 'on', 'on_with_consent'). The policy can change
--     later; the call keeps the one it ran under, so the owner can tell why it was or was not
--     recorded.
--   * `media.calls.recording_consent` and `recording_consent_at`: under 'on_with_consent', the
--     caller's answer ('agreed' by DTMF 1 or a spoken yes the agent confirmed, 'declined', or
--     'no_answer' when the call ended unanswered) and when it was given (for 'no_answer': the
--     end of the call). '' when no question was asked.
--   * `media.calls.recorded_seconds`: seconds of audio recorded, set once at the end of the call
--     (NULL until then; the guard that counts them in usage exactly once).
--   * `media.calls.recording_offset_ms`: the call's media time (ms since its stream started, the
--     time base of transcript turns' `offset_ms`) at which its recording begins (ON: once the
--     announcement was heard; ON_WITH_CONSENT: at the consent). Second 0 of the recording is
--     this point of the call, so a transcript turn plays at `offset_ms - recording_offset_ms`.
--   * `media.usage_monthly.recorded_seconds` / `recorded_minutes`: recorded audio per tenant and
--     month (each call's recording rounded up to a whole minute).
--
-- Why: a regulator asks "was this caller told, did they agree, and when"; the answer must live
-- with the call, under the call's RLS, and go when the call goes (erasure, retention delete the
-- row). Nothing here is new data about the caller beyond their yes or no. RLS, grants and the
-- policies of both tables are unchanged (V4); no new function.

SET LOCAL ROLE neurosphere_owner;

ALTER TABLE media.calls
    ADD COLUMN recording_policy text NOT NULL DEFAULT ''
        CHECK (recording_policy IN ('', 'off', 'on', 'on_with_consent')),
    ADD COLUMN recording_consent text NOT NULL DEFAULT ''
        CHECK (recording_consent IN ('', 'agreed', 'declined', 'no_answer')),
    ADD COLUMN recording_consent_at timestamptz,
    ADD COLUMN recorded_seconds integer CHECK (recorded_seconds >= 0),
    ADD COLUMN recording_offset_ms bigint CHECK (recording_offset_ms >= 0),
    ADD CONSTRAINT calls_consent_has_time
        CHECK ((recording_consent = '') = (recording_consent_at IS NULL));

ALTER TABLE media.usage_monthly
    ADD COLUMN recorded_seconds bigint NOT NULL DEFAULT 0,
    ADD COLUMN recorded_minutes bigint NOT NULL DEFAULT 0;

RESET ROLE;
