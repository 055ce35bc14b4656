//! The portal's account pages and web security over HTTP (issue 19, "Sign-in"): security
//! headers on every answer, the pre-sign-in CSRF cookie, the same-origin rule, sign-in and its
//! return path, invitation, sessions (cookie shapes for loopback http and https, rotation at
//! sign-in, sign-out), the throttle of wrong passwords and password-reset mail.

use super::{PortalMesh, csrf_of};

/// The headers every portal answer carries; `hsts` when the base URL is https.
fn assert_security_headers(page: &super::Page, hsts: bool, what: &str) {
    assert_eq!(
        page.header("content-security-policy"),
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        "{what}"
    );
    assert_eq!(page.header("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(page.header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(page.header("x-frame-options"), "DENY", "{what}");
    assert_eq!(
        page.header("strict-transport-security").is_empty(),
        !hsts,
        "{what}: HSTS only on https"
    );
}

#[tokio::test]
async fn every_portal_answer_carries_the_security_headers() {
    let portal = PortalMesh::start().await;
    let mut browser = portal.browser();
    for path in [
        "/portal/sign-in",
        "/portal/reset",
        "/portal/",
        "/portal/security",
        "/portal/no-such-page",
        "/portal/invite/not-a-token",
    ] {
        let page = browser.get(path).await;
        assert_security_headers(&page, false, path);
        assert_eq!(page.header("cache-control"), "no-store", "{path}");
    }
    let css = browser.get("/portal/static/portal.css").await;
    assert_eq!(css.status(), 200);
    assert!(css.header("content-type").starts_with("text/css"));
    assert_security_headers(&css, false, "stylesheet");
    let page = browser.get("/portal/no-such-page").await;
    assert_eq!(page.status(), 404);
    assert!(page.body.contains("Not found"), "{}", page.body);
    let page = browser.get("/portal").await;
    assert_eq!(page.status(), 308);
    assert_eq!(page.header("location"), "/portal/");
    portal.mesh.shutdown().await;
}

#[tokio::test]
async fn signed_out_pages_send_to_sign_in_and_back() {
    let portal = PortalMesh::start().await;
    let mut browser = portal.browser();
    let page = browser.get("/portal/").await;
    assert_eq!(page.status(), 303);
    assert_eq!(page.header("location"), "/portal/sign-in");
    let page = browser.get("/portal/security").await;
    assert_eq!(page.status(), 303);
    assert_eq!(
        page.header("location"),
        "/portal/sign-in?next=%2Fportal%2Fsecurity"
    );
    // The sign-in form returns there, and only to a portal path.
    let page = browser
        .get("/portal/sign-in?next=%2Fportal%2Fsecurity")
        .await;
    assert!(
        page.body
            .contains(r#"name="next" value="/portal/security""#),
        "{}",
        page.body
    );
    let page = browser
        .get("/portal/sign-in?next=https%3A%2F%2Fevil.example%2F")
        .await;
    assert!(
        page.body.contains(r#"name="next" value="/portal/""#),
        "{}",
        page.body
    );
    portal.mesh.shutdown().await;
}

#[tokio::test]
async fn the_sign_in_form_has_a_csrf_token_bound_to_its_own_cookie() {
    let portal = PortalMesh::start().await;
    let mut browser = portal.browser();
    let page = browser.get("/portal/sign-in").await;
    assert_eq!(page.status(), 200);
    let cookies = page.set_cookies();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert!(
        cookies[0].starts_with("ns_csrf=")
            && cookies[0].ends_with("; Path=/portal; HttpOnly; SameSite=Lax"),
        "{cookies:?}"
    );
    // The same cookie gives the same token; a browser without it gets another.
    let token = csrf_of(&page.body);
    assert_eq!(browser.csrf("/portal/sign-in").await, token);
    let other = portal.browser().csrf("/portal/sign-in").await;
    assert_ne!(other, token);
    // Every label names an input.
    for id in ["email", "password"] {
        assert!(
            page.body.contains(&format!(r#"<label for="{id}">"#)),
            "{id}"
        );
        assert!(page.body.contains(&format!(r#"id="{id}""#)), "{id}");
    }
    portal.mesh.shutdown().await;
}

#[tokio::test]
async fn auth_form_posts_without_their_token_or_from_another_origin_are_refused() {
    let portal = PortalMesh::start().await;
    let mut browser = portal.browser();
    let token = browser.csrf("/portal/sign-in").await;
    for (what, csrf, origin) in [
        ("no token", None, Some(portal.origin.clone())),
        (
            "a wrong token",
            Some("A".repeat(43)),
            Some(portal.origin.clone()),
        ),
        (
            "another origin",
            Some(token.clone()),
            Some("https://evil.example".to_owned()),
        ),
        ("no origin", Some(token.clone()), None),
        (
            "a null origin",
            Some(token.clone()),
            Some("null".to_owned()),
        ),
    ] {
        let mut fields = vec![
            ("email", "nobody@example.com"),
            ("password", super::PASSWORD),
        ];
        if let Some(csrf) = &csrf {
            fields.push(("csrf", csrf));
        }
        for path in ["/portal/sign-in", "/portal/reset"] {
            let page = browser.post_from(path, &fields, origin.as_deref()).await;
            assert_eq!(page.status(), 403, "{what} on {path}: {}", page.body);
            assert!(page.body.contains("Nothing was changed"), "{what}");
            assert!(
                page.set_cookies().iter().all(|c| !c.contains("session")),
                "{what}: no session cookie"
            );
        }
    }
    portal.mesh.shutdown().await;
}

#[tokio::test]
async fn auth_form_posts_beyond_the_address_allowance_get_429() {
    let portal = PortalMesh::start_with(&[("PORTAL_AUTH_POSTS_PER_MINUTE", "3")]).await;
    let mut browser = portal.browser();
    // Refused forms count too: the allowance is checked before the body is read.
    for _ in 0..3 {
        let page = browser
            .post("/portal/reset", &[("email", "x@example.com")])
            .await;
        assert_eq!(page.status(), 403);
    }
    let page = browser
        .post("/portal/reset", &[("email", "x@example.com")])
        .await;
    assert_eq!(page.status(), 429, "{}", page.body);
    let wait: u64 = page.header("retry-after").parse().expect("Retry-After");
    assert!((1..=61).contains(&wait), "{wait}");
    // Pages are still shown.
    assert_eq!(browser.get("/portal/sign-in").await.status(), 200);
    portal.mesh.shutdown().await;
}

#[tokio::test]
async fn https_base_url_pages_carry_hsts_and_host_prefixed_cookies() {
    let portal = PortalMesh::start_with(&[
        ("PUBLIC_BASE_URL", "https://portal.mesh.example"),
        ("PORTAL_SMTP_URL", "smtp://127.0.0.1:2525"),
    ])
    .await;
    let mut browser = portal.browser();
    let page = browser.get("/portal/sign-in").await;
    assert_security_headers(&page, true, "https sign-in page");
    assert_eq!(
        page.header("strict-transport-security"),
        "max-age=31536000; includeSubDomains"
    );
    let cookies = page.set_cookies();
    assert!(
        cookies.len() == 1
            && cookies[0].starts_with("__Host-ns_csrf=")
            && cookies[0].ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax"),
        "{cookies:?}"
    );
    // The origin is the https one: the gateway's own http address is another origin.
    let token = csrf_of(&page.body);
    let page = browser
        .post_from(
            "/portal/reset",
            &[("csrf", &token), ("email", "x@example.com")],
            Some(&portal.http.clone()),
        )
        .await;
    assert_eq!(page.status(), 403);
    // Signed in, the session cookie has the same shape, and signed-in pages carry HSTS too.
    let token = portal
        .invite(portal.tenants.0, "owner@peterson.example", UserRole::Owner)
        .await;
    let page = browser.accept_invitation(&token, PASSWORD).await;
    assert_eq!(page.status(), 303, "{}", page.body);
    let cookie = session_cookie(&page, "__Host-ns_session").expect("session cookie");
    assert!(
        cookie.contains("; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age="),
        "{cookie}"
    );
    let page = browser.get("/portal/").await;
    assert_eq!(page.status(), 200);
    assert_security_headers(&page, true, "https signed-in page");
    portal.mesh.shutdown().await;
}

// --- with tenant-svc's accounts ---------------------------------------------------------------

use mesh::api::tenant::UserRole;

use super::PASSWORD;

/// The session cookie's value in a response's `Set-Cookie` headers.
fn session_cookie(page: &super::Page, name: &str) -> Option<String> {
    page.set_cookies()
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")) && !c.contains("Max-Age=0"))
}

#[tokio::test]
async fn an_invitation_sets_a_password_and_signs_in_with_the_loopback_cookie() {
    let portal = PortalMesh::start().await;
    let (tenant, _) = portal.tenants;
    let token = portal
        .invite(tenant, "owner@peterson.example", UserRole::Owner)
        .await;
    let mut browser = portal.browser();
    let path = format!("/portal/invite/{token}");
    let page = browser.get(&path).await;
    assert_eq!(page.status(), 200, "{}", page.body);
    for shown in [
        "Peterson Family Insurance",
        "owner@peterson.example",
        "owner",
    ] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }
    let csrf = csrf_of(&page.body);
    // Two different passwords: the form again, nobody created.
    let page = browser
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("password", PASSWORD),
                ("confirm", "something else 123"),
            ],
        )
        .await;
    assert_eq!(page.status(), 422);
    assert!(page.body.contains("not the same"), "{}", page.body);
    // Too short: tenant-svc's rule, shown on the form.
    let page = browser
        .post(
            &path,
            &[("csrf", &csrf), ("password", "short"), ("confirm", "short")],
        )
        .await;
    assert_eq!(page.status(), 422);
    assert!(page.body.contains("at least 12"), "{}", page.body);
    assert_eq!(portal.count("tenant.users").await, 0);
    assert_eq!(portal.count("tenant.sessions").await, 0);

    let page = browser
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status(), 303, "{}", page.body);
    assert_eq!(page.header("location"), "/portal/");
    let cookie = session_cookie(&page, "ns_session").expect("session cookie");
    assert!(
        cookie.contains("; Path=/portal; HttpOnly; SameSite=Lax; Max-Age=")
            && !cookie.contains("Secure"),
        "{cookie}"
    );
    // The pre-sign-in cookie goes.
    assert!(
        !browser.cookies.contains_key("ns_csrf"),
        "{:?}",
        page.set_cookies()
    );
    let page = browser.get("/portal/").await;
    assert_eq!(page.status(), 200, "{}", page.body);
    assert!(page.body.contains("owner@peterson.example"));
    assert!(page.body.contains("Peterson Family Insurance"));
    assert_eq!(page.header("cache-control"), "no-store");
    assert_security_headers(&page, false, "signed-in page");
    // An owner sees every link.
    assert!(
        page.body.contains(r#"href="/portal/tokens""#),
        "{}",
        page.body
    );
    // The invitation works once.
    assert_eq!(portal.browser().get(&path).await.status(), 404);
    assert_eq!(portal.count("tenant.users").await, 1);
    portal.mesh.shutdown().await;
}

#[tokio::test]
async fn staff_see_only_their_links() {
    let portal = PortalMesh::start().await;
    let mut staff = portal
        .signed_in_user(portal.tenants.0, "staff@peterson.example", UserRole::Staff)
        .await;
    let page = staff.get("/portal/").await;
    assert_eq!(page.status(), 200);
    for shown in ["/portal/calls", "/portal/callers", "/portal/security"] {
        assert!(page.body.contains(&format!(r#"href="{shown}""#)), "{shown}");
    }
    for hidden in [
        "/portal/agent",
        "/portal/tokens",
        "/portal/team",
        "/portal/usage",
    ] {
        assert!(
            !page.body.contains(&format!(r#"href="{hidden}""#)),
            "{hidden}"
        );
    }
    portal.mesh.shutdown().await;
}

#[tokio::test]
async fn the_session_id_rotates_at_sign_in_and_sign_out_ends_it() {
    let portal = PortalMesh::start().await;
    let mut first = portal
        .signed_in_user(portal.tenants.0, "owner@peterson.example", UserRole::Owner)
        .await;
    let before = first.cookies["ns_session"].clone();
    // Signing in again in the same browser: a new session; the old secret no longer works.
    let page = first.sign_in("owner@peterson.example", PASSWORD).await;
    assert_eq!(page.status(), 303, "{}", page.body);
    assert_eq!(page.header("location"), "/portal/");
    let after = first.cookies["ns_session"].clone();
    assert_ne!(before, after);
    let mut stale = portal.browser();
    stale.cookies.insert("ns_session".into(), before);
    assert_eq!(stale.get("/portal/").await.status(), 303);
    assert_eq!(first.get("/portal/").await.status(), 200);

    // Sign-out: the cookie is cleared and the session ended at tenant-svc.
    let csrf = first.csrf("/portal/").await;
    let page = first.post("/portal/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(page.status(), 303);
    assert_eq!(page.header("location"), "/portal/sign-in");
    assert!(
        page.set_cookies()
            .iter()
            .any(|c| c.starts_with("ns_session=;") && c.contains("Max-Age=0")),
        "{:?}",
        page.set_cookies()
    );
    let mut replay = portal.browser();
    replay.cookies.insert("ns_session".into(), after);
    let page = replay.get("/portal/").await;
    assert_eq!(page.status(), 303, "the ended session opens nothing");
    portal.mesh.shutdown().await;
}

#[tokio::test]
async fn signed_in_forms_without_their_token_or_from_another_origin_change_nothing() {
    let portal = PortalMesh::start().await;
    let mut owner = portal
        .signed_in_user(portal.tenants.0, "owner@peterson.example", UserRole::Owner)
        .await;
    let csrf = owner.csrf("/portal/security").await;
    let other_session_token = {
        // The sign-in form's token of another browser is not this session's.
        portal.browser().csrf("/portal/sign-in").await
    };
    for (what, fields, origin) in [
        ("no token", vec![], Some(portal.origin.clone())),
        (
            "another browser's token",
            vec![("csrf", other_session_token.as_str())],
            Some(portal.origin.clone()),
        ),
        (
            "another origin",
            vec![("csrf", csrf.as_str())],
            Some("http://evil.example".to_owned()),
        ),
        ("no origin", vec![("csrf", csrf.as_str())], None),
    ] {
        for path in ["/portal/security/sign-out-everywhere", "/portal/sign-out"] {
            let page = owner.post_from(path, &fields, origin.as_deref()).await;
            assert_eq!(page.status(), 403, "{what} on {path}: {}", page.body);
        }
        let mut password = fields.clone();
        password.extend([
            ("current_password", PASSWORD),
            ("new_password", "a brand new passphrase 42"),
            ("confirm", "a brand new passphrase 42"),
        ]);
        let page = owner
            .post_from("/portal/security/password", &password, origin.as_deref())
            .await;
        assert_eq!(page.status(), 403, "{what} on the password form");
        // Still signed in with the same session; the old password still works.
        assert_eq!(owner.get("/portal/security").await.status(), 200, "{what}");
    }
    let client = portal.mesh.db.admin_client().await;
    let open: i64 = client
        .query_one(
            "SELECT count(*) FROM tenant.sessions WHERE revoked_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(open, 1, "no session was ended");
    // A sign-in form posted from another origin with the right password signs nobody in.
    let mut browser = portal.browser();
    let token = browser.csrf("/portal/sign-in").await;
    let page = browser
        .post_from(
            "/portal/sign-in",
            &[
                ("csrf", &token),
                ("email", "owner@peterson.example"),
                ("password", PASSWORD),
            ],
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(page.status(), 403);
    assert_eq!(
        portal.count("tenant.sessions").await,
        1,
        "no session created"
    );
    let mut fresh = portal.browser();
    assert_eq!(
        fresh
            .sign_in("owner@peterson.example", PASSWORD)
            .await
            .status(),
        303,
        "the password is unchanged"
    );
    portal.mesh.shutdown().await;
}

#[tokio::test]
async fn the_eleventh_wrong_password_in_a_minute_is_throttled() {
    let portal = PortalMesh::start().await;
    portal
        .signed_in_user(portal.tenants.0, "owner@peterson.example", UserRole::Owner)
        .await;
    let mut browser = portal.browser();
    for attempt in 1..=10 {
        let page = browser
            .sign_in("owner@peterson.example", "wrong password number")
            .await;
        assert_eq!(page.status(), 401, "attempt {attempt}: {}", page.body);
        assert!(page.body.contains("not right"), "{}", page.body);
        assert!(session_cookie(&page, "ns_session").is_none());
    }
    let page = browser
        .sign_in("owner@peterson.example", "wrong password number")
        .await;
    assert_eq!(page.status(), 429, "{}", page.body);
    let wait: u64 = page.header("retry-after").parse().expect("Retry-After");
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(page.body.contains("Too many attempts"));
    // Throttled, even the right password opens nothing.
    let page = browser.sign_in("owner@peterson.example", PASSWORD).await;
    assert_eq!(page.status(), 429);
    assert!(session_cookie(&page, "ns_session").is_none());
    portal.mesh.shutdown().await;
}

#[tokio::test]
async fn changing_the_password_ends_the_other_sessions() {
    let portal = PortalMesh::start().await;
    let mut here = portal
        .signed_in_user(portal.tenants.0, "owner@peterson.example", UserRole::Owner)
        .await;
    let mut there = portal.browser();
    assert_eq!(
        there
            .sign_in("owner@peterson.example", PASSWORD)
            .await
            .status(),
        303
    );
    let page = here.get("/portal/security").await;
    // The sessions table only (an owner's page also shows the activity log's table below it).
    let sessions = page
        .body
        .split("id=\"audit-heading\"")
        .next()
        .unwrap_or_default();
    assert_eq!(
        sessions.matches("<tr>").count(),
        3,
        "header + two sessions: {}",
        page.body
    );
    assert!(page.body.contains("Firefox on Linux"), "{}", page.body);
    let csrf = csrf_of(&page.body);
    let new = "a brand new passphrase 42";
    let page = here
        .post(
            "/portal/security/password",
            &[
                ("csrf", &csrf),
                ("current_password", "not my password at all"),
                ("new_password", new),
                ("confirm", new),
            ],
        )
        .await;
    assert_eq!(page.status(), 422);
    assert!(
        page.body.contains("current password is not right"),
        "{}",
        page.body
    );
    let page = here
        .post(
            "/portal/security/password",
            &[
                ("csrf", &csrf),
                ("current_password", PASSWORD),
                ("new_password", new),
                ("confirm", new),
            ],
        )
        .await;
    assert_eq!(page.status(), 303, "{}", page.body);
    assert_eq!(page.header("location"), "/portal/security?done=password");
    assert_eq!(here.get("/portal/security").await.status(), 200);
    assert_eq!(
        there.get("/portal/").await.status(),
        303,
        "the other session ended"
    );
    assert_eq!(
        portal
            .browser()
            .sign_in("owner@peterson.example", new)
            .await
            .status(),
        303
    );
    portal.mesh.shutdown().await;
}

/// The reset link's path in a mail (soft line breaks of quoted-printable undone).
fn reset_path(mail: &str, base: &str) -> String {
    let body = mail.replace("=\r\n", "").replace("=\n", "");
    let start = body
        .find(&format!("{base}/portal/reset/"))
        .unwrap_or_else(|| panic!("no link in:\n{mail}"));
    let link: String = body[start + base.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "/-_".contains(*c))
        .collect();
    link
}

#[tokio::test]
async fn a_reset_mail_arrives_over_smtp_with_a_working_link_and_unknown_addresses_get_none() {
    let Some(smtp) = mesh::testkit::smtp::SmtpServer::start().await else {
        return;
    };
    let url = format!("smtp://127.0.0.1:{}", smtp.port);
    let portal = PortalMesh::start_with(&[
        ("PORTAL_SMTP_URL", &url),
        ("PORTAL_MAIL_FROM", "Peterson Portal <portal@mesh.example>"),
    ])
    .await;
    let mut signed_in = portal
        .signed_in_user(portal.tenants.0, "owner@peterson.example", UserRole::Owner)
        .await;
    let mut browser = portal.browser();
    let csrf = browser.csrf("/portal/reset").await;
    let known = browser
        .post(
            "/portal/reset",
            &[("csrf", &csrf), ("email", "Owner@Peterson.example")],
        )
        .await;
    assert_eq!(known.status(), 200, "{}", known.body);
    let unknown = browser
        .post(
            "/portal/reset",
            &[("csrf", &csrf), ("email", "nobody@peterson.example")],
        )
        .await;
    assert_eq!(unknown.status(), 200);
    assert_eq!(
        known.body, unknown.body,
        "the same page whatever the address"
    );

    let mails = smtp.wait_for(1).await;
    let mail = &mails[0];
    assert!(mail.contains("To: owner@peterson.example"), "{mail}");
    assert!(mail.contains("portal@mesh.example"), "{mail}");
    assert!(mail.contains("Peterson Family Insurance"), "{mail}");
    // Nothing for the unknown address.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(smtp.messages().len(), 1, "one mail only");

    let path = reset_path(mail, &portal.http);
    let page = browser.get(&path).await;
    assert_eq!(page.status(), 200, "{}", page.body);
    let csrf = csrf_of(&page.body);
    let new = "a brand new passphrase 42";
    let page = browser
        .post(
            &path,
            &[("csrf", &csrf), ("password", new), ("confirm", new)],
        )
        .await;
    assert_eq!(page.status(), 200, "{}", page.body);
    assert!(page.body.contains("Password changed"), "{}", page.body);
    // The link works once; every session of the user ended; the new password signs in.
    let page = browser
        .post(
            &path,
            &[("csrf", &csrf), ("password", new), ("confirm", new)],
        )
        .await;
    assert_eq!(page.status(), 404);
    assert_eq!(signed_in.get("/portal/").await.status(), 303);
    assert_eq!(
        portal
            .browser()
            .sign_in("owner@peterson.example", PASSWORD)
            .await
            .status(),
        401
    );
    assert_eq!(
        portal
            .browser()
            .sign_in("owner@peterson.example", new)
            .await
            .status(),
        303
    );
    portal.mesh.shutdown().await;
}
