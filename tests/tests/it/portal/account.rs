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
    portal.mesh.shutdown().await;
}
