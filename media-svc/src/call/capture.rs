//! Recording a call under the tenant's policy: what is fed to the recording writer, and when.
//!
//! - OFF (also when the call-handling settings cannot be read): no writer, nothing recorded.
//! - ON: the writer is started with the call; the announcement plays before the agent greets,
//!   and the recording starts once the edge echoes the announcement's mark (the caller has heard
//!   it).
//! - ON_WITH_CONSENT: the announcement and the consent question play before the agent greets; no
//!   writer exists until the caller agrees (DTMF `1`, or a yes the agent confirms through
//!   `record_consent`), and the recording starts then. A refusal, or no answer by the end of the
//!   call, records nothing. The first answer stands and is kept on the call with its time.
//!
//! While recording, caller frames go to the writer at their media time, and agent audio only as
//! played ([`super::heard`]). Second 0 of the recording is the media time it began at (kept on
//! the call as `recording_offset_ms`, so transcript turns can be found in it): a recording begun
//! at the consent has no silence before it.

use mesh::api::tenant::RecordingPolicy;
use mesh::domain::{CallSid, CustomerId};

use super::heard::{AgentSink, Heard};
use crate::recording::{Recorder, RecordingKind, RecordingWriter};
use crate::store::consent::{Consent, Policy};

/// The name of the mark sent after the announcement (and the consent question).
pub const ANNOUNCEMENT_MARK: &str = "announcement";

/// The policy of a call from the tenant's setting (UNSPECIFIED or unknown: OFF).
pub fn policy_of(setting: RecordingPolicy) -> Policy {
    match setting {
        RecordingPolicy::On => Policy::On,
        RecordingPolicy::OnWithConsent => Policy::OnWithConsent,
        _ => Policy::Off,
    }
}

/// The recording state of one call.
pub(super) struct Capture {
    policy: Policy,
    /// The writer, once started (ON: at the start; ON_WITH_CONSENT: at the consent).
    writer: Option<RecordingWriter>,
    /// Whether audio goes to the writer now (the announcement was heard / the caller agreed).
    open: bool,
    /// The announcement's mark is pending: the caller is hearing it (no barge-in may clear it).
    announcing: bool,
    /// The caller's answer, once given.
    consent: Option<Consent>,
    /// Agent audio sent and not yet heard.
    heard: Heard,
    /// Media time the recording opened at, and the end of the audio written since.
    opened_ms: u32,
    end_ms: u32,
}

impl Capture {
    pub(super) fn new(policy: Policy) -> Self {
        Self {
            policy,
            writer: None,
            open: false,
            announcing: false,
            consent: None,
            heard: Heard::default(),
            opened_ms: 0,
            end_ms: 0,
        }
    }

    pub(super) fn policy(&self) -> Policy {
        self.policy
    }

    /// Whether the caller is asked for consent and has not answered yet.
    pub(super) fn awaiting_consent(&self) -> bool {
        self.policy == Policy::OnWithConsent && self.consent.is_none()
    }

    /// The caller's answer, once given.
    pub(super) fn consent(&self) -> Option<Consent> {
        self.consent
    }

    /// The announcement went to the edge (its mark pending).
    pub(super) fn announced(&mut self) {
        self.announcing = true;
    }

    /// Whether the caller is still hearing the announcement (barge-ins are not honoured: it
    /// must be heard whole).
    pub(super) fn announcing(&self) -> bool {
        self.announcing
    }

    /// The writer of a recorded call, started (ON: at the start, ON_WITH_CONSENT: at the
    /// consent). `None` from the recorder (recording off in this process, spool full) leaves
    /// the call unrecorded.
    pub(super) fn set_writer(&mut self, writer: Option<RecordingWriter>, open_at_ms: Option<u32>) {
        self.writer = writer;
        if let Some(ms) = open_at_ms {
            self.open_at(ms);
        }
    }

    fn open_at(&mut self, media_ms: u32) {
        if self.writer.is_some() && !self.open {
            self.open = true;
            self.opened_ms = media_ms;
            self.end_ms = media_ms;
            self.heard.start_at(media_ms);
        }
    }

    /// Where the recording begins in the call's media time (`None`: nothing recorded).
    pub(super) fn offset_ms(&self) -> Option<u32> {
        self.open.then_some(self.opened_ms)
    }

    /// The caller agreed or refused (the first answer stands): whether this answer is the one
    /// kept.
    pub(super) fn answer(&mut self, consent: Consent) -> bool {
        if !self.awaiting_consent() {
            return false;
        }
        self.consent = Some(consent);
        true
    }

    /// A caller frame at `media_ms` (per frame: no allocation).
    pub(super) fn caller(&mut self, media_ms: u32, mulaw: &[u8]) {
        if self.open
            && media_ms >= self.opened_ms
            && let Some(w) = &mut self.writer
        {
            w.caller(media_ms - self.opened_ms, mulaw);
            self.end_ms = self.end_ms.max(media_ms.saturating_add(ms_of(mulaw)));
        }
    }

    /// Agent audio sent to the edge at `media_ms`, followed by mark number `mark`.
    /// Kept from the writer's start on: under ON the greeting goes out while the announcement
    /// plays, and is heard after it.
    pub(super) fn agent_sent(&mut self, mark: u64, media_ms: u32, mulaw: &[u8]) {
        if self.writer.is_some() {
            self.heard.sent(mark, media_ms, mulaw);
        }
    }

    /// The edge echoed the mark `name` at caller media time `media_ms`.
    pub(super) fn mark_played(&mut self, name: &str, media_ms: u32) {
        if name == ANNOUNCEMENT_MARK {
            self.announcing = false;
            if self.policy == Policy::On {
                self.open_at(media_ms);
            }
            return;
        }
        let Some(n) = super::heard::mark_number(name) else {
            return;
        };
        if let Some(w) = &mut self.writer {
            let mut sink = Tracked {
                writer: w,
                origin_ms: self.opened_ms,
                end_ms: &mut self.end_ms,
            };
            self.heard.played(n, media_ms, &mut sink);
        }
    }

    /// The edge was cleared at `media_ms` (barge-in, new session).
    pub(super) fn cleared(&mut self, media_ms: u32) {
        match &mut self.writer {
            Some(w) => {
                let mut sink = Tracked {
                    writer: w,
                    origin_ms: self.opened_ms,
                    end_ms: &mut self.end_ms,
                };
                self.heard.cut(media_ms, &mut sink);
            }
            None => self.heard.clear(),
        }
    }

    /// The call ended: unheard agent audio is dropped; the writer (if any) and the seconds
    /// recorded.
    pub(super) fn end(&mut self) -> (Option<RecordingWriter>, u32) {
        self.heard.clear();
        let secs = if self.open {
            (self.end_ms.saturating_sub(self.opened_ms)).div_ceil(1000)
        } else {
            0
        };
        (self.writer.take(), secs)
    }
}

/// Milliseconds of mu-law.
fn ms_of(mulaw: &[u8]) -> u32 {
    (mulaw.len() / 8) as u32
}

/// The writer seen from the call's media time: second 0 of the recording is `origin_ms`, and
/// the end of what was written is noted.
struct Tracked<'a> {
    writer: &'a mut RecordingWriter,
    origin_ms: u32,
    end_ms: &'a mut u32,
}

impl AgentSink for Tracked<'_> {
    fn agent(&mut self, media_ms: u32, mulaw: &[u8]) {
        // `Heard` places nothing before the origin (`start_at`).
        self.writer
            .agent(media_ms.saturating_sub(self.origin_ms), mulaw);
        *self.end_ms = (*self.end_ms).max(media_ms.saturating_add(ms_of(mulaw)));
    }
}

/// Starts a writer for the call (`None` when the recorder declines; an error is logged and
/// leaves the call unrecorded, never fails it).
pub(super) async fn start_writer(
    recorder: &Recorder,
    customer: CustomerId,
    call_sid: &CallSid,
) -> Option<RecordingWriter> {
    match recorder
        .start(customer, call_sid, RecordingKind::Call)
        .await
    {
        Ok(w) => w,
        Err(e) => {
            metrics::counter!("media_recording_start_failures_total").increment(1);
            tracing::error!(error = %e, "recording not started; the call goes on unrecorded");
            None
        }
    }
}
