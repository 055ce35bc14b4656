//! A fake of Twilio's REST API for the numbers tests (media-svc's and the end-to-end ones),
//! speaking its wire format: form bodies in, JSON out, HTTP basic auth, Twilio's error bodies
//! (`{code, message, more_info, status}`). Two loopback listeners, one per host: the REST API
//! (`api.twilio.com`: `AvailablePhoneNumbers`, `IncomingPhoneNumbers`) and the Pricing API
//! (`pricing.twilio.com`: `/v1/PhoneNumbers/Countries/{Iso}`).
//!
//! Only the API key (`SK...` and its secret) is accepted; the account's auth token is refused
//! (401, code 20003), as is anything else. What the tests steer: the numbers on offer
//! ([`FakeTwilio::offer`]), the account's own numbers ([`FakeTwilio::own`]), a switch that buys
//! the next purchase and then cuts the connection before the answer
//! ([`FakeTwilio::drop_next_purchase_answers`]), 429s ([`FakeTwilio::too_many_requests`]), a
//! delay on list requests ([`FakeTwilio::delay_lists`]), changes behind the platform's back
//! ([`FakeTwilio::set_voice_url`], [`FakeTwilio::remove`]) and the record of every request
//! ([`FakeTwilio::requests`], [`FakeTwilio::purchases`]).
//!
//! Defaults: US local numbers `+14155550100`..`+14155550104` (San Francisco, CA), US toll-free
//! `+18005550100`; Canada is a known country with nothing on offer; prices US local `1.15`,
//! toll free `2.15`, USD. Any other country is unknown (404, code 20404).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

mod handlers;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `api` or `pricing`.
    pub host: &'static str,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query parameters.
    pub query: Vec<(String, String)>,
    /// Form fields of the body.
    pub form: Vec<(String, String)>,
}

impl Recorded {
    /// The first value of a form field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A number on offer.
#[derive(Debug, Clone)]
pub struct Offered {
    /// ISO country.
    pub country: String,
    /// `Local`, `TollFree` or `Mobile`.
    pub kind: String,
    /// E.164.
    pub phone_number: String,
    /// City.
    pub locality: String,
    /// Region (state).
    pub region: String,
}

/// A number on the account (an IncomingPhoneNumber).
#[derive(Debug, Clone)]
pub struct Owned {
    /// `PN` + 32 hex.
    pub sid: String,
    /// E.164.
    pub phone_number: String,
    /// Where calls go.
    pub voice_url: String,
    /// `POST` or `GET`.
    pub voice_method: String,
    /// Status callback.
    pub status_callback: String,
    /// Its method.
    pub status_callback_method: String,
}

/// A country's prices: (ISO country, unit, [(number_type, current_price)]).
type CountryPrices = (String, String, Vec<(String, String)>);

#[derive(Default)]
struct State_ {
    offered: Vec<Offered>,
    prices: Vec<CountryPrices>,
    known_countries: Vec<String>,
    owned: Vec<Owned>,
    requests: Vec<Recorded>,
    drop_purchase_answers: u32,
    too_many: u32,
    retry_after: Option<u64>,
    list_delay: Duration,
    next_sid: u64,
}

type Shared = Arc<Mutex<State_>>;

#[derive(Clone)]
struct Ctx {
    state: Shared,
    host: &'static str,
    account_sid: String,
    key_sid: String,
    key_secret: String,
}

/// The fake, serving until dropped.
pub struct FakeTwilio {
    /// Base URL of the REST API host (`TWILIO_API_BASE_URL`).
    pub api_url: String,
    /// Base URL of the Pricing API host (`TWILIO_PRICING_BASE_URL`).
    pub pricing_url: String,
    /// The account (`TWILIO_ACCOUNT_SID`).
    pub account_sid: String,
    /// The API key (`TWILIO_API_KEY_SID`).
    pub key_sid: String,
    /// Its secret (`TWILIO_API_KEY_SECRET`).
    pub key_secret: String,
    /// The account's auth token, which the fake refuses for REST calls.
    pub auth_token: String,
    state: Shared,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State_> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeTwilio {
    /// Starts both hosts on loopback ports with the default offer and prices.
    pub async fn start() -> FakeTwilio {
        let mut state = State_ {
            known_countries: vec!["US".into(), "CA".into()],
            prices: vec![(
                "US".into(),
                "USD".into(),
                vec![
                    ("local".into(), "1.15".into()),
                    ("toll free".into(), "2.15".into()),
                ],
            )],
            next_sid: 1,
            ..State_::default()
        };
        for n in 0..5 {
            state.offered.push(Offered {
                country: "US".into(),
                kind: "Local".into(),
                phone_number: format!("+1415555010{n}"),
                locality: "San Francisco".into(),
                region: "CA".into(),
            });
        }
        state.offered.push(Offered {
            country: "US".into(),
            kind: "TollFree".into(),
            phone_number: "+18005550100".into(),
            locality: String::new(),
            region: String::new(),
        });
        let state: Shared = Arc::new(Mutex::new(state));
        let account_sid = format!("AC{:032x}", 0xfa_4e_u64);
        let key_sid = format!("SK{:032x}", 0x4e_u64);
        let key_secret = "fake-api-key-secret".to_owned();
        let auth_token = "fake-account-auth-token".to_owned();
        let mut tasks = Vec::new();
        let mut urls = Vec::new();
        for host in ["api", "pricing"] {
            let ctx = Ctx {
                state: state.clone(),
                host,
                account_sid: account_sid.clone(),
                key_sid: key_sid.clone(),
                key_secret: key_secret.clone(),
            };
            let app = axum::Router::new()
                .fallback(handlers::handle)
                .with_state(ctx);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind fake Twilio");
            urls.push(format!("http://{}", listener.local_addr().expect("addr")));
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }));
        }
        FakeTwilio {
            pricing_url: urls.pop().expect("two"),
            api_url: urls.pop().expect("two"),
            account_sid,
            key_sid,
            key_secret,
            auth_token,
            state,
            tasks,
        }
    }

    /// Offers `phone_number` (country `country`, kind `Local`/`TollFree`/`Mobile`).
    pub fn offer(&self, country: &str, kind: &str, phone_number: &str, locality: &str) {
        let mut s = lock(&self.state);
        if !s.known_countries.iter().any(|c| c == country) {
            s.known_countries.push(country.to_owned());
        }
        s.offered.push(Offered {
            country: country.to_owned(),
            kind: kind.to_owned(),
            phone_number: phone_number.to_owned(),
            locality: locality.to_owned(),
            region: String::new(),
        });
    }

    /// Puts `phone_number` on the account (bought elsewhere) with `voice_url` and
    /// `status_callback` (both methods POST); returns its sid.
    pub fn own(&self, phone_number: &str, voice_url: &str, status_callback: &str) -> String {
        let mut s = lock(&self.state);
        s.offered.retain(|o| o.phone_number != phone_number);
        let sid = format!("PN{:032x}", s.next_sid);
        s.next_sid += 1;
        s.owned.push(Owned {
            sid: sid.clone(),
            phone_number: phone_number.to_owned(),
            voice_url: voice_url.to_owned(),
            voice_method: "POST".into(),
            status_callback: status_callback.to_owned(),
            status_callback_method: "POST".into(),
        });
        sid
    }

    /// The next `n` purchases are made and then their answer is lost (the connection is cut
    /// before the body).
    pub fn drop_next_purchase_answers(&self, n: u32) {
        lock(&self.state).drop_purchase_answers = n;
    }

    /// The next `n` requests to the REST host are answered 429 (code 20429), with `Retry-After`
    /// when given.
    pub fn too_many_requests(&self, n: u32, retry_after_secs: Option<u64>) {
        let mut s = lock(&self.state);
        s.too_many = n;
        s.retry_after = retry_after_secs;
    }

    /// Every later list of the account's numbers waits `delay` before answering.
    pub fn delay_lists(&self, delay: Duration) {
        lock(&self.state).list_delay = delay;
    }

    /// Changes a number's VoiceUrl behind the platform's back.
    pub fn set_voice_url(&self, phone_number: &str, url: &str) {
        let mut s = lock(&self.state);
        for o in s
            .owned
            .iter_mut()
            .filter(|o| o.phone_number == phone_number)
        {
            o.voice_url = url.to_owned();
        }
    }

    /// Removes a number from the account behind the platform's back.
    pub fn remove(&self, phone_number: &str) {
        lock(&self.state)
            .owned
            .retain(|o| o.phone_number != phone_number);
    }

    /// The account's numbers now.
    pub fn owned(&self) -> Vec<Owned> {
        lock(&self.state).owned.clone()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// The purchases received (`POST .../IncomingPhoneNumbers.json`).
    pub fn purchases(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/IncomingPhoneNumbers.json"))
            .collect()
    }

    /// The releases received (`DELETE .../IncomingPhoneNumbers/{Sid}.json`).
    pub fn releases(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "DELETE")
            .collect()
    }
}
