//! Twilio's REST API for numbers, with the platform's API key (HTTP basic, `SK...` and its
//! secret) on the platform account, never the auth token:
//! - `GET {api}/2010-04-01/Accounts/{AC}/AvailablePhoneNumbers/{Iso}/{Local|TollFree|Mobile}.json`
//!   (`AreaCode`, `Contains`, `InLocality`, `PageSize`; answer `available_phone_numbers`);
//! - `GET {pricing}/v1/PhoneNumbers/Countries/{Iso}` (`phone_number_prices[].number_type` /
//!   `current_price`, `price_unit`), read into integer minor units ([`parse_minor`]);
//! - `POST .../IncomingPhoneNumbers.json` (buy: `PhoneNumber`, `VoiceUrl`, `VoiceMethod`,
//!   `StatusCallback`, `StatusCallbackMethod`; 201 with the `sid`), `GET` of the same with
//!   `PhoneNumber=` (look one up) or paged by `next_page_uri` (list them all),
//!   `POST .../IncomingPhoneNumbers/{PN}.json` (update webhooks), `DELETE` of it (release, 204).
//!
//! Retries ([`Retry`]): a 429 is retried after its `Retry-After` (bounded) or a doubling pause,
//! for every request (Twilio did nothing); a 5xx, a timeout or a cut connection only for the
//! requests that are safe to repeat (GET, DELETE, and the webhook update, which sets the same
//! values again). A purchase is never repeated here: its caller looks the number up instead.
//!
//! Errors carry Twilio's code and its message sanitized (control characters, the secret and
//! anything that looks like a phone number removed); nothing here logs a number.

use std::time::Duration;

use mesh::domain::AccountSid;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

pub use super::wire::{
    AvailableNumber, IncomingNumber, Kind, Money, Search, Webhooks, parse_minor, redact_numbers,
};
use super::wire::{AvailablePage, ErrorBody, IncomingPage, PricePage};
use crate::twilio::sanitize_message;

/// Largest answer read (a page of numbers is tens of kB).
const MAX_BODY: usize = 1024 * 1024;

/// Where the numbers API is and how to authenticate.
#[derive(Clone)]
pub struct RestConfig {
    /// REST API base (`TWILIO_API_BASE_URL`).
    pub api_base_url: String,
    /// Pricing API base (`TWILIO_PRICING_BASE_URL`).
    pub pricing_base_url: String,
    /// The platform account (`TWILIO_ACCOUNT_SID`).
    pub account: AccountSid,
    /// API key sid (`TWILIO_API_KEY_SID`).
    pub key_sid: String,
    /// Its secret (`TWILIO_API_KEY_SECRET`).
    pub key_secret: SecretString,
    /// Time one request has.
    pub timeout: Duration,
    /// Retry pacing.
    pub retry: Retry,
}

impl std::fmt::Debug for RestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestConfig")
            .field("api_base_url", &self.api_base_url)
            .field("pricing_base_url", &self.pricing_base_url)
            .field("account", &self.account)
            .field("key_sid", &self.key_sid)
            .field("key_secret", &"<set>")
            .finish()
    }
}

/// How often and how long requests are retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all (the first included).
    pub attempts: u32,
    /// First pause; doubles after each attempt.
    pub base: Duration,
    /// Longest pause, also the cap on a `Retry-After`.
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_millis(200),
            max: Duration::from_secs(5),
        }
    }
}

/// What went wrong with a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RestError {
    /// Twilio answered with an error (4xx other than 429): its code and sanitized message.
    #[error("Twilio refused ({status}, code {code:?}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Twilio's error code.
        code: Option<i64>,
        /// Twilio's message, sanitized.
        message: String,
    },
    /// No usable answer (unreachable, timeout, cut, 5xx, 429s beyond the retries, an answer
    /// that is not what was asked for). For a purchase: whether it happened is unknown.
    #[error("{0}")]
    Unavailable(String),
}

impl RestError {
    /// Twilio's error code, when it refused.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Refused { code, .. } => *code,
            Self::Unavailable(_) => None,
        }
    }

    /// Whether Twilio answered 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Refused { status: 404, .. })
    }
}

/// The numbers client.
#[derive(Clone)]
pub struct RestClient {
    config: RestConfig,
    http: reqwest::Client,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.config.fmt(f)
    }
}

impl RestClient {
    /// A client; redirects are never followed (they must not carry the key anywhere else).
    pub fn new(config: RestConfig) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { config, http }
    }

    /// The platform account.
    pub fn account(&self) -> &AccountSid {
        &self.config.account
    }

    fn numbers_url(&self, rest: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/{rest}",
            self.config.api_base_url.trim_end_matches('/'),
            self.config.account.as_str()
        )
    }

    /// One request with the retries its kind allows; the answer's status and body.
    async fn send(
        &self,
        method: Method,
        url: &str,
        query: &[(&str, String)],
        form: Option<&[(&str, String)]>,
        safe: bool,
    ) -> Result<(StatusCode, Vec<u8>), RestError> {
        let retry = self.config.retry;
        let mut pause = retry.base;
        let mut attempt = 1;
        loop {
            let mut request = self
                .http
                .request(method.clone(), url)
                .basic_auth(
                    &self.config.key_sid,
                    Some(self.config.key_secret.expose_secret()),
                )
                .query(query);
            if let Some(form) = form {
                request = request.form(form);
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    match read_body(response).await {
                        Ok(body) => Ok((status, body, retry_after)),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(if e.is_timeout() {
                    "Twilio did not answer in time".to_owned()
                } else {
                    format!("Twilio request failed: {}", e.without_url())
                }),
            };
            let (wait, why) = match outcome {
                Ok((status, _, retry_after)) if status == StatusCode::TOO_MANY_REQUESTS => (
                    retry_after.unwrap_or(pause).min(retry.max),
                    "Twilio asked to slow down (429)".to_owned(),
                ),
                Ok((status, _, _)) if status.is_server_error() && safe => {
                    (pause, format!("Twilio answered {status}"))
                }
                Ok((status, body, _)) => return Ok((status, body)),
                Err(why) if safe => (pause, why),
                Err(why) => return Err(RestError::Unavailable(why)),
            };
            if attempt >= retry.attempts {
                return Err(RestError::Unavailable(why));
            }
            tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, reason = %why, "retrying Twilio request");
            tokio::time::sleep(wait).await;
            attempt += 1;
            pause = (pause * 2).min(retry.max);
        }
    }

    /// Decodes a 2xx answer as `T`; an error answer as [`RestError`].
    fn answer<T: for<'de> Deserialize<'de>>(
        &self,
        status: StatusCode,
        body: &[u8],
    ) -> Result<T, RestError> {
        if status.is_success() {
            return serde_json::from_slice(body).map_err(|_| {
                RestError::Unavailable(format!("Twilio answered {status} with an unreadable body"))
            });
        }
        Err(self.refusal(status, body))
    }

    fn refusal(&self, status: StatusCode, body: &[u8]) -> RestError {
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return RestError::Unavailable(format!("Twilio answered {status}"));
        }
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let code = parsed.as_ref().and_then(|e| e.code);
        let message = parsed
            .and_then(|e| e.message)
            .map(|m| {
                redact_numbers(&sanitize_message(
                    &m,
                    self.config.key_secret.expose_secret(),
                ))
            })
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("Twilio answered {status}"));
        RestError::Refused {
            status: status.as_u16(),
            code,
            message,
        }
    }

    /// Numbers on offer in `country` (ISO, upper case) of `kind`.
    pub async fn search(
        &self,
        country: &str,
        kind: Kind,
        search: &Search,
    ) -> Result<Vec<AvailableNumber>, RestError> {
        let url = self.numbers_url(&format!(
            "AvailablePhoneNumbers/{country}/{}.json",
            kind.path()
        ));
        let mut query = vec![("PageSize", search.limit.to_string())];
        for (name, value) in [
            ("AreaCode", &search.area_code),
            ("Contains", &search.contains),
            ("InLocality", &search.locality),
        ] {
            if let Some(v) = value {
                query.push((name, v.clone()));
            }
        }
        let (status, body) = self.send(Method::GET, &url, &query, None, true).await?;
        let page: AvailablePage = self.answer(status, &body)?;
        Ok(page.available_phone_numbers)
    }

    /// The monthly price of `kind` numbers in `country`; `Ok(None)` when Twilio lists none.
    pub async fn monthly_price(
        &self,
        country: &str,
        kind: Kind,
    ) -> Result<Option<Money>, RestError> {
        let url = format!(
            "{}/v1/PhoneNumbers/Countries/{country}",
            self.config.pricing_base_url.trim_end_matches('/')
        );
        let (status, body) = self.send(Method::GET, &url, &[], None, true).await?;
        let page: PricePage = self.answer(status, &body)?;
        let unit = page.price_unit.to_ascii_uppercase();
        let Ok(currency) = <[u8; 3]>::try_from(unit.as_bytes()) else {
            return Ok(None);
        };
        if !currency.iter().all(u8::is_ascii_uppercase) {
            return Ok(None);
        }
        Ok(page
            .phone_number_prices
            .iter()
            .find(|p| p.number_type.eq_ignore_ascii_case(kind.pricing()))
            .and_then(|p| p.current_price.as_deref().or(p.base_price.as_deref()))
            .and_then(|p| parse_minor(p, &unit))
            .map(|minor| Money { currency, minor }))
    }

    /// Buys `number` with our webhooks. Sent once: on [`RestError::Unavailable`] whether it
    /// happened is unknown and the caller looks the number up ([`Self::lookup`]).
    pub async fn purchase(
        &self,
        number: &str,
        hooks: &Webhooks,
    ) -> Result<IncomingNumber, RestError> {
        let url = self.numbers_url("IncomingPhoneNumbers.json");
        let mut form = vec![("PhoneNumber", number.to_owned())];
        form.extend(hooks.form());
        let (status, body) = self
            .send(Method::POST, &url, &[], Some(&form), false)
            .await?;
        self.answer(status, &body)
    }

    /// The account's number `number`, if it holds it.
    pub async fn lookup(&self, number: &str) -> Result<Option<IncomingNumber>, RestError> {
        let url = self.numbers_url("IncomingPhoneNumbers.json");
        let query = [("PhoneNumber", number.to_owned())];
        let (status, body) = self.send(Method::GET, &url, &query, None, true).await?;
        let page: IncomingPage = self.answer(status, &body)?;
        Ok(page
            .incoming_phone_numbers
            .into_iter()
            .find(|n| n.phone_number == number))
    }

    /// Every number on the account (following `next_page_uri`, at most 100 pages).
    pub async fn list_all(&self) -> Result<Vec<IncomingNumber>, RestError> {
        let mut url = self.numbers_url("IncomingPhoneNumbers.json");
        let mut query = vec![("PageSize", "1000".to_owned())];
        let mut all = Vec::new();
        for _ in 0..100 {
            let (status, body) = self.send(Method::GET, &url, &query, None, true).await?;
            let page: IncomingPage = self.answer(status, &body)?;
            all.extend(page.incoming_phone_numbers);
            match page.next_page_uri.filter(|u| u.starts_with('/')) {
                Some(next) => {
                    url = format!("{}{next}", self.config.api_base_url.trim_end_matches('/'));
                    query.clear();
                }
                None => return Ok(all),
            }
        }
        Err(RestError::Unavailable("Twilio's list did not end".into()))
    }

    /// Sets the number's webhooks to ours.
    pub async fn set_webhooks(
        &self,
        sid: &str,
        hooks: &Webhooks,
    ) -> Result<IncomingNumber, RestError> {
        let url = self.numbers_url(&format!("IncomingPhoneNumbers/{sid}.json"));
        let form = hooks.form();
        let (status, body) = self
            .send(Method::POST, &url, &[], Some(&form), true)
            .await?;
        self.answer(status, &body)
    }

    /// Releases the number; `Ok(())` also when Twilio no longer has it (404).
    pub async fn release(&self, sid: &str) -> Result<(), RestError> {
        let url = self.numbers_url(&format!("IncomingPhoneNumbers/{sid}.json"));
        let (status, body) = self.send(Method::DELETE, &url, &[], None, true).await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(self.refusal(status, &body))
    }
}

async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("Twilio's answer was cut: {}", e.without_url()))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err("Twilio's answer is too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
