//! Every portal page as the browser renders it: axe-core finds no serious or critical
//! violation at desktop (1280x800) and phone (390x844) width, and nothing is wider than the
//! phone's screen; staff see no link to an owner page and get the 403 page when they open one.
//!
//! The signed-in pages are found from the navigation as each role sees it, so a page added to
//! the portal is checked without this file changing.

use std::collections::BTreeSet;

use e2e::browser::{DESKTOP, PHONE};
use mesh::api::tenant::UserRole;

use crate::kit::{Ctx, suite};

/// The pages only owners may open (issue 19: settings, export, erasure, keys and team), those
/// of them the portal has now.
const OWNER_ONLY: &[&str] = &[
    "/portal/agent",
    "/portal/webhooks",
    "/portal/outbound",
    "/portal/call-handling",
    "/portal/tokens",
    "/portal/team",
    "/portal/numbers",
];

/// Opens each of `paths` at both widths and checks it with axe-core; at phone width also that
/// the page does not scroll sideways.
async fn check_pages(ctx: &Ctx<'_>, who: &str, paths: &[String]) {
    let b = ctx.browser;
    for viewport in [DESKTOP, PHONE] {
        b.set_viewport(viewport).await.expect("resize");
        for path in paths {
            b.goto(&ctx.url(path)).await.expect("open");
            let label = format!("{path} ({who})");
            b.assert_accessible(&label).await;
            if viewport == PHONE && b.overflows_horizontally().await.expect("measure") {
                let wide = b.elements_past_the_right_edge().await.expect("measure");
                panic!("{label} is wider than a 390 px phone screen: {wide:?}");
            }
        }
    }
    b.set_viewport(DESKTOP).await.expect("resize");
}

/// `/portal/` and every page of the main navigation that exists (the navigation may list
/// pages still to come), as the signed-in user sees them.
async fn signed_in_pages(ctx: &Ctx<'_>) -> Vec<String> {
    ctx.browser.goto(&ctx.url("/portal/")).await.expect("open");
    let mut paths: BTreeSet<String> = BTreeSet::new();
    paths.insert("/portal/".to_owned());
    for path in ctx.nav_paths().await {
        if ctx.browser.status_of(&path).await.expect("status") != 404 {
            paths.insert(path);
        }
    }
    paths.into_iter().collect()
}

#[test]
fn every_page_has_no_serious_accessibility_violation_at_desktop_and_phone_width() {
    suite().run(async |ctx| {
        let b = ctx.browser;
        let tenant = ctx.tenant("Accessible Dentistry").await;

        // Before signing in: sign-in (also showing an error), reset, an invitation, 404.
        let invited = format!("invited.{}@tenant.example", tenant.tag);
        let token = ctx.invite(&tenant, &invited, UserRole::Staff).await;
        let public = [
            "/portal/sign-in".to_owned(),
            "/portal/reset".to_owned(),
            format!("/portal/invite/{token}"),
            "/portal/no-such-page".to_owned(),
            "/portal/signup".to_owned(),
        ];
        check_pages(&ctx, "signed out", &public).await;
        for viewport in [DESKTOP, PHONE] {
            b.set_viewport(viewport).await.expect("resize");
            ctx.sign_in(&invited, "not yet anyone's password").await;
            assert_eq!(ctx.heading().await, "Sign in");
            b.assert_accessible("/portal/sign-in with an error").await;
        }
        b.set_viewport(DESKTOP).await.expect("resize");

        // A colleague first, so the owner's team page shows a user row with its role and removal
        // forms (and the invitation above is still open).
        ctx.user(&tenant, "colleague", UserRole::Staff).await;
        ctx.sign_out().await;

        // An owner: every page of theirs.
        ctx.user(&tenant, "owner", UserRole::Owner).await;
        let owner_pages = signed_in_pages(&ctx).await;
        assert!(
            owner_pages.len() > 1,
            "the owner's navigation lists no page that exists: {owner_pages:?}"
        );
        check_pages(&ctx, "owner", &owner_pages).await;
        ctx.sign_out().await;

        // A staff member: theirs, and the 403 page of an owner page.
        ctx.user(&tenant, "staff", UserRole::Staff).await;
        let mut staff_pages = signed_in_pages(&ctx).await;
        if let Some(owner_page) = owner_pages
            .iter()
            .find(|p| OWNER_ONLY.contains(&p.as_str()))
        {
            staff_pages.push(owner_page.clone());
        }
        check_pages(&ctx, "staff", &staff_pages).await;
        ctx.sign_out().await;
        eprintln!(
            "axe-core at 1280x800 and 390x844: {} signed-out, {} owner and {} staff pages",
            public.len() + 1,
            owner_pages.len(),
            staff_pages.len()
        );
    });
}

#[test]
fn staff_see_no_link_to_an_owner_page_and_get_the_403_page_when_they_open_one() {
    suite().run(async |ctx| {
        let b = ctx.browser;
        let tenant = ctx.tenant("Staffed Garage").await;

        ctx.user(&tenant, "owner", UserRole::Owner).await;
        let owner_nav = ctx.nav_paths().await;
        let mut owner_pages = Vec::new();
        for path in OWNER_ONLY {
            let status = b.status_of(path).await.expect("status");
            assert!(
                status == 200 || status == 404,
                "{path} answers an owner {status}"
            );
            if status == 200 {
                assert!(
                    owner_nav.iter().any(|p| p == path),
                    "the owner's navigation does not link {path}"
                );
                owner_pages.push(*path);
            }
        }
        ctx.sign_out().await;

        ctx.user(&tenant, "staff", UserRole::Staff).await;
        let staff_nav = ctx.nav_paths().await;
        assert!(
            staff_nav.iter().any(|p| p == "/portal/"),
            "staff have no navigation: {staff_nav:?}"
        );
        // No link to an owner page anywhere on any page staff can open.
        let mut staff_pages: BTreeSet<String> = staff_nav.iter().cloned().collect();
        staff_pages.insert("/portal/".to_owned());
        for page in &staff_pages {
            b.goto(&ctx.url(page)).await.expect("open");
            for path in OWNER_ONLY {
                let links = b
                    .find_all(&format!("a[href^='{path}']"))
                    .await
                    .expect("links");
                assert!(links.is_empty(), "{page} shows staff a link to {path}");
            }
        }
        for path in &owner_pages {
            assert_eq!(
                b.status_of(path).await.expect("status"),
                403,
                "staff open {path}"
            );
            b.goto(&ctx.url(path)).await.expect("open");
            assert_eq!(ctx.heading().await, "Not allowed", "{path} as staff");
        }
        // Refused, still signed in.
        b.goto(&ctx.url("/portal/")).await.expect("open");
        assert!(ctx.signed_in().await, "a 403 page ended the staff session");
        eprintln!(
            "owner-only pages refused to staff: {owner_pages:?} (of {OWNER_ONLY:?}); staff \
             navigation: {staff_nav:?}"
        );
        ctx.sign_out().await;
    });
}
