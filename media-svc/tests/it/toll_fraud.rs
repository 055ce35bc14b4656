//! Toll fraud and the public endpoint's allowance on media-svc's side, with a real tenant-svc and
//! the fake of Twilio's REST API: restricted destinations dial nothing until the tenant allows
//! them, every placed call carries a `TimeLimit`, a public request without `Origin` is refused
//! when the tenant lists origins, the per-address allowance is counted per tenant and address
//! (IPv6 by /64) without storing the address, and a call past its maximum duration is ended and
//! finalised.

use std::time::Duration;

use media_svc::CallConfig;
use mesh::api::tenant::OutboundSettings;
use mesh::identity::scope;
use tonic::Code;

use crate::common::{self, CallStream, Out, Svc, register, sid};
use crate::outbound::{
    A_NUMBER, AUTH_TOKEN, B_NUMBER, FakeTwilio, ORIGIN, PROSPECT, PUBLIC_BASE, configure, customer,
    peterson_settings, place, platform_account, rows, website,
};

/// media-svc with a real tenant-svc, Twilio at the fake, generous call limits, then `adjust`.
async fn start(twilio: &FakeTwilio, adjust: impl FnOnce(&mut CallConfig) + Send + 'static) -> Svc {
    let base = twilio.url.clone();
    Svc::start_with(
        move |mut c| {
            c.twilio.base_url = base;
            c.twilio.auth_token = Some(AUTH_TOKEN.to_owned().into());
            c.twilio.account_sid =
                Some(mesh::domain::AccountSid::parse(&platform_account()).unwrap());
            c.public_base_url = PUBLIC_BASE.into();
            c.limits.concurrent_by_tier = vec![("starter".into(), 100)];
            c.limits.outbound_per_hour = 100;
            c.limits.per_address = (100, Duration::from_secs(3600));
            adjust(&mut c);
            c
        },
        true,
    )
    .await
}

/// Jamaica shares +1 with the US and Canada; +1 900 and UK 09 are premium rate; +800 and +882
/// are non-geographic.
const JAMAICA: &str = "+18769295555";
const US_PREMIUM: &str = "+19002223333";
const UK_PREMIUM: &str = "+449098790000";
const UIFN: &str = "+80012345678";
const NETWORKS: &str = "+882390123456789";

async fn refused_without_dialling(
    svc: &Svc,
    twilio: &FakeTwilio,
    web: &mut common::Client,
    to: &str,
    why: &str,
) {
    let before = (rows(svc).await, twilio.count());
    let e = web.place_outbound_call(place(to)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{to}: {}", e.message());
    assert!(e.message().contains(why), "{to}: {}", e.message());
    assert_eq!(
        (rows(svc).await, twilio.count()),
        before,
        "{to}: nothing dialled or stored"
    );
}

#[tokio::test]
async fn restricted_destinations_dial_nothing_until_allowed_and_every_call_has_a_time_limit() {
    let twilio = FakeTwilio::start().await;
    let svc = start(&twilio, |_| {}).await;
    let a = customer(&svc, "peterson", "", &[(A_NUMBER, None)]).await;
    let settings = OutboundSettings {
        allowed_regions: vec!["US".into(), "CA".into(), "GB".into()],
        cors_origins: vec![],
        ..peterson_settings()
    };
    configure(&svc, a, settings.clone(), &["allowed_regions"]).await;
    let mut web = website(&svc, a).await;
    refused_without_dialling(&svc, &twilio, &mut web, JAMAICA, "region JM").await;
    refused_without_dialling(&svc, &twilio, &mut web, US_PREMIUM, "premium_rate").await;
    refused_without_dialling(&svc, &twilio, &mut web, UK_PREMIUM, "premium_rate").await;
    refused_without_dialling(&svc, &twilio, &mut web, UIFN, "non_geographic").await;
    refused_without_dialling(&svc, &twilio, &mut web, NETWORKS, "non_geographic").await;
    refused_without_dialling(&svc, &twilio, &mut web, PROSPECT, "region PT").await;

    // Allowed once the tenant allows them: the region, and the kinds by name.
    let allowing = OutboundSettings {
        allowed_regions: vec!["US".into(), "GB".into(), "JM".into()],
        allowed_number_types: vec!["premium_rate".into(), "non_geographic".into()],
        ..settings
    };
    configure(
        &svc,
        a,
        allowing.clone(),
        &["allowed_regions", "allowed_number_types"],
    )
    .await;
    for to in [JAMAICA, US_PREMIUM, UK_PREMIUM, UIFN, NETWORKS] {
        web.place_outbound_call(place(to))
            .await
            .unwrap_or_else(|e| panic!("{to}: {e:?}"));
    }
    let requests = twilio.requests();
    assert_eq!(requests.len(), 5);
    // The platform's 60 minutes, then the tenant's own maximum.
    assert!(
        requests
            .iter()
            .all(|r| r.field("TimeLimit") == Some("3600"))
    );
    configure(
        &svc,
        a,
        OutboundSettings {
            max_call_minutes: 7,
            ..allowing
        },
        &["max_call_minutes"],
    )
    .await;
    web.place_outbound_call(place(JAMAICA)).await.unwrap();
    assert_eq!(twilio.requests()[5].field("TimeLimit"), Some("420"));
    svc.stop().await;
}

#[tokio::test]
async fn a_public_request_without_origin_is_refused_when_the_tenant_lists_origins() {
    let twilio = FakeTwilio::start().await;
    let svc = start(&twilio, |_| {}).await;
    let a = customer(&svc, "peterson", "", &[(A_NUMBER, None)]).await;
    configure(
        &svc,
        a,
        peterson_settings(),
        &["allowed_regions", "cors_origins"],
    )
    .await;
    let mut web = website(&svc, a).await;
    let before = rows(&svc).await;
    let mut public = place(PROSPECT);
    public.client_address = "203.0.113.7".into();
    let e = web.place_outbound_call(public.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().starts_with("origin: missing"),
        "{}",
        e.message()
    );
    assert_eq!((rows(&svc).await, twilio.count()), (before, 0));
    public.origin = ORIGIN.into();
    web.place_outbound_call(public).await.unwrap();
    assert_eq!(twilio.count(), 1);
    svc.stop().await;
}

async fn charges(svc: &Svc) -> i64 {
    svc.count("SELECT count(*) FROM media.outbound_address_charges")
        .await
}

async fn from_address(web: &mut common::Client, address: &str) -> Result<(), tonic::Status> {
    let mut r = place(PROSPECT);
    r.origin = ORIGIN.into();
    r.client_address = address.into();
    web.place_outbound_call(r).await.map(|_| ())
}

#[tokio::test]
async fn the_address_allowance_is_per_tenant_and_address_and_stores_no_address() {
    let twilio = FakeTwilio::start().await;
    let svc = start(&twilio, |c| {
        c.limits.per_address = (2, Duration::from_secs(3600));
    })
    .await;
    let a = customer(&svc, "peterson", "", &[(A_NUMBER, None)]).await;
    let b = customer(&svc, "smith", "", &[(B_NUMBER, None)]).await;
    for t in [a, b] {
        configure(
            &svc,
            t,
            peterson_settings(),
            &["allowed_regions", "cors_origins"],
        )
        .await;
    }
    let (mut web_a, mut web_b) = (website(&svc, a).await, website(&svc, b).await);
    // Two from one IPv6 /64 (different interface ids), then the third is refused.
    from_address(&mut web_a, "2001:db8:1:2::1").await.unwrap();
    from_address(&mut web_a, "2001:db8:1:2::beef")
        .await
        .unwrap();
    let before = (rows(&svc).await, charges(&svc).await, twilio.count());
    let e = from_address(&mut web_a, "2001:db8:1:2:ffff::9")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    assert_eq!(e.metadata().get("x-neurosphere-limit").unwrap(), "address");
    let retry: u64 = e
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3000..=3600).contains(&retry), "{retry}");
    assert_eq!(
        (rows(&svc).await, charges(&svc).await, twilio.count()),
        before,
        "a refusal dials, stores and charges nothing"
    );
    // Another /64, and another tenant from the same address, are unaffected.
    from_address(&mut web_a, "2001:db8:1:3::1").await.unwrap();
    from_address(&mut web_b, "2001:db8:1:2::1").await.unwrap();
    from_address(&mut web_b, "2001:db8:1:2::1").await.unwrap();
    // A direct gRPC caller (no client address) has no per-address allowance.
    let mut direct = place(PROSPECT);
    direct.origin = ORIGIN.into();
    web_a.place_outbound_call(direct).await.unwrap();
    // Only keyed hashes are stored: never the address in any form.
    let admin = svc.db.admin_client().await;
    let dump: String = admin
        .query_one(
            "SELECT string_agg(c::text, ' ') FROM media.outbound_address_charges c",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // The address as text, as the hex of that text, or as the hex of its 16 bytes (a bytea
    // column prints as hex): a hash's hex may hold "db8" by chance, never these.
    let hex_text: String = "2001:db8".bytes().map(|b| format!("{b:02x}")).collect();
    for form in ["2001:db8", hex_text.as_str(), "20010db8"] {
        assert!(!dump.contains(form), "{form} in {dump}");
    }
    assert_eq!(charges(&svc).await, 5);
    mesh::testkit::assert_rls_everywhere(&admin).await;
    svc.stop().await;
}

#[tokio::test]
async fn an_inbound_call_past_its_maximum_is_hung_up_and_finalised() {
    let twilio = FakeTwilio::start().await;
    let svc = start(&twilio, |c| c.limits.max_call = Duration::from_millis(1500)).await;
    let id = common::create_customer(&svc, "alloy").await;
    let call_sid = sid("CA", 0x7e1);
    let mut client = svc
        .client_with(svc.tenant_token(id, &call_sid, scope::CALL_SCOPES))
        .await;
    client
        .register_call(register(&call_sid, "+15551111111"))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut call = CallStream::open(&mut client, &mut svc.gateway_client().await, &call_sid)
        .await
        .unwrap();
    let hangup = loop {
        match call.next().await {
            Some(Out::Hangup(h)) => break h,
            Some(Out::Audio(_) | Out::Mark(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    let took = started.elapsed();
    assert_eq!(hangup.reason, "max-duration");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Twilio was asked to end the call.
    assert_eq!(
        twilio.updates(),
        [(
            call_sid.clone(),
            vec![("Status".to_owned(), "completed".to_owned())]
        )]
    );
    common::eventually("the call finalised", || async {
        svc.count(&format!(
            "SELECT count(*) FROM media.calls WHERE call_sid = '{call_sid}' \
             AND end_reason = 'max-duration' AND ended_at IS NOT NULL"
        ))
        .await
            == 1
    })
    .await;
    svc.stop().await;
}
