//! Privacy of the logs: a full simulated call and the legacy REST endpoints run with every
//! service logging at DEBUG into a buffer, which is then scanned once the post-call work (the
//! outbox delivering the call to memory-svc) is done. No raw phone number, transcript text, token
//! or secret may appear; the tenant must (`customer_id` on the lines about it).
//!
//! The subscriber belongs to this test's own runtime (each of its threads), not to the process:
//! the other whole-mesh tests run in the same binary at the same time and must neither write into
//! this buffer nor be slowed by DEBUG logging.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{ACCOUNT_SID, DemoTenant, Mesh};
use gateway::sim::{self, SimCall};
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

#[test]
fn a_full_call_logs_no_number_transcript_token_or_secret() {
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
    let (forbidden, call_sid, customer_id) = runtime.block_on(call_and_legacy_rest());
    drop(runtime);

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.lines().count() > 20,
        "too few log lines captured:\n{logs}"
    );
    for (what, needle) in forbidden {
        if let Some(line) = logs.lines().find(|l| l.contains(&needle)) {
            panic!("the logs contain the {what}: {line}");
        }
    }
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
    let stream_token = {
        let start = result.twiml.find("value=\"").unwrap() + 7;
        result.twiml[start..start + result.twiml[start..].find('"').unwrap()].to_owned()
    };
    let (legacy_token, secret_content) = legacy_store(&mesh, &peterson, caller).await;
    wait_for_post_call_work(&mesh, &call.call_sid).await;

    let forbidden = vec![
        ("caller number", caller.to_owned()),
        ("caller number digits", caller[1..].to_owned()),
        ("stream token", stream_token.clone()),
        (
            "token signature",
            stream_token.rsplit('.').next().unwrap().to_owned(),
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
    ];
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
