-- V23: callback tasks (the messages callers leave when the agent cannot answer) and webhook
-- events of several types per call (issue 20, lane M).
--
-- What:
--   * `media.callback_tasks`: one row per call that left a message, keyed `(customer_id,
--     task_id)`, UNIQUE `(customer_id, call_sid)` (a call yields at most one task: the message
--     flow and the agent's `take_message` tool write the same row, so a finish retried through a
--     database restart, or a second `take_message`, never makes two). `caller` is spelled as on
--     `media.calls` (E.164, NULL when the network withheld it). `reason`: why the call was not
--     answered by the agent ('backend_down', 'busy', 'after_hours') or 'agent' (the agent took
--     it). `recording_id` names the message's recording (V20) when one was kept, `transcript`
--     what the caller said when available, `note` the agent's summary. `done_at` is set by the
--     portal's inbox. The row references its call with ON DELETE CASCADE, so erasing a caller or
--     a tenant takes their tasks with the calls (the erasure lists name the table too).
--   * `media.calls.message_flow`: why the call went to the message flow ('backend_down', 'busy',
--     'after_hours'); NULL when the agent answered it. A call answered at the tenant's limit
--     for the message flow is live with 'busy' (its stream ticket is the normal one; the call
--     driver reads the column), and the per-tenant cap on message-taking calls counts these.
--   * `media.webhook_events`: `event_type` ('call.completed' for today's post-call event, every
--     existing row and the column's default; 'message.created' for a callback task); `call_sid` becomes optional (an event
--     need not have a call); uniqueness is per `(customer_id, event_type, call_sid)` instead of
--     per call, so one call can have a `call.completed` and a `message.created` event, each once
--     however often its path runs.
--
-- Why: same conventions as V4/V10/V15 (customer_id first in every key, RLS enabled and forced
-- with the tenant policy bound to media_svc, grants to media_svc only). No SECURITY DEFINER
-- function: every read and write of a task is in its tenant's own transaction.

SET LOCAL ROLE neurosphere_owner;

CREATE TABLE media.callback_tasks (
    customer_id  bigint      NOT NULL CHECK (customer_id > 0),
    task_id      uuid        NOT NULL,
    call_sid     text        NOT NULL,
    caller       text,
    reason       text        NOT NULL CHECK (reason IN ('backend_down', 'busy', 'after_hours', 'agent')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    done_at      timestamptz,
    recording_id uuid,
    transcript   text        CHECK (char_length(transcript) <= 20000),
    note         text        NOT NULL DEFAULT '' CHECK (char_length(note) <= 4000),
    PRIMARY KEY (customer_id, task_id),
    UNIQUE (customer_id, call_sid),
    FOREIGN KEY (customer_id, call_sid) REFERENCES media.calls (customer_id, call_sid) ON DELETE CASCADE
);

-- The inbox: newest first, all or open only.
CREATE INDEX callback_tasks_newest_idx ON media.callback_tasks (customer_id, created_at DESC, task_id DESC);
CREATE INDEX callback_tasks_open_idx ON media.callback_tasks (customer_id, created_at DESC, task_id DESC)
    WHERE done_at IS NULL;
-- Caller erasure and export find a caller's tasks through their calls; this finds them directly.
CREATE INDEX callback_tasks_caller_idx ON media.callback_tasks (customer_id, caller);

ALTER TABLE media.callback_tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE media.callback_tasks FORCE ROW LEVEL SECURITY;
CREATE POLICY callback_tasks_tenant ON media.callback_tasks
    TO media_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON media.callback_tasks TO media_svc;

ALTER TABLE media.calls
    ADD COLUMN message_flow text CHECK (message_flow IN ('backend_down', 'busy', 'after_hours'));

ALTER TABLE media.webhook_events
    ADD COLUMN event_type text NOT NULL DEFAULT 'call.completed'
        CHECK (event_type IN ('call.completed', 'message.created')),
    ALTER COLUMN call_sid DROP NOT NULL,
    DROP CONSTRAINT webhook_events_customer_id_call_sid_key;
ALTER TABLE media.webhook_events
    ADD CONSTRAINT webhook_events_customer_id_event_type_call_sid_key
        UNIQUE (customer_id, event_type, call_sid);

RESET ROLE;
