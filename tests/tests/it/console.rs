//! The operator console (issue 21) over HTTP against the real mesh: never on the public port,
//! served on its own loopback listener with the portal's security headers; a tenant user's
//! session cookie is not an operator's; an operator signs in with password and TOTP code and
//! suspends a customer with a CSRF-checked form, which the tenant's audit log shows.

use e2e::with_token;
use mesh::api::tenant::operator_admin_service_client::OperatorAdminServiceClient;
use mesh::api::tenant::{AddOperatorRequest, UserRole};
use mesh::identity::{names, scope};

use crate::portal::{Browser, PortalMesh, csrf_of};

/// An operator added with the CLI's token: (address, initial password, TOTP secret).
pub async fn add_operator(p: &PortalMesh, email: &str) -> (String, String, Vec<u8>) {
    let token = p
        .mesh
        .service_token(names::OPERATOR, names::TENANT_SVC, &[scope::TENANT_ADMIN]);
    let r = OperatorAdminServiceClient::new(p.mesh.channel(p.mesh.tenant).await)
        .add_operator(with_token(
            AddOperatorRequest {
                email: email.into(),
            },
            &token,
        ))
        .await
        .expect("add operator")
        .into_inner();
    let b32 = r
        .otpauth_uri
        .split("secret=")
        .nth(1)
        .and_then(|x| x.split('&').next())
        .expect("a secret in the URI");
    (email.to_owned(), r.initial_password, base32_decode(b32))
}

fn base32_decode(s: &str) -> Vec<u8> {
    let (mut out, mut buffer, mut bits) = (Vec::new(), 0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32"),
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

/// The authenticator's code now.
pub fn code(secret: &[u8]) -> String {
    use tenant_svc::operator::totp;
    let step = totp::step_at(chrono::Utc::now().timestamp() as u64);
    format!("{:06}", totp::code(secret, step, 6))
}

/// A browser on the console's own listener.
pub fn console_browser(p: &PortalMesh) -> Browser {
    let base = format!("http://{}", p.mesh.console);
    Browser::new(&base, &base)
}

#[tokio::test]
async fn the_console_is_not_on_the_public_port_and_a_tenant_users_cookie_is_refused() {
    let p = PortalMesh::start().await;
    // The public port: 404 for every console path, signed in as a portal user or not.
    let mut public = p
        .signed_in_user(p.tenants.0, "owner@peterson.example", UserRole::Owner)
        .await;
    for path in ["/console/", "/console/sign-in", "/console/customers/1"] {
        assert_eq!(public.get(path).await.status(), 404, "{path}");
    }
    let portal_secret = public
        .cookies
        .get("ns_session")
        .expect("the portal's session cookie")
        .clone();

    // Its own listener: the sign-in page, with the portal's headers.
    let mut b = console_browser(&p);
    let page = b.get("/console/sign-in").await;
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.header("content-security-policy"),
        portal::security::CSP
    );
    assert_eq!(page.header("x-frame-options"), "DENY");
    assert_eq!(page.header("cache-control"), "no-store");
    assert!(page.body.contains("Code from your authenticator app"));

    // A tenant user's session, as the console's cookie or as the portal's: back to sign-in,
    // nothing shown, nothing changed.
    for name in ["ns_operator", "ns_session"] {
        let mut intruder = console_browser(&p);
        intruder
            .cookies
            .insert(name.to_owned(), portal_secret.clone());
        let page = intruder.get("/console/").await;
        assert_eq!(page.status(), 303, "{name}");
        assert_eq!(page.header("location"), "/console/sign-in");
        assert!(!page.body.contains("Peterson"));
        let csrf = portal::secret::derive("operator-session-csrf", &portal_secret);
        let path = format!("/console/customers/{}/suspend", p.tenants.0);
        let page = intruder.post(&path, &[("csrf", &csrf)]).await;
        assert_eq!(page.status(), 303, "{name}: {}", page.body);
        assert_eq!(page.header("location"), "/console/sign-in");
    }
    assert_eq!(
        p.count("tenant.customers WHERE status = 'suspended'").await,
        0
    );
}

/// Posts the console's sign-in form (from `origin`, else the console's own).
pub async fn sign_in(
    b: &mut Browser,
    csrf: &str,
    email: &str,
    password: &str,
    totp_code: &str,
    origin: Option<&str>,
) -> crate::portal::Page {
    let form = [
        ("csrf", csrf),
        ("email", email),
        ("password", password),
        ("totp_code", totp_code),
    ];
    match origin {
        Some(o) => b.post_from("/console/sign-in", &form, Some(o)).await,
        None => b.post("/console/sign-in", &form).await,
    }
}

#[tokio::test]
async fn an_operator_signs_in_with_a_code_and_suspends_a_customer_audited_in_its_log() {
    let p = PortalMesh::start().await;
    let (email, password, secret) = add_operator(&p, "ops@platform.example").await;
    let mut b = console_browser(&p);
    let csrf = b.csrf("/console/sign-in").await;
    // Without the code: refused, no session.
    let page = sign_in(&mut b, &csrf, &email, &password, "", None).await;
    assert_eq!(page.status(), 400, "{}", page.body);
    assert!(page.body.contains("totp_code"));
    assert!(!b.cookies.contains_key("ns_operator"));
    // Another origin: refused before anything is read.
    let evil = Some("https://evil.example");
    let page = sign_in(&mut b, &csrf, &email, &password, &code(&secret), evil).await;
    assert_eq!(page.status(), 403);
    let page = sign_in(&mut b, &csrf, &email, &password, &code(&secret), None).await;
    assert_eq!(page.status(), 303, "{}", page.body);
    assert!(b.cookies.contains_key("ns_operator"));
    let list = b.get("/console/").await;
    assert_eq!(list.status(), 200, "{}", list.body);
    assert!(list.body.contains("Peterson"), "{}", list.body);
    let path = format!("/console/customers/{}", p.tenants.0);
    let page = b.get(&path).await;
    assert_eq!(page.status(), 200);
    let token = csrf_of(&page.body);
    // No token, a wrong token: 403, nothing changed.
    for bad in ["", "not-the-token"] {
        let page = b.post(&format!("{path}/suspend"), &[("csrf", bad)]).await;
        assert_eq!(page.status(), 403, "{bad:?}");
    }
    assert_eq!(
        p.count("tenant.customers WHERE status = 'suspended'").await,
        0
    );
    let page = b
        .post(&format!("{path}/suspend"), &[("csrf", &token)])
        .await;
    assert_eq!(page.status(), 303, "{}", page.body);
    let page = b.get(&format!("{path}?done=suspend")).await;
    assert!(page.body.contains("Suspended."));
    assert!(page.body.contains(r#"<dd id="status">suspended</dd>"#));
    // The tenant's own audit log names the operator; the other tenant's has nothing of it.
    let admin = p.mesh.db.admin_client().await;
    let actor: String = admin
        .query_one(
            "SELECT actor FROM tenant.audit_log WHERE customer_id = $1 AND action = 'operator.suspended'",
            &[&p.tenants.0],
        )
        .await
        .expect("an audit row")
        .get(0);
    assert!(actor.starts_with("operator:"), "{actor}");
    assert_eq!(
        p.count(&format!(
            "tenant.audit_log WHERE customer_id = {} AND action LIKE 'operator.%'",
            p.tenants.1
        ))
        .await,
        0
    );
    // Sign-out ends the session at tenant-svc.
    let page = b.post("/console/sign-out", &[("csrf", &token)]).await;
    assert_eq!(page.status(), 303);
    let op_cookie = b.cookies.get("ns_operator").cloned();
    assert!(op_cookie.is_none());
    assert_eq!(
        p.count("tenant.operator_sessions WHERE revoked_at IS NULL")
            .await,
        0
    );
}
