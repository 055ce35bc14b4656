-- V25: which owners were mailed about which callback task (issue 20, lane C: the e-mail to a
-- tenant's owners when a caller leaves a message).
--
-- What:
--   * `tenant.owner_notifications`: one row per (customer, task, owner) mailed, written right
--     after that owner's mail was accepted by the mail server (or written to the outbox folder).
--     `TenantAdminService.NotifyOwners` mails only the active owners without a row for the task,
--     so media-svc's retries (its outbox delivers the request until it is answered OK) never mail
--     an owner twice, and an owner a failed attempt missed is mailed on the next one. The task id
--     is media-svc's (`media.callback_tasks.task_id`); there is no foreign key across services.
--     The row holds ids only: no address, no caller, nothing of the message.
--
-- Why: same conventions as V16/V22 (customer_id first in every key, RLS enabled and forced with
-- the tenant policy bound to tenant_svc, grants to tenant_svc only, rows go with their customer
-- and their user: ON DELETE CASCADE). No SECURITY DEFINER function: every read and write is in
-- the tenant's own transaction.

SET LOCAL ROLE neurosphere_owner;

CREATE TABLE tenant.owner_notifications (
    customer_id bigint      NOT NULL,
    task_id     uuid        NOT NULL,
    user_id     bigint      NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, task_id, user_id),
    FOREIGN KEY (customer_id, user_id) REFERENCES tenant.users (customer_id, id) ON DELETE CASCADE
);

ALTER TABLE tenant.owner_notifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant.owner_notifications FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant.owner_notifications
    TO tenant_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
GRANT SELECT, INSERT, DELETE ON tenant.owner_notifications TO tenant_svc;

RESET ROLE;
