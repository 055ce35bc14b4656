-- V20: call recordings at rest (issue 20, lane V).
--
-- What:
--   * `media.recording_keys`: each tenant's recording keys. A tenant key is 32 random bytes,
--     stored only wrapped (AES-256-GCM: 12-byte nonce, key, 16-byte tag) by the platform key of
--     `platform_version` (the setting MEDIA_RECORDING_KEYS, never in the database). The highest
--     `version` wraps the data keys of new recordings; older versions only unwrap. Deleting a
--     tenant's rows here makes every recording of that tenant unreadable (crypto-erasure), in
--     the object store and in any backup of it.
--   * `media.recordings`: one row per recording: its call, its kind (a call or a caller's
--     message), its data key wrapped by tenant key `key_version` (AAD: the recording id), the
--     segment size, and the spool/upload bookkeeping: `state` (`recording` while the call runs,
--     `spooled` when the sealed file waits in the spool for the uploader, `stored` once it is
--     in the object store), `truncated` (the spool filled up, or the writer fell behind, and the
--     recording stopped growing), `frames` (stereo frames at 8 kHz) and `object_bytes` (the
--     encrypted object's size). The audio itself is never in the database.
--   * `media.recording_keys_to_rewrap(integer, integer)`: the one cross-tenant read of key
--     rotation: the customer ids with a tenant key wrapped by an older platform key version. It
--     returns ids only; the rewrap itself runs in each tenant's own transaction.
--
-- Why: same conventions as V4/V15 (customer_id first in every key, RLS enabled and forced with
-- the tenant policy bound to media_svc, grants to media_svc only). A recording row belongs to
-- its call (`ON DELETE CASCADE`): erasing a call destroys its recording's data key with it.

SET LOCAL ROLE neurosphere_owner;

CREATE TABLE media.recording_keys (
    customer_id      bigint      NOT NULL CHECK (customer_id > 0),
    version          integer     NOT NULL CHECK (version > 0),
    platform_version integer     NOT NULL CHECK (platform_version > 0),
    wrapped          bytea       NOT NULL CHECK (octet_length(wrapped) = 60),
    created_at       timestamptz NOT NULL DEFAULT now(),
    rewrapped_at     timestamptz,
    PRIMARY KEY (customer_id, version)
);
CREATE INDEX recording_keys_platform_idx ON media.recording_keys (platform_version);

CREATE TABLE media.recordings (
    customer_id    bigint      NOT NULL CHECK (customer_id > 0),
    id             uuid        NOT NULL,
    call_sid       text        NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('call', 'message')),
    key_version    integer     NOT NULL CHECK (key_version > 0),
    wrapped_key    bytea       NOT NULL CHECK (octet_length(wrapped_key) = 60),
    segment_frames integer     NOT NULL CHECK (segment_frames > 0),
    state          text        NOT NULL DEFAULT 'recording'
                               CHECK (state IN ('recording', 'spooled', 'stored')),
    truncated      boolean     NOT NULL DEFAULT false,
    frames         bigint      NOT NULL DEFAULT 0 CHECK (frames >= 0),
    duration_ms    bigint      GENERATED ALWAYS AS (frames / 8) STORED,
    object_bytes   bigint      NOT NULL DEFAULT 0 CHECK (object_bytes >= 0),
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    stored_at      timestamptz,
    PRIMARY KEY (customer_id, id),
    FOREIGN KEY (customer_id, call_sid) REFERENCES media.calls (customer_id, call_sid) ON DELETE CASCADE
);
CREATE INDEX recordings_call_idx ON media.recordings (customer_id, call_sid);
CREATE INDEX recordings_started_idx ON media.recordings (customer_id, started_at);

ALTER TABLE media.recording_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE media.recording_keys FORCE ROW LEVEL SECURITY;
ALTER TABLE media.recordings ENABLE ROW LEVEL SECURITY;
ALTER TABLE media.recordings FORCE ROW LEVEL SECURITY;

CREATE POLICY recording_keys_tenant ON media.recording_keys
    TO media_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
CREATE POLICY recordings_tenant ON media.recordings
    TO media_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());

-- What `media.recording_keys_to_rewrap` (running as the owner) may see across tenants: which
-- keys exist and under which platform version (it returns customer ids only).
CREATE POLICY recording_keys_owner_rewrap_scan ON media.recording_keys
    FOR SELECT TO neurosphere_owner
    USING (true);

GRANT SELECT, INSERT, UPDATE, DELETE ON media.recording_keys TO media_svc;
GRANT SELECT, INSERT, UPDATE, DELETE ON media.recordings TO media_svc;

-- Tenants holding a key wrapped by a platform key older than `current_version`. Ids only.
CREATE FUNCTION media.recording_keys_to_rewrap(current_version integer, max_tenants integer)
    RETURNS TABLE (customer_id bigint)
    LANGUAGE sql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT k.customer_id
    FROM media.recording_keys k
    WHERE k.platform_version < current_version
    ORDER BY k.customer_id
    LIMIT max_tenants
$$;

REVOKE ALL ON FUNCTION media.recording_keys_to_rewrap(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION media.recording_keys_to_rewrap(integer, integer) TO media_svc;

RESET ROLE;
