//! Outbound calls and post-call webhooks through the whole mesh: a tenant's website asks the
//! gateway's `POST /v1/calls` to call a prospect; media-svc dials through a fake of Twilio's
//! REST API (the only fake: Twilio cannot be reached from here); the simulated Twilio side then
//! fetches the TwiML and streams the call like Twilio would; afterwards the tenant's webhook
//! receiver gets a signed event it verifies the way the README says. Every refusal dials
//! nothing and stores nothing.

use std::time::Duration;

use e2e::fakes::{FakeTwilio, WebhookReceiver, verify};
use e2e::{ACCOUNT_SID, DemoTenant, Mesh, MeshOptions, with_token};
use gateway::sim::{self, SimCall};
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::media::{CallDirection, GetCallRequest};
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::{
    OutboundSettings, RotateWebhookSecretRequest, UpdateOutboundSettingsRequest,
};
use mesh::identity::scope;

const ORIGIN: &str = "https://www.peterson.example";
const PROSPECT: &str = "+351912345678";

/// The mesh with media-svc dialling through `twilio`, these tier limits, and `per_address`
/// calls a day from one client address per tenant.
async fn mesh_with(twilio: &FakeTwilio, tiers: &str, per_address: u32) -> Mesh {
    let base = twilio.base_url.clone();
    let tiers = media_svc::outbound::Limits::parse_tiers(tiers).expect("tiers");
    Mesh::start_with(MeshOptions {
        gateway_env: Vec::new(),
        media: Some(Box::new(move |c: &mut media_svc::CallConfig| {
            c.limits.per_address = (per_address, Duration::from_secs(24 * 3600));
            c.twilio.base_url = base;
            c.twilio.auth_token = Some("fake-twilio-auth-token".to_owned().into());
            c.twilio.account_sid = Some(mesh::domain::AccountSid::parse(ACCOUNT_SID).unwrap());
            c.limits.concurrent_by_tier = tiers;
            // One caller at a time may leave a message when the tenant is at its limit.
            c.message_calls = (1, 200);
            c.webhooks.allow_insecure = true;
            c.webhooks.base_backoff = Duration::from_millis(100);
            c.webhooks.max_backoff = Duration::from_millis(400);
        })),
        ..MeshOptions::default()
    })
    .await
}

/// Configures outbound calls (and optionally a webhook) for `tenant`; returns the webhook
/// secret when one was created.
async fn configure(
    mesh: &Mesh,
    tenant: &DemoTenant,
    settings: OutboundSettings,
    paths: &[&str],
) -> Option<String> {
    let token = mesh.tenant_token(tenant.id, &[scope::TENANT_READ, scope::TENANT_WRITE]);
    let mut client = TenantServiceClient::new(mesh.channel(mesh.tenant).await);
    let with_webhook = !settings.webhook_url.is_empty();
    client
        .update_outbound_settings(with_token(
            UpdateOutboundSettingsRequest {
                settings: Some(settings),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
            },
            &token,
        ))
        .await
        .expect("outbound settings accepted");
    if !with_webhook {
        return None;
    }
    let secret = client
        .rotate_webhook_secret(with_token(
            RotateWebhookSecretRequest { overlap: None },
            &token,
        ))
        .await
        .expect("secret")
        .into_inner()
        .secret;
    Some(secret)
}

fn peterson_settings(webhook_url: &str) -> OutboundSettings {
    OutboundSettings {
        allowed_regions: vec!["PT".into()],
        allowed_personas: vec!["Sofia".into()],
        do_not_call: vec!["+351912000000".into()],
        cors_origins: vec![ORIGIN.into()],
        greet_first_outbound: true,
        webhook_url: webhook_url.into(),
        webhook_raw_numbers: false,
        public_calls_per_hour: 0,
        allowed_number_types: vec![],
        transfer_regions: vec![],
        max_call_minutes: 0,
    }
}

const ALL_FIELDS: &[&str] = &[
    "allowed_regions",
    "allowed_personas",
    "do_not_call",
    "cors_origins",
    "greet_first_outbound",
    "webhook_url",
    "webhook_raw_numbers",
    "public_calls_per_hour",
];

async fn post_call(
    mesh: &Mesh,
    token: Option<&str>,
    origin: Option<&str>,
    body: serde_json::Value,
) -> reqwest::Response {
    post_call_to(mesh.gateway.main, token, origin, body).await
}

/// `POST /v1/calls` to the gateway at `gateway`.
async fn post_call_to(
    gateway: std::net::SocketAddr,
    token: Option<&str>,
    origin: Option<&str>,
    body: serde_json::Value,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("http://{gateway}/v1/calls"))
        .json(&body);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    if let Some(o) = origin {
        request = request.header("Origin", o);
    }
    request.send().await.expect("gateway answers")
}

/// A refusal case: name, bearer token, `Origin`, body, expected status, whether the answer
/// carries the CORS header.
type Case<'a> = (
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    serde_json::Value,
    u16,
    bool,
);

async fn media_call_rows(mesh: &Mesh) -> i64 {
    let admin = mesh.db.admin_client().await;
    admin
        .query_one("SELECT count(*) FROM media.calls", &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_website_places_a_call_that_runs_end_to_end_and_ends_in_a_signed_webhook() {
    let twilio = FakeTwilio::start().await;
    let receiver = WebhookReceiver::start(0).await;
    let mesh = mesh_with(&twilio, "starter=5", 100).await;
    let (peterson, _smith) = mesh.seed_demo_tenants().await;
    let secret = configure(
        &mesh,
        &peterson,
        peterson_settings(&receiver.url),
        ALL_FIELDS,
    )
    .await
    .expect("a webhook secret");
    receiver.set_secret(&secret);

    // The website's credential: a tenant token that can only place calls.
    let website = mesh.tenant_token(peterson.id, &[scope::MEDIA_OUTBOUND]);
    let response = post_call(
        &mesh,
        Some(&website),
        Some(ORIGIN),
        serde_json::json!({"to": PROSPECT, "persona": "Sofia",
            "context": "<b>Asked</b> about home insurance on the website"}),
    )
    .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        ORIGIN,
        "the tenant's own origin may read the answer"
    );
    let placed: serde_json::Value = response.json().await.unwrap();
    let call_sid = placed["call_sid"].as_str().expect("call_sid").to_owned();

    // Twilio was asked to call the prospect from the tenant's own number, fetching TwiML from
    // the gateway.
    let dialled = twilio.calls();
    assert_eq!(dialled.len(), 1);
    let create = &dialled[0];
    assert_eq!(create.call_sid, call_sid);
    assert_eq!(create.field("To"), Some(PROSPECT));
    assert_eq!(create.field("From"), Some(peterson.number));
    assert_eq!(
        create.field("Url"),
        Some(format!("{}/twilio/voice", mesh.public_base_url).as_str())
    );
    assert_eq!(create.account_sid, ACCOUNT_SID);
    assert!(create.authorization.starts_with("Basic "));

    // Twilio places the call; the callee answers; Twilio fetches the TwiML and streams.
    let result = sim::run(&SimCall {
        gateway_addr: mesh.gateway.main.to_string(),
        public_base_url: mesh.public_base_url.clone(),
        auth_token: mesh.twilio_auth_token.clone(),
        account_sid: ACCOUNT_SID.into(),
        call_sid: call_sid.clone(),
        from: peterson.number.into(),
        to: PROSPECT.into(),
        caller_audio: sim::voice_like(2.0),
        duration: Duration::from_secs(3),
        direction: "outbound-api".into(),
    })
    .await
    .expect("simulated outbound call");
    assert!(result.connected, "{}", result.twiml);
    assert!(
        sim::is_audible(&result.agent_audio),
        "the agent greets first on this tenant's outbound calls"
    );

    // The record: outbound-api, the persona, the prospect as the other party.
    let mut media = CallServiceClient::new(mesh.channel(mesh.media).await);
    let reader = mesh.tenant_token(peterson.id, &[scope::MEDIA_READ]);
    let call = media
        .get_call(with_token(
            GetCallRequest {
                call_sid: call_sid.clone(),
            },
            &reader,
        ))
        .await
        .expect("own call")
        .into_inner()
        .call
        .expect("call");
    assert_eq!(call.direction, CallDirection::OutboundApi as i32);
    assert_eq!(call.persona, "Sofia");
    assert_eq!(call.caller, PROSPECT);
    assert_eq!(call.called, peterson.number);

    one_signed_event(&receiver, &secret, &call_sid, peterson.id).await;
}

/// After the call: one signed event about `call_sid`, verified by the receiver, with the caller
/// as a keyed hash; tampering or replaying fails verification.
async fn one_signed_event(
    receiver: &WebhookReceiver,
    secret: &str,
    call_sid: &str,
    customer_id: i64,
) {
    // After the call: one signed event, verified by the receiver.
    let delivery = receiver
        .wait_for_success(Duration::from_secs(30))
        .await
        .expect("the webhook event arrives");
    assert!(delivery.verified);
    assert!(verify(
        secret,
        &delivery.timestamp,
        &delivery.signature,
        &delivery.body
    ));
    let event: serde_json::Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(event["call"]["call_sid"], call_sid);
    assert_eq!(event["call"]["direction"], "outbound-api");
    assert_eq!(event["customer_id"], customer_id);
    assert!(
        event["call"]["caller_number_hash"]
            .as_str()
            .is_some_and(|h| h.starts_with("hmac-sha256:")),
        "{event}"
    );
    let text = String::from_utf8_lossy(&delivery.body);
    assert!(
        !text.contains(PROSPECT) && !text.contains("912345678"),
        "raw number in the event: {text}"
    );
    // Tampering with the body or replaying an old timestamp fails verification.
    let mut tampered = delivery.body.clone();
    tampered[0] = b' ';
    assert!(!verify(
        secret,
        &delivery.timestamp,
        &delivery.signature,
        &tampered
    ));
    let old = (chrono::Utc::now().timestamp() - 3600).to_string();
    assert!(!verify(secret, &old, &delivery.signature, &delivery.body));
    // Exactly one successful delivery of this event.
    let successes: Vec<_> = receiver
        .deliveries()
        .into_iter()
        .filter(|d| d.answered == 200)
        .collect();
    assert_eq!(successes.len(), 1);
}

/// Refusals of who calls `POST /v1/calls` (token, scope, origin): name, token, origin, body,
/// status, CORS header expected.
fn refusals_of_the_caller<'a>(website: &'a str, reader_only: &'a str) -> Vec<Case<'a>> {
    let ok = serde_json::json!({"to": PROSPECT, "persona": "Sofia"});
    vec![
        ("no token", None, Some(ORIGIN), ok.clone(), 401, true),
        (
            "forged token",
            Some("e30.e30.c2ln"),
            Some(ORIGIN),
            ok.clone(),
            401,
            true,
        ),
        (
            "token without media:outbound",
            Some(reader_only),
            Some(ORIGIN),
            ok.clone(),
            403,
            false,
        ),
        (
            "foreign origin",
            Some(website),
            Some("https://evil.example"),
            ok.clone(),
            403,
            false,
        ),
        // The tenant lists origins: a request that sends none (a script, a server) is refused.
        (
            "missing origin",
            Some(website),
            None,
            ok.clone(),
            403,
            false,
        ),
    ]
}

/// Refusals of what is asked (number, country, do-not-call, persona, context, fields, caller
/// id, outbound not enabled), with the tenant's own website token.
fn refusals_of_the_request<'a>(
    website: &'a str,
    smith_website: &'a str,
    smith_number: &'static str,
) -> Vec<Case<'a>> {
    let ok = serde_json::json!({"to": PROSPECT, "persona": "Sofia"});
    vec![
        (
            "not E.164",
            Some(website),
            Some(ORIGIN),
            serde_json::json!({"to": "912345678"}),
            400,
            true,
        ),
        (
            "country not allowed",
            Some(website),
            Some(ORIGIN),
            serde_json::json!({"to": "+442071838750"}),
            422,
            true,
        ),
        // +1 is not a region: Jamaica shares it with the US.
        (
            "region not allowed behind +1",
            Some(website),
            Some(ORIGIN),
            serde_json::json!({"to": "+18769295555"}),
            422,
            true,
        ),
        (
            "do-not-call",
            Some(website),
            Some(ORIGIN),
            serde_json::json!({"to": "+351912000000"}),
            422,
            true,
        ),
        (
            "persona not allowed",
            Some(website),
            Some(ORIGIN),
            serde_json::json!({"to": PROSPECT, "persona": "Max"}),
            400,
            true,
        ),
        (
            "context too long",
            Some(website),
            Some(ORIGIN),
            serde_json::json!({"to": PROSPECT, "context": "x".repeat(2001)}),
            400,
            true,
        ),
        (
            "unknown field",
            Some(website),
            Some(ORIGIN),
            serde_json::json!({"to": PROSPECT, "customer_id": 2}),
            400,
            true,
        ),
        (
            "foreign caller id",
            Some(website),
            Some(ORIGIN),
            serde_json::json!({"to": PROSPECT, "from": smith_number}),
            400,
            true,
        ),
        // Smith has no allowed countries: outbound calls are off for it.
        (
            "outbound not enabled",
            Some(smith_website),
            None,
            ok.clone(),
            422,
            true,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_of_the_public_endpoint_dials_nothing_and_stores_nothing() {
    let twilio = FakeTwilio::start().await;
    let mesh = mesh_with(&twilio, "starter=5", 100).await;
    let (peterson, smith) = mesh.seed_demo_tenants().await;
    configure(&mesh, &peterson, peterson_settings(""), ALL_FIELDS).await;
    let website = mesh.tenant_token(peterson.id, &[scope::MEDIA_OUTBOUND]);
    let smith_website = mesh.tenant_token(smith.id, &[scope::MEDIA_OUTBOUND]);
    let reader_only = mesh.tenant_token(peterson.id, &[scope::MEDIA_READ]);

    let mut cases = refusals_of_the_caller(&website, &reader_only);
    cases.extend(refusals_of_the_request(
        &website,
        &smith_website,
        smith.number,
    ));
    for (name, token, origin, body, status, cors) in cases {
        let r = post_call(&mesh, token, origin, body).await;
        assert_eq!(r.status(), status, "{name}");
        assert_eq!(
            r.headers().contains_key("access-control-allow-origin"),
            cors && origin.is_some(),
            "{name}: CORS header"
        );
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}: {body}"
        );
    }
    assert!(twilio.calls().is_empty(), "nothing dialled");
    assert_eq!(media_call_rows(&mesh).await, 0, "nothing stored");

    hourly_limit_refuses_the_second_call(&mesh, &twilio, &peterson, &website).await;
}

/// The hourly limit: 1 call an hour for this tenant; the second is refused with `Retry-After`
/// and not dialled.
async fn hourly_limit_refuses_the_second_call(
    mesh: &Mesh,
    twilio: &FakeTwilio,
    peterson: &DemoTenant,
    website: &str,
) {
    let ok = serde_json::json!({"to": PROSPECT, "persona": "Sofia"});
    configure(
        mesh,
        peterson,
        OutboundSettings {
            public_calls_per_hour: 1,
            ..Default::default()
        },
        &["public_calls_per_hour"],
    )
    .await;
    let first = post_call(mesh, Some(website), Some(ORIGIN), ok.clone()).await;
    assert_eq!(first.status(), 201);
    let second = post_call(mesh, Some(website), Some(ORIGIN), ok).await;
    assert_eq!(second.status(), 429);
    let retry: u64 = second.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(twilio.calls().len(), 1, "the refused call was not dialled");
    assert_eq!(media_call_rows(mesh).await, 1);
}

/// At the tier's limit of one call: an outbound placement is refused (429); an inbound caller
/// is connected to the message flow (the TwiML streams as usual, the caller hears the prompt,
/// and the call leaves a callback task, reason `busy`); while that caller is leaving a message,
/// another one (beyond the message cap of one) hears the busy message and the refusal is
/// recorded as a final busy row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_concurrent_call_limit_outbound_is_refused_and_inbound_callers_leave_a_message_up_to_the_cap()
 {
    let twilio = FakeTwilio::start().await;
    let mesh = mesh_with(&twilio, "starter=1", 100).await;
    let (peterson, _smith) = mesh.seed_demo_tenants().await;
    configure(&mesh, &peterson, peterson_settings(""), ALL_FIELDS).await;
    let website = mesh.tenant_token(peterson.id, &[scope::MEDIA_OUTBOUND]);
    let ok = serde_json::json!({"to": PROSPECT});

    // One call in progress: the tier's whole allowance.
    let first = post_call(&mesh, Some(&website), Some(ORIGIN), ok.clone()).await;
    assert_eq!(first.status(), 201);
    let refused = post_call(&mesh, Some(&website), Some(ORIGIN), ok.clone()).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("in progress")),
        "{body}"
    );
    assert_eq!(twilio.calls().len(), 1);

    // An inbound caller meanwhile is streamed to the message flow through the gateway.
    let message_sid = format!("CA{:032x}", 0xb5d);
    let call = SimCall {
        gateway_addr: mesh.gateway.main.to_string(),
        public_base_url: mesh.public_base_url.clone(),
        auth_token: mesh.twilio_auth_token.clone(),
        account_sid: ACCOUNT_SID.into(),
        call_sid: message_sid.clone(),
        from: "+15551111111".into(),
        to: peterson.number.into(),
        caller_audio: sim::voice_like(1.0),
        // The default prompt and the beep take about 6 s to play; the mark is echoed after them.
        duration: Duration::from_secs(9),
        direction: String::new(),
    };
    let leaving = tokio::spawn(async move { sim::run(&call).await });
    let admin = mesh.db.admin_client().await;
    let busy_rows = format!(
        "SELECT count(*) FROM media.calls WHERE call_sid = '{message_sid}' AND message_flow = 'busy'"
    );
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while admin
        .query_one(&busy_rows, &[])
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(tokio::time::Instant::now() < until, "the busy call's row");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second_caller_hears_the_busy_message(&mesh, &peterson).await;

    let result = leaving.await.unwrap().expect("simulated inbound call");
    assert!(result.connected, "{}", result.twiml);
    assert!(
        sim::is_audible(&result.agent_audio),
        "the caller hears the message prompt"
    );
    assert!(
        result.marks >= 1,
        "the prompt's record mark, echoed once played"
    );
    let task = format!(
        "SELECT count(*) FROM media.callback_tasks WHERE call_sid = '{message_sid}' AND reason = 'busy'"
    );
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while admin.query_one(&task, &[]).await.unwrap().get::<_, i64>(0) == 0 {
        assert!(tokio::time::Instant::now() < until, "the busy call's task");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Beyond the message cap: the busy message, and the refusal recorded as a final busy row (so a
/// replay of the webhook is refused the same way), nothing more.
async fn second_caller_hears_the_busy_message(mesh: &Mesh, peterson: &DemoTenant) {
    let before = media_call_rows(mesh).await;
    let sid = format!("CA{:032x}", 0xb5e);
    let params = Mesh::voice_params(&sid, "+15552222222", peterson.number);
    let r = mesh.twilio_post("/twilio/voice", &params).await;
    assert_eq!(r.status(), 200);
    let twiml = r.text().await.unwrap();
    assert!(twiml.contains("busy"), "{twiml}");
    assert!(!twiml.contains("<Stream"), "{twiml}");
    assert_eq!(media_call_rows(mesh).await, before + 1);
    let admin = mesh.db.admin_client().await;
    let row = admin
        .query_one(
            "SELECT status, end_reason FROM media.calls WHERE call_sid = $1",
            &[&sid],
        )
        .await
        .expect("the refusal's row");
    let (status, reason): (i16, String) = (row.get(0), row.get(1));
    let busy = mesh::api::media::CallStatus::Busy as i32;
    assert_eq!((i32::from(status), reason.as_str()), (busy, "call-limit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preflight_allows_the_method_for_any_origin() {
    let twilio = FakeTwilio::start().await;
    let mesh = mesh_with(&twilio, "starter=5", 3).await;
    let preflight = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/v1/calls", mesh.gateway.main),
        )
        .header("Origin", ORIGIN)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-methods"], "POST");
    assert!(
        preflight.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );

    assert!(twilio.calls().is_empty());
}

async fn address_charges(mesh: &Mesh) -> i64 {
    mesh.db
        .admin_client()
        .await
        .query_one("SELECT count(*) FROM media.outbound_address_charges", &[])
        .await
        .unwrap()
        .get(0)
}

/// The per-address allowance (3 a day here) is media-svc's: requests without a valid token are
/// refused before it and charge nothing; it is kept per tenant, and it holds across gateway
/// replicas and a gateway restart (a replica's memory plays no part).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_allowance_counts_valid_tokens_per_tenant_across_gateways_and_restarts() {
    let twilio = FakeTwilio::start().await;
    let mesh = mesh_with(&twilio, "starter=20", 3).await;
    let (peterson, smith) = mesh.seed_demo_tenants().await;
    for tenant in [&peterson, &smith] {
        configure(&mesh, tenant, peterson_settings(""), ALL_FIELDS).await;
    }
    let website = mesh.tenant_token(peterson.id, &[scope::MEDIA_OUTBOUND]);
    let smith_website = mesh.tenant_token(smith.id, &[scope::MEDIA_OUTBOUND]);
    let ok = serde_json::json!({"to": PROSPECT});
    for _ in 0..5 {
        let r = post_call(&mesh, None, Some(ORIGIN), ok.clone()).await;
        assert_eq!(r.status(), 401);
        let r = post_call(&mesh, Some("e30.e30.c2ln"), Some(ORIGIN), ok.clone()).await;
        assert_eq!(r.status(), 401);
    }
    assert_eq!(address_charges(&mesh).await, 0, "no valid token, no charge");
    for _ in 0..2 {
        let r = post_call(&mesh, Some(&website), Some(ORIGIN), ok.clone()).await;
        assert_eq!(r.status(), 201);
    }
    let replica = mesh.another_gateway().await;
    let r = post_call_to(replica.ports.main, Some(&website), Some(ORIGIN), ok.clone()).await;
    assert_eq!(
        r.status(),
        201,
        "a second replica counts the same allowance"
    );
    drop(replica);
    let restarted = mesh.another_gateway().await;
    let limited = post_call_to(
        restarted.ports.main,
        Some(&website),
        Some(ORIGIN),
        ok.clone(),
    )
    .await;
    assert_eq!(limited.status(), 429, "the allowance outlives a gateway");
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retry > 20 * 3600,
        "the oldest charge leaves the window a day later, not {retry} s"
    );
    assert_eq!(twilio.calls().len(), 3, "the refused call was not dialled");
    assert_eq!(address_charges(&mesh).await, 3);
    // Another tenant's callers from the same address have their own allowance.
    let r = post_call_to(restarted.ports.main, Some(&smith_website), Some(ORIGIN), ok).await;
    assert_eq!(r.status(), 201);
}
