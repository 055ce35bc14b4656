//! The caller's enriched context, end to end: what memory-svc holds about a caller is fetched by
//! media-svc when that caller phones the tenant and reaches the realtime backend's session
//! instructions, fenced as data; what another tenant holds about the same number does not.
//!
//! The backend is the OpenAI Realtime one pointed at a fake server on loopback that records the
//! `session.update` events it receives and answers nothing (the call needs no agent audio here).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{ACCOUNT_SID, DemoTenant, Mesh, MeshOptions, with_token};
use futures::StreamExt as _;
use gateway::sim::{self, SimCall};
use media_svc::BackendChoice;
use media_svc::backend::openai::{ApiShape, OpenAiConfig};
use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::api::memory::{MemoryType, StoreMemoryRequest};
use mesh::identity::scope;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// A Realtime API stand-in that keeps every `session.update` it is sent.
pub(crate) struct FakeRealtime {
    pub(crate) url: String,
    updates: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeRealtime {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/v1/realtime", listener.local_addr().expect("bound"));
        let updates = Arc::new(Mutex::new(Vec::new()));
        let kept = updates.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    while let Some(Ok(message)) = ws.next().await {
                        let Message::Text(text) = message else {
                            continue;
                        };
                        let event: Value = serde_json::from_str(text.as_str()).expect("JSON");
                        if event["type"] == "session.update" {
                            kept.lock().expect("not poisoned").push(event);
                        }
                    }
                });
            }
        });
        Self { url, updates, task }
    }

    /// The instructions of the first session, waiting up to 10 s for it.
    pub(crate) async fn first_instructions(&self) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(update) = self.updates.lock().expect("not poisoned").first() {
                return update["session"]["instructions"]
                    .as_str()
                    .expect("instructions are text")
                    .to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no session.update within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for FakeRealtime {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Stores one preference about `caller` for `tenant`, as the tenant.
async fn remember(mesh: &Mesh, tenant: &DemoTenant, caller: &str, key: &str, value: &str) {
    let token = mesh.tenant_token(tenant.id, &[scope::MEMORY_WRITE]);
    let mut memory = MemoryServiceClient::new(mesh.channel(mesh.memory).await);
    memory
        .store_memory(with_token(
            StoreMemoryRequest {
                user_id: caller.into(),
                r#type: MemoryType::Preference as i32,
                key: key.into(),
                value: Some(prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue(value.into())),
                }),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("memory stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_memories_reach_the_realtime_instructions_at_call_start() {
    let realtime = FakeRealtime::start().await;
    let url = realtime.url.clone();
    let mesh = Mesh::start_with(MeshOptions {
        media: Some(Box::new(move |calls| {
            calls.backend = BackendChoice::OpenAi(OpenAiConfig {
                url,
                model: "gpt-realtime".into(),
                api_key: "sk-e2e".to_owned().into(),
                shape: ApiShape::Ga,
                stall_timeout: Duration::from_secs(10),
            });
        })),
        ..MeshOptions::default()
    })
    .await;
    let (peterson, smith) = mesh.seed_demo_tenants().await;
    let caller = "+15553334444";
    remember(
        &mesh,
        &peterson,
        caller,
        "contact_time",
        "mornings before nine",
    )
    .await;
    remember(&mesh, &smith, caller, "contact_channel", "letters only").await;

    let call = SimCall {
        gateway_addr: mesh.gateway.main.to_string(),
        public_base_url: mesh.public_base_url.clone(),
        auth_token: mesh.twilio_auth_token.clone(),
        account_sid: ACCOUNT_SID.into(),
        call_sid: format!("CA{:032x}", 4242),
        from: caller.into(),
        to: peterson.number.into(),
        caller_audio: sim::voice_like(1.0),
        duration: Duration::from_secs(2),
        direction: String::new(),
    };
    let result = sim::run(&call).await.expect("call runs");
    assert!(result.connected, "{}", result.twiml);

    let instructions = realtime.first_instructions().await;
    let fenced = instructions
        .split_once("<<<CALLER_CONTEXT\n")
        .and_then(|(_, rest)| rest.split_once("\nCALLER_CONTEXT>>>"))
        .map(|(inside, _)| inside)
        .unwrap_or_else(|| panic!("no caller context in the instructions:\n{instructions}"));
    assert!(
        fenced.contains("contact_time: mornings before nine"),
        "Peterson's memory of the caller is missing:\n{fenced}"
    );
    assert!(
        !instructions.contains("letters only") && !instructions.contains("contact_channel"),
        "Smith's memory of the same number leaked into Peterson's call:\n{instructions}"
    );
}
