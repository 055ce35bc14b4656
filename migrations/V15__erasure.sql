-- V15: erasure and its record (issue 18, point 7).
--
-- What:
--   * `media.audit_log`: one row per export or erasure in media-svc (caller exports and erasures,
--     tenant erasures), like `memory.audit_log` (V3). The caller appears only as the keyed hash
--     tenants already see in webhook events (`hmac-sha256:` + HMAC-SHA256 of the number under
--     media-svc's caller-hash key); `actor` is the token's subject or issuer. Audit rows survive
--     the erasures they record; media-svc may only add and read them.
--   * `memory.erasures`: erasure markers. One row per erased caller (`subject_hash`, memory-svc's
--     audit hash) or per erased tenant (`subject_hash = ''`), with the time of the last erasure.
--     `RecordCall` of a call that began at or before that time is acknowledged and dropped, so a
--     post-call record queued or in flight when the caller (or tenant) was erased never puts the
--     caller's memory back. No raw number, no content: a hash and a time.
--   * `media.outbox` references its call (`ON DELETE CASCADE`), like transcript turns and webhook
--     events already do: erasing a call takes its queued post-call record with it, and a record
--     can no longer be queued for a call that is gone. `NOT VALID`: checked for every new row;
--     rows already there are not re-checked (erasures have always deleted a call's outbox rows
--     with it, so none should be orphaned, and a migration must not fail on one).
--   * `tenant.erasures`: the operator's tenant erasure (`DeleteCustomer`), one row per customer:
--     who asked and when, when media-svc and memory-svc confirmed their part, when tenant-svc's
--     own rows went, and what each service removed. The row is both the state of a fan-out that
--     failed part-way (`completed_at IS NULL`: a repeated DeleteCustomer resumes it) and the
--     record of the erasure, kept after the customer row is gone (no foreign key to it).
--
-- Why: same conventions as V1/V4 (customer_id first in every key, RLS enabled and forced with the
-- tenant policy bound to the owning service role, grants to that role only).

SET LOCAL ROLE neurosphere_owner;

CREATE TABLE media.audit_log (
    customer_id  bigint      NOT NULL CHECK (customer_id > 0),
    id           uuid        NOT NULL,
    action       text        NOT NULL CHECK (action IN ('export_caller', 'erase_caller', 'erase_tenant')),
    subject_hash text        NOT NULL DEFAULT '' CHECK (subject_hash ~ '^(hmac-sha256:[0-9a-f]{64})?$'),
    actor        text        NOT NULL CHECK (char_length(actor) BETWEEN 1 AND 200),
    counts       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, id)
);
CREATE INDEX audit_log_by_time ON media.audit_log (customer_id, created_at);

ALTER TABLE media.audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE media.audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_log_tenant ON media.audit_log
    TO media_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
GRANT SELECT, INSERT ON media.audit_log TO media_svc;

CREATE TABLE memory.erasures (
    customer_id  bigint      NOT NULL CHECK (customer_id > 0),
    subject_hash text        NOT NULL CHECK (subject_hash ~ '^([0-9a-f]{64})?$'),
    erased_at    timestamptz NOT NULL,
    PRIMARY KEY (customer_id, subject_hash)
);

ALTER TABLE memory.erasures ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory.erasures FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory.erasures
    TO memory_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
GRANT SELECT, INSERT, UPDATE ON memory.erasures TO memory_svc;

ALTER TABLE media.outbox
    ADD CONSTRAINT outbox_call_fkey FOREIGN KEY (customer_id, call_sid)
        REFERENCES media.calls (customer_id, call_sid) ON DELETE CASCADE NOT VALID;

CREATE TABLE tenant.erasures (
    customer_id      bigint      NOT NULL CHECK (customer_id > 0),
    requested_by     text        NOT NULL CHECK (char_length(requested_by) BETWEEN 1 AND 200),
    requested_at     timestamptz NOT NULL DEFAULT now(),
    media_erased_at  timestamptz,
    memory_erased_at timestamptz,
    completed_at     timestamptz,
    counts           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (customer_id)
);

ALTER TABLE tenant.erasures ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant.erasures FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant.erasures TO tenant_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
GRANT SELECT, INSERT, UPDATE ON tenant.erasures TO tenant_svc;

RESET ROLE;
