//! Client addresses behind a proxy: `X-Forwarded-For` is believed from trusted proxies only
//! (the rightmost address not in the list), every per-address limit keys IPv6 by its /64, and
//! legacy REST is limited per address before a token costs tenant-svc an exchange. Clients are
//! told apart by the loopback address their connections come from (127.0.0.x).

use std::net::IpAddr;

use crate::common::{AUTH_TOKEN, Gateway, call_params, call_sid};

/// The proxy the tests' gateways trust.
const PROXY: &str = "127.0.0.2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A gateway trusting [`PROXY`], with a per-address webhook allowance of 1/s, burst 2.
async fn gateway_behind_proxy() -> Gateway {
    Gateway::start(&[
        ("GATEWAY_RATE_PER_IP", "1"),
        ("GATEWAY_TRUSTED_PROXIES", "127.0.0.2/32"),
    ])
    .await
}

/// Unsigned status callbacks from `client`, each with `forwarded` as `X-Forwarded-For`
/// (none when empty): their statuses. The per-address limit runs before the signature check,
/// so an admitted one is 403 and a limited one 429; none reaches a handler.
async fn statuses(gateway: &Gateway, client: &reqwest::Client, forwarded: &[&str]) -> Vec<u16> {
    let mut out = Vec::new();
    for xff in forwarded {
        let mut request = client
            .post(gateway.url("/twilio/status"))
            .form(&[("CallSid", call_sid(1)), ("CallStatus", "completed".into())]);
        if !xff.is_empty() {
            request = request.header("X-Forwarded-For", *xff);
        }
        out.push(request.send().await.unwrap().status().as_u16());
    }
    out
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let gateway = gateway_behind_proxy().await;
    let direct = Gateway::client_from(ip("127.0.0.1"));
    // Each request claims another client; they all spend the connecting address's budget.
    let got = statuses(
        &gateway,
        &direct,
        &["198.51.100.1", "198.51.100.2", "198.51.100.3, 198.51.100.4"],
    )
    .await;
    assert_eq!(got, [403, 403, 429]);
    // Another direct address is not affected.
    let other = Gateway::client_from(ip("127.0.0.3"));
    assert_eq!(statuses(&gateway, &other, &["198.51.100.1"]).await, [403]);
    assert!(gateway.seen.of("UpdateCallStatus").is_empty());
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_gets_its_own_budget() {
    let gateway = gateway_behind_proxy().await;
    let proxy = Gateway::client_from(ip(PROXY));
    // A client cannot escape its budget by spelling its address otherwise (with a port).
    let a = "203.0.113.10";
    let a_with_port = "203.0.113.10:43211";
    assert_eq!(
        statuses(&gateway, &proxy, &[a, a, a, a_with_port]).await,
        [403, 403, 429, 429]
    );
    // Another client behind the same proxy has its own budget; what a client wrote to the left
    // of the address the proxy appended is not read, and trusted hops on the right are skipped.
    let b = "203.0.113.11";
    let spoofing_b = "203.0.113.99, 203.0.113.11";
    let through_two = "203.0.113.11, 127.0.0.2";
    assert_eq!(
        statuses(&gateway, &proxy, &[b, spoofing_b, through_two]).await,
        [403, 403, 429]
    );
    // The proxy's own requests (no header) are the proxy's.
    assert_eq!(statuses(&gateway, &proxy, &[""]).await, [403]);
}

#[tokio::test]
async fn addresses_in_one_ipv6_64_share_one_budget() {
    let gateway = gateway_behind_proxy().await;
    let proxy = Gateway::client_from(ip(PROXY));
    let same_64 = [
        "2001:db8:1:2::1",
        "2001:db8:1:2:ffff::9",
        "2001:db8:1:2:abcd::1",
    ];
    assert_eq!(statuses(&gateway, &proxy, &same_64).await, [403, 403, 429]);
    // The next /64 is another subscriber.
    assert_eq!(
        statuses(&gateway, &proxy, &["2001:db8:1:3::1"]).await,
        [403]
    );
    // An IPv4-mapped IPv6 address is the IPv4 address, not one more /64 for everyone.
    let v4 = ["198.51.100.20", "::ffff:198.51.100.20", "198.51.100.20"];
    assert_eq!(statuses(&gateway, &proxy, &v4).await, [403, 403, 429]);
}

#[tokio::test]
async fn malformed_forwarded_for_from_a_trusted_proxy_is_refused_and_changes_nothing() {
    let gateway = gateway_behind_proxy().await;
    let sid = call_sid(3);
    let params: Vec<(String, String)> =
        call_params(&sid, "+15551111111", "+14155550101", "inbound")
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    let url = gateway.url("/twilio/voice");
    let signature = gateway::signature::compute(AUTH_TOKEN.as_bytes(), &url, &params);
    let signed = |client: &reqwest::Client, xff: &str| {
        client
            .post(&url)
            .header("X-Twilio-Signature", &signature)
            .header("X-Forwarded-For", xff)
            .form(&params)
            .send()
    };
    let proxy = Gateway::client_from(ip(PROXY));
    for bad in ["unknown", "203.0.113.5, not-an-address", "203.0.113.5,"] {
        let r = signed(&proxy, bad).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.text().await.unwrap().contains("X-Forwarded-For"), "{bad}");
    }
    assert!(gateway.seen.of("ResolveNumber").is_empty());
    assert!(gateway.seen.of("RegisterCall").is_empty());
    // From an untrusted peer the header is not read at all: the signed call goes through.
    let direct = Gateway::client_from(ip("127.0.0.1"));
    let r = signed(&direct, "unknown").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(gateway.seen.of("RegisterCall"), [sid]);
}

#[tokio::test]
async fn signatures_are_checked_against_the_public_url_whatever_a_proxy_forwards() {
    let gateway = gateway_behind_proxy().await;
    let proxy = Gateway::client_from(ip(PROXY));
    let sid = call_sid(4);
    let params: Vec<(String, String)> =
        call_params(&sid, "+15551111111", "+14155550101", "inbound")
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    // Signed over the forwarded host: refused, however the headers point at it.
    let forged_url = "https://attacker.example/twilio/voice";
    let forged = gateway::signature::compute(AUTH_TOKEN.as_bytes(), forged_url, &params);
    let r = proxy
        .post(gateway.url("/twilio/voice"))
        .header("X-Twilio-Signature", forged)
        .header("X-Forwarded-For", "203.0.113.7")
        .header("X-Forwarded-Host", "attacker.example")
        .header("X-Forwarded-Proto", "https")
        .header("Host", "attacker.example")
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(gateway.seen.of("RegisterCall").is_empty());
}

#[tokio::test]
async fn a_legacy_flood_of_made_up_tokens_is_refused_before_any_exchange() {
    // One a second, burst two, per client address; the per-tenant limit stays large.
    let gateway = Gateway::start(&[("GATEWAY_RATE_LEGACY_PER_IP", "1")]).await;
    let flooder = Gateway::client_from(ip("127.0.0.4"));
    let body = serde_json::json!({"user_id": "+15551111111", "role": "user", "content": "hi"});
    let mut got = Vec::new();
    for n in 0..8 {
        let r = flooder
            .post(gateway.url("/memory/store"))
            .bearer_auth(format!("made-up-{n}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
        got.push(r.status().as_u16());
    }
    // The burst of two is admitted (and refused by tenant-svc), the rest is not (one more may
    // be admitted if the loop outlasts a second).
    assert_eq!(got[..3], [401, 401, 429], "{got:?}");
    let refused = got.iter().filter(|s| **s == 429).count();
    assert!(refused >= 5, "{got:?}");
    // Only the admitted requests cost tenant-svc an exchange; nothing was stored.
    let admitted = got.len() - refused;
    assert_eq!(gateway.seen.of("ExchangeLegacyToken").len(), admitted);
    assert!(gateway.seen.of("StoreMemory").is_empty());
    // A valid token from the flooding address is limited too (the address is out of budget)...
    let r = flooder
        .post(gateway.url("/memory/store"))
        .bearer_auth("legacy-7")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // ... while another address is served.
    let other = Gateway::client_from(ip("127.0.0.5"));
    let r = other
        .post(gateway.url("/memory/store"))
        .bearer_auth("legacy-7")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(gateway.seen.of("StoreMemory"), ["Bearer tenant-7"]);
    assert_eq!(gateway.seen.of("ExchangeLegacyToken").len(), admitted + 1);
}
