//! What the caller has heard of the agent, and what to do when they speak over it.
//!
//! Every chunk of agent audio goes to the edge followed by a mark (`m1`, `m2`, ...), and Twilio
//! echoes a mark once the audio before it has played; the marks not yet echoed are audio the
//! caller has not heard yet. When the backend reports the caller speaking while such marks are
//! pending, it is a barge-in: the edge is told to `clear` its buffer, and the backend to truncate
//! the agent's current item at the audio actually heard (the latest caller media time minus the
//! media time when the item's first audio went out). Audio of that item that arrives later is
//! dropped, so the caller never hears the rest of a cut answer. Kept apart from the driver so
//! that these rules are plain state with tests of their own.

use std::collections::VecDeque;

/// The barge-in and mark state of one call.
#[derive(Debug, Default)]
pub struct BargeIn {
    /// Marks sent and not yet echoed (non-empty: agent audio the caller has not heard).
    pending: VecDeque<String>,
    /// Marks sent so far (names them).
    marks_sent: u64,
    /// The backend item whose audio is going out.
    current_item: Option<String>,
    /// Caller media time when the current item's first audio went out.
    item_start_ms: u32,
    /// The item cut by the last barge-in: its late audio is dropped.
    truncated_item: Option<String>,
    /// The latest caller media time (ms since the stream started).
    media_ms: u32,
}

/// What a barge-in asks of the driver: `clear` to the edge, and, when an item was playing, its
/// truncation at what the caller heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The item to truncate and the milliseconds of it the caller heard.
    pub truncate: Option<(String, u32)>,
}

impl BargeIn {
    /// Caller audio with this media time arrived.
    pub fn caller_audio(&mut self, timestamp_ms: u32) {
        self.media_ms = self.media_ms.max(timestamp_ms);
    }

    /// Whether agent audio sent to the edge is still unheard.
    pub fn agent_unheard(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The latest caller media time: where transcript turns and system notes are placed.
    pub fn media_ms(&self) -> u32 {
        self.media_ms
    }

    /// Agent audio of `item_id` arrived. `None`: it belongs to the item a barge-in cut, drop it.
    /// Otherwise the name of the mark to send after it, now pending.
    pub fn agent_audio(&mut self, item_id: &str) -> Option<String> {
        if self.truncated_item.as_deref() == Some(item_id) {
            return None;
        }
        if self.current_item.as_deref() != Some(item_id) {
            self.current_item = Some(item_id.to_owned());
            self.item_start_ms = self.media_ms;
        }
        self.marks_sent += 1;
        let name = format!("m{}", self.marks_sent);
        self.pending.push_back(name.clone());
        Some(name)
    }

    /// Marks sent so far (the last one sent is `m<marks_sent>`).
    pub fn marks_sent(&self) -> u64 {
        self.marks_sent
    }

    /// The edge echoed a mark: it and every mark before it have played. Marks come back in
    /// order; an unknown one (e.g. echoed after a clear) is ignored.
    pub fn mark_played(&mut self, name: &str) {
        if let Some(pos) = self.pending.iter().position(|n| n == name) {
            self.pending.drain(..=pos);
        }
    }

    /// The caller started speaking. A barge-in ([`Cut`]) when agent audio is still unheard;
    /// `None` when the agent is silent (nothing to cut).
    pub fn speech_started(&mut self) -> Option<Cut> {
        if self.pending.is_empty() {
            return None;
        }
        self.pending.clear();
        let truncate = self.current_item.take().map(|item_id| {
            let heard_ms = self.media_ms.saturating_sub(self.item_start_ms);
            self.truncated_item = Some(item_id.clone());
            (item_id, heard_ms)
        });
        Some(Cut { truncate })
    }

    /// Where an agent transcript belongs: when its item started playing, else now.
    pub fn agent_turn_ms(&self) -> u32 {
        if self.current_item.is_some() {
            self.item_start_ms
        } else {
            self.media_ms
        }
    }

    /// A new backend session replaced the old one: nothing of the old one may still play.
    /// Returns whether unheard audio is pending, i.e. whether the edge must `clear`.
    pub fn session_replaced(&mut self) -> bool {
        let unheard = !self.pending.is_empty();
        self.pending.clear();
        self.current_item = None;
        unheard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_numbered_and_echoes_clear_them_in_order() {
        let mut b = BargeIn::default();
        assert_eq!(b.agent_audio("item_1").as_deref(), Some("m1"));
        assert_eq!(b.agent_audio("item_1").as_deref(), Some("m2"));
        assert_eq!(b.agent_audio("item_1").as_deref(), Some("m3"));
        // An echo of m2 means m1 played too; the caller has heard all but m3.
        b.mark_played("m2");
        b.mark_played("m9");
        assert!(b.speech_started().is_some(), "m3 is unheard");
        // All heard: speaking is no barge-in.
        assert_eq!(b.agent_audio("item_1").as_deref(), None, "item_1 was cut");
        assert_eq!(b.agent_audio("item_2").as_deref(), Some("m4"));
        b.mark_played("m4");
        assert_eq!(b.speech_started(), None);
    }

    #[test]
    fn a_barge_in_truncates_at_what_was_heard_and_drops_the_rest_of_the_item() {
        let mut b = BargeIn::default();
        b.caller_audio(100);
        b.agent_audio("item_1");
        b.caller_audio(600);
        // Out-of-order caller frames never move media time back.
        b.caller_audio(580);
        assert_eq!(
            b.agent_turn_ms(),
            100,
            "the agent's words start with its item"
        );
        let cut = b.speech_started().expect("unheard audio: a barge-in");
        assert_eq!(cut.truncate, Some(("item_1".to_owned(), 500)));
        // Late audio of the cut item is dropped; the next item plays.
        assert_eq!(b.agent_audio("item_1"), None);
        assert_eq!(b.agent_turn_ms(), 600);
        b.caller_audio(700);
        assert_eq!(b.agent_audio("item_2").as_deref(), Some("m2"));
        let cut = b.speech_started().unwrap();
        assert_eq!(cut.truncate, Some(("item_2".to_owned(), 0)));
    }

    #[test]
    fn a_new_session_forgets_the_old_ones_audio() {
        let mut b = BargeIn::default();
        assert!(!b.session_replaced(), "nothing pending: no clear");
        b.agent_audio("old_item");
        assert!(b.session_replaced(), "unheard audio: clear");
        assert_eq!(b.speech_started(), None, "nothing pending any more");
        // The new session's items play from the current media time.
        b.caller_audio(2000);
        b.agent_audio("new_item");
        assert_eq!(b.agent_turn_ms(), 2000);
    }
}
