//! The OpenAI summarizer against a fake chat-completions server (the real wire protocol, in the
//! test tree), and the visible fallback when the model fails.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use memory_svc::summarizer::{OpenAiConfig, OpenAiSummarizer};
use mesh::api::common::Speaker;
use mesh::api::memory::*;
use serde_json::{Value, json};

/// What the fake received: the `authorization` header and the JSON body of each request.
type Received = Arc<Mutex<Vec<(Option<String>, Value)>>>;

#[derive(Clone, Default)]
struct Fake {
    requests: Received,
    fail: bool,
}

async fn chat_completions(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    fake.requests.lock().unwrap().push((auth, body.clone()));
    if fake.fail {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": {"message": "The server had an error", "type": "server_error"}})),
        );
    }
    let answer = json!({
        "summary": "Caller Maggie filed a water damage claim; the agent opened it.",
        "key_topics": ["claims", "water damage"],
        "key_variables": {"policy_number": "PX-99812"},
        "sentiment": "positive",
        "resolution_status": "resolved",
        "preferred_name": "Maggie",
        "scores": {
            "openness": 61, "conscientiousness": 72, "extraversion": 40, "agreeableness": 80,
            "neuroticism": 20, "formality": 66, "directness": 58, "detail_orientation": 77,
            "patience": 70, "technical_comfort": 30, "frustration_level": 10,
            "satisfaction_level": 90, "urgency_level": 35
        }
    });
    (
        StatusCode::OK,
        Json(json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": body["model"],
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": answer.to_string()},
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}
        })),
    )
}

async fn start_fake(fail: bool) -> (String, Fake) {
    let fake = Fake {
        fail,
        ..Default::default()
    };
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/v1"), fake)
}

fn options(base_url: String) -> memory_svc::Options {
    let summarizer = OpenAiSummarizer::new(OpenAiConfig {
        base_url,
        model: "gpt-4o-mini".into(),
        api_key: "sk-test-key".into(),
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    memory_svc::Options {
        summarizer: Arc::new(summarizer),
        ..Default::default()
    }
}

fn call() -> RecordCallRequest {
    RecordCallRequest {
        call_sid: call_sid(77),
        user_id: "+15551111111".into(),
        call_time: None,
        duration_seconds: 90,
        turns: vec![
            turn(Speaker::Agent, "Hello, how can I help?", 0),
            turn(
                Speaker::Caller,
                "Call me Maggie. My kitchen flooded, I need to file a claim.",
                900,
            ),
        ],
        transferred: false,
    }
}

#[tokio::test]
async fn openai_summaries_come_from_the_chat_completions_api() {
    let (url, fake) = start_fake(false).await;
    let svc = Svc::start_with(options(url)).await;
    let mut c = svc.client().await;
    let t = svc.tenant(3);
    let r = c.record_call(req(call(), &t)).await.unwrap().into_inner();
    let s = r.summary.unwrap();
    assert_eq!(s.summarizer, "openai:gpt-4o-mini");
    assert_eq!(
        s.summary,
        "Caller Maggie filed a water damage claim; the agent opened it."
    );
    assert_eq!(s.key_topics, ["claims", "water damage"]);
    assert_eq!(s.resolution_status, "resolved");

    let requests = fake.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let (auth, body) = &requests[0];
    assert_eq!(auth.as_deref(), Some("Bearer sk-test-key"));
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["response_format"]["type"], "json_object");
    assert_eq!(body["messages"][0]["role"], "system");
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains("Caller: Call me Maggie."), "{user}");

    let admin = svc.admin_sql().await;
    let row = admin
        .query_one(
            "SELECT satisfaction_level, formality FROM memory.personality_metrics WHERE customer_id = 3",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i16>(0), row.get::<_, i16>(1)), (90, 66));
    let ctx = c
        .get_enriched_context(req(
            GetEnrichedContextRequest {
                user_id: "+15551111111".into(),
                num_summaries: None,
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ctx.profile.unwrap().preferred_name, "Maggie");
    assert!(
        ctx.rendered_text
            .contains("Communication style: very formal"),
        "{}",
        ctx.rendered_text
    );

    // Redelivery: no second model call.
    let again = c.record_call(req(call(), &t)).await.unwrap().into_inner();
    assert!(again.already_recorded);
    assert_eq!(fake.requests.lock().unwrap().len(), 1);
    svc.stop().await;
}

#[tokio::test]
async fn a_failing_model_falls_back_visibly() {
    let (url, fake) = start_fake(true).await;
    let svc = Svc::start_with(options(url)).await;
    let mut c = svc.client().await;
    let r = c
        .record_call(req(call(), &svc.tenant(4)))
        .await
        .unwrap()
        .into_inner();
    let s = r.summary.unwrap();
    assert_eq!(
        s.summarizer,
        "heuristic-v1 (fallback: openai:gpt-4o-mini failed)"
    );
    assert!(s.summary.starts_with("Heuristic summary"));
    assert_eq!(fake.requests.lock().unwrap().len(), 1);
    svc.stop().await;
}
