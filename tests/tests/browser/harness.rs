//! The browser kit checked against pages served here: axe-core, injected under the portal's own
//! Content-Security-Policy, reports a page with serious violations (so a clean report of a portal
//! page means something) and passes a clean one; the phone viewport is really 390x844; a
//! screenshot is a PNG of the viewport.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use e2e::browser::{DESKTOP, PHONE};

use crate::kit::suite;

/// What the portal sends on every page.
const CSP: &str = "default-src 'self'; frame-ancestors 'none'";

const FLAWED: &str = r#"<!doctype html>
<html><head><title>Flawed</title></head>
<body><main>
<h1>Flawed page</h1>
<img src="/missing.png">
<form><input type="text" name="q"><button></button></form>
</main></body></html>"#;

const CLEAN: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Clean</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main>
<h1>Clean page</h1>
<form><label for="q">Search</label><input id="q" type="text" name="q">
<button type="submit">Search</button></form>
</main></body></html>"#;

fn page(html: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        html,
    )
}

/// Serves the two pages on a loopback port; returns its base URL.
async fn serve() -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new()
        .route("/flawed", get(|| async { page(FLAWED) }))
        .route("/clean", get(|| async { page(CLEAN) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("bound"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, task)
}

#[test]
fn axe_core_finds_serious_violations_under_the_portal_csp_and_passes_a_clean_page() {
    suite().run(async |ctx| {
        let browser = ctx.browser;
        let (base, server) = serve().await;

        browser.goto(&format!("{base}/flawed")).await.expect("open");
        let violations = browser.axe_violations().await.expect("axe runs");
        let blocking: Vec<&str> = violations
            .iter()
            .filter(|v| v.is_blocking())
            .map(|v| v.id.as_str())
            .collect();
        for rule in ["image-alt", "button-name", "label", "html-has-lang"] {
            assert!(
                blocking.contains(&rule),
                "axe did not report {rule} as serious or critical: {blocking:?}"
            );
        }
        let caught = std::panic::AssertUnwindSafe(browser.assert_accessible("/flawed"));
        let message = futures::FutureExt::catch_unwind(caught)
            .await
            .expect_err("assert_accessible fails on the flawed page");
        let message = message
            .downcast_ref::<String>()
            .expect("a formatted message");
        assert!(
            message.contains("image-alt") && message.contains("<img src=\"/missing.png\">"),
            "the failure names neither the rule nor the element:\n{message}"
        );

        for viewport in [DESKTOP, PHONE] {
            browser.set_viewport(viewport).await.expect("resize");
            assert_eq!(browser.viewport().await.expect("size"), viewport);
            browser.goto(&format!("{base}/clean")).await.expect("open");
            browser.assert_accessible("/clean").await;
        }
        server.abort();
    });
}

#[test]
fn a_screenshot_is_a_png_of_the_viewport() {
    suite().run(async |ctx| {
        let browser = ctx.browser;
        let (base, server) = serve().await;
        browser.set_viewport(PHONE).await.expect("resize");
        browser.goto(&format!("{base}/clean")).await.expect("open");
        assert!(!browser.overflows_horizontally().await.expect("measure"));
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("shots/clean.png");
        browser.save_screenshot(&path).await.expect("screenshot");
        let png = std::fs::read(&path).expect("written");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        // IHDR: width and height, big-endian, at bytes 16..24.
        let width = u32::from_be_bytes(png[16..20].try_into().expect("4 bytes"));
        let height = u32::from_be_bytes(png[20..24].try_into().expect("4 bytes"));
        assert_eq!((width, height), (PHONE.width, PHONE.height));
        server.abort();
    });
}
