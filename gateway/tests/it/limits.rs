//! The limits in front of the handlers: the excess is refused with 429 and `Retry-After`, and
//! nothing behind the limit is reached (no number resolved, no call registered, no memory
//! stored); other accounts and tenants keep their own allowance.

use crate::common::{ACCOUNT_SID, Gateway, call_params, call_sid};

const CALLER: &str = "+15551111111";
const OURS: &str = "+14155550101";

#[tokio::test]
async fn the_per_account_webhook_limit_refuses_the_excess_before_any_call_is_set_up() {
    // One a second with a burst of two, per Twilio account; the per-address limit stays large.
    let gateway = Gateway::start(&[("GATEWAY_RATE_PER_ACCOUNT", "1")]).await;
    // Unsigned webhooks naming the account are refused by their signature and spend nothing
    // of its allowance: the account is only trusted once the form is verified.
    for n in 0..3 {
        let sid = call_sid(n);
        let r = gateway
            .twilio_post(
                "/twilio/voice",
                &call_params(&sid, CALLER, OURS, "inbound"),
                false,
            )
            .await;
        assert_eq!(r.status(), 403);
    }
    let mut statuses = Vec::new();
    for n in 10..14 {
        let sid = call_sid(n);
        let r = gateway
            .twilio_post(
                "/twilio/voice",
                &call_params(&sid, CALLER, OURS, "inbound"),
                true,
            )
            .await;
        if r.status() == 429 {
            assert!(
                r.headers().contains_key("retry-after"),
                "429 without Retry-After"
            );
        } else {
            let body = r.text().await.unwrap();
            assert!(body.contains("<Connect><Stream"), "{body}");
            statuses.push(200);
            continue;
        }
        statuses.push(429);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    // Only the two admitted calls reached tenant-svc and media-svc.
    assert_eq!(gateway.seen.of("ResolveNumber").len(), 2);
    assert_eq!(
        gateway.seen.of("RegisterCall"),
        [call_sid(10), call_sid(11)]
    );

    // Another account has its own allowance.
    let other = ACCOUNT_SID.replace("AC0", "AC1");
    let sid = call_sid(20);
    let mut params = call_params(&sid, CALLER, OURS, "inbound");
    params[1].1 = &other;
    let r = gateway.twilio_post("/twilio/voice", &params, true).await;
    assert_eq!(r.status(), 200);
    assert_eq!(gateway.seen.of("RegisterCall").len(), 3);
}

#[tokio::test]
async fn the_per_tenant_legacy_limit_refuses_the_excess_before_anything_is_stored() {
    // One a second with a burst of two, per tenant.
    let gateway = Gateway::start(&[("GATEWAY_RATE_PER_TENANT", "1")]).await;
    let body = || serde_json::json!({"user_id": CALLER, "role": "user", "content": "hello"});
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = gateway
            .legacy_post("/memory/store", "legacy-7", body())
            .await;
        let status = r.status().as_u16();
        if status == 429 {
            assert!(
                r.headers().contains_key("retry-after"),
                "429 without Retry-After"
            );
        } else {
            let answer: serde_json::Value = r.json().await.unwrap();
            assert_eq!(answer["success"], true, "{answer}");
            assert_eq!(answer["customer_id"], 7, "{answer}");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    assert_eq!(
        gateway.seen.of("StoreMemory"),
        ["Bearer tenant-7", "Bearer tenant-7"],
        "a limited request reached memory-svc"
    );
    // Another tenant has its own allowance; a refused token spends nobody's.
    let r = gateway
        .legacy_post("/memory/store", "garbage", body())
        .await;
    assert_eq!(r.status(), 401);
    let r = gateway
        .legacy_post("/memory/store", "legacy-8", body())
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(gateway.seen.of("StoreMemory").len(), 3);
}
