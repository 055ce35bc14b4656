//! Forged forms, as a browser really sends them: a portal form whose CSRF field was removed,
//! and a form on another origin (a page of its own on another loopback port, which the browser
//! treats as the same site, so the session cookie goes along and only the `Origin` check
//! stands in the way) carrying even the right CSRF token. Each is refused with the 403 page and
//! changes nothing: the password still works and the session is still open.

use axum::response::Html;
use axum::routing::get;
use mesh::api::tenant::UserRole;
use serde_json::json;

use crate::kit::{Ctx, PASSWORD, suite};

const NEW_PASSWORD: &str = "a completely new passphrase 77";

/// Serves `html` at `/` on a loopback port of its own; returns the page's URL.
async fn foreign_page(html: String) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route("/", get(move || async move { Html(html) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("bound"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

/// Fills the password form on the security page shown now.
async fn fill_password_change(ctx: &Ctx<'_>) {
    let b = ctx.browser;
    b.fill("#current_password", PASSWORD)
        .await
        .expect("current");
    b.fill("#new_password", NEW_PASSWORD).await.expect("new");
    b.fill("#confirm", NEW_PASSWORD).await.expect("confirm");
}

/// The password is unchanged and the session open: the security page opens, and signing in
/// again with the old password works.
async fn assert_nothing_changed(ctx: &Ctx<'_>, email: &str, after: &str) {
    let b = ctx.browser;
    b.goto(&ctx.url("/portal/security")).await.expect("open");
    assert!(ctx.signed_in().await, "{after}: the session ended");
    assert_eq!(ctx.heading().await, "Security", "{after}");
    ctx.sign_in(email, PASSWORD).await;
    assert!(ctx.signed_in().await, "{after}: the password changed");
}

/// The portal's own password form without its CSRF field: refused, nothing changed.
async fn without_the_csrf_field(ctx: &Ctx<'_>, email: &str) {
    let b = ctx.browser;
    // 1. The portal's own form without its CSRF field.
    b.goto(&ctx.url("/portal/security")).await.expect("open");
    fill_password_change(ctx).await;
    let removed = b
        .execute(
            "const f = document.querySelector(\"form[action='/portal/security/password']\");
                 const c = f.querySelector('input[name=csrf]'); c.remove(); return true;",
            vec![],
        )
        .await
        .expect("remove the field");
    assert_eq!(removed, json!(true));
    b.click("form[action='/portal/security/password'] button[type=submit]")
        .await
        .expect("submit");
    assert_eq!(ctx.heading().await, "Not allowed", "no CSRF token");
    assert!(
        b.text()
            .await
            .expect("text")
            .contains("Nothing was changed")
            || b.text().await.expect("text").contains("expired"),
        "the refusal does not say what to do"
    );
    assert_nothing_changed(ctx, email, "without a CSRF token").await;
}

/// The sign-in form without its CSRF field signs nobody in.
async fn sign_in_without_the_csrf_field(ctx: &Ctx<'_>, email: &str) {
    let b = ctx.browser;
    // 4. The sign-in form without its CSRF field signs nobody in.
    ctx.sign_out().await;
    b.goto(&ctx.url("/portal/sign-in")).await.expect("open");
    b.fill("#email", email).await.expect("e-mail");
    b.fill("#password", PASSWORD).await.expect("password");
    b.execute(
        "document.querySelector('main form input[name=csrf]').remove(); return true;",
        vec![],
    )
    .await
    .expect("remove the field");
    b.click("main form button[type=submit]")
        .await
        .expect("submit");
    assert!(!ctx.signed_in().await, "signed in without a CSRF token");
    assert!(ctx.cookie("ns_session").await.is_none());
}

#[test]
fn forms_without_their_csrf_token_or_from_another_origin_are_refused_and_change_nothing() {
    suite().run(async |ctx| {
        let b = ctx.browser;
        let tenant = ctx.tenant("Forged Forms Florist").await;
        let email = ctx.user(&tenant, "owner", UserRole::Owner).await;

        without_the_csrf_field(&ctx, &email).await;

        // 2. The same form on another origin, with the session's real CSRF token in it.
        b.goto(&ctx.url("/portal/security")).await.expect("open");
        let csrf = b
            .execute(
                "return document.querySelector(\"form[action='/portal/security/password'] \
                 input[name=csrf]\").value",
                vec![],
            )
            .await
            .expect("read the token");
        let csrf = csrf.as_str().expect("a token").to_owned();
        let action = ctx.url("/portal/security/password");
        let (url, server) = foreign_page(format!(
            r#"<!doctype html><html lang="en"><head><title>Win a prize</title></head><body>
<form method="post" action="{action}">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="current_password" value="{PASSWORD}">
<input type="hidden" name="new_password" value="{NEW_PASSWORD}">
<input type="hidden" name="confirm" value="{NEW_PASSWORD}">
<button type="submit" id="claim">Claim</button></form></body></html>"#
        ))
        .await;
        assert_ne!(
            url.trim_end_matches('/'),
            ctx.mesh.public_base_url,
            "not another origin"
        );
        b.goto(&url).await.expect("open the other site");
        b.click("#claim").await.expect("submit from the other site");
        assert_eq!(
            b.url().await.expect("url"),
            action,
            "the browser did not post the form"
        );
        assert_eq!(ctx.heading().await, "Not allowed", "another origin");
        assert!(
            b.text()
                .await
                .expect("text")
                .contains("not sent from this site"),
            "the refusal does not say why"
        );
        assert_nothing_changed(&ctx, &email, "from another origin").await;

        // 3. Signing out from another origin does not sign out (the session's token again:
        // signing in above began a new session).
        let csrf = b
            .execute(
                "return document.querySelector(\"form[action='/portal/sign-out'] \
                 input[name=csrf]\").value",
                vec![],
            )
            .await
            .expect("read the token");
        let csrf = csrf.as_str().expect("a token").to_owned();
        let (url, signout_server) = foreign_page(format!(
            r#"<!doctype html><html lang="en"><head><title>Hi</title></head><body>
<form method="post" action="{}"><input type="hidden" name="csrf" value="{csrf}">
<button type="submit" id="go">Go</button></form></body></html>"#,
            ctx.url("/portal/sign-out")
        ))
        .await;
        b.goto(&url).await.expect("open the other site");
        b.click("#go").await.expect("submit");
        assert_eq!(
            ctx.heading().await,
            "Not allowed",
            "sign-out from another origin"
        );
        b.goto(&ctx.url("/portal/")).await.expect("open");
        assert!(ctx.signed_in().await, "signed out by another site");

        sign_in_without_the_csrf_field(&ctx, &email).await;

        server.abort();
        signout_server.abort();
    });
}
