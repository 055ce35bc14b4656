//! Two tenants in one browser, one after the other: every page tenant A's owner can reach by
//! links (found by following them, so new pages are covered) is opened by tenant B's owner.
//! Each URL naming one of A's things (its call, its caller, any id) answers B with the 404 page,
//! and no page shows B anything of A: not its name, its user, its caller's number or its
//! transcript. No URL holds a raw phone number.

use mesh::api::tenant::UserRole;

use crate::kit::suite;

/// Whether `path` names a particular thing (a CallSid, an opaque caller id, a numeric id)
/// rather than a page every tenant has.
fn names_a_thing(path: &str, call_sid: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    path.contains(call_sid)
        || segments.len() > 2
            && segments[2..]
                .iter()
                .any(|s| s.chars().any(|c| c.is_ascii_digit()))
        || path.starts_with("/portal/callers/") && segments.len() > 2
}

#[test]
fn tenant_b_gets_404_on_tenant_a_urls_and_is_shown_nothing_of_a() {
    suite().run(async |ctx| {
        let b = ctx.browser;
        let alpha = ctx.tenant("Alpha Roofing Isolated").await;
        let bravo = ctx.tenant("Bravo Dental Isolated").await;
        let caller = "+15557770123";
        let call_sid = ctx.call(&alpha, caller).await;

        let alpha_owner = ctx.user(&alpha, "owner", UserRole::Owner).await;
        let call_page = format!("/portal/calls/{call_sid}");
        let pages = ctx
            .crawl(
                &["/portal/", "/portal/calls", &call_page, "/portal/callers"],
                60,
            )
            .await;
        b.goto(&ctx.url(&call_page)).await.expect("open");
        assert!(
            b.text()
                .await
                .expect("text")
                .contains("Thank you for calling Alpha Roofing Isolated"),
            "A's call page does not show its transcript"
        );
        let things: Vec<&String> = pages
            .iter()
            .filter(|p| names_a_thing(p, &call_sid))
            .collect();
        assert!(
            things.iter().any(|p| p.starts_with("/portal/callers/")),
            "no caller page linked from A's pages: {pages:?}"
        );
        for path in &pages {
            assert!(
                !path.contains("5557770123"),
                "a raw phone number in a URL: {path}"
            );
        }
        ctx.sign_out().await;

        ctx.user(&bravo, "owner", UserRole::Owner).await;
        for path in &pages {
            b.goto(&ctx.url(path)).await.expect("open");
            let text = b.text().await.expect("text");
            let html = b.html().await.expect("html");
            for secret in [
                "Alpha Roofing",
                alpha_owner.as_str(),
                "5557770123",
                "Thank you for calling Alpha",
            ] {
                assert!(
                    !text.contains(secret) && !html.contains(secret),
                    "B is shown {secret:?} of A on {path}"
                );
            }
            if names_a_thing(path, &call_sid) {
                assert_eq!(
                    b.status_of(path).await.expect("status"),
                    404,
                    "B opens A's {path}"
                );
                assert_eq!(ctx.heading().await, "Not found", "{path}");
            }
        }
        eprintln!(
            "B opened {} of A's pages, {} of them naming one of A's things: {things:?}",
            pages.len(),
            things.len()
        );
        ctx.sign_out().await;
    });
}
