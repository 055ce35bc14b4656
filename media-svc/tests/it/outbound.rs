//! Outbound calls and the per-tenant call limits over real gRPC, with a real tenant-svc (customer
//! records, outbound settings) and a fake of Twilio's create-call REST endpoint (the only fake):
//! what reaches Twilio, what is stored, every refusal (which dials nothing and stores nothing,
//! counted with the admin client before and after), the limits under concurrency, tenant
//! isolation, and an outbound call streamed end to end with the local backend, waiting for the
//! callee or greeting first.

use crate::common;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use common::{CallStream, In, Out, Svc, register, sid, silent_frame, voiced_frame};
use mesh::api::common::Speaker;
use mesh::api::media::*;
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::{
    AssignPhoneNumberRequest, CreateCustomerRequest, OutboundSettings,
    UpdateOutboundSettingsRequest,
};
use mesh::auth::{AttachToken, TokenSource};
use mesh::identity::{names, scope};
use tokio::net::TcpListener;
use tonic::Code;

pub(crate) const ORIGIN: &str = "https://www.peterson.example";
pub(crate) const PROSPECT: &str = "+351912345678";
const DO_NOT_CALL: &str = "+351912000000";
pub(crate) const UK: &str = "+442071838750";
pub(crate) const PUBLIC_BASE: &str = "https://edge.example";
pub(crate) const AUTH_TOKEN: &str = "fake-twilio-auth-token";
pub(crate) const A_NUMBER: &str = "+14155550101";
const A_SUB_NUMBER: &str = "+14155550102";
pub(crate) const B_NUMBER: &str = "+14155550103";

pub(crate) fn platform_account() -> String {
    sid("AC", 0xacc)
}

fn sub_account() -> String {
    sid("AC", 0x5b)
}

// ---------------------------------------------------------------------------------------------
// A fake of Twilio's `POST /2010-04-01/Accounts/{AccountSid}/Calls.json`.
// ---------------------------------------------------------------------------------------------

/// One create-call request as the fake received it.
#[derive(Debug, Clone)]
pub(crate) struct CreateCall {
    account: String,
    authorization: String,
    form: Vec<(String, String)>,
}

impl CreateCall {
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// How the fake answers the next requests.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// 201 with a fresh CallSid, as Twilio does.
    Created,
    /// 201 with this CallSid (once), then fresh ones.
    CreatedAs(String),
    /// This status and JSON body.
    Error(u16, serde_json::Value),
    /// 201 with this CallSid (once), but only once the gate opens.
    Held(String, Arc<tokio::sync::Semaphore>),
}

#[derive(Default)]
struct FakeState {
    requests: Vec<CreateCall>,
    /// Updates of live calls (`POST .../Calls/{CallSid}.json`): the CallSid and the form.
    updates: Vec<(String, Vec<(String, String)>)>,
    answer: Option<Answer>,
    issued: u32,
}

pub(crate) struct FakeTwilio {
    pub(crate) url: String,
    state: Arc<Mutex<FakeState>>,
}

/// The fake's `POST .../Calls/{CallSid}.json`: records the update of a live call.
async fn update(
    axum::extract::State(state): axum::extract::State<Arc<Mutex<FakeState>>>,
    axum::extract::Path((_account, call)): axum::extract::Path<(String, String)>,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> (axum::http::StatusCode, String) {
    let call_sid = call.trim_end_matches(".json").to_owned();
    state.lock().unwrap().updates.push((call_sid.clone(), form));
    let body = serde_json::json!({"sid": call_sid, "status": "completed"});
    (axum::http::StatusCode::OK, body.to_string())
}

impl FakeTwilio {
    pub(crate) async fn start() -> FakeTwilio {
        use axum::extract::{Path, State};
        use axum::http::{HeaderMap, StatusCode};
        async fn create(
            State(state): State<Arc<Mutex<FakeState>>>,
            Path(account): Path<String>,
            headers: HeaderMap,
            axum::Form(form): axum::Form<Vec<(String, String)>>,
        ) -> (StatusCode, String) {
            let held = {
                let mut s = state.lock().unwrap();
                s.requests.push(CreateCall {
                    account: account.clone(),
                    authorization: headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    form: form.clone(),
                });
                match s.answer.clone() {
                    Some(Answer::Held(call_sid, gate)) => {
                        s.answer = None;
                        Some((call_sid, gate))
                    }
                    _ => None,
                }
            };
            if let Some((call_sid, gate)) = held {
                let _ = gate.acquire().await.unwrap();
                state.lock().unwrap().answer = Some(Answer::CreatedAs(call_sid));
            }
            let mut s = state.lock().unwrap();
            let answer = s.answer.clone().unwrap_or(Answer::Created);
            let call_sid = match answer {
                Answer::Error(status, body) => {
                    return (StatusCode::from_u16(status).unwrap(), body.to_string());
                }
                Answer::CreatedAs(call_sid) | Answer::Held(call_sid, _) => {
                    s.answer = None;
                    call_sid
                }
                Answer::Created => {
                    s.issued += 1;
                    format!("CA{:032x}", 0xf00_0000 + s.issued)
                }
            };
            let body = serde_json::json!({
                "sid": call_sid, "account_sid": account, "status": "queued",
                "direction": "outbound-api", "api_version": "2010-04-01",
            });
            (StatusCode::CREATED, body.to_string())
        }
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Calls.json",
                axum::routing::post(create),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Calls/{call}",
                axum::routing::post(update),
            )
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeTwilio { url, state }
    }

    pub(crate) fn requests(&self) -> Vec<CreateCall> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The updates of live calls received so far: (CallSid, form).
    pub(crate) fn updates(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.state.lock().unwrap().updates.clone()
    }

    pub(crate) fn count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    fn answer(&self, answer: Answer) {
        self.state.lock().unwrap().answer = Some(answer);
    }
}

// ---------------------------------------------------------------------------------------------
// Harness.
// ---------------------------------------------------------------------------------------------

/// media-svc with a real tenant-svc, Twilio pointed at the fake, and these tier limits.
pub(crate) async fn start(twilio: &FakeTwilio, tiers: &str) -> Svc {
    start_with_realtime(twilio, tiers, None).await
}

/// [`start`] with the `openai-realtime` backend pointed at `realtime_url` when given.
async fn start_with_realtime(
    twilio: &FakeTwilio,
    tiers: &str,
    realtime_url: Option<String>,
) -> Svc {
    let base = twilio.url.clone();
    let tiers = media_svc::outbound::Limits::parse_tiers(tiers).unwrap();
    Svc::start_with(
        move |mut c| {
            if let Some(url) = realtime_url {
                c.backend =
                    media_svc::BackendChoice::OpenAi(media_svc::backend::openai::OpenAiConfig {
                        url,
                        model: "gpt-realtime".into(),
                        api_key: "sk-test-key".to_owned().into(),
                        shape: media_svc::backend::openai::ApiShape::Ga,
                        stall_timeout: media_svc::backend::openai::DEFAULT_STALL_TIMEOUT,
                    });
            }
            c.twilio.base_url = base;
            c.twilio.auth_token = Some(AUTH_TOKEN.to_owned().into());
            c.twilio.account_sid =
                Some(mesh::domain::AccountSid::parse(&platform_account()).unwrap());
            c.public_base_url = PUBLIC_BASE.into();
            c.limits.concurrent_by_tier = tiers;
            c.limits.outbound_per_hour = 20;
            // No message-taking calls: an inbound call at the limit is refused, as these tests
            // check (the message flow at the limit is `messages_busy.rs`).
            c.message_calls = (0, 0);
            c
        },
        true,
    )
    .await
}

async fn admin(
    svc: &Svc,
) -> TenantAdminServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, AttachToken>,
> {
    let token = svc.service_token(names::OPERATOR, names::TENANT_SVC, &[scope::TENANT_ADMIN]);
    TenantAdminServiceClient::with_interceptor(
        svc.channel_to(svc.tenant_addr.unwrap()).await,
        AttachToken(TokenSource::fixed(token.into())),
    )
}

/// Creates a customer with a package tier and numbers (`(number, subaccount)`), returning its id.
pub(crate) async fn customer(
    svc: &Svc,
    name: &str,
    tier: &str,
    numbers: &[(&str, Option<String>)],
) -> i64 {
    let mut admin = admin(svc).await;
    let id = admin
        .create_customer(CreateCustomerRequest {
            email: format!("owner@{name}.example"),
            business_name: format!("{name} Insurance"),
            contact_name: "Pat".into(),
            contact_phone: String::new(),
            package_tier: tier.into(),
            agent_config: None,
        })
        .await
        .expect("customer created")
        .into_inner()
        .customer
        .unwrap()
        .id;
    for (number, account) in numbers {
        admin
            .assign_phone_number(AssignPhoneNumberRequest {
                customer_id: id,
                number: (*number).into(),
                twilio_account_sid: account.clone().unwrap_or_default(),
            })
            .await
            .expect("number assigned");
    }
    id
}

pub(crate) fn peterson_settings() -> OutboundSettings {
    OutboundSettings {
        allowed_regions: vec!["PT".into()],
        allowed_personas: vec!["Sofia".into()],
        do_not_call: vec![DO_NOT_CALL.into()],
        cors_origins: vec![ORIGIN.into()],
        greet_first_outbound: false,
        webhook_url: String::new(),
        webhook_raw_numbers: false,
        public_calls_per_hour: 0,
        allowed_number_types: vec![],
        transfer_regions: vec![],
        max_call_minutes: 0,
    }
}

/// Sets the named fields of the tenant's outbound settings through tenant-svc.
pub(crate) async fn configure(
    svc: &Svc,
    customer: i64,
    settings: OutboundSettings,
    paths: &[&str],
) {
    let token = svc.tenant_token(
        customer,
        "owner",
        &[scope::TENANT_READ, scope::TENANT_WRITE],
    );
    let mut client = TenantServiceClient::with_interceptor(
        svc.channel_to(svc.tenant_addr.unwrap()).await,
        AttachToken(TokenSource::fixed(token.into())),
    );
    client
        .update_outbound_settings(UpdateOutboundSettingsRequest {
            settings: Some(settings),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
        })
        .await
        .expect("outbound settings accepted");
}

pub(crate) const OUTBOUND_FIELDS: &[&str] = &[
    "allowed_regions",
    "allowed_personas",
    "do_not_call",
    "cors_origins",
    "greet_first_outbound",
];

/// A client holding the website's credential: a tenant token that can only place calls.
pub(crate) async fn website(svc: &Svc, customer: i64) -> common::Client {
    svc.client_with(svc.tenant_token(customer, "website", &[scope::MEDIA_OUTBOUND]))
        .await
}

pub(crate) fn place(to: &str) -> PlaceOutboundCallRequest {
    PlaceOutboundCallRequest {
        to: to.into(),
        persona: String::new(),
        context: String::new(),
        from: String::new(),
        origin: String::new(),
        client_address: String::new(),
    }
}

/// Rows that a refusal must not leave behind: calls and reservations.
pub(crate) async fn rows(svc: &Svc) -> (i64, i64) {
    (
        svc.count("SELECT count(*) FROM media.calls").await,
        svc.count("SELECT count(*) FROM media.outbound_reservations")
            .await,
    )
}

fn basic(account: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{account}:{AUTH_TOKEN}"))
    )
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

/// The first placement reached Twilio as the platform account, with basic auth, the tenant's
/// first number as caller id, and the gateway's voice and status webhooks.
fn check_first_request(twilio: &FakeTwilio) {
    // Twilio: the platform account (the first number has no subaccount), basic auth, the
    // tenant's first number as caller id, the gateway's voice and status webhooks.
    let requests = twilio.requests();
    assert_eq!(requests.len(), 1);
    let create = &requests[0];
    assert_eq!(create.account, platform_account());
    assert_eq!(create.authorization, basic(&platform_account()));
    assert_eq!(create.field("To"), Some(PROSPECT));
    assert_eq!(create.field("From"), Some(A_NUMBER));
    assert_eq!(
        create.field("Url"),
        Some("https://edge.example/twilio/voice")
    );
    assert_eq!(create.field("Method"), Some("POST"));
    assert_eq!(
        create.field("StatusCallback"),
        Some("https://edge.example/twilio/status")
    );
    assert_eq!(
        create.all("StatusCallbackEvent"),
        ["initiated", "ringing", "answered", "completed"]
    );
}

/// The stored call of the first placement.
async fn check_placed_record(svc: &Svc, a: i64, placed: &Call) {
    // The record: Twilio's CallSid, outbound-api, queued, the persona as the tenant spells it,
    // the prospect as the remote party and the tenant's number as its own side.
    assert_eq!(placed.call_sid, format!("CA{:032x}", 0xf00_0001));
    assert_eq!(placed.direction, CallDirection::OutboundApi as i32);
    assert_eq!(placed.status, CallStatus::Queued as i32);
    assert_eq!(placed.persona, "Sofia");
    assert_eq!(placed.caller, PROSPECT);
    assert_eq!(placed.called, A_NUMBER);
    assert_eq!(placed.account_sid, platform_account());
    let admin = svc.db.admin_client().await;
    let stored: String = admin
        .query_one(
            "SELECT context FROM media.calls WHERE call_sid = $1",
            &[&placed.call_sid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, "Asked about home insurance on the website");
    let mut reader = svc.client(a).await;
    let got = reader
        .get_call(GetCallRequest {
            call_sid: placed.call_sid.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    assert_eq!(got.persona, "Sofia");
    assert_eq!(got.direction, CallDirection::OutboundApi as i32);
}

/// A placement from the tenant's number in a subaccount goes out as that account.
async fn place_from_subaccount(web: &mut common::Client, twilio: &FakeTwilio) {
    // From the number that lives in a subaccount: that account in the URL and the credentials.
    let mut from_sub = place(PROSPECT);
    from_sub.from = A_SUB_NUMBER.into();
    let second = web
        .place_outbound_call(from_sub)
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    let create = &twilio.requests()[1];
    assert_eq!(create.account, sub_account());
    assert_eq!(create.authorization, basic(&sub_account()));
    assert_eq!(create.field("From"), Some(A_SUB_NUMBER));
    assert_eq!(second.account_sid, sub_account());
    assert_eq!(second.persona, "", "no persona: the agent profile");
}

/// The gateway's registration of a placed call that arrives before Twilio's answer is stored.
async fn early_registration_merges(
    svc: &Svc,
    a: i64,
    twilio: &FakeTwilio,
    web: &mut common::Client,
) {
    // The gateway's RegisterCall for the CallSid may arrive before Twilio's answer is stored:
    // the placement merges into that row (keeping its later status) instead of failing.
    let early = sid("CA", 0xea51);
    let mut gateway = svc
        .client_with(svc.tenant_token(a, &early, scope::CALL_SCOPES))
        .await;
    gateway
        .register_call(RegisterCallRequest {
            call_sid: early.clone(),
            account_sid: platform_account(),
            from: PROSPECT.into(),
            to: A_NUMBER.into(),
            direction: CallDirection::OutboundApi as i32,
            status: CallStatus::Ringing as i32,
        })
        .await
        .unwrap();
    twilio.answer(Answer::CreatedAs(early.clone()));
    let mut with_persona = place(PROSPECT);
    with_persona.persona = "Sofia".into();
    with_persona.context = "callback requested".into();
    let merged = web
        .place_outbound_call(with_persona)
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    assert_eq!(merged.call_sid, early);
    assert_eq!(
        merged.status,
        CallStatus::Ringing as i32,
        "never moved back"
    );
    assert_eq!(merged.persona, "Sofia");
    assert_eq!(
        rows(svc).await,
        (3, 0),
        "one row per call, no reservation left"
    );
}

#[tokio::test]
async fn a_placed_call_reaches_twilio_from_the_tenants_number_and_is_stored_outbound_api() {
    let twilio = FakeTwilio::start().await;
    let svc = start(&twilio, "starter=5").await;
    let a = customer(
        &svc,
        "peterson",
        "",
        &[(A_NUMBER, None), (A_SUB_NUMBER, Some(sub_account()))],
    )
    .await;
    configure(&svc, a, peterson_settings(), OUTBOUND_FIELDS).await;
    let mut web = website(&svc, a).await;

    let placed = web
        .place_outbound_call(PlaceOutboundCallRequest {
            to: "+351 912 345 678".into(),
            persona: "sofia".into(),
            context: "  <b>Asked</b> about <i>home insurance</i>\u{7} on the website\n".into(),
            from: String::new(),
            origin: ORIGIN.into(),
            client_address: String::new(),
        })
        .await
        .expect("call placed")
        .into_inner()
        .call
        .unwrap();

    check_first_request(&twilio);
    check_placed_record(&svc, a, &placed).await;
    place_from_subaccount(&mut web, &twilio).await;
    early_registration_merges(&svc, a, &twilio, &mut web).await;
    let admin = svc.db.admin_client().await;
    mesh::testkit::assert_rls_everywhere(&admin).await;
    svc.stop().await;
}

/// Each refusal of the checks: its name, the request, the code and part of the message.
fn refusal_cases() -> Vec<(&'static str, PlaceOutboundCallRequest, Code, &'static str)> {
    let with = |f: &dyn Fn(&mut PlaceOutboundCallRequest)| {
        let mut r = place(PROSPECT);
        r.origin = ORIGIN.into();
        f(&mut r);
        r
    };
    let cases: Vec<(&str, PlaceOutboundCallRequest, Code, &str)> = vec![
        (
            "foreign origin",
            with(&|r| r.origin = "https://evil.example".into()),
            Code::PermissionDenied,
            "origin \"https://evil.example\" is not allowed",
        ),
        (
            "not E.164",
            with(&|r| r.to = "912345678".into()),
            Code::InvalidArgument,
            "invalid `to`",
        ),
        (
            "not a valid number",
            with(&|r| r.to = "+3519".into()),
            Code::InvalidArgument,
            "invalid `to`",
        ),
        (
            "country not allowed",
            with(&|r| r.to = UK.into()),
            Code::FailedPrecondition,
            "`to`: numbers in region GB are not allowed for this customer",
        ),
        (
            "do-not-call",
            with(&|r| r.to = DO_NOT_CALL.into()),
            Code::FailedPrecondition,
            "do-not-call list",
        ),
        (
            "persona not allowed",
            with(&|r| r.persona = "Max".into()),
            Code::InvalidArgument,
            "invalid `persona`: \"Max\" is not one of this customer's allowed personas",
        ),
        (
            "context too long",
            with(&|r| r.context = "x".repeat(2001)),
            Code::InvalidArgument,
            "invalid `context`",
        ),
        (
            "another tenant's number as caller id",
            with(&|r| r.from = B_NUMBER.into()),
            Code::InvalidArgument,
            "invalid `from`: is not one of this customer's numbers",
        ),
        (
            "caller id that is no number",
            with(&|r| r.from = "Peterson".into()),
            Code::InvalidArgument,
            "invalid `from`",
        ),
    ];
    cases
}

/// Twilio refusing (4xx, its message sanitized) or failing (5xx, UNAVAILABLE): nothing stored.
async fn twilio_refusals(
    svc: &Svc,
    twilio: &FakeTwilio,
    web: &mut common::Client,
    before: (i64, i64),
) {
    // Markup does not count towards the 2,000 characters.
    let mut wrapped = place(PROSPECT);
    wrapped.context = format!("<div>{}</div>", "y".repeat(2000));
    twilio.answer(Answer::Error(
        400,
        serde_json::json!({"code": 21215, "status": 400,
            "message": format!("Account not authorized to call {PROSPECT}.\u{7}\nSee https://www.twilio.com/console {AUTH_TOKEN}"),
            "more_info": "https://www.twilio.com/docs/errors/21215"}),
    ));
    // ... so this one reaches Twilio, which refuses it (4xx): its message, sanitized.
    let e = web.place_outbound_call(wrapped).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message()
            .starts_with("Twilio refused the call: Account not authorized to call +351912345678. See https://www.twilio.com/console"),
        "{}",
        e.message()
    );
    assert!(!e.message().contains(AUTH_TOKEN), "{}", e.message());
    assert!(!e.message().contains('\u{7}') && !e.message().contains('\n'));
    assert_eq!(twilio.count(), 1);
    assert_eq!(rows(svc).await, before, "a refused call is not stored");

    // Twilio failing (5xx): UNAVAILABLE, nothing stored.
    twilio.answer(Answer::Error(503, serde_json::json!({"message": "down"})));
    let e = web.place_outbound_call(place(PROSPECT)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert_eq!(e.message(), "Twilio is unavailable, retry later");
    assert_eq!(twilio.count(), 2);
    assert_eq!(rows(svc).await, before);
}

#[tokio::test]
async fn every_refusal_has_its_code_and_message_and_dials_and_stores_nothing() {
    let twilio = FakeTwilio::start().await;
    let svc = start(&twilio, "starter=5").await;
    let a = customer(&svc, "peterson", "", &[(A_NUMBER, None)]).await;
    let b = customer(&svc, "smith", "", &[(B_NUMBER, None)]).await;
    configure(&svc, a, peterson_settings(), OUTBOUND_FIELDS).await;
    let mut web = website(&svc, a).await;
    let mut b_web = website(&svc, b).await;

    let cases = refusal_cases();
    let before = rows(&svc).await;
    for (name, request, code, message) in cases {
        let e = web.place_outbound_call(request).await.unwrap_err();
        assert_eq!(e.code(), code, "{name}: {}", e.message());
        assert!(e.message().contains(message), "{name}: {}", e.message());
        assert_eq!(twilio.count(), 0, "{name}: nothing dialled");
        assert_eq!(rows(&svc).await, before, "{name}: nothing stored");
    }

    // Smith never enabled outbound calls: no region is allowed.
    let e = b_web
        .place_outbound_call(place(PROSPECT))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("not enabled"), "{}", e.message());

    twilio_refusals(&svc, &twilio, &mut web, before).await;
    // A token without `media:outbound` never gets this far.
    let mut reader = svc
        .client_with(svc.tenant_token(a, "reader", &[scope::MEDIA_READ]))
        .await;
    let e = reader
        .place_outbound_call(place(PROSPECT))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(twilio.count(), 2);
    assert_eq!(rows(&svc).await, before);
    svc.stop().await;
}

/// At the limit an inbound call is refused too, while the registration of a placed call still
/// succeeds; returns the gateway's client.
async fn inbound_at_the_limit(
    svc: &Svc,
    a: i64,
    first: &Call,
    before: (i64, i64),
) -> common::Client {
    // An inbound caller meanwhile: refused the same way (the gateway plays its busy message),
    // while the gateway's registration of a placed call (the callee answered) still succeeds.
    let inbound = sid("CA", 0x1b);
    let mut gateway = svc
        .client_with(svc.tenant_token(a, &inbound, scope::CALL_SCOPES))
        .await;
    let mut ring = register(&inbound, "+15551111111");
    ring.to = A_NUMBER.into();
    let e = gateway.register_call(ring.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(
        e.message().contains("2 calls in progress"),
        "{}",
        e.message()
    );
    // Nothing live is stored: the refusal is recorded as a final row, so a repeat of the
    // webhook is refused the same way.
    assert_eq!(rows(svc).await, (before.0 + 1, before.1));
    assert_eq!(
        svc.count(&format!(
            "SELECT count(*) FROM media.calls WHERE call_sid = '{inbound}' \
             AND status = {} AND end_reason = 'call-limit' AND stream_sid IS NULL",
            CallStatus::Busy as i32
        ))
        .await,
        1
    );
    let again = gateway.register_call(ring).await.unwrap_err();
    assert_eq!(again.code(), Code::ResourceExhausted);
    let answered = gateway
        .register_call(RegisterCallRequest {
            call_sid: first.call_sid.clone(),
            account_sid: platform_account(),
            from: PROSPECT.into(),
            to: A_NUMBER.into(),
            direction: CallDirection::OutboundApi as i32,
            status: CallStatus::Ringing as i32,
        })
        .await
        .expect("a repeat always succeeds")
        .into_inner();
    assert!(!answered.created);
    assert_eq!(answered.call.unwrap().persona, first.persona);

    gateway
}

/// The rolling hour's limit refuses with the seconds until the oldest call leaves it.
async fn rolling_hour(svc: &Svc, a: i64, twilio: &FakeTwilio, web: &mut common::Client) {
    // The rolling hour: this tenant may place 3 calls an hour (3 placed so far).
    configure(
        svc,
        a,
        OutboundSettings {
            public_calls_per_hour: 3,
            ..Default::default()
        },
        &["public_calls_per_hour"],
    )
    .await;
    let before = rows(svc).await;
    let e = web.place_outbound_call(place(PROSPECT)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert_eq!(
        e.message(),
        "customer has placed 3 outbound calls in the last hour, the limit is 3"
    );
    let retry: u64 = e
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (3500..=3600).contains(&retry),
        "the oldest leaves in about an hour: {retry}"
    );
    assert_eq!(e.metadata().get("x-neurosphere-limit").unwrap(), "rate");
    assert_eq!(twilio.count(), 3);
    assert_eq!(rows(svc).await, before);
}

#[tokio::test]
async fn the_hourly_and_concurrent_limits_refuse_with_retry_metadata() {
    let twilio = FakeTwilio::start().await;
    let svc = start(&twilio, "starter=2").await;
    let a = customer(&svc, "peterson", "", &[(A_NUMBER, None)]).await;
    configure(&svc, a, peterson_settings(), OUTBOUND_FIELDS).await;
    let mut web = website(&svc, a).await;

    // Concurrency: two calls in progress are the starter tier's whole allowance.
    let first = web
        .place_outbound_call(place(PROSPECT))
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    web.place_outbound_call(place(PROSPECT)).await.unwrap();
    let before = rows(&svc).await;
    let e = web.place_outbound_call(place(PROSPECT)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert_eq!(
        e.message(),
        "customer has 2 calls in progress, the limit of package tier `starter`"
    );
    assert_eq!(e.metadata().get("retry-after").unwrap(), "30");
    assert_eq!(
        e.metadata().get("x-neurosphere-limit").unwrap(),
        "concurrency"
    );
    assert_eq!(twilio.count(), 2, "nothing dialled");
    assert_eq!(rows(&svc).await, before, "nothing stored");

    let mut gateway = inbound_at_the_limit(&svc, a, &first, before).await;
    // One call ends: there is room again.
    gateway
        .update_call_status(UpdateCallStatusRequest {
            call_sid: first.call_sid.clone(),
            status: CallStatus::Completed as i32,
            sequence_number: 3,
            duration_seconds: 12,
            event_time: None,
        })
        .await
        .unwrap();
    web.place_outbound_call(place(PROSPECT))
        .await
        .expect("room again");
    assert_eq!(twilio.count(), 3);

    rolling_hour(&svc, a, &twilio, &mut web).await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_placements_never_exceed_the_limit() {
    let twilio = FakeTwilio::start().await;
    let svc = start(&twilio, "starter=3").await;
    let a = customer(&svc, "peterson", "", &[(A_NUMBER, None)]).await;
    configure(&svc, a, peterson_settings(), OUTBOUND_FIELDS).await;
    let web = website(&svc, a).await;

    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let mut web = web.clone();
            tokio::spawn(async move { web.place_outbound_call(place(PROSPECT)).await })
        })
        .collect();
    let mut placed = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => placed += 1,
            Err(e) => assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message()),
        }
    }
    assert_eq!(placed, 3);
    assert_eq!(twilio.count(), 3, "only the admitted calls were dialled");
    assert_eq!(rows(&svc).await, (3, 0));
    svc.stop().await;
}

/// Ten new calls at once for a tier of two: exactly two are admitted; returns their CallSids.
async fn ten_at_once(svc: &Svc, a: i64, gateway: &common::Client) -> Vec<String> {
    // Ten new calls at once: exactly two are admitted.
    let attempts: Vec<_> = (0..10)
        .map(|n| {
            let mut gateway = gateway.clone();
            tokio::spawn(async move {
                gateway
                    .register_call(register(&sid("CA", 0x100 + n), "+15551111111"))
                    .await
            })
        })
        .collect();
    let mut created = Vec::new();
    for (n, attempt) in attempts.into_iter().enumerate() {
        match attempt.await.unwrap() {
            Ok(r) => {
                assert!(r.into_inner().created);
                created.push(sid("CA", 0x100 + n as u32));
            }
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted);
                assert_eq!(
                    e.message(),
                    "customer has 2 calls in progress, the limit of package tier `professional`"
                );
                assert_eq!(
                    e.metadata().get("x-neurosphere-limit").unwrap(),
                    "concurrency"
                );
            }
        }
    }
    assert_eq!(created.len(), 2);
    assert_eq!(
        svc.count(&format!(
            "SELECT count(*) FROM media.calls WHERE customer_id = {a} AND status < 5"
        ))
        .await,
        2,
        "refused calls are not stored live"
    );
    assert_eq!(
        svc.count(&format!(
            "SELECT count(*) FROM media.calls WHERE customer_id = {a} AND end_reason = 'call-limit'"
        ))
        .await,
        8,
        "each refusal is recorded, final"
    );

    created
}

/// Another tenant's calls are counted apart.
async fn other_tenant_apart(b_gateway: &mut common::Client) {
    // Another tenant's calls are counted apart (Smith is starter: one call).
    let r = b_gateway
        .register_call(register(&sid("CA", 0x200), "+15551111111"))
        .await
        .expect("Smith's own allowance");
    assert!(r.into_inner().created);
    let e = b_gateway
        .register_call(register(&sid("CA", 0x201), "+15551111111"))
        .await
        .unwrap_err();
    assert!(
        e.message().contains("package tier `starter`"),
        "{}",
        e.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn register_call_is_refused_beyond_the_tier_limit_but_repeats_always_succeed() {
    let twilio = FakeTwilio::start().await;
    // The tier comes from tenant-svc: this tenant is `professional` (2), not the first tier (1).
    let svc = start(&twilio, "starter=1,professional=2").await;
    let a = customer(&svc, "peterson", "professional", &[(A_NUMBER, None)]).await;
    let b = customer(&svc, "smith", "", &[(B_NUMBER, None)]).await;
    let gateway = svc
        .client_with(svc.tenant_token(a, "gateway", scope::CALL_SCOPES))
        .await;
    let mut b_gateway = svc
        .client_with(svc.tenant_token(b, "gateway", scope::CALL_SCOPES))
        .await;

    let created = ten_at_once(&svc, a, &gateway).await;
    // At the limit, repeats of a known CallSid still succeed, concurrently too.
    let repeats: Vec<_> = (0..4)
        .map(|_| {
            let mut gateway = gateway.clone();
            let call_sid = created[0].clone();
            tokio::spawn(async move {
                gateway
                    .register_call(register(&call_sid, "+15551111111"))
                    .await
            })
        })
        .collect();
    for r in repeats {
        assert!(
            !r.await
                .unwrap()
                .expect("a repeat succeeds")
                .into_inner()
                .created
        );
    }

    other_tenant_apart(&mut b_gateway).await;
    // A final status frees the slot; so does age (calls older than four hours do not count).
    let mut gateway = gateway;
    gateway
        .update_call_status(UpdateCallStatusRequest {
            call_sid: created[0].clone(),
            status: CallStatus::NoAnswer as i32,
            sequence_number: 2,
            duration_seconds: 0,
            event_time: None,
        })
        .await
        .unwrap();
    assert!(
        gateway
            .register_call(register(&sid("CA", 0x300), "+15551111111"))
            .await
            .unwrap()
            .into_inner()
            .created
    );
    let admin = svc.db.admin_client().await;
    admin
        .execute(
            "UPDATE media.calls SET created_at = now() - interval '5 hours' WHERE call_sid = $1",
            &[&created[1]],
        )
        .await
        .unwrap();
    assert!(
        gateway
            .register_call(register(&sid("CA", 0x301), "+15551111111"))
            .await
            .unwrap()
            .into_inner()
            .created
    );
    svc.stop().await;
}

#[tokio::test]
async fn without_tenant_svc_the_first_tier_limit_applies() {
    let svc = Svc::start_with(
        |mut c| {
            c.limits.concurrent_by_tier =
                media_svc::outbound::Limits::parse_tiers("starter=1,professional=50").unwrap();
            // An inbound call at the limit is refused (no message-taking calls).
            c.message_calls = (0, 0);
            c
        },
        false,
    )
    .await;
    let mut gateway = svc.client(1).await;
    gateway
        .register_call(register(&sid("CA", 1), "+15551111111"))
        .await
        .unwrap();
    let e = gateway
        .register_call(register(&sid("CA", 2), "+15551111111"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("`starter`"), "{}", e.message());
    assert_eq!(
        svc.count("SELECT count(*) FROM media.calls WHERE status < 5")
            .await,
        1,
        "the refused call is not stored live (only its refusal is recorded)"
    );
    svc.stop().await;
}

#[tokio::test]
async fn one_tenants_token_never_dials_from_or_touches_another_tenant() {
    let twilio = FakeTwilio::start().await;
    let svc = start(&twilio, "starter=1").await;
    let a = customer(&svc, "peterson", "", &[(A_NUMBER, None)]).await;
    let b = customer(&svc, "smith", "", &[(B_NUMBER, Some(sub_account()))]).await;
    for t in [a, b] {
        configure(&svc, t, peterson_settings(), OUTBOUND_FIELDS).await;
    }
    // B has a call in progress (its whole allowance).
    let b_call = website(&svc, b)
        .await
        .place_outbound_call(place(PROSPECT))
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    let b_rows = svc
        .count(&format!(
            "SELECT count(*) FROM media.calls WHERE customer_id = {b}"
        ))
        .await;

    let mut web = website(&svc, a).await;
    let mut as_b = place(PROSPECT);
    as_b.from = B_NUMBER.into();
    let e = web.place_outbound_call(as_b).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // A's own call: A's number, the platform account; B's full allowance does not count for A.
    let mine = web
        .place_outbound_call(place(PROSPECT))
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    let requests = twilio.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].field("From"), Some(A_NUMBER));
    assert_eq!(requests[1].account, platform_account());
    assert!(
        requests
            .iter()
            .all(|r| r.field("From") != Some(B_NUMBER) || r.account == sub_account())
    );
    assert_eq!(mine.called, A_NUMBER);

    // B's rows are unchanged, and A cannot read B's call.
    assert_eq!(
        svc.count(&format!(
            "SELECT count(*) FROM media.calls WHERE customer_id = {b}"
        ))
        .await,
        b_rows
    );
    let e = svc
        .client(a)
        .await
        .get_call(GetCallRequest {
            call_sid: b_call.call_sid.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    svc.stop().await;
}

/// Places an outbound call for `customer` and opens its stream as the gateway would.
async fn outbound_stream(svc: &Svc, customer: i64) -> (String, CallStream) {
    let mut request = place(PROSPECT);
    request.persona = "Sofia".into();
    request.context = "Asked for a home insurance quote".into();
    let call_sid = website(svc, customer)
        .await
        .place_outbound_call(request)
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap()
        .call_sid;
    let mut client = svc
        .client_with(svc.tenant_token(customer, &call_sid, scope::CALL_SCOPES))
        .await;
    let stream = CallStream::open(&mut client, &mut svc.gateway_client().await, &call_sid)
        .await
        .unwrap();
    (call_sid, stream)
}

/// 400 ms of speech then 400 ms of silence from `ts`; returns the speech.
async fn speak(call: &CallStream, mut ts: u32) -> Vec<u8> {
    let mut spoken = Vec::new();
    for _ in 0..20 {
        call.audio(voiced_frame(), ts).await;
        spoken.extend(voiced_frame());
        ts += 20;
    }
    for _ in 0..20 {
        call.audio(silent_frame(), ts).await;
        ts += 20;
    }
    spoken
}

async fn hang_up(
    svc: &Svc,
    customer: i64,
    call_sid: &str,
    mut call: CallStream,
) -> Vec<(i32, String)> {
    call.send(In::Stop(StreamStop {})).await;
    while let Some(ev) = call.next().await {
        assert!(matches!(ev, Out::Audio(_) | Out::Mark(_)), "{ev:?}");
    }
    let got = svc
        .client(customer)
        .await
        .get_call(GetCallRequest {
            call_sid: call_sid.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let call = got.call.unwrap();
    assert_eq!(call.direction, CallDirection::OutboundApi as i32);
    assert_eq!(call.status, CallStatus::Completed as i32);
    assert_eq!(call.persona, "Sofia");
    got.turns
        .iter()
        .map(|t| (t.speaker, t.text.clone()))
        .collect()
}

#[tokio::test]
async fn an_outbound_call_waits_for_the_callee_unless_the_tenant_greets_first() {
    let twilio = FakeTwilio::start().await;
    let svc = start(&twilio, "starter=5").await;
    let a = customer(&svc, "peterson", "", &[(A_NUMBER, None)]).await;
    configure(&svc, a, peterson_settings(), OUTBOUND_FIELDS).await;

    // greet_first_outbound = false: nothing is said until the callee speaks; the first audio
    // the callee hears is the local backend's reply to them, not a greeting.
    let (call_sid, mut call) = outbound_stream(&svc, a).await;
    let spoken = speak(&call, 1000).await;
    let first_audio = call.audio_bytes(spoken.len(), false).await;
    assert_eq!(first_audio, spoken, "no greeting before the callee spoke");
    let turns = hang_up(&svc, a, &call_sid, call).await;
    assert_eq!(
        turns.first(),
        Some(&(Speaker::Caller as i32, "[caller audio 0.4 s]".to_owned())),
        "{turns:?}"
    );
    assert!(
        !turns.iter().any(|(_, t)| t.contains("[greeting")),
        "{turns:?}"
    );

    // greet_first_outbound = true: the agent opens, as the persona, calling from the business.
    configure(
        &svc,
        a,
        OutboundSettings {
            greet_first_outbound: true,
            ..Default::default()
        },
        &["greet_first_outbound"],
    )
    .await;
    let (call_sid, mut call) = outbound_stream(&svc, a).await;
    let tone = media_svc::audio::tone_pattern();
    assert_eq!(
        call.audio_bytes(tone.len(), true).await,
        tone,
        "the greeting comes first"
    );
    let turns = hang_up(&svc, a, &call_sid, call).await;
    let (speaker, greeting) = &turns[0];
    assert_eq!(*speaker, Speaker::Agent as i32);
    assert!(
        greeting.contains("this is Sofia calling from peterson Insurance"),
        "{greeting}"
    );
    assert!(
        !greeting.contains("Ada") && !greeting.contains("AI Assistant"),
        "{greeting}"
    );
    svc.stop().await;
}

#[tokio::test]
async fn the_call_limit_count_is_served_by_the_partial_indexes() {
    // Not a timing test: the planner's choice for the counts, so they stay cheap for tenants
    // with a long call history.
    let svc = Svc::start().await;
    let admin = svc.db.admin_client().await;
    admin
        .batch_execute(
            "INSERT INTO media.calls (customer_id, call_sid, account_sid, caller, called, direction, status, created_at) \
             SELECT c, 'CA' || lpad(to_hex(c * 100000 + n), 32, '0'), 'AC' || repeat('0', 32), '+15551111111', '+14155550101', \
                    CASE WHEN n % 3 = 0 THEN 2 ELSE 1 END, CASE WHEN n % 50 = 0 THEN 4 ELSE 5 END, now() - n * interval '1 minute' \
             FROM generate_series(1, 20) c, generate_series(1, 2000) n; ANALYZE media.calls;",
        )
        .await
        .unwrap();
    let plan = |sql: &str| {
        let admin = &admin;
        let sql = sql.to_owned();
        async move {
            admin
                .query(&format!("EXPLAIN {sql}"), &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    let in_progress = plan(
        "SELECT count(*) FROM media.calls WHERE customer_id = 7 AND status < 5 \
         AND created_at > now() - interval '4 hours'",
    )
    .await;
    assert!(
        in_progress.contains("calls_in_progress_idx"),
        "{in_progress}"
    );
    let hourly = plan(
        "SELECT count(*) FROM media.calls WHERE customer_id = 7 AND direction = 2 \
         AND created_at > now() - interval '1 hour'",
    )
    .await;
    assert!(hourly.contains("calls_outbound_idx"), "{hourly}");
    svc.stop().await;
}

/// A fake Realtime server that reports every client event of every session, in order (the
/// tests need to see that nothing, e.g. a `response.create`, came before the callee's audio).
async fn fake_realtime() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) {
    use futures::StreamExt as _;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/realtime", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                        let _ = tx.send(serde_json::from_str(t.as_str()).unwrap());
                    }
                }
            });
        }
    });
    (url, rx)
}

async fn next_event(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) -> serde_json::Value {
    tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
        .await
        .expect("a realtime event within 10 s")
        .expect("fake running")
}

#[tokio::test]
async fn the_realtime_backend_is_told_it_is_an_outbound_call_and_waits_unless_greeting_first() {
    let twilio = FakeTwilio::start().await;
    let (url, mut events) = fake_realtime().await;
    let svc = start_with_realtime(&twilio, "starter=5", Some(url)).await;
    let a = customer(&svc, "peterson", "", &[(A_NUMBER, None)]).await;
    configure(&svc, a, peterson_settings(), OUTBOUND_FIELDS).await;

    // Waiting: the session is configured, then nothing happens until the callee's audio.
    let (_, call) = outbound_stream(&svc, a).await;
    let update = next_event(&mut events).await;
    assert_eq!(update["type"], "session.update");
    let instructions = update["session"]["instructions"].as_str().unwrap();
    assert!(
        instructions.starts_with("You are Sofia, calling on behalf of peterson Insurance."),
        "{instructions}"
    );
    assert!(
        instructions.contains("This is an outbound call"),
        "{instructions}"
    );
    assert!(
        instructions.contains("Do not speak first"),
        "{instructions}"
    );
    assert!(
        !instructions.contains("Start the call by saying"),
        "{instructions}"
    );
    assert!(
        instructions.contains("<<<CALL_CONTEXT\nAsked for a home insurance quote\nCALL_CONTEXT>>>"),
        "{instructions}"
    );
    call.audio(voiced_frame(), 0).await;
    let next = next_event(&mut events).await;
    assert_eq!(
        next["type"], "input_audio_buffer.append",
        "no response before the callee spoke"
    );
    call.send(In::Stop(StreamStop {})).await;

    // Greeting first: the session is configured with the greeting and a response is asked for
    // at once.
    configure(
        &svc,
        a,
        OutboundSettings {
            greet_first_outbound: true,
            ..Default::default()
        },
        &["greet_first_outbound"],
    )
    .await;
    let (_, call) = outbound_stream(&svc, a).await;
    let update = loop {
        // Skip what is left of the first session.
        let ev = next_event(&mut events).await;
        if ev["type"] == "session.update" {
            break ev;
        }
    };
    let instructions = update["session"]["instructions"].as_str().unwrap();
    assert!(
        instructions.contains("Start the call by saying exactly this greeting: \"Good"),
        "{instructions}"
    );
    assert!(
        instructions.contains("this is Sofia calling from peterson Insurance."),
        "{instructions}"
    );
    assert_eq!(next_event(&mut events).await["type"], "response.create");
    call.send(In::Stop(StreamStop {})).await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_being_placed_counts_towards_the_limit_but_blocks_nothing_while_twilio_answers() {
    let twilio = FakeTwilio::start().await;
    let svc = start(&twilio, "starter=1").await;
    let a = customer(&svc, "peterson", "", &[(A_NUMBER, None)]).await;
    configure(&svc, a, peterson_settings(), OUTBOUND_FIELDS).await;

    // Twilio takes its time: the placement waits for the gate.
    let call_sid = sid("CA", 0x4e1d);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    twilio.answer(Answer::Held(call_sid.clone(), gate.clone()));
    let mut web = website(&svc, a).await;
    let placing = tokio::spawn(async move {
        let mut request = place(PROSPECT);
        request.persona = "Sofia".into();
        web.place_outbound_call(request).await
    });
    common::eventually("Twilio asked", || async { twilio.count() == 1 }).await;
    assert_eq!(
        rows(&svc).await,
        (0, 1),
        "a reservation holds the slot meanwhile"
    );

    // Meanwhile the tenant's other requests are answered at once (no lock is held): a new
    // inbound call finds the slot taken ...
    let inbound = sid("CA", 0x1b);
    let mut gateway = svc
        .client_with(svc.tenant_token(a, &inbound, scope::CALL_SCOPES))
        .await;
    let mut ring = register(&inbound, "+15551111111");
    ring.to = A_NUMBER.into();
    let e = gateway.register_call(ring).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(
        e.message()
            .contains("customer has 1 call in progress, the limit"),
        "{}",
        e.message()
    );
    // ... while the gateway's registration of the call being placed (Twilio fetched the TwiML
    // before its REST answer reached us) is not refused because of its own reservation.
    let early = gateway
        .register_call(RegisterCallRequest {
            call_sid: call_sid.clone(),
            account_sid: platform_account(),
            from: PROSPECT.into(),
            to: A_NUMBER.into(),
            direction: CallDirection::OutboundApi as i32,
            status: CallStatus::Ringing as i32,
        })
        .await
        .expect("the placed call's own registration")
        .into_inner();
    assert!(early.created);
    assert!(!placing.is_finished());

    // Twilio answers: the placement merges into the row and releases its reservation.
    gate.add_permits(1);
    let placed = placing
        .await
        .unwrap()
        .expect("placed")
        .into_inner()
        .call
        .unwrap();
    assert_eq!(placed.call_sid, call_sid);
    assert_eq!(placed.persona, "Sofia");
    assert_eq!(placed.status, CallStatus::Ringing as i32);
    // The placed call, and the inbound call's recorded refusal; no reservation left.
    assert_eq!(rows(&svc).await, (2, 0));
    assert_eq!(
        svc.count("SELECT count(*) FROM media.calls WHERE status < 5")
            .await,
        1
    );
    svc.stop().await;
}
