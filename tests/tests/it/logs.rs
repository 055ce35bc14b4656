//! Privacy of the logs: a full simulated call and the legacy REST endpoints, and then every
//! refusal path (a bad webhook signature, an unknown number, bad or missing stream credentials,
//! refused legacy tokens, refused outbound calls), run with every service logging at DEBUG into a
//! buffer, which is then scanned (for the call, once the post-call work, the outbox delivering
//! the call to memory-svc, is done). No raw phone number, transcript text, token or secret may
//! appear; the tenant must (`customer_id` on the lines about the call).
//!
//! The subscriber belongs to this test's own runtime (each of its threads), not to the process:
//! the other whole-mesh tests run in the same binary at the same time and must neither write into
//! this buffer nor be slowed by DEBUG logging.

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::fakes::FakeTwilio;
use e2e::{ACCOUNT_SID, DemoTenant, Mesh, MeshOptions, with_token};
use gateway::sim::{self, SimCall};
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::{OutboundSettings, UpdateOutboundSettingsRequest};
use mesh::identity::scope;

use crate::media_frames::Stream;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

/// What the logs must never contain, by name.
type Forbidden = Vec<(&'static str, String)>;

/// Runs `work` on a runtime of its own whose threads (and this one) log at DEBUG, every service
/// included, into a buffer; returns what `work` returned and the captured JSON lines.
fn logs_of<T, F: Future<Output = T>>(work: impl FnOnce() -> F) -> (T, String) {
    let buffer = Buffer::default();
    let filter = "info,mesh=debug,gateway=debug,tenant_svc=debug,memory_svc=debug,media_svc=debug";
    let dispatch = tracing::Dispatch::new(mesh::telemetry::get_subscriber(
        filter,
        mesh::telemetry::LogFormat::Json,
        buffer.clone(),
    ));
    // With a single registered dispatcher, tracing caches each log site's interest from the
    // thread that reaches it first: another test's thread (no subscriber) would switch the
    // site off for this one too. A second, silent dispatcher makes tracing ask every
    // dispatcher instead.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let _this_thread = tracing::dispatcher::set_default(&dispatch);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // The runtime's threads live as long as the runtime: keep the default for good.
            std::mem::forget(tracing::dispatcher::set_default(&dispatch));
        })
        .build()
        .expect("runtime");
    let out = runtime.block_on(work());
    drop(runtime);
    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (out, logs)
}

/// Panics naming the first forbidden value found in the logs.
fn assert_none_logged(logs: &str, forbidden: &Forbidden) {
    assert!(
        logs.lines().count() > 20,
        "too few log lines captured:\n{logs}"
    );
    for (what, needle) in forbidden {
        assert!(
            needle.len() >= 8,
            "{what}: too short a needle to mean anything"
        );
        if let Some(line) = logs.lines().find(|l| l.contains(needle.as_str())) {
            panic!("the logs contain the {what}: {line}");
        }
    }
}

#[test]
fn a_full_call_logs_no_number_transcript_token_or_secret() {
    let ((forbidden, call_sid, customer_id), logs) = logs_of(call_and_legacy_rest);
    assert_none_logged(&logs, &forbidden);
    // Lines about the call name its tenant.
    let call_lines: Vec<&str> = logs.lines().filter(|l| l.contains(&call_sid)).collect();
    assert!(!call_lines.is_empty(), "no log line mentions the call");
    assert!(
        call_lines
            .iter()
            .any(|l| l.contains(&format!("\"customer_id\":{customer_id}"))),
        "no line about the call carries customer_id:\n{}",
        call_lines.join("\n")
    );
}

/// Plays a call and a legacy REST write, waits for the post-call work; returns what the logs
/// must not contain, the CallSid and the tenant.
async fn call_and_legacy_rest() -> (Forbidden, String, i64) {
    let mesh = Mesh::start().await;
    let (peterson, _) = mesh.seed_demo_tenants().await;
    let caller = "+15557654321";
    let call = SimCall {
        gateway_addr: mesh.gateway.main.to_string(),
        public_base_url: mesh.public_base_url.clone(),
        auth_token: mesh.twilio_auth_token.clone(),
        account_sid: ACCOUNT_SID.into(),
        call_sid: format!("CA{:032x}", 77),
        from: caller.into(),
        to: peterson.number.into(),
        caller_audio: sim::voice_like(2.0),
        duration: Duration::from_secs(3),
        direction: String::new(),
    };
    let result = sim::run(&call).await.expect("call runs");
    assert!(result.connected);
    let stream_ticket = {
        let start = result.twiml.find("value=\"").unwrap() + 7;
        result.twiml[start..start + result.twiml[start..].find('"').unwrap()].to_owned()
    };
    let (legacy_token, secret_content) = legacy_store(&mesh, &peterson, caller).await;
    wait_for_post_call_work(&mesh, &call.call_sid).await;

    let mut forbidden = number(caller);
    forbidden.extend([
        ("stream ticket", stream_ticket.clone()),
        (
            "ticket signature",
            stream_ticket.rsplit('.').next().unwrap().to_owned(),
        ),
        ("legacy token", legacy_token),
        ("Twilio auth token", mesh.twilio_auth_token.clone()),
        (
            "legacy secret",
            secrecy::ExposeSecret::expose_secret(&mesh.legacy_secret).to_owned(),
        ),
        ("memory content", secret_content.to_owned()),
        (
            "greeting transcript",
            "Thank you for calling Peterson".to_owned(),
        ),
        ("bearer header", "Bearer ey".to_owned()),
    ]);
    (forbidden, call.call_sid, peterson.id)
}

/// Stores a memory through the legacy REST endpoint; returns the legacy token and the memory's
/// content, neither of which may be logged.
async fn legacy_store(mesh: &Mesh, tenant: &DemoTenant, caller: &str) -> (String, &'static str) {
    let legacy = mesh::auth::LegacyVerifier::new(&mesh.legacy_secret).unwrap();
    let legacy_token = legacy.mint_for_tests(
        mesh::domain::CustomerId::new(tenant.id).unwrap(),
        Duration::from_secs(300),
    );
    let secret_content = "my policy number is PX-99-SECRET";
    let r = reqwest::Client::new()
        .post(format!("http://{}/memory/store", mesh.gateway.main))
        .bearer_auth(&legacy_token)
        .json(&serde_json::json!({"user_id": caller, "role": "user", "content": secret_content}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    (legacy_token, secret_content)
}

/// Waits until media-svc's outbox has delivered the call to memory-svc (the post-call work
/// whose log lines are scanned too), reading the row directly so that the wait logs nothing.
async fn wait_for_post_call_work(mesh: &Mesh, call_sid: &str) {
    let admin = mesh.db.admin_client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let delivered: i64 = admin
            .query_one(
                "SELECT count(*) FROM media.outbox WHERE call_sid = $1 AND delivered_at IS NOT NULL",
                &[&call_sid],
            )
            .await
            .expect("outbox readable")
            .get(0);
        if delivered == 1 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call was not delivered to memory-svc within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A phone number as it must never appear: with its `+`, and as bare digits.
fn number(n: &str) -> Forbidden {
    vec![
        ("phone number", n.to_owned()),
        ("phone number digits", n[1..].to_owned()),
    ]
}

/// A credential as it must never appear: whole, and its last `.` segment (a JWT's signature).
fn credential(what: &'static str, value: &str) -> Forbidden {
    let mut out = vec![(what, value.to_owned())];
    if let Some((_, tail)) = value.rsplit_once('.')
        && tail.len() >= 16
    {
        out.push((what, tail.to_owned()));
    }
    out
}

/// Writes a marker line before each refusal path, so each path can be shown to have logged.
fn phase(name: &'static str) {
    tracing::info!(log_privacy_phase = name, "log privacy test phase");
}

const PHASES: [&str; 5] = [
    "bad-signature",
    "unknown-number",
    "bad-stream-credential",
    "refused-legacy-token",
    "refused-outbound-call",
];

/// Every refusal path logs (at INFO or above, something about the refusal), and none of them logs a raw number, a
/// token, a secret or what a caller said.
#[test]
fn refusals_log_no_number_token_or_secret() {
    let (forbidden, logs) = logs_of(refusals);
    assert_none_logged(&logs, &forbidden);
    // Each path was reached and logged something between its marker and the next one.
    let lines: Vec<&str> = logs.lines().collect();
    for (i, name) in PHASES.iter().enumerate() {
        let at = |n: &str| {
            lines
                .iter()
                .position(|l| l.contains(&format!("\"log_privacy_phase\":\"{n}\"")))
        };
        let start = at(name).unwrap_or_else(|| panic!("phase {name} never ran"));
        let end = PHASES.get(i + 1).and_then(|n| at(n)).unwrap_or(lines.len());
        let logged = lines[start + 1..end]
            .iter()
            .filter(|l| {
                ["INFO", "WARN", "ERROR"]
                    .iter()
                    .any(|level| l.contains(&format!("\"level\":\"{level}\"")))
            })
            .count();
        assert!(logged > 0, "nothing logged during {name}");
    }
}

/// Drives every refusal path with values that must not be logged; returns them.
async fn refusals() -> Forbidden {
    let twilio = FakeTwilio::start().await;
    let base = twilio.base_url.clone();
    let mesh = Mesh::start_with(MeshOptions {
        media: Some(Box::new(move |c: &mut media_svc::CallConfig| {
            c.twilio.base_url = base;
            c.twilio.auth_token = Some("fake-twilio-auth-token".to_owned().into());
            c.twilio.account_sid = Some(mesh::domain::AccountSid::parse(ACCOUNT_SID).unwrap());
        })),
        ..MeshOptions::default()
    })
    .await;
    let (peterson, smith) = mesh.seed_demo_tenants().await;
    let mut forbidden = vec![
        ("Twilio auth token", mesh.twilio_auth_token.clone()),
        (
            "legacy secret",
            secrecy::ExposeSecret::expose_secret(&mesh.legacy_secret).to_owned(),
        ),
    ];
    phase(PHASES[0]);
    forbidden.extend(bad_signature(&mesh, &peterson).await);
    phase(PHASES[1]);
    forbidden.extend(unknown_number(&mesh).await);
    phase(PHASES[2]);
    forbidden.extend(bad_stream_credentials(&mesh, &peterson, &smith).await);
    phase(PHASES[3]);
    forbidden.extend(refused_legacy_tokens(&mesh, &peterson).await);
    phase(PHASES[4]);
    forbidden.extend(refused_outbound_calls(&mesh, &peterson).await);
    assert!(twilio.calls().is_empty(), "a refused call was dialled");
    // Let the services finish logging about the last requests.
    tokio::time::sleep(Duration::from_millis(300)).await;
    forbidden
}

/// A voice webhook signed with the wrong key: 403.
async fn bad_signature(mesh: &Mesh, tenant: &DemoTenant) -> Forbidden {
    let caller = "+15553330001";
    let sid = format!("CA{:032x}", 101);
    let params: Vec<(String, String)> = Mesh::voice_params(&sid, caller, tenant.number)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let url = format!("{}/twilio/voice", mesh.public_base_url);
    let forged = gateway::signature::compute(b"not-the-auth-token-0123456789abc", &url, &params);
    let r = reqwest::Client::new()
        .post(format!("http://{}/twilio/voice", mesh.gateway.main))
        .header("X-Twilio-Signature", &forged)
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let mut forbidden = number(caller);
    forbidden.push(("forged signature", forged));
    forbidden
}

/// A signed call to a number nobody owns: a polite goodbye.
async fn unknown_number(mesh: &Mesh) -> Forbidden {
    let (caller, nobody) = ("+15553330002", "+14155550199");
    let sid = format!("CA{:032x}", 102);
    let r = mesh
        .twilio_post("/twilio/voice", &Mesh::voice_params(&sid, caller, nobody))
        .await;
    assert_eq!(r.status(), 200);
    assert!(!r.text().await.unwrap().contains("<Connect>"));
    let mut forbidden = number(caller);
    forbidden.extend(number(nobody));
    forbidden
}

/// `start` with each stream parameter tampered with, with none, and with another call's: each
/// closed with 1008 before any audio.
async fn bad_stream_credentials(
    mesh: &Mesh,
    peterson: &DemoTenant,
    smith: &DemoTenant,
) -> Forbidden {
    let caller = "+15553330003";
    let mut call = Stream::answer_from(mesh, peterson, 103, caller).await;
    let other = Stream::answer_from(mesh, smith, 104, caller).await;
    let genuine = call.params.clone();
    assert!(!genuine.is_empty(), "the TwiML carries a stream credential");
    let mut forbidden = number(caller);
    let mut attempts = vec![serde_json::Map::new(), other.params.clone()];
    for (name, value) in &genuine {
        let value = value.as_str().expect("string parameters");
        forbidden.extend(credential("stream credential", value));
        let mut tampered = genuine.clone();
        tampered.insert(name.clone(), format!("{value}x").into());
        attempts.push(tampered);
    }
    for (value, _) in other.params.values().filter_map(|v| v.as_str()).zip(0..) {
        forbidden.extend(credential("other call's stream credential", value));
    }
    for attempt in attempts {
        call.params = attempt;
        call.reopen(mesh).await;
        call.start().await;
        let ending = call.ending(Duration::from_secs(3)).await;
        assert_eq!(ending.closed, Some(Some(1008)), "{ending:?}");
        assert_eq!(ending.agent_frames, 0);
    }
    forbidden
}

/// Legacy REST writes with an expired token, one signed with another secret, a tampered one and
/// one valid for ten years: 401, nothing stored.
async fn refused_legacy_tokens(mesh: &Mesh, tenant: &DemoTenant) -> Forbidden {
    let (caller, content) = ("+15553330004", "refused secret PX-77-NOPE");
    let now = chrono::Utc::now().timestamp();
    let sign = |secret: &[u8], exp: i64| {
        let claims = serde_json::json!({"customer_id": tenant.id, "scope": "memory:read:write",
                                        "iat": now - 600, "exp": exp});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let secret = secrecy::ExposeSecret::expose_secret(&mesh.legacy_secret).as_bytes();
    let valid = sign(secret, now + 300);
    let tokens = [
        sign(secret, now - 120),
        sign(b"another-secret-0123456789abcdefghijklmnop", now + 300),
        format!("{}x", &valid[..valid.len() - 1]),
        // Valid for ten years: above the legacy lifetime limit.
        sign(secret, now + 10 * 365 * 86_400),
    ];
    let mut forbidden = number(caller);
    forbidden.push(("memory content", content.to_owned()));
    for token in &tokens {
        let r = reqwest::Client::new()
            .post(format!("http://{}/memory/store", mesh.gateway.main))
            .bearer_auth(token)
            .json(&serde_json::json!({"user_id": caller, "role": "user", "content": content}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        forbidden.extend(credential("refused legacy token", token));
    }
    let admin = mesh.db.admin_client().await;
    let stored: i64 = admin
        .query_one("SELECT count(*) FROM memory.memories", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
    forbidden
}

/// `POST /v1/calls` to a do-not-call number and to a region the tenant does not allow: 422,
/// nothing dialled, nothing stored.
async fn refused_outbound_calls(mesh: &Mesh, tenant: &DemoTenant) -> Forbidden {
    let (origin, blocked, abroad) = (
        "https://www.peterson.example",
        "+351912000777",
        "+442071838751",
    );
    let token = mesh.tenant_token(tenant.id, &[scope::TENANT_READ, scope::TENANT_WRITE]);
    let settings = OutboundSettings {
        allowed_regions: vec!["PT".into()],
        do_not_call: vec![blocked.into()],
        cors_origins: vec![origin.into()],
        ..OutboundSettings::default()
    };
    let mut client = TenantServiceClient::new(mesh.channel(mesh.tenant).await);
    client
        .update_outbound_settings(with_token(
            UpdateOutboundSettingsRequest {
                settings: Some(settings),
                update_mask: Some(prost_types::FieldMask {
                    paths: ["allowed_regions", "do_not_call", "cors_origins"]
                        .map(str::to_owned)
                        .to_vec(),
                }),
            },
            &token,
        ))
        .await
        .expect("outbound settings accepted");
    let website = mesh.tenant_token(tenant.id, &[scope::MEDIA_OUTBOUND]);
    for to in [blocked, abroad] {
        let r = reqwest::Client::new()
            .post(format!("http://{}/v1/calls", mesh.gateway.main))
            .bearer_auth(&website)
            .header("Origin", origin)
            .json(&serde_json::json!({"to": to}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{to}");
    }
    let admin = mesh.db.admin_client().await;
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM media.calls", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 2, "only the two inbound calls of the stream phase");
    let mut forbidden = number(blocked);
    forbidden.extend(number(abroad));
    forbidden.extend(credential("website token", &website));
    forbidden
}
