//! The README's pictures of the portal: the sign-in page and every page of an owner's
//! navigation, at desktop and phone width, as PNG files. Ignored in the test run; written by
//! `scripts/screenshots.sh` (which runs this with `--ignored`) into `docs/screenshots/`, or
//! into `SCREENSHOT_DIR` when set.

use std::path::PathBuf;

use e2e::browser::{DESKTOP, PHONE};
use mesh::api::tenant::UserRole;

use crate::kit::suite;

/// `/portal/calls` -> `calls`, `/portal/` -> `dashboard`.
fn file_stem(path: &str) -> String {
    let rest = path
        .trim_start_matches("/portal")
        .trim_matches('/')
        .replace('/', "-");
    if rest.is_empty() {
        "dashboard".to_owned()
    } else {
        rest
    }
}

#[test]
#[ignore = "writes the README's screenshots: scripts/screenshots.sh"]
fn write_screenshots_of_the_main_pages() {
    let dir = std::env::var_os("SCREENSHOT_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots"),
        PathBuf::from,
    );
    suite().run(async |ctx| {
        let b = ctx.browser;
        let tenant = ctx.tenant("Peterson Family Insurance").await;
        // Two simulated calls, so the dashboard, the call list and a call page have content.
        ctx.call(&tenant, "+15550100001").await;
        let call_sid = ctx.call(&tenant, "+15550100002").await;
        let mut shots = vec![("sign-in".to_owned(), "/portal/sign-in".to_owned())];
        b.goto(&ctx.url("/portal/sign-in")).await.expect("open");
        ctx.user(&tenant, "owner", UserRole::Owner).await;
        shots.push(("dashboard".to_owned(), "/portal/".to_owned()));
        shots.push(("call".to_owned(), format!("/portal/calls/{call_sid}")));
        for path in ctx.nav_paths().await {
            let stem = file_stem(&path);
            // The navigation may list a page still to come: no picture of a 404.
            let exists = b.status_of(&path).await.expect("status") != 404;
            if exists && !shots.iter().any(|(s, _)| *s == stem) {
                shots.push((stem, path));
            }
        }
        let mut written = Vec::new();
        for (viewport, suffix) in [(DESKTOP, ""), (PHONE, "-phone")] {
            b.set_viewport(viewport).await.expect("resize");
            for (stem, path) in &shots {
                if stem == "sign-in" {
                    // The sign-in page as a signed-out visitor sees it.
                    continue;
                }
                b.goto(&ctx.url(path)).await.expect("open");
                let file = dir.join(format!("{stem}{suffix}.png"));
                b.save_screenshot(&file).await.expect("screenshot");
                written.push(file);
            }
        }
        ctx.sign_out().await;
        for (viewport, suffix) in [(DESKTOP, ""), (PHONE, "-phone")] {
            b.set_viewport(viewport).await.expect("resize");
            b.goto(&ctx.url("/portal/sign-in")).await.expect("open");
            let file = dir.join(format!("sign-in{suffix}.png"));
            b.save_screenshot(&file).await.expect("screenshot");
            written.push(file);
        }
        for file in &written {
            eprintln!("wrote {}", file.display());
        }
    });
}
