//! The onboarding acceptance in Chromium: a business signs up, opens the link mailed to
//! it (tenant-svc's `.eml` outbox), lands on the waiting page, is approved (the operator's
//! `SetCustomerStatus`, as the console does), searches a number with its price, buys it from the
//! fake Twilio, sees it with how to test it, and a signed voice webhook to that number reaches
//! the new tenant. axe-core checks the sign-up, waiting and number pages on the way.

use std::time::Duration;

use e2e::{Mesh, with_token};
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::{CustomerStatus, SetCustomerStatusRequest};
use mesh::identity::{names, scope};
use mesh::testkit::smtp::read_mails;

use crate::kit::{Ctx, PASSWORD, suite};

/// The verification link (path and query) of the mail to `email`, once it is there.
async fn link_for(ctx: &Ctx<'_>, email: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = read_mails(ctx.outbox).into_iter().find_map(|m| {
            let body = m
                .replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=");
            if !body.contains(&format!("To: {email}")) {
                return None;
            }
            let at = body.find("/portal/signup/verify?token=")?;
            let link: String = body[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/-_?=".contains(*c))
                .collect();
            (link.len() == "/portal/signup/verify?token=".len() + 43).then_some(link)
        });
        if let Some(link) = found {
            return link;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no verification mail"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The operator approves the customer whose contact address is `email`.
async fn approve(mesh: &Mesh, email: &str) -> i64 {
    let id: i64 = mesh
        .db
        .admin_client()
        .await
        .query_one(
            "SELECT customer_id FROM tenant.customers WHERE email = $1",
            &[&email],
        )
        .await
        .expect("the signed-up customer")
        .get(0);
    let op = mesh.service_token(names::OPERATOR, names::TENANT_SVC, &[scope::TENANT_ADMIN]);
    TenantAdminServiceClient::new(mesh.channel(mesh.tenant).await)
        .set_customer_status(with_token(
            SetCustomerStatusRequest {
                customer_id: id,
                status: CustomerStatus::Active as i32,
            },
            &op,
        ))
        .await
        .expect("approve");
    id
}

/// Signs `business` up with `email` through the form, as a person does.
async fn sign_up(ctx: &Ctx<'_>, business: &str, email: &str) {
    let b = ctx.browser;
    b.goto(&ctx.url("/portal/signup")).await.expect("open");
    b.assert_accessible("/portal/signup").await;
    b.fill("#business_name", business).await.expect("business");
    b.fill("#contact_name", "Ada Owner").await.expect("contact");
    b.fill("#email", email).await.expect("email");
    b.fill("#password", PASSWORD).await.expect("password");
    b.fill("#confirm", PASSWORD).await.expect("confirm");
    b.click("main form button[type=submit]")
        .await
        .expect("submit");
    assert_eq!(ctx.heading().await, "Check your mail");
}

#[test]
fn a_business_signs_up_is_approved_buys_a_number_and_a_call_to_it_reaches_its_agent() {
    suite().run(async |ctx| {
        let b = ctx.browser;
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let email = format!("owner.{}@signup.example", &tag[..8]);
        sign_up(&ctx, "Sunrise Bakery", &email).await;

        // The link's page, its button: signed in to the waiting page.
        let link = link_for(&ctx, &email).await;
        b.goto(&ctx.url(&link)).await.expect("open the link");
        b.click("main form button[type=submit]")
            .await
            .expect("confirm");
        assert_eq!(ctx.heading().await, "Waiting for approval");
        b.assert_accessible("the waiting page").await;
        b.goto(&ctx.url("/portal/numbers")).await.expect("open");
        assert_eq!(ctx.heading().await, "Waiting for approval");
        assert!(ctx.twilio.purchases().is_empty());

        let customer = approve(ctx.mesh, &email).await;
        b.goto(&ctx.url("/portal/")).await.expect("open");
        assert!(
            ctx.nav_paths().await.iter().any(|p| p == "/portal/numbers"),
            "owners see Numbers"
        );

        // Search, buy, and the number with how to test it.
        b.goto(&ctx.url("/portal/numbers")).await.expect("open");
        b.assert_accessible("/portal/numbers").await;
        b.fill("#country", "US").await.expect("country");
        b.fill("#area_code", "415").await.expect("area code");
        b.click("main form[method=get] button[type=submit]")
            .await
            .expect("search");
        let text = b.text().await.expect("text");
        assert!(text.contains("1.15 USD"), "{text}");
        b.assert_accessible("/portal/numbers with results").await;
        let buy = b
            .find("main form[action='/portal/numbers/buy'] input[name=phone_number]")
            .await
            .expect("a result");
        let number = buy.attr("value").await.expect("attr").expect("a number");
        b.click("main form[action='/portal/numbers/buy'] button")
            .await
            .expect("buy");
        let text = b.text().await.expect("text");
        assert!(text.contains(&number), "{text}");
        assert!(text.contains("To test it, call the number"), "{text}");
        assert_eq!(ctx.twilio.purchases().len(), 1);

        // A signed voice webhook to the number reaches the new tenant: stream TwiML, and the
        // call is registered as its own.
        let sid = format!("CA{tag}");
        let mut params = Mesh::voice_params(&sid, "+14155559876", &number);
        for p in params.iter_mut() {
            if p.0 == "AccountSid" {
                p.1 = &ctx.twilio.account_sid;
            }
        }
        let r = ctx.mesh.twilio_post("/twilio/voice", &params).await;
        assert_eq!(r.status(), 200);
        let twiml = r.text().await.expect("twiml");
        assert!(twiml.contains("<Connect><Stream"), "{twiml}");
        let owner: i64 = ctx
            .mesh
            .db
            .admin_client()
            .await
            .query_one(
                "SELECT customer_id FROM media.calls WHERE call_sid = $1",
                &[&sid],
            )
            .await
            .expect("the call")
            .get(0);
        assert_eq!(owner, customer);
        ctx.sign_out().await;
    });
}
