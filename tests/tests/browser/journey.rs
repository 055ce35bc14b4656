//! The owner's whole journey in the browser: change the greeting for new callers and a slider
//! on the agent page, save; a simulated call placed afterwards is greeted with the new text
//! (spoken by the local realtime backend, kept in the transcript); the call appears with its
//! transcript; erasing its caller from the caller page removes the caller and the call; sign out.

use mesh::api::tenant::UserRole;

use crate::kit::suite;

#[test]
fn a_changed_greeting_greets_the_next_call_whose_caller_is_then_erased() {
    suite().run(async |ctx| {
        let b = ctx.browser;
        let tenant = ctx.tenant("Journey Opticians").await;
        ctx.user(&tenant, "owner", UserRole::Owner).await;

        b.goto(&ctx.url("/portal/agent")).await.expect("open");
        let greeting = "Hello, Journey Opticians front desk, how can we help?";
        b.fill("#greeting_new_caller", greeting)
            .await
            .expect("greeting");
        let slider = b.find("input[id^='slider-']").await.expect("a slider");
        let slider_id = slider.attr("id").await.expect("id").expect("an id");
        b.fill(&format!("#{slider_id}"), "87")
            .await
            .expect("slider");
        b.click("button[name=action][value=save]")
            .await
            .expect("save");
        b.goto(&ctx.url("/portal/agent")).await.expect("reopen");
        let saved = b
            .find("#greeting_new_caller")
            .await
            .expect("field")
            .prop("value")
            .await
            .expect("value");
        assert_eq!(
            saved.as_deref(),
            Some(greeting),
            "the greeting was not saved"
        );
        let saved = b
            .find(&format!("#{slider_id}"))
            .await
            .expect("field")
            .prop("value")
            .await
            .expect("value");
        assert_eq!(saved.as_deref(), Some("87"), "{slider_id} was not saved");

        let call_sid = ctx.call(&tenant, "+15550199001").await;
        let call_page = format!("/portal/calls/{call_sid}");
        b.goto(&ctx.url(&call_page)).await.expect("open the call");
        let text = b.text().await.expect("text");
        assert!(
            text.contains(greeting),
            "the call was not greeted with the new greeting:\n{text}"
        );

        b.goto(&ctx.url("/portal/callers")).await.expect("open");
        b.click("main a[href^='/portal/callers/']")
            .await
            .expect("open the caller");
        let caller_page = b.url().await.expect("url");
        b.click("a[href$='/erase']").await.expect("erase…");
        b.click("form[action$='/erase'] button[type=submit]")
            .await
            .expect("confirm");
        let caller_path = caller_page.trim_start_matches(&ctx.mesh.public_base_url);
        assert_eq!(
            b.status_of(caller_path).await.expect("status"),
            404,
            "the erased caller's page still opens"
        );
        assert_eq!(
            b.status_of(&call_page).await.expect("status"),
            404,
            "the erased caller's call still opens"
        );
        ctx.sign_out().await;
        assert!(!ctx.signed_in().await);
    });
}
