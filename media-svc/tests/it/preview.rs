//! `RenderInstructions`: the portal's preview renders exactly what a call sends (the same
//! function, from the same profile), applies an unsaved draft that tenant-svc validates, stores
//! nothing, and needs the owner's `media:preview`.

use std::time::Duration;

use media_svc::BackendChoice;
use media_svc::backend::openai::{ApiShape, OpenAiConfig};
use media_svc::instructions;
use media_svc::peers::Peers;
use mesh::api::media::{ExampleCaller, RenderInstructionsRequest, StreamStop};
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::{AgentConfig, UpdateAgentConfigRequest};
use mesh::auth::{AttachToken, TokenSource};
use mesh::domain::CustomerId;
use mesh::identity::{names, scope};
use tonic::Code;

use crate::common::{CallStream, In, Svc, create_customer, create_customer_named};
use crate::fakes::{FakeRealtime, fake_twilio};

/// 13:00 UTC on a Monday: 08:00 in New York (the customers' time zone), "Good morning".
fn monday_1300_utc() -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: 1_772_456_400,
        nanos: 0,
    }
}

fn request(draft: Option<AgentConfig>, caller: ExampleCaller) -> RenderInstructionsRequest {
    RenderInstructionsRequest {
        draft,
        draft_mask: None,
        example_caller: caller.into(),
        example_caller_name: String::new(),
        time: Some(monday_1300_utc()),
    }
}

#[tokio::test]
async fn the_preview_is_what_a_call_sends_and_a_draft_changes_it_without_storing() {
    let svc = Svc::start_with(|c| c, true).await;
    let ada = create_customer(&svc, "alloy").await;
    let other = create_customer_named(&svc, "coral", "Bruno").await;
    let mut owner = svc
        .client_with(svc.tenant_token(ada, "user:1", &[scope::MEDIA_PREVIEW]))
        .await;

    // Saved configuration, new caller: byte for byte what the call path builds.
    let saved = owner
        .render_instructions(request(None, ExampleCaller::New))
        .await
        .expect("the owner previews")
        .into_inner();
    let peers = Peers::new(
        &format!("http://{}", svc.tenant_addr.unwrap()),
        "http://127.0.0.1:1",
        svc.keys.identity(names::MEDIA_SVC),
        Duration::from_secs(5),
    )
    .unwrap();
    let profile = peers.profile(CustomerId::new(ada).unwrap()).await.unwrap();
    let now = chrono::DateTime::from_timestamp(monday_1300_utc().seconds, 0).unwrap();
    let call = instructions::for_call(profile, None, None, None, now);
    assert_eq!(saved.instructions, call.instructions);
    assert_eq!(saved.greeting, call.greeting);
    assert_eq!(
        saved.greeting,
        "Good morning! This is Ada. How can I help you?"
    );
    assert_eq!(saved.voice, "alloy");
    assert!(saved.instructions.contains("Be very warm and friendly"));
    assert!(saved.instructions.contains("\"claims\": the claims desk"));

    // A draft: another greeting and slider, previewed for a returning caller; nothing stored.
    let history = "SELECT count(*) FROM tenant.customer_configurations";
    let stored_before = svc.count(history).await;
    let mut draft = AgentConfig {
        greeting_returning_caller: Some("Welcome back {user_name}, {agent_name} here.".into()),
        ..Default::default()
    };
    draft.sliders.insert("humor".into(), 85);
    let mut returning = request(Some(draft.clone()), ExampleCaller::Returning);
    returning.example_caller_name = "Maria".into();
    let previewed = owner
        .render_instructions(returning)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(previewed.greeting, "Welcome back Maria, Ada here.");
    assert_eq!(previewed.greeting_returning_caller, previewed.greeting);
    assert_eq!(previewed.greeting_new_caller, saved.greeting);
    assert!(previewed.instructions.contains("Be very humorous"));
    assert!(previewed.instructions.contains("<<<CALLER_CONTEXT\n"));
    assert!(previewed.instructions.contains("Name: Maria"));
    assert_eq!(
        svc.count(history).await,
        stored_before,
        "a preview stores nothing"
    );
    let again = owner
        .render_instructions(request(None, ExampleCaller::New))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.instructions, saved.instructions,
        "the saved profile is unchanged"
    );

    // The other tenant's preview is its own.
    let theirs = svc
        .client_with(svc.tenant_token(other, "user:2", &[scope::MEDIA_PREVIEW]))
        .await
        .render_instructions(request(None, ExampleCaller::New))
        .await
        .unwrap()
        .into_inner();
    assert!(
        theirs.instructions.starts_with("You are Bruno"),
        "{}",
        theirs.instructions
    );
    assert!(!theirs.instructions.contains("Ada"));
    svc.stop().await;
}

#[tokio::test]
async fn bad_drafts_and_tokens_without_the_preview_scope_are_refused() {
    let svc = Svc::start_with(|c| c, true).await;
    let ada = create_customer(&svc, "alloy").await;
    let mut owner = svc
        .client_with(svc.tenant_token(ada, "user:1", &[scope::MEDIA_PREVIEW]))
        .await;
    let mut draft = AgentConfig::default();
    draft.sliders.insert("warmth".into(), 101);
    let err = owner
        .render_instructions(request(Some(draft), ExampleCaller::New))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("draft.sliders.warmth"),
        "{}",
        err.message()
    );
    let draft = AgentConfig {
        greeting_new_caller: Some("Hi {caller_number}".into()),
        ..Default::default()
    };
    let err = owner
        .render_instructions(request(Some(draft), ExampleCaller::New))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("draft.greeting_new_caller"),
        "{}",
        err.message()
    );
    let mut long_name = request(None, ExampleCaller::Returning);
    long_name.example_caller_name = "x".repeat(61);
    let err = owner.render_instructions(long_name).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("example_caller_name"));

    // Staff hold media:read (calls and transcripts), never media:preview.
    let err = svc
        .client_with(svc.tenant_token(ada, "user:2", &[scope::MEDIA_READ]))
        .await
        .render_instructions(request(None, ExampleCaller::New))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    svc.stop().await;
}

/// The preview of an unsaved draft, rendered for "now", is byte for byte what the realtime
/// backend receives on a call placed after the owner saves that draft (the instructions carry
/// the local time to the minute, so the call's are compared with a preview taken just before
/// and one just after it).
#[tokio::test]
async fn a_saved_draft_preview_is_what_the_fake_realtime_backend_receives_on_the_next_call() {
    let mut realtime = FakeRealtime::start().await;
    let (twilio_url, _twilio) = fake_twilio().await;
    let url = realtime.url.clone();
    let svc = Svc::start_with(
        move |mut c| {
            c.backend = BackendChoice::OpenAi(OpenAiConfig {
                url,
                model: "gpt-realtime".into(),
                api_key: "sk-test-key".to_owned().into(),
                shape: ApiShape::Ga,
                stall_timeout: media_svc::backend::openai::DEFAULT_STALL_TIMEOUT,
            });
            c.twilio.base_url = twilio_url;
            c.twilio.auth_token = Some("twilio-secret".to_owned().into());
            c.peer_timeout = Duration::from_secs(5);
            c
        },
        true,
    )
    .await;
    let ada = create_customer(&svc, "alloy").await;
    let mut owner = svc
        .client_with(svc.tenant_token(ada, "user:1", &[scope::MEDIA_PREVIEW]))
        .await;
    let mut draft = AgentConfig {
        greeting_new_caller: Some("{time_greeting}, {agent_name} at Smith & Sons here.".into()),
        voice: Some("coral".into()),
        ..Default::default()
    };
    draft.sliders.insert("humor".into(), 85);
    let at_monday = |draft: Option<AgentConfig>| request(draft, ExampleCaller::New);
    let drafted = preview(&mut owner, at_monday(Some(draft.clone()))).await;
    assert_eq!(drafted.greeting, "Good morning, Ada at Smith & Sons here.");
    assert_eq!(drafted.voice, "coral");

    // The owner saves the draft (tenant:write at tenant-svc), then a call comes in.
    let token = svc.tenant_token(ada, "user:1", &[scope::TENANT_WRITE]);
    TenantServiceClient::with_interceptor(
        svc.channel_to(svc.tenant_addr.unwrap()).await,
        AttachToken(TokenSource::fixed(token.into())),
    )
    .update_agent_config(UpdateAgentConfigRequest {
        config: Some(draft),
        update_mask: None,
    })
    .await
    .unwrap();
    let saved = preview(&mut owner, at_monday(None)).await;
    assert_eq!(saved, drafted, "the draft's preview is the saved profile's");
    let now = || RenderInstructionsRequest {
        example_caller: ExampleCaller::New.into(),
        ..Default::default()
    };
    let before = preview(&mut owner, now()).await;
    let call_sid = &crate::common::sid("CA", 77);
    let mut client = svc
        .client_with(svc.tenant_token(ada, call_sid, scope::CALL_SCOPES))
        .await;
    let call = CallStream::open(&mut client, &mut svc.gateway_client().await, call_sid)
        .await
        .unwrap();
    let mut conn = realtime.next_conn().await;
    let update = conn.next_of("session.update").await;
    let after = preview(&mut owner, now()).await;
    let sent = update["session"]["instructions"].as_str().unwrap();
    assert!(
        sent == before.instructions || sent == after.instructions,
        "the call sent:\n{sent}\n\nthe preview showed:\n{}",
        before.instructions
    );
    assert!(sent.contains("Be very humorous"), "{sent}");
    assert!(sent.contains(&before.greeting) || sent.contains(&after.greeting));
    assert_eq!(update["session"]["audio"]["output"]["voice"], before.voice);
    call.send(In::Stop(StreamStop {})).await;
    svc.stop().await;
}

async fn preview(
    owner: &mut crate::common::Client,
    request: RenderInstructionsRequest,
) -> mesh::api::media::RenderInstructionsResponse {
    owner
        .render_instructions(request)
        .await
        .unwrap()
        .into_inner()
}
