-- V24: the caps on message-taking calls hold across media-svc replicas (issue 20, lane M).
--
-- What:
--   * `media.calls.message_flow_at`: when the call took its place under the caps on
--     message-taking calls (a busy call: at `RegisterCall`; a call whose agent failed, or after
--     hours: when it switched to the message flow). Set together with `message_flow` (V23), which
--     is now written when the place is taken, not when the call ends. A live call (status before
--     COMPLETED) whose `message_flow_at` is in the last 10 minutes holds a place; a message call
--     lasts at most the prompt and `message_max_seconds` (<= 300 s), so a row left live by a
--     replica that died mid-call stops counting after 10 minutes instead of holding a place
--     forever.
--   * `media.message_calls_in_progress(since)`: how many calls of ALL tenants hold a place
--     (live, `message_flow_at > since`). SECURITY DEFINER, a count only: the platform-wide cap is
--     checked against it from inside one tenant's transaction. The per-tenant count is a plain
--     query in the tenant's own transaction (RLS). Both are read, and the place taken, under one
--     advisory transaction lock (`media.message_calls`), so two replicas never both take the
--     last place.
--   * An index for the window: the platform-wide count reads only the calls that took a place in
--     the last minutes.
--
-- Why: same conventions as V22 (the definer function pins search_path, is not executable by
-- PUBLIC, is granted to media_svc only and is in mesh's allow-list; it reads `media.calls`
-- through V22's owner read policy `calls_owner_retention_scan`, which exists for definer
-- functions only).

SET LOCAL ROLE neurosphere_owner;

ALTER TABLE media.calls ADD COLUMN message_flow_at timestamptz;

CREATE INDEX calls_message_flow_at_idx ON media.calls (message_flow_at)
    WHERE message_flow_at IS NOT NULL;

-- Calls of all tenants holding a place under the message caps. A count only, never row
-- contents.
CREATE FUNCTION media.message_calls_in_progress(since timestamptz)
    RETURNS bigint
    LANGUAGE sql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*)
    FROM media.calls c
    WHERE c.message_flow_at IS NOT NULL
      AND c.message_flow_at > since
      AND c.status < 5
$$;

REVOKE ALL ON FUNCTION media.message_calls_in_progress(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION media.message_calls_in_progress(timestamptz) TO media_svc;

RESET ROLE;
