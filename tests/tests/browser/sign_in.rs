//! Signing in as a person does it, in Chromium: an invitation link, a chosen password, the
//! dashboard, signing out and in again; the session cookie's shape on the plain-http loopback
//! URL the test mesh (like `neurosphere up`) uses, its rotation at every sign-in, and the
//! throttle after ten wrong passwords.

use mesh::api::tenant::UserRole;

use e2e::browser::Cookie;

use crate::kit::{Ctx, PASSWORD, suite};

/// The session cookie's name on a plain-http loopback base URL (no `__Host-` prefix: that
/// prefix requires `Secure`, which a browser refuses over http).
const SESSION: &str = "ns_session";

/// The session cookie on a plain-http loopback base URL: `HttpOnly`, not `Secure`,
/// `Path=/portal`, `SameSite=Lax`, no `__Host-` cookie at all, and invisible to scripts.
async fn assert_loopback_cookie_shape(ctx: &Ctx<'_>, first: &Cookie) {
    let b = ctx.browser;
    assert!(
        first.http_only,
        "session cookie readable by scripts: {first:?}"
    );
    assert!(
        !first.secure,
        "Secure on plain http would never be sent back"
    );
    assert_eq!(first.path.as_deref(), Some("/portal"), "{first:?}");
    assert_eq!(first.same_site.as_deref(), Some("Lax"), "{first:?}");
    let names: Vec<String> = b
        .cookies()
        .await
        .expect("cookies")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with("__Host-")),
        "a __Host- cookie on plain http: {names:?}"
    );
    // Scripts in the page cannot read it.
    let visible = b
        .execute("return document.cookie", vec![])
        .await
        .expect("document.cookie");
    assert!(
        !visible.as_str().unwrap_or_default().contains(&first.value),
        "the session secret is visible to scripts"
    );
}

/// Signing in gives a new id; signing in again, a third, and ends the second.
async fn signing_in_again_rotates_the_id(ctx: &Ctx<'_>, email: &str, first: &Cookie) {
    let b = ctx.browser;
    // Signing in gives a new id; signing in again, a third, and ends the second.
    ctx.sign_in(email, PASSWORD).await;
    assert!(ctx.signed_in().await, "sign-in failed");
    assert_eq!(b.url().await.expect("url"), ctx.url("/portal/"));
    let second = ctx.cookie(SESSION).await.expect("a session cookie");
    assert_ne!(second.value, first.value, "the session id did not rotate");
    ctx.sign_in(email, PASSWORD).await;
    assert!(ctx.signed_in().await, "second sign-in failed");
    let third = ctx.cookie(SESSION).await.expect("a session cookie");
    assert_ne!(third.value, second.value, "the session id did not rotate");
    b.set_cookie(SESSION, &second.value, "/portal")
        .await
        .expect("replay");
    b.goto(&ctx.url("/portal/")).await.expect("open");
    assert!(
        !ctx.signed_in().await,
        "the session replaced by signing in again still opens the dashboard"
    );
}

#[test]
fn invitation_sets_a_password_signs_in_and_out_with_the_cookie_rotating_at_each_sign_in() {
    suite().run(async |ctx| {
        let b = ctx.browser;
        let tenant = ctx.tenant("Invited Plumbing").await;
        let email = format!("owner.{}@tenant.example", tenant.tag);
        let token = ctx.invite(&tenant, &email, UserRole::Owner).await;

        // The link shows whom it is for before anything is chosen.
        b.goto(&ctx.url(&format!("/portal/invite/{token}")))
            .await
            .expect("open the link");
        assert!(
            ctx.heading().await.contains("Invited Plumbing"),
            "the invitation page does not name the business"
        );
        assert!(b.text().await.expect("text").contains(&email));
        assert!(
            ctx.cookie(SESSION).await.is_none(),
            "a session before any password"
        );

        // A planted session cookie (session fixation) must not survive signing in.
        let planted = "A".repeat(43);
        b.set_cookie(SESSION, &planted, "/portal")
            .await
            .expect("plant a cookie");

        ctx.accept_invitation(&token, PASSWORD).await;
        assert_eq!(b.url().await.expect("url"), ctx.url("/portal/"));
        assert!(
            ctx.signed_in().await,
            "not signed in after setting the password"
        );
        let text = b.text().await.expect("text");
        assert!(text.contains("Invited Plumbing") && text.contains(&email));

        let first = ctx.cookie(SESSION).await.expect("a session cookie");
        assert_ne!(first.value, planted, "the planted session id was kept");
        assert_loopback_cookie_shape(&ctx, &first).await;

        // The invitation works once.
        assert_eq!(
            b.status_of(&format!("/portal/invite/{token}"))
                .await
                .expect("status"),
            404,
            "a used invitation still opens"
        );

        // Sign out: the cookie is gone, the dashboard asks to sign in, and the old cookie
        // replayed is worth nothing (the session ended in tenant-svc, not only in the browser).
        ctx.sign_out().await;
        assert!(!ctx.signed_in().await, "still signed in after signing out");
        assert!(ctx.cookie(SESSION).await.is_none(), "the cookie stayed");
        b.set_cookie(SESSION, &first.value, "/portal")
            .await
            .expect("replay");
        b.goto(&ctx.url("/portal/")).await.expect("open");
        assert!(
            b.url()
                .await
                .expect("url")
                .starts_with(&ctx.url("/portal/sign-in")),
            "an ended session opened the dashboard"
        );
        assert!(!ctx.signed_in().await);

        signing_in_again_rotates_the_id(&ctx, &email, &first).await;

        // Signed out, a portal page sends to sign-in and back to it afterwards.
        b.goto(&ctx.url("/portal/security")).await.expect("open");
        assert!(
            b.url()
                .await
                .expect("url")
                .starts_with(&ctx.url("/portal/sign-in")),
            "a signed-in page opened without a session"
        );
        b.fill("#email", &email).await.expect("e-mail");
        b.fill("#password", PASSWORD).await.expect("password");
        b.click("main form button[type=submit]")
            .await
            .expect("submit");
        assert_eq!(b.url().await.expect("url"), ctx.url("/portal/security"));
        ctx.sign_out().await;
    });
}

#[test]
fn the_eleventh_wrong_password_in_a_minute_is_throttled_even_with_the_right_password_after() {
    suite().run(async |ctx| {
        let tenant = ctx.tenant("Throttled Bakery").await;
        let email = ctx.user(&tenant, "owner", UserRole::Owner).await;
        ctx.sign_out().await;

        for attempt in 1..=10 {
            ctx.sign_in(&email, &format!("not the password {attempt}"))
                .await;
            assert_eq!(ctx.heading().await, "Sign in", "attempt {attempt}");
            let text = ctx.browser.text().await.expect("text");
            assert!(
                text.contains("The e-mail address or the password is not right."),
                "attempt {attempt}: {text}"
            );
            assert!(ctx.cookie(SESSION).await.is_none());
        }
        ctx.sign_in(&email, "not the password 11").await;
        assert_eq!(ctx.heading().await, "Too many attempts", "the 11th attempt");
        // The right password does not get through the throttle either.
        ctx.sign_in(&email, PASSWORD).await;
        assert_eq!(ctx.heading().await, "Too many attempts");
        assert!(!ctx.signed_in().await);
        assert!(
            ctx.cookie(SESSION).await.is_none(),
            "a session while throttled"
        );
    });
}
