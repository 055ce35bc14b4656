//! The owner's number page over HTTP against the real mesh and the fake Twilio REST API
//! (`mesh::testkit::twilio`, issue 21 "Onboarding"): search with prices, "Buy" bought once
//! however often the form is sent, the number shown with how to test it, the welcome mail once,
//! and a signed voice webhook to the number reaching the tenant; bad input a 400 naming the
//! field, a form without its token, staff and the other tenant buying and seeing nothing.

use std::time::Duration;

use e2e::{Mesh, MeshOptions};
use mesh::api::tenant::UserRole;
use mesh::domain::AccountSid;
use mesh::mail::{MailTransport, Mailer};
use mesh::testkit::smtp::read_mails;
use mesh::testkit::twilio::FakeTwilio;

use super::{Browser, PASSWORD, csrf_of};

struct World {
    mesh: Mesh,
    fake: FakeTwilio,
    http: String,
    outbox: tempfile::TempDir,
}

async fn world() -> World {
    let fake = FakeTwilio::start().await;
    let outbox = tempfile::tempdir().unwrap();
    let dir = outbox.path().to_path_buf();
    let (api, pricing, account, key, secret) = (
        fake.api_url.clone(),
        fake.pricing_url.clone(),
        fake.account_sid.clone(),
        fake.key_sid.clone(),
        fake.key_secret.clone(),
    );
    let mesh = Mesh::start_with(MeshOptions {
        media: Some(Box::new(move |c: &mut media_svc::CallConfig| {
            c.twilio.base_url = api;
            c.twilio.account_sid = Some(AccountSid::parse(&account).unwrap());
            c.numbers.pricing_base_url = pricing;
            c.numbers.api_key_sid = Some(key);
            c.numbers.api_key_secret = Some(secret.into());
            c.numbers.reconcile_every = Duration::ZERO;
        })),
        tenant_accounts: Some(Box::new(move |accounts, base| {
            accounts.owner_mail = Some(tenant_svc::notice::OwnerMail {
                mailer: Mailer::new(
                    &MailTransport::Outbox(dir),
                    "NeuroSphere <no-reply@mesh.example>",
                ),
                base_url: base.to_owned(),
            });
        })),
        ..MeshOptions::default()
    })
    .await;
    let http = format!("http://{}", mesh.gateway.main);
    World {
        mesh,
        fake,
        http,
        outbox,
    }
}

impl World {
    /// A browser signed in as a new user of `customer` with `role`.
    async fn user(&self, customer: i64, email: &str, role: UserRole) -> Browser {
        let token = invite(&self.mesh, customer, email, role).await;
        let mut b = Browser::new(&self.http, &self.http);
        assert_eq!(b.accept_invitation(&token, PASSWORD).await.status(), 303);
        b
    }
}

/// The first hidden field `name`'s value in `html`.
fn hidden(html: &str, name: &str) -> String {
    let key = format!(r#"name="{name}" value=""#);
    let at = html
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {html}"));
    let rest = &html[at + key.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The welcome mails in `outbox` once there is one (at most 10 s).
async fn welcome_mails(outbox: &std::path::Path) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = read_mails(outbox);
        let n = m.iter().filter(|m| m.contains("Welcome")).count();
        if n > 0 || tokio::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Whether a signed voice webhook from the fake's account to `number` gets the stream TwiML and
/// registers the call for `customer`.
async fn call_reaches(w: &World, number: &str, customer: i64) -> bool {
    let sid = format!("CA{}", uuid::Uuid::new_v4().simple());
    let mut params = Mesh::voice_params(&sid, "+14155559876", number);
    for p in params.iter_mut() {
        if p.0 == "AccountSid" {
            p.1 = &w.fake.account_sid;
        }
    }
    let r = w.mesh.twilio_post("/twilio/voice", &params).await;
    assert_eq!(r.status(), 200);
    let twiml = r.text().await.unwrap();
    assert!(twiml.contains("<Connect><Stream"), "{twiml}");
    let calls: i64 = w
        .mesh
        .db
        .admin_client()
        .await
        .query_one(
            "SELECT count(*) FROM media.calls WHERE call_sid = $1 AND customer_id = $2",
            &[&sid, &customer],
        )
        .await
        .unwrap()
        .get(0);
    calls == 1
}

/// A customer without a number (as a sign-up, once approved, is).
async fn fresh_customer(mesh: &Mesh) -> i64 {
    use mesh::api::tenant::CreateCustomerRequest;
    use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
    use mesh::identity::{names, scope};
    let token = mesh.service_token(names::OPERATOR, names::TENANT_SVC, &[scope::TENANT_ADMIN]);
    TenantAdminServiceClient::new(mesh.channel(mesh.tenant).await)
        .create_customer(e2e::with_token(
            CreateCustomerRequest {
                email: "ops@fresh.example".into(),
                business_name: "Fresh Co".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap()
        .id
}

async fn invite(mesh: &Mesh, customer: i64, email: &str, role: UserRole) -> String {
    use mesh::api::tenant::InviteUserRequest;
    use mesh::api::tenant::account_admin_service_client::AccountAdminServiceClient;
    use mesh::identity::{names, scope};
    let token = mesh.service_token(names::OPERATOR, names::TENANT_SVC, &[scope::TENANT_ADMIN]);
    AccountAdminServiceClient::new(mesh.channel(mesh.tenant).await)
        .invite_user(e2e::with_token(
            InviteUserRequest {
                customer_id: customer,
                email: email.to_owned(),
                role: role as i32,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .token
}

/// Search, buy twice with the same form (one purchase at Twilio), the number shown with how to
/// test it, one welcome mail, a signed call to it reaching the tenant; the other tenant sees
/// nothing of it.
#[tokio::test]
async fn an_owner_searches_buys_once_and_the_number_answers_for_the_tenant() {
    let w = world().await;
    let (_, b) = w.mesh.seed_demo_tenants().await;
    let a = fresh_customer(&w.mesh).await;
    let mut owner = w.user(a, "owner@a.example", UserRole::Owner).await;

    let page = owner.get("/portal/numbers").await;
    assert!(page.body.contains("no phone number yet"), "{}", page.body);
    assert_eq!(page.status(), 200, "{}", page.body);
    assert!(
        page.body.contains(r#"href="/portal/numbers""#),
        "the navigation has Numbers"
    );
    let page = owner
        .get("/portal/numbers?country=US&area_code=415&city=")
        .await;
    assert_eq!(page.status(), 200, "{}", page.body);
    assert!(page.body.contains("+14155550100"), "{}", page.body);
    assert!(page.body.contains("1.15 USD"), "{}", page.body);
    let csrf = csrf_of(&page.body);
    let request_id = hidden(&page.body, "request_id");
    let number = hidden(&page.body, "phone_number");
    let form = [
        ("csrf", csrf.as_str()),
        ("phone_number", number.as_str()),
        ("request_id", request_id.as_str()),
    ];
    // Without the form's token: 403, nothing bought.
    let forged = owner.post("/portal/numbers/buy", &form[1..]).await;
    assert_eq!(forged.status(), 403);
    assert!(w.fake.purchases().is_empty());
    for _ in 0..2 {
        let r = owner.post("/portal/numbers/buy", &form).await;
        assert_eq!(r.status(), 303, "{}", r.body);
        assert_eq!(r.header("location"), "/portal/numbers?bought=1");
    }
    assert_eq!(w.fake.purchases().len(), 1, "a double submit buys once");
    let page = owner.get("/portal/numbers?bought=1").await;
    assert!(
        page.body.contains(&format!("<strong>{number}</strong>")),
        "{}",
        page.body
    );
    assert!(page.body.contains("To test it, call the number"));

    assert_eq!(
        welcome_mails(w.outbox.path()).await,
        1,
        "the welcome mail, once"
    );
    assert!(
        call_reaches(&w, &number, a).await,
        "a signed call reaches tenant A"
    );

    // Tenant B's owner sees no number of A's.
    let mut other = w.user(b.id, "owner@b.example", UserRole::Owner).await;
    let page = other.get("/portal/numbers").await;
    assert!(!page.body.contains(&number));
    w.mesh.shutdown().await;
}

/// An unknown country or a malformed area code is a 400 naming the field; staff get the 403
/// page; nothing is bought.
#[tokio::test]
async fn bad_searches_and_staff_buy_nothing() {
    let w = world().await;
    let (a, _) = w.mesh.seed_demo_tenants().await;
    let mut owner = w.user(a.id, "owner@a.example", UserRole::Owner).await;
    for (query, field) in [
        ("country=ZZ", "country"),
        ("country=US&area_code=4x5", "area_code"),
    ] {
        let page = owner.get(&format!("/portal/numbers?{query}")).await;
        assert_eq!(page.status(), 400, "{query}: {}", page.body);
        assert!(page.body.contains(field), "{query}: {}", page.body);
    }
    let mut staff = w.user(a.id, "staff@a.example", UserRole::Staff).await;
    let page = staff.get("/portal/numbers").await;
    assert_eq!(page.status(), 403);
    assert!(!page.body.contains(r#"href="/portal/numbers""#));
    let csrf = csrf_of(&staff.get("/portal/").await.body);
    let r = staff
        .post(
            "/portal/numbers/buy",
            &[
                ("csrf", &csrf),
                ("phone_number", "+14155550101"),
                ("request_id", "0b7c9a52-59f4-4d0e-9d7e-2f1c3a4b5c6d"),
            ],
        )
        .await;
    assert_eq!(r.status(), 403);
    assert!(w.fake.purchases().is_empty());
    w.mesh.shutdown().await;
}
