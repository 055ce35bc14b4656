-- V3: memory-svc's tables: caller memories, caller profiles, call summaries, personality metrics
-- and averages (the five tables of the product doc), plus the audit log of exports and erasures.
--
-- What:
--   * Every table has `customer_id bigint NOT NULL`, a composite primary key starting with it,
--     ENABLE + FORCE ROW LEVEL SECURITY and a tenant policy
--     `USING (customer_id = app.current_customer_id()) WITH CHECK (same)`.
--   * Indexes for the service's queries: `(customer_id, user_id, created_at)` on memories (list,
--     newest first, and the enriched context), summaries by caller and date, a GIN full-text index
--     on summaries (SearchSummaries), and `expires_at` for the purge.
--   * `memory.purge_expired_memories()`: SECURITY DEFINER, returns only a count.
--   * `memory.audit_hash_key`: one random key (no customer_id) used to hash caller numbers in the
--     audit log when the operator does not configure MEMORY_AUDIT_HASH_KEY.
--
-- Why:
--   * The tenant policies are granted `TO memory_svc` (not PUBLIC) so that the owner role, which
--     the purge function runs as, gets only the purge policies below: it can see and delete rows
--     whose `expires_at` has passed, in every tenant, and nothing else. With the policies on
--     PUBLIC, the owner would also evaluate `app.current_customer_id()`, which raises without a
--     tenant. Every other role (no policy) sees nothing.
--   * `expires_at` is stored (computed by the service at insert as created_at + ttl_days) so that
--     "never return expired rows" is one indexed comparison, and the purge is an index range scan.
--   * The audit log keeps no raw caller number: `subject_hash` is an HMAC-SHA256 of the number.
--     Audit rows survive the erasures they record.

SET LOCAL ROLE neurosphere_owner;

-- Caller memories.
CREATE TABLE memory.memories (
    customer_id bigint NOT NULL CHECK (customer_id > 0),
    id uuid NOT NULL,
    user_id text NOT NULL CHECK (user_id ~ '^\+[1-9][0-9]{7,14}$'),
    type text NOT NULL CHECK (type IN ('person', 'preference', 'project', 'rule', 'moment', 'fact',
                                       'thread_recap', 'conversation', 'task')),
    key text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 200),
    value jsonb NOT NULL,
    scope text NOT NULL DEFAULT 'user' CHECK (scope IN ('user', 'shared')),
    source text NOT NULL DEFAULT '' CHECK (char_length(source) <= 200),
    ttl_days integer NOT NULL DEFAULT 365 CHECK (ttl_days BETWEEN 1 AND 3650),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (customer_id, id)
);
CREATE INDEX memories_by_caller ON memory.memories (customer_id, user_id, created_at DESC, id DESC);
CREATE INDEX memories_by_expiry ON memory.memories (expires_at);

-- What the tenant knows about each caller.
CREATE TABLE memory.caller_profiles (
    customer_id bigint NOT NULL CHECK (customer_id > 0),
    user_id text NOT NULL CHECK (user_id ~ '^\+[1-9][0-9]{7,14}$'),
    first_call_at timestamptz,
    last_call_at timestamptz,
    total_calls integer NOT NULL DEFAULT 0 CHECK (total_calls >= 0),
    preferred_name text NOT NULL DEFAULT '',
    preferences jsonb NOT NULL DEFAULT '{}'::jsonb,
    context jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, user_id)
);

-- One summary per call (CallSid unique per tenant: idempotent RecordCall).
CREATE TABLE memory.call_summaries (
    customer_id bigint NOT NULL CHECK (customer_id > 0),
    call_sid text NOT NULL CHECK (call_sid ~ '^CA[0-9a-fA-F]{32}$'),
    user_id text NOT NULL CHECK (user_id ~ '^\+[1-9][0-9]{7,14}$'),
    call_at timestamptz NOT NULL,
    summary text NOT NULL,
    key_topics jsonb NOT NULL DEFAULT '[]'::jsonb,
    key_variables jsonb NOT NULL DEFAULT '{}'::jsonb,
    sentiment text NOT NULL CHECK (sentiment IN ('positive', 'neutral', 'negative')),
    duration_seconds integer NOT NULL CHECK (duration_seconds BETWEEN 0 AND 86400),
    resolution_status text NOT NULL
        CHECK (resolution_status IN ('resolved', 'unresolved', 'follow_up', 'transferred')),
    summarizer text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, call_sid)
);
CREATE INDEX call_summaries_by_caller
    ON memory.call_summaries (customer_id, user_id, call_at DESC, call_sid DESC);
CREATE INDEX call_summaries_by_caller_created
    ON memory.call_summaries (customer_id, user_id, created_at);
CREATE INDEX call_summaries_fts
    ON memory.call_summaries USING gin (to_tsvector('english'::regconfig, summary));

-- Personality scores of each call.
CREATE TABLE memory.personality_metrics (
    customer_id bigint NOT NULL CHECK (customer_id > 0),
    call_sid text NOT NULL CHECK (call_sid ~ '^CA[0-9a-fA-F]{32}$'),
    user_id text NOT NULL CHECK (user_id ~ '^\+[1-9][0-9]{7,14}$'),
    measured_at timestamptz NOT NULL,
    openness smallint NOT NULL CHECK (openness BETWEEN 0 AND 100),
    conscientiousness smallint NOT NULL CHECK (conscientiousness BETWEEN 0 AND 100),
    extraversion smallint NOT NULL CHECK (extraversion BETWEEN 0 AND 100),
    agreeableness smallint NOT NULL CHECK (agreeableness BETWEEN 0 AND 100),
    neuroticism smallint NOT NULL CHECK (neuroticism BETWEEN 0 AND 100),
    formality smallint NOT NULL CHECK (formality BETWEEN 0 AND 100),
    directness smallint NOT NULL CHECK (directness BETWEEN 0 AND 100),
    detail_orientation smallint NOT NULL CHECK (detail_orientation BETWEEN 0 AND 100),
    patience smallint NOT NULL CHECK (patience BETWEEN 0 AND 100),
    technical_comfort smallint NOT NULL CHECK (technical_comfort BETWEEN 0 AND 100),
    frustration_level smallint NOT NULL CHECK (frustration_level BETWEEN 0 AND 100),
    satisfaction_level smallint NOT NULL CHECK (satisfaction_level BETWEEN 0 AND 100),
    urgency_level smallint NOT NULL CHECK (urgency_level BETWEEN 0 AND 100),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, call_sid)
);
CREATE INDEX personality_metrics_by_caller
    ON memory.personality_metrics (customer_id, user_id, measured_at DESC);

-- Running averages per caller (recomputed from personality_metrics by RecordCall).
CREATE TABLE memory.personality_averages (
    customer_id bigint NOT NULL CHECK (customer_id > 0),
    user_id text NOT NULL CHECK (user_id ~ '^\+[1-9][0-9]{7,14}$'),
    call_count integer NOT NULL CHECK (call_count >= 0),
    avg_openness double precision NOT NULL,
    avg_conscientiousness double precision NOT NULL,
    avg_extraversion double precision NOT NULL,
    avg_agreeableness double precision NOT NULL,
    avg_neuroticism double precision NOT NULL,
    avg_formality double precision NOT NULL,
    avg_directness double precision NOT NULL,
    avg_detail_orientation double precision NOT NULL,
    avg_patience double precision NOT NULL,
    avg_technical_comfort double precision NOT NULL,
    recent_frustration double precision NOT NULL,
    recent_satisfaction double precision NOT NULL,
    recent_urgency double precision NOT NULL,
    satisfaction_trend text NOT NULL CHECK (satisfaction_trend IN ('improving', 'stable', 'declining')),
    frustration_trend text NOT NULL CHECK (frustration_trend IN ('improving', 'stable', 'declining')),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, user_id)
);

-- Audit of exports and erasures. Never holds a raw caller number.
CREATE TABLE memory.audit_log (
    customer_id bigint NOT NULL CHECK (customer_id > 0),
    id uuid NOT NULL,
    action text NOT NULL CHECK (action IN ('export_caller', 'erase_caller', 'erase_tenant')),
    subject_hash text NOT NULL DEFAULT '',
    actor text NOT NULL,
    counts jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, id)
);
CREATE INDEX audit_log_by_time ON memory.audit_log (customer_id, created_at);

-- Row-level security: enabled, forced, one tenant policy per table for memory_svc.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['memories', 'caller_profiles', 'call_summaries', 'personality_metrics',
                             'personality_averages', 'audit_log'] LOOP
        EXECUTE format('ALTER TABLE memory.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE memory.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON memory.%I TO memory_svc '
            'USING (customer_id = app.current_customer_id()) '
            'WITH CHECK (customer_id = app.current_customer_id())',
            t
        );
    END LOOP;
END
$$;

GRANT SELECT, INSERT, DELETE ON memory.memories TO memory_svc;
GRANT SELECT, INSERT, UPDATE, DELETE ON memory.caller_profiles TO memory_svc;
GRANT SELECT, INSERT, DELETE ON memory.call_summaries TO memory_svc;
GRANT SELECT, INSERT, DELETE ON memory.personality_metrics TO memory_svc;
GRANT SELECT, INSERT, UPDATE, DELETE ON memory.personality_averages TO memory_svc;
-- Audit rows are append-only for the service.
GRANT SELECT, INSERT ON memory.audit_log TO memory_svc;

-- The purge runs as the owner and may touch expired memories only (see "Why" above). DELETE with
-- a WHERE clause also needs a SELECT policy.
CREATE POLICY purge_expired_select ON memory.memories FOR SELECT TO neurosphere_owner
    USING (expires_at <= now());
CREATE POLICY purge_expired_delete ON memory.memories FOR DELETE TO neurosphere_owner
    USING (expires_at <= now());

-- Deletes every expired memory of every tenant; returns how many. Reveals no tenant data.
CREATE FUNCTION memory.purge_expired_memories(batch_limit integer) RETURNS bigint
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH doomed AS (
        SELECT customer_id, id FROM memory.memories
        WHERE expires_at <= now()
        ORDER BY expires_at
        LIMIT batch_limit
    ), gone AS (
        DELETE FROM memory.memories m
        USING doomed d
        WHERE m.customer_id = d.customer_id AND m.id = d.id AND m.expires_at <= now()
        RETURNING 1
    )
    SELECT count(*) FROM gone
$$;
COMMENT ON FUNCTION memory.purge_expired_memories(integer) IS
    'Deletes up to batch_limit expired memories across tenants (row-level security lets the owner see only expired rows); returns the count.';
REVOKE ALL ON FUNCTION memory.purge_expired_memories(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.purge_expired_memories(integer) TO memory_svc;

-- Default key of the audit hash (a deployment-wide random secret; MEMORY_AUDIT_HASH_KEY overrides
-- it). 256 random bits from two version-4 UUIDs (gen_random_uuid is built in since PG 13).
CREATE TABLE memory.audit_hash_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key bytea NOT NULL CHECK (octet_length(key) >= 32)
);
INSERT INTO memory.audit_hash_key (key)
VALUES (decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
GRANT SELECT ON memory.audit_hash_key TO memory_svc;

-- Hot-path reads and the memory insert as PL/pgSQL functions (SECURITY INVOKER: they run as
-- memory_svc, under its tenant context and row-level security, exactly like the same query sent
-- directly). Why: PL/pgSQL caches its query plans per connection, and pooled connections live
-- long, so GetEnrichedContext and StoreMemory stop paying PostgreSQL's planning time on every
-- request (about half a millisecond per statement with RLS). LANGUAGE sql would be inlined into
-- the caller and re-planned, hence plpgsql.
CREATE FUNCTION memory.ctx_profile(p_customer bigint, p_user text)
    RETURNS SETOF memory.caller_profiles
    LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
BEGIN
    RETURN QUERY SELECT * FROM memory.caller_profiles p
        WHERE p.customer_id = p_customer AND p.user_id = p_user;
END
$$;

CREATE FUNCTION memory.ctx_averages(p_customer bigint, p_user text)
    RETURNS SETOF memory.personality_averages
    LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
BEGIN
    RETURN QUERY SELECT * FROM memory.personality_averages a
        WHERE a.customer_id = p_customer AND a.user_id = p_user;
END
$$;

CREATE FUNCTION memory.ctx_summaries(p_customer bigint, p_user text, p_limit bigint)
    RETURNS SETOF memory.call_summaries
    LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
BEGIN
    RETURN QUERY SELECT * FROM memory.call_summaries s
        WHERE s.customer_id = p_customer AND s.user_id = p_user
        ORDER BY s.call_at DESC, s.call_sid DESC LIMIT p_limit;
END
$$;

CREATE FUNCTION memory.ctx_memories(p_customer bigint, p_user text, p_limit bigint)
    RETURNS SETOF memory.memories
    LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
BEGIN
    RETURN QUERY SELECT * FROM memory.memories m
        WHERE m.customer_id = p_customer AND m.user_id = p_user AND m.expires_at > pg_catalog.now()
        ORDER BY m.created_at DESC, m.id DESC LIMIT p_limit;
END
$$;

CREATE FUNCTION memory.store_memory(p_customer bigint, p_id uuid, p_user text, p_type text,
                                    p_key text, p_value jsonb, p_scope text, p_source text,
                                    p_ttl_days integer)
    RETURNS SETOF memory.memories
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    r memory.memories%ROWTYPE;
BEGIN
    INSERT INTO memory.memories (customer_id, id, user_id, type, key, value, scope, source,
                                 ttl_days, created_at, expires_at)
    VALUES (p_customer, p_id, p_user, p_type, p_key, p_value, p_scope, p_source, p_ttl_days,
            pg_catalog.now(), pg_catalog.now() + pg_catalog.make_interval(days => p_ttl_days))
    RETURNING * INTO r;
    RETURN NEXT r;
END
$$;

GRANT EXECUTE ON FUNCTION memory.ctx_profile(bigint, text), memory.ctx_averages(bigint, text),
    memory.ctx_summaries(bigint, text, bigint), memory.ctx_memories(bigint, text, bigint),
    memory.store_memory(bigint, uuid, text, text, text, jsonb, text, text, integer)
    TO memory_svc;

RESET ROLE;
