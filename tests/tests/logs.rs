//! Privacy of the logs: a full simulated call and the legacy REST endpoints run with every
//! service logging at DEBUG into a buffer, which is then scanned. No raw phone number, transcript
//! text, token or secret may appear; the tenant must (`customer_id` on the lines about it).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{ACCOUNT_SID, Mesh};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_call_logs_no_number_transcript_token_or_secret() {
    let buffer = Buffer::default();
    let filter = "info,mesh=debug,gateway=debug,tenant_svc=debug,memory_svc=debug,media_svc=debug";
    mesh::telemetry::init_subscriber(mesh::telemetry::get_subscriber(
        filter,
        mesh::telemetry::LogFormat::Json,
        buffer.clone(),
    ));

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

    // Legacy REST with a memory whose content must not be logged either.
    let legacy = mesh::auth::LegacyVerifier::new(&mesh.legacy_secret).unwrap();
    let legacy_token = legacy.mint_for_tests(
        mesh::domain::CustomerId::new(peterson.id).unwrap(),
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
    // Let the post-call work (outbox to memory-svc) run and log.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.lines().count() > 20,
        "too few log lines captured:\n{logs}"
    );
    let digits = &caller[1..];
    let forbidden: Vec<(&str, String)> = vec![
        ("caller number", caller.to_owned()),
        ("caller number digits", digits.to_owned()),
        ("stream token", stream_token.clone()),
        (
            "token signature",
            stream_token.rsplit('.').next().unwrap().to_owned(),
        ),
        ("legacy token", legacy_token.clone()),
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
    for (what, needle) in forbidden {
        if let Some(line) = logs.lines().find(|l| l.contains(&needle)) {
            panic!("the logs contain the {what}: {line}");
        }
    }
    // Lines about the call name its tenant.
    let call_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(&call.call_sid))
        .collect();
    assert!(!call_lines.is_empty(), "no log line mentions the call");
    assert!(
        call_lines
            .iter()
            .any(|l| l.contains(&format!("\"customer_id\":{}", peterson.id))),
        "no line about the call carries customer_id:\n{}",
        call_lines.join("\n")
    );
}
