//! Twilio REST: redirecting a live call to `<Dial>` a transfer target
//! (`POST {base}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json` with `Twiml`, basic auth
//! with the account sid and the auth token).

use mesh::domain::{AccountSid, CallSid, PhoneNumber};
use secrecy::{ExposeSecret as _, SecretString};

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

/// The TwiML that dials `number`.
pub fn dial_twiml(number: &PhoneNumber) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Dial><Number>{}</Number></Dial></Response>",
        xml_escape(number.as_str())
    )
}

/// Redirects the call to dial `number`. The error text never contains the token.
pub async fn redirect_to_dial(
    config: &TwilioConfig,
    account: &AccountSid,
    call: &CallSid,
    number: &PhoneNumber,
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
        .form(&[("Twiml", dial_twiml(number))])
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
