//! Self sign-up in the portal over HTTP against the real mesh (issue 21, "Onboarding"): the form
//! (labels, its pre-sign-in CSRF token), the same "check your mail" answer, the mailed link
//! (tenant-svc's `.eml` outbox) whose button creates the business and signs its owner in to the
//! waiting page and nothing else, sign-out from there, approval opening the portal; bad input a
//! 400 naming the field, forged forms the 403 page, the per-address daily limit a 429, and none
//! of them storing anything.

use std::time::Duration;

use e2e::{Mesh, MeshOptions, with_token};
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::{CustomerStatus, SetCustomerStatusRequest};
use mesh::identity::{names, scope};
use mesh::mail::{MailTransport, Mailer};
use mesh::testkit::smtp::read_mails;

use super::{Browser, PASSWORD, csrf_of};

/// A mesh whose tenant-svc mails into `outbox` and allows `per_address` sign-ups a day.
async fn mesh(outbox: &std::path::Path, per_address: i64) -> (Mesh, String) {
    let dir = outbox.to_path_buf();
    let mesh = Mesh::start_with(MeshOptions {
        tenant_accounts: Some(Box::new(move |accounts, base| {
            accounts.owner_mail = Some(tenant_svc::notice::OwnerMail {
                mailer: Mailer::new(
                    &MailTransport::Outbox(dir),
                    "NeuroSphere <no-reply@mesh.example>",
                ),
                base_url: base.to_owned(),
            });
            accounts.signup.per_address_per_day = per_address;
        })),
        ..MeshOptions::default()
    })
    .await;
    let http = format!("http://{}", mesh.gateway.main);
    (mesh, http)
}

/// The outbox's mails once there are `n` and two reads agree (at most 10 s).
async fn mails(dir: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = Vec::new();
    loop {
        let m = read_mails(dir);
        if (m.len() >= n && m == last) || tokio::time::Instant::now() > deadline {
            assert_eq!(m.len(), n, "{m:#?}");
            return m;
        }
        last = m;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The verification link's path and query in a mail (quoted-printable undone).
fn link(mail: &str) -> String {
    let body = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let at = body.find("/portal/signup/verify?token=").expect("a link");
    body[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "/-_?=".contains(*c))
        .collect()
}

async fn count(mesh: &Mesh, sql: &str) -> i64 {
    mesh.db
        .admin_client()
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

/// The operator's approval of the customer signed up with `email` (SetCustomerStatus ACTIVE).
async fn approve(mesh: &Mesh, email: &str) {
    let id = count(
        mesh,
        &format!("SELECT customer_id FROM tenant.customers WHERE email = '{email}'"),
    )
    .await;
    let op = mesh.service_token(names::OPERATOR, names::TENANT_SVC, &[scope::TENANT_ADMIN]);
    TenantAdminServiceClient::new(mesh.channel(mesh.tenant).await)
        .set_customer_status(with_token(
            SetCustomerStatusRequest {
                customer_id: id,
                status: CustomerStatus::Active as i32,
            },
            &op,
        ))
        .await
        .unwrap();
}

/// Rows sign-up and verification write.
async fn rows(mesh: &Mesh) -> Vec<i64> {
    let mut v = Vec::new();
    for t in ["signups", "customers", "users", "sessions"] {
        v.push(count(mesh, &format!("SELECT count(*) FROM tenant.{t}")).await);
    }
    v
}

/// The sign-up page: 200, each field with its label.
fn assert_labelled(page: &super::Page) {
    assert_eq!(page.status(), 200);
    for (id, label) in [
        ("business_name", "Business name"),
        ("contact_name", "Your name"),
        ("email", "E-mail address"),
        ("password", "Password"),
        ("confirm", "The same password again"),
    ] {
        assert!(
            page.body
                .contains(&format!(r#"<label for="{id}">{label}</label>"#)),
            "{id}: {}",
            page.body
        );
    }
}

fn form<'a>(csrf: &'a str, business: &'a str, email: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("business_name", business),
        ("contact_name", "Ada Owner"),
        ("email", email),
        ("password", PASSWORD),
        ("confirm", PASSWORD),
    ]
}

/// Sign-up -> "check your mail" -> the link's page -> its button: signed in to the waiting page,
/// whatever page is asked for; the link does not work twice; approval (the operator's
/// SetCustomerStatus) opens the dashboard.
#[tokio::test]
async fn a_sign_up_mails_a_link_that_signs_the_owner_in_to_the_waiting_page_until_approval() {
    let outbox = tempfile::tempdir().unwrap();
    let (mesh, http) = mesh(outbox.path(), 5).await;
    let mut browser = Browser::new(&http, &http);

    let page = browser.get("/portal/signup").await;
    assert_labelled(&page);
    let csrf = csrf_of(&page.body);
    let sent = browser
        .post(
            "/portal/signup",
            &form(&csrf, "Acme Plumbing", "ada@acme.example"),
        )
        .await;
    assert_eq!(sent.status(), 200, "{}", sent.body);
    assert!(sent.body.contains("Check your mail"));
    // An address already signed up gets the very same page.
    let again = browser
        .post(
            "/portal/signup",
            &form(&csrf, "Acme Again", "ada@acme.example"),
        )
        .await;
    assert_eq!(again.body, sent.body);

    let m = mails(outbox.path(), 2).await;
    let mail = m.iter().find(|m| m.contains("Acme Plumbing")).unwrap();
    let path = link(mail);
    let decoded = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    assert!(decoded.contains(&format!("{http}{path}")), "{mail}");

    // The link's page only shows a button: a scanner following the link creates nothing.
    let before = rows(&mesh).await;
    let page = browser.get(&path).await;
    assert_eq!(page.status(), 200);
    assert_eq!(rows(&mesh).await, before);
    let token = path.split("token=").nth(1).unwrap().to_owned();
    let csrf = csrf_of(&page.body);
    let signed = browser
        .post(
            "/portal/signup/verify",
            &[("csrf", &csrf), ("token", &token)],
        )
        .await;
    assert_eq!(signed.status(), 303, "{}", signed.body);
    assert_eq!(signed.header("location"), "/portal/");
    assert!(browser.cookies.contains_key("ns_session"));

    for path in ["/portal/", "/portal/calls", "/portal/agent", "/portal/team"] {
        let page = browser.get(path).await;
        assert_eq!(page.status(), 200, "{path}");
        assert!(page.body.contains("Waiting for approval"), "{path}");
        assert!(page.body.contains("Acme Plumbing"));
        assert!(
            !page.body.contains(r#"aria-label="Main""#),
            "no navigation: {path}"
        );
    }
    // The waiting page's forms change nothing elsewhere either.
    let csrf = csrf_of(&browser.get("/portal/").await.body);
    let page = browser
        .post("/portal/agent", &[("csrf", &csrf), ("agent_name", "X")])
        .await;
    assert!(page.body.contains("Waiting for approval"));

    // The replayed link: 404, nothing created.
    let mut other = Browser::new(&http, &http);
    let csrf2 = csrf_of(&other.get(&path).await.body);
    let before = rows(&mesh).await;
    let replay = other
        .post(
            "/portal/signup/verify",
            &[("csrf", &csrf2), ("token", &token)],
        )
        .await;
    assert_eq!(replay.status(), 404);
    assert_eq!(rows(&mesh).await, before);

    // Approval: the next page is the dashboard.
    approve(&mesh, "ada@acme.example").await;
    let page = browser.get("/portal/").await;
    assert_eq!(page.status(), 200);
    assert!(!page.body.contains("Waiting for approval"), "{}", page.body);
    assert!(page.body.contains(r#"aria-label="Main""#));
    let m = mails(outbox.path(), 3).await;
    assert!(m.iter().any(|m| m.contains("is approved")));

    mesh.shutdown().await;
}

/// Signs `business` up in `browser`, follows the link of its mail (the `n`th in `outbox`) and
/// presses the button; the verification's answer.
async fn sign_up_and_verify(
    browser: &mut Browser,
    outbox: &std::path::Path,
    n: usize,
    business: &str,
    email: &str,
) -> super::Page {
    let csrf = browser.csrf("/portal/signup").await;
    let sent = browser
        .post("/portal/signup", &form(&csrf, business, email))
        .await;
    assert_eq!(sent.status(), 200, "{}", sent.body);
    let m = mails(outbox, n).await;
    let path = link(m.iter().find(|m| m.contains(business)).expect("its mail"));
    let csrf = browser.csrf(&path).await;
    let token = path.split("token=").nth(1).unwrap().to_owned();
    browser
        .post(
            "/portal/signup/verify",
            &[("csrf", &csrf), ("token", &token)],
        )
        .await
}

/// The waiting page's sign-out form ends the session (its CSRF token checked: a wrong one is the
/// 403 page).
#[tokio::test]
async fn the_waiting_page_signs_out() {
    let outbox = tempfile::tempdir().unwrap();
    let (mesh, http) = mesh(outbox.path(), 5).await;
    let mut waiting = Browser::new(&http, &http);
    let verified = sign_up_and_verify(
        &mut waiting,
        outbox.path(),
        1,
        "Bravo Bakery",
        "bo@bravo.example",
    )
    .await;
    assert_eq!(verified.status(), 303);
    let page = waiting.get("/portal/").await;
    assert!(page.body.contains("Waiting for approval"));
    let csrf = csrf_of(&page.body);
    let wrong = waiting.post("/portal/sign-out", &[("csrf", "nope")]).await;
    assert_eq!(wrong.status(), 403);
    let out = waiting.post("/portal/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), 303);
    assert_eq!(
        count(
            &mesh,
            "SELECT count(*) FROM tenant.sessions s JOIN tenant.users u \
             ON u.customer_id = s.customer_id AND u.id = s.user_id \
             WHERE u.email = 'bo@bravo.example' AND s.revoked_at IS NULL"
        )
        .await,
        0
    );
    let page = waiting.get("/portal/").await;
    assert_eq!(page.status(), 303, "signed out");
    mesh.shutdown().await;
}

/// Bad input is a 400 naming the field; a form without its token or from another origin is the
/// 403 page; the address's daily limit a 429 with `Retry-After`: nothing stored or mailed.
#[tokio::test]
async fn bad_input_forged_forms_and_the_address_limit_store_nothing() {
    let outbox = tempfile::tempdir().unwrap();
    let (mesh, http) = mesh(outbox.path(), 1).await;
    let mut browser = Browser::new(&http, &http);
    let csrf = browser.csrf("/portal/signup").await;
    let before = rows(&mesh).await;
    for (field, value, says) in [
        ("business_name", "  ", "Business name:"),
        ("contact_name", "", "Your name:"),
        ("email", "not-an-address", "E-mail address:"),
        ("password", "short", "Password:"),
    ] {
        let mut f = form(&csrf, "Bad Co", "bad@bad.example");
        for (k, v) in f.iter_mut() {
            if *k == field || (field == "password" && *k == "confirm") {
                *v = value;
            }
        }
        let page = browser.post("/portal/signup", &f).await;
        assert_eq!(page.status(), 400, "{field}: {}", page.body);
        assert!(page.body.contains(says), "{field}: {}", page.body);
        assert!(
            page.body.contains(&format!(r#"id="{field}""#)) && page.body.contains("aria-invalid"),
            "{field}"
        );
    }
    let mut f = form(&csrf, "Bad Co", "bad@bad.example");
    f[5].1 = "another password entirely";
    let page = browser.post("/portal/signup", &f).await;
    assert_eq!(page.status(), 400);
    assert!(page.body.contains("not the same"));

    let no_token = browser
        .post(
            "/portal/signup",
            &form("", "Bad Co", "bad@bad.example")[1..],
        )
        .await;
    assert_eq!(no_token.status(), 403);
    let wrong = browser
        .post(
            "/portal/signup",
            &form("forged", "Bad Co", "bad@bad.example"),
        )
        .await;
    assert_eq!(wrong.status(), 403);
    let elsewhere = browser
        .post_from(
            "/portal/signup",
            &form(&csrf, "Bad Co", "bad@bad.example"),
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(elsewhere.status(), 403);
    let verify = browser
        .post(
            "/portal/signup/verify",
            &[("token", "A".repeat(43).as_str())],
        )
        .await;
    assert_eq!(verify.status(), 403, "the verify form needs its token too");
    assert_eq!(rows(&mesh).await, before, "nothing stored");

    // One sign-up a day from this address: the second is 429, nothing stored.
    let ok = browser
        .post(
            "/portal/signup",
            &form(&csrf, "Good Co", "good@good.example"),
        )
        .await;
    assert_eq!(ok.status(), 200);
    let after = rows(&mesh).await;
    let limited = browser
        .post(
            "/portal/signup",
            &form(&csrf, "Next Co", "next@next.example"),
        )
        .await;
    assert_eq!(limited.status(), 429, "{}", limited.body);
    assert!(!limited.header("retry-after").is_empty());
    assert_eq!(rows(&mesh).await, after);
    let m = mails(outbox.path(), 1).await;
    assert!(m[0].contains("Good Co"));
    mesh.shutdown().await;
}
