//! The tools the agent may call: `get_current_time` (at the business, in its time zone),
//! `take_message` (a callback task with the agent's summary, written when the call is finalised:
//! [`super::message`]) and `transfer_call` (by the keyword of one of the tenant's transfer rules, whose number must be in
//! the tenant's transfer regions and not of a restricted kind: Twilio REST redirects the live call
//! to dial the rule's number for at most the tenant's maximum call duration, and the call ends
//! here). Outputs are JSON text for the
//! backend; a failure is an output the agent can apologise for, never the end of the call.

use chrono::Utc;
use mesh::api::common::Speaker;
use mesh::api::tenant::AgentProfile;
use mesh::domain::{DialPolicy, PhoneNumber};

use super::{Call, End, TurnTx};
use crate::store::callback_tasks::{MAX_NOTE, Reason};
use crate::twilio;

/// The format of a local time told to the agent.
const TIME_FORMAT: &str = "%A %Y-%m-%d %H:%M";

/// A tool's output for a refusal.
fn refusal(error: &str) -> String {
    serde_json::json!({"ok": false, "error": error}).to_string()
}

impl Call {
    /// Runs a tool; returns its output and, for a completed transfer, the end of the call.
    pub(super) async fn tool(
        &mut self,
        profile: &AgentProfile,
        name: &str,
        arguments: &str,
        turns: &TurnTx,
    ) -> (String, Option<End>) {
        match name {
            "get_current_time" => (current_time(profile), None),
            "transfer_call" => self.transfer(profile, arguments, turns).await,
            "take_message" => (self.take_message(arguments, turns), None),
            other => {
                tracing::warn!(tool = %other.escape_debug(), "backend asked for an unknown tool");
                (refusal("unknown tool"), None)
            }
        }
    }

    /// `transfer_call`: the rule named by `{"keyword": ...}`, then Twilio's redirect.
    async fn transfer(
        &self,
        profile: &AgentProfile,
        arguments: &str,
        turns: &TurnTx,
    ) -> (String, Option<End>) {
        let keyword = serde_json::from_str::<serde_json::Value>(arguments)
            .ok()
            .and_then(|v| v.get("keyword").and_then(|k| k.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let rule = profile
            .transfer_rules
            .iter()
            .find(|r| r.keyword.eq_ignore_ascii_case(keyword.trim()));
        let Some(rule) = rule else {
            return (refusal("no transfer rule with that keyword"), None);
        };
        let Ok(number) = PhoneNumber::parse(&rule.number) else {
            tracing::error!("transfer rule has an invalid number");
            return (refusal("transfer target invalid"), None);
        };
        let time_limit = match self.transfer_allowed(&number).await {
            Ok(limit) => limit,
            Err(output) => return (output, None),
        };
        let redirected = twilio::redirect_to_dial(
            &self.rt.twilio,
            &self.account_sid,
            &self.call_sid,
            &number,
            time_limit,
        )
        .await;
        match redirected {
            Ok(()) => {
                metrics::counter!("media_transfers_total").increment(1);
                let _ = turns.send((
                    Speaker::System,
                    format!("[transferred to {} {}]", rule.keyword, number.as_str()),
                    self.barge.media_ms(),
                ));
                (String::new(), Some(End::Transfer(number)))
            }
            Err(e) => {
                tracing::error!(error = %e, "transfer failed");
                (
                    refusal("transfer failed, apologise and offer to take a message"),
                    None,
                )
            }
        }
    }
}

impl Call {
    /// `take_message`: `{"summary": ...}` becomes the call's callback task (reason `agent`) when
    /// the call is finalised; a second one in the same call is added to its note.
    fn take_message(&mut self, arguments: &str, turns: &TurnTx) -> String {
        let summary = serde_json::from_str::<serde_json::Value>(arguments)
            .ok()
            .and_then(|v| v.get("summary").and_then(|k| k.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let summary = summary.trim();
        if summary.is_empty() {
            return refusal("a summary of the message is required");
        }
        let taken = self
            .message
            .get_or_insert_with(|| super::message::TakenMessage::new(Reason::Agent));
        let note: String = summary.chars().take(MAX_NOTE).collect();
        if taken.note.is_empty() {
            taken.note = note;
        } else if taken.note.chars().count() + note.chars().count() < MAX_NOTE {
            taken.note = format!("{}\n{note}", taken.note);
        }
        metrics::counter!("media_messages_taken_by_agent_total").increment(1);
        let _ = turns.send((
            Speaker::System,
            "[message taken for a callback]".into(),
            self.barge.media_ms(),
        ));
        serde_json::json!({"ok": true}).to_string()
    }

    /// Toll fraud at dial time: the target must be in the tenant's transfer regions (its
    /// `transfer_regions`, else the regions of its own numbers) and not of a restricted kind it
    /// has not allowed, read fresh from tenant-svc (a rule saved before a region was removed, or
    /// a platform default rule, is checked too). Returns the transfer's time limit in seconds
    /// (the tenant's maximum call duration), or the tool output of a refusal. When tenant-svc
    /// cannot say in time, the transfer is refused (fail closed).
    async fn transfer_allowed(&self, number: &PhoneNumber) -> Result<u32, String> {
        let timeout = self.rt.peers.timeout();
        let (customer, settings) = tokio::join!(
            tokio::time::timeout(timeout, self.rt.peers.customer(self.customer)),
            tokio::time::timeout(timeout, self.rt.peers.outbound_settings(self.customer)),
        );
        let (Ok(Ok(customer)), Ok(Ok(settings))) = (customer, settings) else {
            tracing::warn!("transfer settings unavailable; transfer refused");
            return Err(refusal(
                "transfer unavailable right now, apologise and offer to take a message",
            ));
        };
        let settings = settings.settings.unwrap_or_default();
        let policy = DialPolicy::for_transfers(
            &settings.transfer_regions,
            &settings.allowed_number_types,
            customer.phone_numbers.iter().map(|n| n.number.as_str()),
        );
        if let Err(refused) = policy.check(number) {
            metrics::counter!("media_transfers_refused_total").increment(1);
            tracing::warn!(reason = %refused, "transfer target not allowed; transfer refused");
            return Err(refusal(
                "transfer target not allowed, apologise and offer to take a message",
            ));
        }
        let limit = self
            .rt
            .outbound
            .limits
            .max_call_for(settings.max_call_minutes);
        Ok(crate::outbound::secs(limit))
    }
}

/// `get_current_time`: now at the business (UTC when its time zone is unknown).
fn current_time(profile: &AgentProfile) -> String {
    let now = Utc::now();
    let local = match profile.time_zone.parse::<chrono_tz::Tz>() {
        Ok(tz) => now.with_timezone(&tz).format(TIME_FORMAT).to_string(),
        Err(_) => now.format(TIME_FORMAT).to_string(),
    };
    serde_json::json!({"time": local, "time_zone": profile.time_zone}).to_string()
}
