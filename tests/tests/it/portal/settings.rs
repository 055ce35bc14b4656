//! The owner's settings pages over HTTP against the real mesh (issue 19): `/portal/agent`
//! (greetings, sliders, preview, history and revert), `/portal/webhooks` and `/portal/outbound`.
//! A change made through the form reaches the next call (the fake realtime backend sees it);
//! an invalid value is a 400 page naming the field; staff, a form without its CSRF token and a
//! form from another origin are refused; none of the refusals stores anything.

use std::time::Duration;

use e2e::{ACCOUNT_SID, Mesh, MeshOptions};
use gateway::sim::{self, SimCall};
use media_svc::BackendChoice;
use media_svc::backend::openai::{ApiShape, OpenAiConfig};
use mesh::api::tenant::UserRole;

use super::{Browser, PortalMesh, csrf_of};
use crate::context::FakeRealtime;

/// Tenant A's number (the demo seed's first tenant).
const A_NUMBER: &str = "+14155550101";

/// Rows of the configuration history (every saved setting appends one per field).
const HISTORY: &str = "tenant.customer_configurations";

/// A portal mesh whose media-svc talks to a fake realtime backend.
async fn portal_with_realtime() -> (PortalMesh, FakeRealtime) {
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
    let (a, b) = mesh.seed_demo_tenants().await;
    assert_eq!(a.number, A_NUMBER);
    let http = format!("http://{}", mesh.gateway.main);
    let portal = PortalMesh {
        mesh,
        origin: http.clone(),
        http,
        tenants: (a.id, b.id),
    };
    (portal, realtime)
}

/// The `id` of the newest revert form on the agent page.
fn newest_revert_path(html: &str) -> String {
    let at = html
        .find("/portal/agent/history/")
        .unwrap_or_else(|| panic!("no revert form in:\n{html}"));
    let rest = &html[at..];
    rest[..rest.find('"').expect("closing quote")].to_owned()
}

/// POSTs the agent form with `fields` and the page's CSRF token.
async fn post_agent(browser: &mut Browser, fields: &[(&str, &str)]) -> super::Page {
    let csrf = browser.csrf("/portal/agent").await;
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    browser.post("/portal/agent", &form).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greeting_and_slider_changed_in_the_form_reach_the_next_call() {
    let (portal, realtime) = portal_with_realtime().await;
    let mut owner = portal
        .signed_in_user(portal.tenants.0, "owner@peterson.example", UserRole::Owner)
        .await;
    let page = owner.get("/portal/agent").await;
    assert_eq!(page.status(), 200, "{}", page.body);
    assert!(page.body.contains("What callers get now"), "{}", page.body);
    assert!(page.body.contains("Platform default (50)"), "{}", page.body);
    let before = portal.count(HISTORY).await;
    let greeting = "Hello from {agent_name}, the portal greeting.";

    // Preview: the draft rendered by media-svc, nothing stored.
    let page = post_agent(
        &mut owner,
        &[
            ("greeting_new_caller", greeting),
            ("slider.humor", "85"),
            ("action", "preview"),
        ],
    )
    .await;
    assert_eq!(page.status(), 200, "{}", page.body);
    assert!(page.body.contains("Preview of your unsaved changes"));
    assert!(
        page.body.contains(", the portal greeting."),
        "{}",
        page.body
    );
    assert!(page.body.contains("Be very humorous"), "{}", page.body);
    assert_eq!(
        portal.count(HISTORY).await,
        before,
        "a preview stores nothing"
    );

    // Save: two fields, two history rows.
    let page = post_agent(
        &mut owner,
        &[
            ("greeting_new_caller", greeting),
            ("slider.humor", "85"),
            ("action", "save"),
        ],
    )
    .await;
    assert_eq!(page.status(), 303, "{}", page.body);
    assert_eq!(page.header("location"), "/portal/agent?saved=1");
    assert_eq!(portal.count(HISTORY).await, before + 2);
    let page = owner.get("/portal/agent?saved=1").await;
    assert!(page.body.contains("sliders.humor"), "the history shows it");

    // A call placed afterwards: the fake realtime backend receives them.
    let call = SimCall {
        gateway_addr: portal.mesh.gateway.main.to_string(),
        public_base_url: portal.mesh.public_base_url.clone(),
        auth_token: portal.mesh.twilio_auth_token.clone(),
        account_sid: ACCOUNT_SID.into(),
        call_sid: format!("CA{:032x}", 1919),
        from: "+15553330019".into(),
        to: A_NUMBER.into(),
        caller_audio: sim::voice_like(1.0),
        duration: Duration::from_secs(2),
        direction: String::new(),
    };
    let result = sim::run(&call).await.expect("call runs");
    assert!(result.connected, "{}", result.twiml);
    let instructions = realtime.first_instructions().await;
    assert!(
        instructions.contains(", the portal greeting."),
        "{instructions}"
    );
    assert!(
        instructions.contains("Be very humorous. (humor 85/100)"),
        "{instructions}"
    );
    portal.mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_values_staff_and_forged_forms_are_refused_and_store_nothing() {
    let portal = PortalMesh::start().await;
    let a = portal.tenants.0;
    let mut owner = portal
        .signed_in_user(a, "owner@peterson.example", UserRole::Owner)
        .await;
    let before = portal.count(HISTORY).await;

    // An invalid slider: the page again, 400, naming the field.
    for value in ["150", "lots", "-1"] {
        let page = post_agent(&mut owner, &[("slider.warmth", value), ("action", "save")]).await;
        assert_eq!(page.status(), 400, "{value}: {}", page.body);
        assert!(
            page.body.contains("sliders.warmth"),
            "{value}: {}",
            page.body
        );
        assert!(page.body.contains(r#"aria-invalid="true""#));
    }
    let page = post_agent(
        &mut owner,
        &[
            ("greeting_new_caller", "Hi {caller_number}"),
            ("action", "save"),
        ],
    )
    .await;
    assert_eq!(page.status(), 400);
    assert!(page.body.contains("greeting_new_caller"), "{}", page.body);
    assert_eq!(portal.count(HISTORY).await, before, "nothing stored");

    // Without the CSRF token, or from another origin: 403, nothing stored.
    let page = owner
        .post(
            "/portal/agent",
            &[("slider.warmth", "90"), ("action", "save")],
        )
        .await;
    assert_eq!(page.status(), 403, "{}", page.body);
    let csrf = owner.csrf("/portal/agent").await;
    let page = owner
        .post_from(
            "/portal/agent",
            &[("csrf", &csrf), ("slider.warmth", "90"), ("action", "save")],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(page.status(), 403, "{}", page.body);
    assert_eq!(portal.count(HISTORY).await, before, "nothing stored");

    // Staff: no links, 403 on every settings page and form.
    let mut staff = portal
        .signed_in_user(a, "staff@peterson.example", UserRole::Staff)
        .await;
    let home = staff.get("/portal/").await;
    assert_eq!(home.status(), 200);
    let csrf = csrf_of(&home.body);
    for path in ["/portal/agent", "/portal/webhooks", "/portal/outbound"] {
        assert!(!home.body.contains(&format!(r#"href="{path}""#)), "{path}");
        let page = staff.get(path).await;
        assert_eq!(page.status(), 403, "{path}");
    }
    let forms: [(&str, &[(&str, &str)]); 4] = [
        (
            "/portal/agent",
            &[("slider.warmth", "90"), ("action", "save")],
        ),
        ("/portal/webhooks/rotate", &[]),
        ("/portal/outbound", &[("public_calls_per_hour", "7")]),
        ("/portal/outbound/website-token", &[]),
    ];
    for (path, fields) in forms {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        let page = staff.post(path, &form).await;
        assert_eq!(page.status(), 403, "{path}: {}", page.body);
    }
    assert_eq!(portal.count(HISTORY).await, before, "nothing stored");
    portal.mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_reverted_from_the_history_and_only_by_its_tenant() {
    let portal = PortalMesh::start().await;
    let (a, b) = portal.tenants;
    let mut owner = portal
        .signed_in_user(a, "owner@peterson.example", UserRole::Owner)
        .await;
    let page = owner.get("/portal/agent").await;
    let original = r#"id="agent_name" name="agent_name" value=""#;
    let at = page.body.find(original).expect("agent name field") + original.len();
    let name_before = page.body[at..][..page.body[at..].find('"').unwrap()].to_owned();
    let page = post_agent(
        &mut owner,
        &[("agent_name", "Beatrice"), ("action", "save")],
    )
    .await;
    assert_eq!(page.status(), 303, "{}", page.body);
    let page = owner.get("/portal/agent").await;
    assert!(page.body.contains(r#"value="Beatrice""#));
    let revert = newest_revert_path(&page.body);
    let csrf = csrf_of(&page.body);

    // Tenant B's owner cannot revert A's entry: 404, nothing stored.
    let mut other = portal
        .signed_in_user(b, "owner@smith.example", UserRole::Owner)
        .await;
    let their_csrf = other.csrf("/portal/agent").await;
    let before = portal.count(HISTORY).await;
    let page = other.post(&revert, &[("csrf", &their_csrf)]).await;
    assert_eq!(page.status(), 404, "{}", page.body);
    assert!(!page.body.contains("Beatrice"));
    assert_eq!(portal.count(HISTORY).await, before);
    // Without the CSRF token: refused.
    let page = owner.post(&revert, &[]).await;
    assert_eq!(page.status(), 403);
    assert_eq!(portal.count(HISTORY).await, before);

    let page = owner.post(&revert, &[("csrf", &csrf)]).await;
    assert_eq!(page.status(), 303, "{}", page.body);
    assert_eq!(page.header("location"), "/portal/agent?reverted=1");
    assert_eq!(
        portal.count(HISTORY).await,
        before + 1,
        "the revert is recorded"
    );
    let page = owner.get("/portal/agent?reverted=1").await;
    assert!(
        page.body
            .contains(&format!(r#"name="agent_name" value="{name_before}""#)),
        "{}",
        page.body
    );
    portal.mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_secret_is_shown_once_and_outbound_settings_are_validated() {
    let portal = PortalMesh::start().await;
    let mut owner = portal
        .signed_in_user(portal.tenants.0, "owner@peterson.example", UserRole::Owner)
        .await;
    let page = owner.get("/portal/webhooks").await;
    assert_eq!(page.status(), 200, "{}", page.body);
    let csrf = csrf_of(&page.body);
    let page = owner
        .post("/portal/webhooks/rotate", &[("csrf", &csrf)])
        .await;
    assert_eq!(page.status(), 200, "{}", page.body);
    let marker = r#"<p class="secret" id="new-secret">"#;
    let at = page.body.find(marker).expect("the secret is shown") + marker.len();
    let secret = page.body[at..][..page.body[at..].find('<').unwrap()].to_owned();
    assert!(secret.len() >= 40, "{secret}");
    assert_eq!(page.header("cache-control"), "no-store");
    let again = owner.get("/portal/webhooks").await;
    assert!(!again.body.contains(&secret), "shown once");
    // A dead letter that is not this tenant's: 404.
    let page = owner
        .post(
            "/portal/webhooks/dead-letters/00000000-0000-4000-8000-000000000000/replay",
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status(), 404, "{}", page.body);

    let before = portal.count(HISTORY).await;
    let page = owner
        .post(
            "/portal/outbound",
            &[("csrf", &csrf), ("public_calls_per_hour", "many")],
        )
        .await;
    assert_eq!(page.status(), 400, "{}", page.body);
    assert!(page.body.contains("public_calls_per_hour"));
    let page = owner
        .post(
            "/portal/outbound",
            &[
                ("csrf", &csrf),
                ("cors_origins", "not a url"),
                ("public_calls_per_hour", "5"),
            ],
        )
        .await;
    assert_eq!(page.status(), 400, "{}", page.body);
    assert!(page.body.contains("cors_origins"), "{}", page.body);
    assert_eq!(portal.count(HISTORY).await, before, "nothing stored");
    let page = owner
        .post(
            "/portal/outbound",
            &[
                ("csrf", &csrf),
                ("cors_origins", "https://www.peterson.example"),
                ("allowed_regions", "us, ca"),
                ("public_calls_per_hour", "12"),
            ],
        )
        .await;
    assert_eq!(page.status(), 303, "{}", page.body);
    let page = owner.get("/portal/outbound?saved=1").await;
    assert!(page.body.contains("https://www.peterson.example"));
    assert!(page.body.contains(r#"value="US, CA""#), "{}", page.body);
    assert!(page.body.contains(r#"value="12""#));
    portal.mesh.shutdown().await;
}
