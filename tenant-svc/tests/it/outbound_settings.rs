//! Outbound-call and webhook settings, webhook secrets and delivery signatures (issue 8), over
//! real gRPC against a real PostgreSQL: defaults, masked updates with history, validation that
//! names the field and stores nothing, `WEBHOOK_ALLOW_INSECURE`, tenant isolation, secrets shown
//! once and never again (not in reads, history or logs), signatures a receiver can recompute, the
//! rotation overlap, and scopes.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::*;
use mesh::identity::{DevKeys, names, scope};
use mesh::testkit::TestDb;
use prost::Message;
use sha2::Sha256;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::common::{self, RW, Replica, auth};

const ALL: &[&str] = &[
    "allowed_regions",
    "allowed_personas",
    "do_not_call",
    "cors_origins",
    "greet_first_outbound",
    "webhook_url",
    "webhook_raw_numbers",
    "public_calls_per_hour",
    "allowed_number_types",
    "transfer_regions",
    "max_call_minutes",
];
const ALL_SCOPES: &[&str] = &[
    scope::TENANT_READ,
    scope::TENANT_WRITE,
    scope::TENANT_WEBHOOK,
];
const HOOK: &str = "https://hooks.peterson.example/neurosphere?v=1";

struct Svc {
    db: TestDb,
    keys: DevKeys,
    channel: Channel,
    peers: common::Peers,
    _replica: Replica,
}

impl Svc {
    /// tenant-svc on port 0 with `WEBHOOK_ALLOW_INSECURE` as given.
    async fn start(webhook_allow_insecure: bool) -> Svc {
        let db = TestDb::new().await;
        let keys = DevKeys::generate();
        let peers = common::Peers {
            memory: common::dead_addr().await,
            media: common::dead_addr().await,
        };
        let replica =
            common::serve_with_peers(&db, &keys, None, webhook_allow_insecure, &peers).await;
        Svc {
            db,
            keys,
            channel: replica.channel.clone(),
            peers,
            _replica: replica,
        }
    }

    /// memory-svc and media-svc at this replica's peer addresses, until the guard drops.
    async fn erasers(&self) -> tokio::sync::watch::Sender<bool> {
        common::serve_peers(&self.db, &self.keys, &self.peers, true, true).await
    }

    /// Creates `n` customers; returns their ids.
    async fn customers(&self, n: usize) -> Vec<i64> {
        let token = common::operator_token(&self.keys, &[scope::TENANT_ADMIN]);
        let mut admin = TenantAdminServiceClient::new(self.channel.clone());
        let mut ids = Vec::new();
        for i in 0..n {
            let c = admin
                .create_customer(auth(
                    CreateCustomerRequest {
                        email: format!("ops{i}@customer{i}.example"),
                        business_name: format!("Customer {i}"),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner()
                .customer
                .unwrap();
            ids.push(c.id);
        }
        ids
    }

    fn token(&self, customer: i64, scopes: &[&str]) -> String {
        common::tenant_token(&self.keys, customer, scopes)
    }

    fn client(&self) -> TenantServiceClient<Channel> {
        TenantServiceClient::new(self.channel.clone())
    }

    async fn count(&self, sql: &str) -> i64 {
        self.db
            .admin_client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Row counts of the settings, secrets and history tables (all customers).
    async fn snapshot(&self) -> [i64; 3] {
        [
            self.count("SELECT count(*) FROM tenant.outbound_settings")
                .await,
            self.count("SELECT count(*) FROM tenant.webhook_secrets")
                .await,
            self.count("SELECT count(*) FROM tenant.customer_configurations")
                .await,
        ]
    }

    /// Everything stored for one customer's settings and secrets, and its history size.
    async fn rows_of(&self, customer: i64) -> String {
        let row = self
            .db
            .admin_client()
            .await
            .query_one(
                "SELECT (SELECT row_to_json(s)::text FROM tenant.outbound_settings s \
                         WHERE customer_id = $1), \
                        (SELECT row_to_json(w)::text FROM tenant.webhook_secrets w \
                         WHERE customer_id = $1), \
                        (SELECT count(*) FROM tenant.customer_configurations \
                         WHERE customer_id = $1)",
                &[&customer],
            )
            .await
            .unwrap();
        format!(
            "{:?}|{:?}|{}",
            row.get::<_, Option<String>>(0),
            row.get::<_, Option<String>>(1),
            row.get::<_, i64>(2)
        )
    }

    async fn update(
        &self,
        token: &str,
        settings: Option<OutboundSettings>,
        mask: &[&str],
    ) -> Result<OutboundSettings, Status> {
        self.client()
            .update_outbound_settings(auth(
                UpdateOutboundSettingsRequest {
                    settings,
                    update_mask: Some(prost_types::FieldMask {
                        paths: mask.iter().map(|p| (*p).to_owned()).collect(),
                    }),
                },
                token,
            ))
            .await
            .map(|r| r.into_inner().settings.unwrap())
    }

    async fn get(&self, token: &str) -> Result<GetOutboundSettingsResponse, Status> {
        self.client()
            .get_outbound_settings(auth(GetOutboundSettingsRequest {}, token))
            .await
            .map(|r| r.into_inner())
    }

    async fn rotate(
        &self,
        token: &str,
        overlap: Option<i64>,
    ) -> Result<RotateWebhookSecretResponse, Status> {
        self.client()
            .rotate_webhook_secret(auth(
                RotateWebhookSecretRequest {
                    overlap: overlap.map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
                },
                token,
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn sign(
        &self,
        token: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<SignWebhookEventResponse, Status> {
        self.client()
            .sign_webhook_event(auth(
                SignWebhookEventRequest {
                    timestamp,
                    body: body.to_vec(),
                },
                token,
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn history(&self, token: &str) -> Vec<ConfigChange> {
        self.client()
            .list_config_history(auth(
                ListConfigHistoryRequest {
                    page_size: 500,
                    page_token: String::new(),
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner()
            .changes
    }
}

/// What a receiver computes: HMAC-SHA256 keyed by the secret text over `"{ts}." + body`.
fn receiver_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn full_settings(webhook_url: &str) -> OutboundSettings {
    OutboundSettings {
        allowed_regions: vec!["pt".into(), "GB".into()],
        allowed_personas: vec!["Sofia".into(), " Dr. O'Neil ".into()],
        do_not_call: vec!["+351 912 000 000".into()],
        cors_origins: vec!["https://WWW.Peterson.example".into()],
        greet_first_outbound: true,
        webhook_url: webhook_url.into(),
        webhook_raw_numbers: true,
        public_calls_per_hour: 120,
        allowed_number_types: vec!["premium_rate".into()],
        transfer_regions: vec!["pt".into()],
        max_call_minutes: 30,
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Log lines written while the guard lives (the service's tasks run on this test's thread).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_customer_that_never_set_anything_gets_the_defaults() {
    let s = Svc::start(false).await;
    let [a] = s.customers(1).await[..] else {
        unreachable!()
    };
    let r = s.get(&s.token(a, &[scope::TENANT_READ])).await.unwrap();
    assert_eq!(r.settings.unwrap(), OutboundSettings::default());
    assert!(!r.has_webhook_secret);
    // Reading stored nothing (the creation of the customer is the only history entry source).
    assert_eq!(s.snapshot().await[..2], [0, 0]);
    // A token of a customer that does not exist gets NOT_FOUND, not someone's defaults.
    let err = s
        .get(&s.token(999, &[scope::TENANT_READ]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}

#[tokio::test]
async fn masked_updates_are_normalised_read_back_and_recorded_in_history() {
    let s = Svc::start(false).await;
    let [a] = s.customers(1).await[..] else {
        unreachable!()
    };
    let token = s.token(a, RW);
    let history_before = s.history(&token).await.len();

    let saved = s
        .update(&token, Some(full_settings(HOOK)), ALL)
        .await
        .unwrap();
    let expected = OutboundSettings {
        allowed_regions: vec!["PT".into(), "GB".into()],
        allowed_personas: vec!["Sofia".into(), "Dr. O'Neil".into()],
        do_not_call: vec!["+351912000000".into()],
        cors_origins: vec!["https://www.peterson.example".into()],
        greet_first_outbound: true,
        webhook_url: HOOK.into(),
        webhook_raw_numbers: true,
        public_calls_per_hour: 120,
        allowed_number_types: vec!["premium_rate".into()],
        transfer_regions: vec!["PT".into()],
        max_call_minutes: 30,
    };
    assert_eq!(saved, expected);
    let read = s.get(&token).await.unwrap();
    assert_eq!(read.settings.unwrap(), expected);
    assert!(!read.has_webhook_secret);

    // One history entry per changed field, by the token's subject, old value = the default.
    let history = s.history(&token).await;
    let new: Vec<_> = history[..history.len() - history_before].to_vec();
    assert_eq!(new.len(), 11, "{new:?}");
    assert!(
        new.iter()
            .all(|c| c.config_type == "outbound" && c.changed_by == "test-user")
    );
    let url = new.iter().find(|c| c.config_key == "webhook_url").unwrap();
    assert_eq!(url.old_value_json, "\"\"");
    assert_eq!(url.new_value_json, serde_json::json!(HOOK).to_string());

    // Only the masked field changes, even though the message carries other (default) values.
    let only_greet = s
        .update(
            &token,
            Some(OutboundSettings::default()),
            &["greet_first_outbound"],
        )
        .await
        .unwrap();
    assert_eq!(
        only_greet,
        OutboundSettings {
            greet_first_outbound: false,
            ..expected.clone()
        }
    );
    let history = s.history(&token).await;
    assert_eq!(history.len(), history_before + 12);
    assert_eq!(history[0].config_key, "greet_first_outbound");
    assert_eq!(
        (
            history[0].old_value_json.as_str(),
            history[0].new_value_json.as_str()
        ),
        ("true", "false")
    );

    // The same update again changes nothing and records nothing.
    let rows = s.rows_of(a).await;
    s.update(
        &token,
        Some(OutboundSettings::default()),
        &["greet_first_outbound"],
    )
    .await
    .unwrap();
    assert_eq!(s.rows_of(a).await, rows);

    // A masked field without a message resets it: the webhook is switched off.
    let cleared = s.update(&token, None, &["webhook_url"]).await.unwrap();
    assert_eq!(cleared.webhook_url, "");
    assert_eq!(cleared.allowed_personas, expected.allowed_personas);
    assert_eq!(
        s.get(&token).await.unwrap().settings.unwrap().webhook_url,
        ""
    );
}

#[tokio::test]
async fn a_full_do_not_call_list_is_accepted_and_one_more_number_is_not() {
    let s = Svc::start(false).await;
    let [a] = s.customers(1).await[..] else {
        unreachable!()
    };
    let token = s.token(a, RW);
    let numbers: Vec<String> = (0..10_000).map(|i| format!("+35191{:07}", i)).collect();
    let started = Instant::now();
    let saved = s
        .update(
            &token,
            Some(OutboundSettings {
                do_not_call: numbers.clone(),
                ..Default::default()
            }),
            &["do_not_call"],
        )
        .await
        .unwrap();
    eprintln!(
        "10,000-number do-not-call update took {:?}",
        started.elapsed()
    );
    assert_eq!(saved.do_not_call, numbers);
    let before = (s.snapshot().await, s.rows_of(a).await);
    let mut more = numbers;
    more.push("+351919999999".into());
    let err = s
        .update(
            &token,
            Some(OutboundSettings {
                do_not_call: more,
                ..Default::default()
            }),
            &["do_not_call"],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("settings.do_not_call:"),
        "{err:?}"
    );
    assert_eq!((s.snapshot().await, s.rows_of(a).await), before);
}

/// One invalid value per case, in otherwise valid settings: the field to mask, the settings, and
/// how the refusal must begin.
fn invalid_settings() -> Vec<(&'static str, OutboundSettings, &'static str)> {
    let mut cases = invalid_lists();
    cases.extend(invalid_origins_urls_and_limits());
    cases
}

/// [`full_settings`] changed by `f`.
fn with(f: &dyn Fn(&mut OutboundSettings)) -> OutboundSettings {
    let mut v = full_settings(HOOK);
    f(&mut v);
    v
}

/// `n` values made by `f`.
fn many(n: usize, f: &dyn Fn(usize) -> String) -> Vec<String> {
    (0..n).map(f).collect()
}

/// Invalid country codes, personas and do-not-call numbers.
fn invalid_lists() -> Vec<(&'static str, OutboundSettings, &'static str)> {
    vec![
        (
            "allowed_regions",
            with(&|v| v.allowed_regions = vec!["PT".into(), "351".into()]),
            "settings.allowed_regions[1]:",
        ),
        (
            "allowed_regions",
            with(&|v| v.allowed_regions = vec!["XX".into()]),
            "settings.allowed_regions[0]:",
        ),
        (
            "allowed_regions",
            with(&|v| v.allowed_regions = many(51, &|_| "US".into())),
            "settings.allowed_regions:",
        ),
        (
            "transfer_regions",
            with(&|v| v.transfer_regions = vec!["1".into()]),
            "settings.transfer_regions[0]:",
        ),
        (
            "allowed_number_types",
            with(&|v| v.allowed_number_types = vec!["voip".into()]),
            "settings.allowed_number_types[0]:",
        ),
        (
            "max_call_minutes",
            with(&|v| v.max_call_minutes = 241),
            "settings.max_call_minutes:",
        ),
        (
            "allowed_personas",
            with(&|v| v.allowed_personas = vec!["Sofia".into(), "SOFIA".into()]),
            "settings.allowed_personas[1]:",
        ),
        (
            "allowed_personas",
            with(&|v| v.allowed_personas = vec!["<b>Sofia</b>".into()]),
            "settings.allowed_personas[0]:",
        ),
        (
            "allowed_personas",
            with(&|v| v.allowed_personas = vec!["x".repeat(61)]),
            "settings.allowed_personas[0]:",
        ),
        (
            "allowed_personas",
            with(&|v| v.allowed_personas = vec!["Ann\u{0}".into()]),
            "settings.allowed_personas[0]:",
        ),
        (
            "allowed_personas",
            with(&|v| v.allowed_personas = many(21, &|i| format!("P{i}"))),
            "settings.allowed_personas:",
        ),
        (
            "do_not_call",
            with(&|v| v.do_not_call = vec!["+351912000000".into(), "912000001".into()]),
            "settings.do_not_call[1]:",
        ),
    ]
}

/// Invalid origins, webhook URLs and hourly limits.
fn invalid_origins_urls_and_limits() -> Vec<(&'static str, OutboundSettings, &'static str)> {
    vec![
        (
            "cors_origins",
            with(&|v| v.cors_origins = vec!["https://www.peterson.example/".into()]),
            "settings.cors_origins[0]:",
        ),
        (
            "cors_origins",
            with(&|v| v.cors_origins = vec!["https://*.peterson.example".into()]),
            "settings.cors_origins[0]:",
        ),
        (
            "cors_origins",
            with(&|v| v.cors_origins = vec!["http://www.peterson.example".into()]),
            "settings.cors_origins[0]:",
        ),
        (
            "cors_origins",
            with(&|v| v.cors_origins = many(21, &|i| format!("https://s{i}.example"))),
            "settings.cors_origins:",
        ),
        (
            "webhook_url",
            with(&|v| v.webhook_url = "https://user:pw@hooks.peterson.example/x".into()),
            "settings.webhook_url:",
        ),
        (
            "webhook_url",
            with(&|v| v.webhook_url = "hooks.peterson.example/x".into()),
            "settings.webhook_url:",
        ),
        (
            "webhook_url",
            with(&|v| v.webhook_url = format!("https://hooks.example/{}", "x".repeat(2000))),
            "settings.webhook_url:",
        ),
        (
            "webhook_url",
            with(&|v| v.webhook_url = "https://169.254.169.254/latest/meta-data".into()),
            "settings.webhook_url:",
        ),
        (
            "public_calls_per_hour",
            with(&|v| v.public_calls_per_hour = 10_001),
            "settings.public_calls_per_hour:",
        ),
    ]
}

#[tokio::test]
async fn every_validation_failure_names_the_field_and_stores_nothing() {
    let s = Svc::start(false).await;
    let [a] = s.customers(1).await[..] else {
        unreachable!()
    };
    let token = s.token(a, ALL_SCOPES);
    s.update(&token, Some(full_settings(HOOK)), ALL)
        .await
        .unwrap();
    s.rotate(&token, None).await.unwrap();

    let cases = invalid_settings();
    let before = (s.snapshot().await, s.rows_of(a).await);
    for (field, settings, expected) in cases {
        // Also with valid fields in the same request: nothing of it is stored.
        for mask in [vec![field], ALL.to_vec()] {
            let err = s
                .update(&token, Some(settings.clone()), &mask)
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
            assert!(
                err.message().starts_with(expected),
                "{field}: expected {expected}, got {:?}",
                err.message()
            );
            assert_eq!(
                (s.snapshot().await, s.rows_of(a).await),
                before,
                "{field} stored something"
            );
        }
    }
    // Invalid values outside the mask are ignored, not validated.
    let mut outside = full_settings(HOOK);
    outside.webhook_url = "not a url".into();
    outside.public_calls_per_hour = 10;
    let fine = s
        .update(&token, Some(outside), &["public_calls_per_hour"])
        .await
        .unwrap();
    assert_eq!(
        (fine.public_calls_per_hour, fine.webhook_url.as_str()),
        (10, HOOK)
    );
}

#[tokio::test]
async fn unknown_or_missing_mask_fields_are_refused() {
    let s = Svc::start(false).await;
    let [a] = s.customers(1).await[..] else {
        unreachable!()
    };
    let token = s.token(a, RW);
    let before = (s.snapshot().await, s.rows_of(a).await);
    for mask in [
        vec!["webhook_secret"],
        vec!["webhook_url", "colour"],
        vec!["settings.webhook_url"],
        vec![],
    ] {
        let err = s
            .update(&token, Some(full_settings(HOOK)), &mask)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{mask:?}");
        assert!(err.message().starts_with("update_mask:"), "{err:?}");
        assert!(
            err.message().contains("allowed: allowed_regions"),
            "{err:?}"
        );
    }
    // No mask at all is the same as an empty one.
    let err = s
        .client()
        .update_outbound_settings(auth(
            UpdateOutboundSettingsRequest {
                settings: Some(full_settings(HOOK)),
                update_mask: None,
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert!(err.message().starts_with("update_mask:"), "{err:?}");
    assert_eq!((s.snapshot().await, s.rows_of(a).await), before);
}

#[tokio::test]
async fn http_webhook_urls_and_origins_need_webhook_allow_insecure() {
    let local = "http://127.0.0.1:8080/hook";
    let settings = OutboundSettings {
        cors_origins: vec!["http://localhost:3000".into()],
        webhook_url: local.into(),
        ..Default::default()
    };

    let secure = Svc::start(false).await;
    let [a] = secure.customers(1).await[..] else {
        unreachable!()
    };
    let token = secure.token(a, RW);
    let before = (secure.snapshot().await, secure.rows_of(a).await);
    for (field, message) in [
        ("webhook_url", "settings.webhook_url: must use https://"),
        (
            "cors_origins",
            "settings.cors_origins[0]: must use https://",
        ),
    ] {
        let err = secure
            .update(&token, Some(settings.clone()), &[field])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(err.message(), message);
    }
    // https to a loopback address is refused too (the receiver would be this platform).
    let err = secure
        .update(
            &token,
            Some(OutboundSettings {
                webhook_url: "https://127.0.0.1:8443/hook".into(),
                ..Default::default()
            }),
            &["webhook_url"],
        )
        .await
        .unwrap_err();
    assert!(err.message().contains("loopback"), "{err:?}");
    assert_eq!((secure.snapshot().await, secure.rows_of(a).await), before);

    let insecure = Svc::start(true).await;
    let [b] = insecure.customers(1).await[..] else {
        unreachable!()
    };
    let token = insecure.token(b, RW);
    let saved = insecure
        .update(
            &token,
            Some(settings.clone()),
            &["webhook_url", "cors_origins"],
        )
        .await
        .unwrap();
    assert_eq!(saved.webhook_url, local);
    assert_eq!(saved.cors_origins, ["http://localhost:3000"]);
    // Credentials stay forbidden even then.
    let err = insecure
        .update(
            &token,
            Some(OutboundSettings {
                webhook_url: "http://u:p@127.0.0.1/hook".into(),
                ..Default::default()
            }),
            &["webhook_url"],
        )
        .await
        .unwrap_err();
    assert!(err.message().contains("credentials"), "{err:?}");
}

#[tokio::test]
async fn tenants_cannot_see_or_change_each_others_settings_or_secrets() {
    let s = Svc::start(false).await;
    let [a, b] = s.customers(2).await[..] else {
        unreachable!()
    };
    let (ta, tb) = (s.token(a, ALL_SCOPES), s.token(b, ALL_SCOPES));
    s.update(&tb, Some(full_settings(HOOK)), ALL).await.unwrap();
    let b_secret = s.rotate(&tb, None).await.unwrap().secret;
    let b_rows = s.rows_of(b).await;
    let b_history = s.history(&tb).await;

    // A sees only its own (default) settings and no secret.
    let r = s.get(&ta).await.unwrap();
    assert_eq!(r.settings.unwrap(), OutboundSettings::default());
    assert!(!r.has_webhook_secret);
    // A cannot sign with B's webhook: A has none.
    let err = s.sign(&ta, now(), b"{}").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // A's changes and rotations land on A only.
    let a_hook = "https://hooks.a.example/x";
    s.update(&ta, Some(full_settings(a_hook)), ALL)
        .await
        .unwrap();
    let a_secret = s.rotate(&ta, None).await.unwrap().secret;
    let ts = now();
    let signed = s.sign(&ta, ts, b"{\"a\":1}").await.unwrap();
    assert_eq!(signed.webhook_url, a_hook);
    assert_eq!(
        signed.signatures,
        [receiver_signature(&a_secret, ts, b"{\"a\":1}")]
    );
    assert_ne!(a_secret, b_secret);
    assert!(s.history(&ta).await.iter().all(|c| !b_history.contains(c)));

    // B is untouched: rows, reads, signatures.
    assert_eq!(s.rows_of(b).await, b_rows);
    assert_eq!(s.history(&tb).await, b_history);
    let rb = s.get(&tb).await.unwrap();
    assert_eq!(rb.settings.unwrap().webhook_url, HOOK);
    assert!(rb.has_webhook_secret);
    let signed = s.sign(&tb, ts, b"{\"a\":1}").await.unwrap();
    assert_eq!(signed.webhook_url, HOOK);
    assert_eq!(
        signed.signatures,
        [receiver_signature(&b_secret, ts, b"{\"a\":1}")]
    );
}

#[tokio::test]
async fn a_rotated_secret_is_shown_once_and_never_again() {
    let (logs, _guard) = Logs::capture();
    let s = Svc::start(false).await;
    let [a] = s.customers(1).await[..] else {
        unreachable!()
    };
    let token = s.token(a, ALL_SCOPES);
    s.update(&token, Some(full_settings(HOOK)), ALL)
        .await
        .unwrap();

    let first = s.rotate(&token, None).await.unwrap();
    assert!(
        first.previous_expire_time.is_none(),
        "nothing to overlap with"
    );
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&first.secret)
        .unwrap();
    assert_eq!((first.secret.len(), raw.len()), (43, 32));

    let started = now();
    let second = s.rotate(&token, None).await.unwrap();
    assert_ne!(second.secret, first.secret);
    let until = second.previous_expire_time.unwrap().seconds;
    assert!(
        (started + 86_400 - 5..=now() + 86_400 + 5).contains(&until),
        "default overlap is 24 h: {until}"
    );

    // Reads say that a secret exists and carry neither secret anywhere in their bytes.
    let read = s.get(&token).await.unwrap();
    assert!(read.has_webhook_secret);
    let history = s.history(&token).await;
    let rotations: Vec<_> = history
        .iter()
        .filter(|c| c.config_key == "webhook_secret")
        .collect();
    assert_eq!(rotations.len(), 2);
    assert!(
        rotations
            .iter()
            .all(|c| c.config_type == "outbound" && c.new_value_json == "\"<rotated>\"")
    );
    assert_eq!(rotations[0].old_value_json, "\"<rotated>\"");
    assert_eq!(
        rotations[1].old_value_json, "",
        "the first had no predecessor"
    );
    let update = s
        .update(&token, Some(full_settings(HOOK)), &["webhook_url"])
        .await
        .unwrap();
    let mut bytes = read.encode_to_vec();
    bytes.extend(update.encode_to_vec());
    for c in &history {
        bytes.extend(c.encode_to_vec());
    }
    let stored_history: String =
        s.db.admin_client()
            .await
            .query_one(
                "SELECT coalesce(string_agg(concat(old_value::text, new_value::text), ''), '') \
             FROM tenant.customer_configurations",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    let seen = format!(
        "{}{}{}",
        String::from_utf8_lossy(&bytes),
        stored_history,
        logs.text()
    );
    assert!(
        logs.text().contains("webhook secret rotated"),
        "logs captured"
    );
    for secret in [&first.secret, &second.secret] {
        assert!(!seen.contains(secret.as_str()), "a secret leaked");
    }
}

#[tokio::test]
async fn signatures_need_a_url_and_a_secret_and_verify_like_a_receiver_does() {
    let s = Svc::start(false).await;
    let [a, b] = s.customers(2).await[..] else {
        unreachable!()
    };
    let token = s.token(a, ALL_SCOPES);
    let body = br#"{"type":"call.completed","event_id":"e1"}"#;

    let err = s.sign(&token, now(), body).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("webhook URL"), "{err:?}");
    s.update(&token, Some(full_settings(HOOK)), &["webhook_url"])
        .await
        .unwrap();
    let err = s.sign(&token, now(), body).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("webhook secret"), "{err:?}");
    // A secret without a URL is not enough either.
    let tb = s.token(b, ALL_SCOPES);
    s.rotate(&tb, None).await.unwrap();
    let err = s.sign(&tb, now(), body).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let secret = s.rotate(&token, None).await.unwrap().secret;
    let ts = now();
    let signed = s.sign(&token, ts, body).await.unwrap();
    assert_eq!(signed.webhook_url, HOOK);
    assert_eq!(signed.signatures, [receiver_signature(&secret, ts, body)]);
    // The timestamp and every body byte are covered.
    assert_ne!(
        signed.signatures[0],
        receiver_signature(&secret, ts + 1, body)
    );
    assert_ne!(
        s.sign(
            &token,
            ts,
            b"{\"type\":\"call.completed\",\"event_id\":\"e2\"}"
        )
        .await
        .unwrap()
        .signatures[0],
        signed.signatures[0]
    );

    // Bodies up to 1 MiB.
    let big = vec![b'x'; 1024 * 1024];
    let signed = s.sign(&token, ts, &big).await.unwrap();
    assert_eq!(signed.signatures, [receiver_signature(&secret, ts, &big)]);
    let err = s
        .sign(&token, ts, &[b'x'; 1024 * 1024 + 1])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("body:"), "{err:?}");
    let err = s.sign(&token, -1, body).await.unwrap_err();
    assert!(err.message().starts_with("timestamp:"), "{err:?}");
}

#[tokio::test]
async fn the_previous_secret_signs_second_while_its_overlap_lasts() {
    let s = Svc::start(false).await;
    let [a] = s.customers(1).await[..] else {
        unreachable!()
    };
    let token = s.token(a, ALL_SCOPES);
    s.update(&token, Some(full_settings(HOOK)), &["webhook_url"])
        .await
        .unwrap();
    let body = b"{\"event\":1}";
    let ts = now();
    let signatures = async || s.sign(&token, ts, body).await.unwrap().signatures;

    let first = s.rotate(&token, None).await.unwrap().secret;
    let second = s.rotate(&token, None).await.unwrap().secret;
    assert_eq!(
        signatures().await,
        [
            receiver_signature(&second, ts, body),
            receiver_signature(&first, ts, body)
        ],
        "current first, then the previous one"
    );

    // A zero overlap ends the previous secret at once.
    let third = s.rotate(&token, Some(0)).await.unwrap();
    assert!(third.previous_expire_time.unwrap().seconds <= now());
    assert_eq!(
        signatures().await,
        [receiver_signature(&third.secret, ts, body)]
    );

    // A short overlap: both sign until it elapses (by the database clock), then one.
    let fourth = s.rotate(&token, Some(1)).await.unwrap().secret;
    assert_eq!(
        signatures().await,
        [
            receiver_signature(&fourth, ts, body),
            receiver_signature(&third.secret, ts, body)
        ]
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now_signing = signatures().await;
        if now_signing.len() == 1 {
            assert_eq!(now_signing, [receiver_signature(&fourth, ts, body)]);
            break;
        }
        assert!(Instant::now() < deadline, "the overlap never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // At most 7 days; a longer or negative overlap is refused and changes nothing.
    let before = (s.snapshot().await, s.rows_of(a).await);
    for bad in [604_801, -1] {
        let err = s.rotate(&token, Some(bad)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with("overlap:"), "{err:?}");
    }
    assert_eq!((s.snapshot().await, s.rows_of(a).await), before);
    assert_eq!(signatures().await, [receiver_signature(&fourth, ts, body)]);
    let week = s.rotate(&token, Some(604_800)).await.unwrap();
    let until = week.previous_expire_time.unwrap().seconds;
    assert!((now() + 604_800 - 5..=now() + 604_800 + 5).contains(&until));
    assert_eq!(signatures().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotations_keep_both_secrets() {
    let s = Svc::start(false).await;
    let ids = s.customers(8).await;
    let ts = now();
    // Twice per customer: first the rotations race to create the secret row, then to replace it.
    for round in ["creating", "replacing"] {
        let races = ids.iter().map(|id| {
            let token = s.token(*id, ALL_SCOPES);
            let s = &s;
            async move {
                s.update(&token, Some(full_settings(HOOK)), &["webhook_url"])
                    .await
                    .unwrap();
                let (x, y) = tokio::join!(s.rotate(&token, None), s.rotate(&token, None));
                let (x, y) = (x.unwrap().secret, y.unwrap().secret);
                let mut signed = s.sign(&token, ts, b"{}").await.unwrap().signatures;
                let mut expected = vec![
                    receiver_signature(&x, ts, b"{}"),
                    receiver_signature(&y, ts, b"{}"),
                ];
                signed.sort();
                expected.sort();
                assert_eq!(signed, expected, "{round}: one rotation's secret was lost");
            }
        });
        futures::future::join_all(races).await;
    }
}

#[tokio::test]
async fn each_rpc_needs_its_scope() {
    let s = Svc::start(false).await;
    let [a] = s.customers(1).await[..] else {
        unreachable!()
    };
    let full = s.token(a, ALL_SCOPES);
    s.update(&full, Some(full_settings(HOOK)), &["webhook_url"])
        .await
        .unwrap();
    s.rotate(&full, None).await.unwrap();
    let before = (s.snapshot().await, s.rows_of(a).await);

    // Read and write, but no `tenant:webhook`: no signatures.
    let rw = s.token(a, RW);
    let err = s.sign(&rw, now(), b"{}").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("tenant:webhook"), "{err:?}");
    // Read only: no changes, no rotation.
    let read = s.token(a, &[scope::TENANT_READ]);
    assert!(s.get(&read).await.is_ok());
    let err = s
        .update(&read, Some(OutboundSettings::default()), ALL)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = s.rotate(&read, None).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // Webhook only (what media-svc's delivery worker needs): signs, reads nothing else.
    let hook = s.token(a, &[scope::TENANT_WEBHOOK]);
    assert_eq!(
        s.sign(&hook, now(), b"{}").await.unwrap().signatures.len(),
        1
    );
    assert_eq!(
        s.get(&hook).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // A service token is not a tenant's.
    let service = s
        .keys
        .identity(names::MEDIA_SVC)
        .minter()
        .mint_service(
            names::TENANT_SVC,
            &[scope::TENANT_WEBHOOK],
            Duration::from_secs(60),
        )
        .unwrap();
    let err = s.sign(&service, now(), b"{}").await.unwrap_err();
    assert!(
        matches!(err.code(), Code::PermissionDenied | Code::Unauthenticated),
        "{err:?}"
    );
    assert_eq!((s.snapshot().await, s.rows_of(a).await), before);
}

#[tokio::test]
async fn secrets_are_readable_only_by_tenant_svc_inside_the_tenant() {
    let s = Svc::start(false).await;
    let [a, b] = s.customers(2).await[..] else {
        unreachable!()
    };
    for id in [a, b] {
        let t = s.token(id, ALL_SCOPES);
        s.update(&t, Some(full_settings(HOOK)), ALL).await.unwrap();
        s.rotate(&t, None).await.unwrap();
    }
    let admin = s.db.admin_client().await;
    mesh::testkit::assert_rls_everywhere(&admin).await;

    // tenant_svc sees exactly its tenant's rows, and nothing without a tenant context.
    let db = s.db.db_for_role("tenant_svc").await;
    let customer = mesh::domain::CustomerId::new(a).unwrap();
    let visible: Vec<i64> = db
        .tenant_tx(customer, async |tx| {
            let mut ids = Vec::new();
            for table in ["tenant.outbound_settings", "tenant.webhook_secrets"] {
                for r in tx
                    .query(&format!("SELECT customer_id FROM {table}"), &[])
                    .await?
                {
                    ids.push(r.get(0));
                }
            }
            Ok::<_, mesh::db::DbError>(ids)
        })
        .await
        .unwrap();
    assert_eq!(visible, [a, a]);
    let without_tenant = db
        .service_tx(async |tx| {
            tx.query("SELECT secret FROM tenant.webhook_secrets", &[])
                .await
        })
        .await;
    assert!(without_tenant.is_err(), "read without tenant context");

    // The other services' roles cannot read them at all, even inside a tenant.
    for role in ["memory_svc", "media_svc"] {
        let other = s.db.db_for_role(role).await;
        for table in ["tenant.outbound_settings", "tenant.webhook_secrets"] {
            let r = other
                .tenant_tx(customer, async |tx| {
                    tx.query(&format!("SELECT * FROM {table}"), &[]).await
                })
                .await;
            assert!(r.is_err(), "{role} read {table}");
        }
    }

    // Offboarding a customer removes its settings and secret with it.
    let op = s
        .keys
        .identity(names::OPERATOR)
        .minter()
        .mint_service(
            names::TENANT_SVC,
            &[scope::TENANT_ADMIN],
            Duration::from_secs(60),
        )
        .unwrap();
    let _erasers = s.erasers().await;
    TenantAdminServiceClient::new(s.channel.clone())
        .delete_customer(auth(DeleteCustomerRequest { customer_id: a }, &op))
        .await
        .unwrap();
    assert_eq!(s.snapshot().await[..2], [1, 1], "only b's rows remain");
}
