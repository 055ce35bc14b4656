//! Twilio REST, basic auth with the account sid and the auth token:
//! - redirecting a live call to `<Dial>` a transfer target
//!   (`POST {base}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json` with `Twiml`);
//! - creating an outbound call ([`create_call`]:
//!   `POST {base}/2010-04-01/Accounts/{AccountSid}/Calls.json`), which answers 201 with the new
//!   call's `sid`.
//!
//! Error texts never contain the auth token, and Twilio's own messages are sanitized before
//! they reach a client.

use std::sync::LazyLock;
use std::time::Duration;

use mesh::domain::{AccountSid, CallSid, PhoneNumber};
use secrecy::{ExposeSecret as _, SecretString};

/// Time Twilio has to answer one REST request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response body read from Twilio (its answers are a few kB).
const MAX_BODY: usize = 64 * 1024;

/// One client for every REST request (connection reuse, one TLS setup). Redirects are not
/// followed: Twilio's REST API does not redirect, and a redirect must not carry our credentials
/// anywhere else.
static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
});

/// Where Twilio's REST API is and how to authenticate.
#[derive(Clone)]
pub struct TwilioConfig {
    /// Base URL, e.g. `https://api.twilio.com` (tests: a local fake).
    pub base_url: String,
    /// Auth token; transfers and outbound calls fail without it.
    pub auth_token: Option<SecretString>,
    /// Platform account that places outbound calls from numbers without a subaccount.
    pub account_sid: Option<AccountSid>,
}

impl std::fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("base_url", &self.base_url)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "<set>"))
            .field("account_sid", &self.account_sid)
            .finish()
    }
}

/// XML-escapes text and attribute values.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The TwiML that dials `number` for at most `time_limit_secs` (Twilio hangs up the transfer at
/// the limit: a transfer cannot outlast the call's maximum duration).
pub fn dial_twiml(number: &PhoneNumber, time_limit_secs: u32) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Dial timeLimit=\"{}\"><Number>{}</Number></Dial></Response>",
        time_limit_secs.max(1),
        xml_escape(number.as_str())
    )
}

/// Redirects the call to dial `number` for at most `time_limit_secs`. The error text never
/// contains the token.
pub async fn redirect_to_dial(
    config: &TwilioConfig,
    account: &AccountSid,
    call: &CallSid,
    number: &PhoneNumber,
    time_limit_secs: u32,
) -> Result<(), String> {
    let twiml = dial_twiml(number, time_limit_secs);
    update_call(config, account, call, &[("Twiml", twiml.as_str())]).await
}

/// Ends a live call (`Status=completed`): a call past its maximum duration. The error text never
/// contains the token.
pub async fn complete_call(
    config: &TwilioConfig,
    account: &AccountSid,
    call: &CallSid,
) -> Result<(), String> {
    update_call(config, account, call, &[("Status", "completed")]).await
}

/// Updates a live call (Twilio's `POST .../Calls/{CallSid}.json`) with `form`. The error text
/// never contains the token.
async fn update_call(
    config: &TwilioConfig,
    account: &AccountSid,
    call: &CallSid,
    form: &[(&str, &str)],
) -> Result<(), String> {
    let token = config
        .auth_token
        .as_ref()
        .ok_or("TWILIO_AUTH_TOKEN is not set")?;
    let url = format!(
        "{}/2010-04-01/Accounts/{}/Calls/{}.json",
        config.base_url.trim_end_matches('/'),
        account.as_str(),
        call.as_str()
    );
    let response = reqwest::Client::new()
        .post(url)
        .basic_auth(account.as_str(), Some(token.expose_secret()))
        .form(form)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("Twilio request failed: {}", e.without_url()))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("Twilio answered {}", response.status()))
    }
}

/// What an outbound call is created with.
#[derive(Debug, Clone)]
pub struct CreateCall {
    /// The account that places it (the number's subaccount, else the platform account).
    pub account: AccountSid,
    /// The person to call.
    pub to: PhoneNumber,
    /// The tenant's number shown as caller id.
    pub from: PhoneNumber,
    /// Where Twilio fetches the TwiML once the callee answers (the gateway's voice webhook).
    pub url: String,
    /// Where Twilio posts status changes (the gateway's status webhook).
    pub status_callback: String,
    /// The longest the call may last once answered, in seconds (Twilio's `TimeLimit`).
    pub time_limit_secs: u32,
}

/// The events Twilio reports to the status callback of an outbound call.
pub const STATUS_CALLBACK_EVENTS: [&str; 4] = ["initiated", "ringing", "answered", "completed"];

/// Twilio's answer to a create-call request.
#[derive(Debug, Clone)]
pub struct CreatedCall {
    /// The new call's CallSid.
    pub sid: CallSid,
    /// Twilio's status of it, e.g. `queued`.
    pub status: String,
}

/// Why a call could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateCallError {
    /// Twilio refused the request (4xx): the message is Twilio's, sanitized.
    #[error("Twilio refused the call ({status}, code {code:?}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Twilio's error code, when it sent one.
        code: Option<i64>,
        /// Twilio's `message`, sanitized.
        message: String,
    },
    /// Twilio could not be reached, timed out, failed (5xx) or asked us to slow down (429).
    #[error("{0}")]
    Unavailable(String),
    /// Twilio answered 2xx but not with a call we can record (the call may exist).
    #[error("{0}")]
    BadAnswer(String),
}

/// Twilio's error body.
#[derive(serde::Deserialize)]
struct TwilioError {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

/// Twilio's answer to a create-call request (only what we use).
#[derive(serde::Deserialize)]
struct TwilioCall {
    sid: String,
    #[serde(default)]
    status: String,
}

/// Makes a third party's message safe to pass on: control characters become spaces, runs of
/// whitespace collapse, at most 300 characters, and a secret never appears in it.
pub fn sanitize_message(message: &str, secret: &str) -> String {
    let message = if secret.is_empty() {
        message.to_owned()
    } else {
        message.replace(secret, "[redacted]")
    };
    let cleaned: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.chars().count() > 300 {
        out = out.chars().take(300).collect::<String>() + "…";
    }
    out
}

async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading Twilio's answer failed: {}", e.without_url()))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err("Twilio's answer is too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The form of a create-call request: `To`, `From`, `Url`, `Method`, `StatusCallback`,
/// `StatusCallbackMethod`, `TimeLimit` and one `StatusCallbackEvent` per event.
pub fn create_call_form(call: &CreateCall) -> Vec<(&'static str, String)> {
    let mut form = vec![
        ("To", call.to.as_str().to_owned()),
        ("From", call.from.as_str().to_owned()),
        ("Url", call.url.clone()),
        ("Method", "POST".to_owned()),
        ("StatusCallback", call.status_callback.clone()),
        ("StatusCallbackMethod", "POST".to_owned()),
        ("TimeLimit", call.time_limit_secs.max(1).to_string()),
    ];
    form.extend(
        STATUS_CALLBACK_EVENTS
            .iter()
            .map(|e| ("StatusCallbackEvent", (*e).to_owned())),
    );
    form
}

/// Asks Twilio to place `call`. The caller has checked that the auth token is configured;
/// without one this fails as [`CreateCallError::Unavailable`].
pub async fn create_call(
    config: &TwilioConfig,
    call: &CreateCall,
) -> Result<CreatedCall, CreateCallError> {
    let token = config
        .auth_token
        .as_ref()
        .ok_or_else(|| CreateCallError::Unavailable("TWILIO_AUTH_TOKEN is not set".into()))?;
    let url = format!(
        "{}/2010-04-01/Accounts/{}/Calls.json",
        config.base_url.trim_end_matches('/'),
        call.account.as_str()
    );
    let response = CLIENT
        .post(url)
        .basic_auth(call.account.as_str(), Some(token.expose_secret()))
        .form(&create_call_form(call))
        .send()
        .await
        .map_err(|e| {
            let what = if e.is_timeout() {
                "timed out"
            } else {
                "failed"
            };
            CreateCallError::Unavailable(format!("Twilio request {what}: {}", e.without_url()))
        })?;
    let status = response.status();
    let body = read_body(response)
        .await
        .map_err(CreateCallError::Unavailable)?;
    if status.is_success() {
        let created: TwilioCall = serde_json::from_slice(&body).map_err(|_| {
            CreateCallError::BadAnswer(format!("Twilio answered {status} without a call"))
        })?;
        let sid = CallSid::parse(&created.sid).map_err(|_| {
            CreateCallError::BadAnswer(format!("Twilio answered {status} with an invalid sid"))
        })?;
        return Ok(CreatedCall {
            sid,
            status: created.status,
        });
    }
    if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
        let error: Option<TwilioError> = serde_json::from_slice(&body).ok();
        let code = error.as_ref().and_then(|e| e.code);
        let message = error
            .and_then(|e| e.message)
            .map(|m| sanitize_message(&m, token.expose_secret()))
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("Twilio answered {status}"));
        return Err(CreateCallError::Refused {
            status: status.as_u16(),
            code,
            message,
        });
    }
    Err(CreateCallError::Unavailable(format!(
        "Twilio answered {status}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_repeats_the_status_callback_event() {
        let call = CreateCall {
            account: AccountSid::parse(&format!("AC{:032x}", 1)).unwrap(),
            to: PhoneNumber::parse("+351912345678").unwrap(),
            from: PhoneNumber::parse("+14155550100").unwrap(),
            url: "https://edge.example/twilio/voice".into(),
            status_callback: "https://edge.example/twilio/status".into(),
            time_limit_secs: 3600,
        };
        let form = create_call_form(&call);
        let events: Vec<&str> = form
            .iter()
            .filter(|(k, _)| *k == "StatusCallbackEvent")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(events, ["initiated", "ringing", "answered", "completed"]);
        assert!(form.contains(&("To", "+351912345678".into())));
        assert!(form.contains(&("Method", "POST".into())));
        assert!(form.contains(&("TimeLimit", "3600".into())));
    }

    #[test]
    fn the_transfer_dial_has_a_time_limit() {
        let twiml = dial_twiml(&PhoneNumber::parse("+14158675309").unwrap(), 1800);
        assert!(
            twiml.contains("<Dial timeLimit=\"1800\"><Number>+14158675309</Number></Dial>"),
            "{twiml}"
        );
    }

    #[test]
    fn twilio_messages_are_sanitized() {
        assert_eq!(
            sanitize_message("bad\nnumber\u{7}  here  secret-token", "secret-token"),
            "bad number here [redacted]"
        );
        let long = "x".repeat(500);
        assert_eq!(sanitize_message(&long, "").chars().count(), 301);
    }
}
