//! NumberService against the fake Twilio: search with prices, bad input, purchases (routing,
//! lost answers, idempotency, 429s, the limit), release, tenant isolation, refused tokens.

use std::time::{Duration, Instant};

use mesh::api::media::*;
use mesh::api::tenant::CustomerStatus;
use tonic::Code;

use crate::common::{Svc, create_customer, eventually};
use crate::numbers_common::{STATUS_URL, VOICE_URL, World, start, start_with};

fn search(country: &str, area: &str) -> SearchAvailableNumbersRequest {
    SearchAvailableNumbersRequest {
        country: country.into(),
        area_code: area.into(),
        ..Default::default()
    }
}

fn buy(number: &str, request_id: &str) -> PurchaseNumberRequest {
    PurchaseNumberRequest {
        phone_number: number.into(),
        request_id: request_id.into(),
    }
}

const R1: &str = "6f9619ff-8b86-d011-b42d-00cf4fc964ff";
const R2: &str = "7f9619ff-8b86-d011-b42d-00cf4fc964ff";

#[tokio::test]
async fn search_shows_monthly_prices_and_an_empty_result_is_ok() {
    let w = start().await;
    let a = create_customer(&w.svc, "alloy").await;
    let mut owner = w.owner(a).await;
    let found = owner
        .search_available_numbers(search("us", "415"))
        .await
        .unwrap()
        .into_inner()
        .numbers;
    assert_eq!(found.len(), 5);
    assert_eq!(found[0].phone_number, "+14155550100");
    assert_eq!(found[0].locality, "San Francisco");
    assert_eq!(found[0].country, "US");
    let price = found[0].monthly_price.clone().expect("a price");
    assert_eq!((price.currency.as_str(), price.amount_minor), ("USD", 115));
    // Toll free, its own price; filters reach Twilio as its parameters.
    let toll = owner
        .search_available_numbers(SearchAvailableNumbersRequest {
            country: "US".into(),
            number_type: NumberType::TollFree as i32,
            contains: "555".into(),
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .numbers;
    assert_eq!(toll.len(), 1);
    assert_eq!(toll[0].monthly_price.as_ref().unwrap().amount_minor, 215);
    let sent = w.fake.requests();
    let toll_request = sent
        .iter()
        .find(|r| r.path.ends_with("/AvailablePhoneNumbers/US/TollFree.json"))
        .expect("a toll-free search");
    assert!(
        toll_request
            .query
            .contains(&("Contains".into(), "555".into()))
    );
    assert!(
        toll_request
            .query
            .contains(&("PageSize".into(), "3".into()))
    );
    assert!(sent.iter().any(|r| r.host == "pricing"));
    // A known country with nothing on offer: OK and empty.
    let none = owner
        .search_available_numbers(search("CA", ""))
        .await
        .unwrap()
        .into_inner()
        .numbers;
    assert!(none.is_empty());
    // By city.
    let city = owner
        .search_available_numbers(SearchAvailableNumbersRequest {
            country: "US".into(),
            locality: "San Francisco".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .numbers;
    assert_eq!(city.len(), 5);
    w.svc.stop().await;
}

#[tokio::test]
async fn bad_input_names_the_field_and_buys_nothing() {
    let w = start().await;
    let a = create_customer(&w.svc, "alloy").await;
    let mut owner = w.owner(a).await;
    let cases = [
        (search("ZZ", ""), "country"),
        (search("USA", ""), "country"),
        (search("US", "41a"), "area_code"),
        // Twilio's 21451.
        (search("US", "011"), "area_code"),
    ];
    for (request, field) in cases {
        let e = owner.search_available_numbers(request).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(field), "{}", e.message());
    }
    // Malformed purchases never reach Twilio.
    for (request, field) in [
        (buy("12345", R1), "phone_number"),
        (buy("+14155550100", "not-a-uuid"), "request_id"),
    ] {
        let e = owner.purchase_number(request).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(field), "{}", e.message());
    }
    assert!(w.fake.purchases().is_empty(), "no POST for bad input");
    // A number Twilio refuses (21422): FAILED_PRECONDITION, nothing bought, nothing stored.
    let e = owner
        .purchase_number(buy("+14155559999", R1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(e.message(), "number not available");
    assert!(w.fake.owned().is_empty(), "nothing bought");
    assert_eq!(w.rows().await, 0, "nothing stored");
    assert_eq!(w.routed_to("+14155559999").await, None);
    w.svc.stop().await;
}

#[tokio::test]
async fn without_the_api_key_numbers_answer_failed_precondition_naming_it() {
    let w = start_with(|n| n.api_key_sid = None).await;
    let a = create_customer(&w.svc, "alloy").await;
    let mut owner = w.owner(a).await;
    let e = owner
        .search_available_numbers(search("US", ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("TWILIO_API_KEY_SID"),
        "{}",
        e.message()
    );
    let e = owner
        .purchase_number(buy("+14155550100", R1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(w.fake.requests().is_empty());
    assert_eq!(w.rows().await, 0);
    w.svc.stop().await;
}

#[tokio::test]
async fn a_purchase_sets_our_webhooks_routes_the_number_and_release_stops_it() {
    let w = start().await;
    let a = create_customer(&w.svc, "alloy").await;
    let mut owner = w.owner(a).await;
    let n = owner
        .purchase_number(buy("+14155550100", R1))
        .await
        .unwrap()
        .into_inner()
        .number
        .unwrap();
    assert_eq!(n.state, NumberState::Active as i32);
    assert!(n.twilio_sid.starts_with("PN"));
    assert!(n.webhooks_ok);
    assert_eq!(n.origin, NumberOrigin::Purchased as i32);
    assert_eq!(n.customer_id, 0, "tenants do not see customer ids");
    let price = n.monthly_price.clone().expect("the price it was bought at");
    assert_eq!((price.currency.as_str(), price.amount_minor), ("USD", 115));
    let post = &w.fake.purchases()[0];
    assert_eq!(post.field("PhoneNumber"), Some("+14155550100"));
    assert_eq!(post.field("VoiceUrl"), Some(VOICE_URL));
    assert_eq!(post.field("VoiceMethod"), Some("POST"));
    assert_eq!(post.field("StatusCallback"), Some(STATUS_URL));
    assert_eq!(post.field("StatusCallbackMethod"), Some("POST"));
    assert_eq!(w.routed_to("+14155550100").await, Some(a));
    let listed = owner
        .list_numbers(ListNumbersRequest {})
        .await
        .unwrap()
        .into_inner()
        .numbers;
    assert_eq!(listed.len(), 1);

    let released = owner
        .release_number(ReleaseNumberRequest {
            phone_number: "+14155550100".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .number
        .unwrap();
    assert_eq!(released.state, NumberState::Released as i32);
    assert!(released.released_at.is_some());
    assert_eq!(w.routed_to("+14155550100").await, None, "routing stopped");
    assert_eq!(w.fake.releases().len(), 1);
    assert!(w.fake.owned().is_empty(), "released at Twilio");
    // Released again: not held any more.
    let e = owner
        .release_number(ReleaseNumberRequest {
            phone_number: "+14155550100".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    w.svc.stop().await;
}

#[tokio::test]
async fn a_lost_purchase_answer_is_looked_up_and_the_number_bought_exactly_once() {
    let w = start().await;
    let a = create_customer(&w.svc, "alloy").await;
    let mut owner = w.owner(a).await;
    w.fake.drop_next_purchase_answers(1);
    let n = owner
        .purchase_number(buy("+14155550101", R1))
        .await
        .unwrap()
        .into_inner()
        .number
        .unwrap();
    assert_eq!(n.state, NumberState::Active as i32);
    assert_eq!(w.fake.purchases().len(), 1, "exactly one POST");
    let lookups: Vec<_> = w
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.query.iter().any(|(k, _)| k == "PhoneNumber"))
        .collect();
    assert_eq!(lookups.len(), 1, "looked up after the lost answer");
    assert_eq!(n.twilio_sid, w.fake.owned()[0].sid);
    assert_eq!(w.routed_to("+14155550101").await, Some(a));
    // The client retries the same request: the same purchase, still one POST.
    let again = owner
        .purchase_number(buy("+14155550101", R1))
        .await
        .unwrap()
        .into_inner()
        .number
        .unwrap();
    assert_eq!(again.twilio_sid, n.twilio_sid);
    assert_eq!(w.fake.purchases().len(), 1);
    w.svc.stop().await;
}

#[tokio::test]
async fn the_same_request_id_twice_is_one_purchase() {
    let w = start().await;
    let a = create_customer(&w.svc, "alloy").await;
    let mut owner = w.owner(a).await;
    let (mut o1, mut o2) = (owner.clone(), owner.clone());
    let (first, second) = tokio::join!(
        o1.purchase_number(buy("+14155550102", R1)),
        o2.purchase_number(buy("+14155550102", R1)),
    );
    let (first, second) = (
        first.unwrap().into_inner().number.unwrap(),
        second.map(|r| r.into_inner().number.unwrap()),
    );
    // The second either answered the same purchase or saw it still in flight (UNAVAILABLE,
    // retry); never a second POST.
    match second {
        Ok(n) => assert_eq!(n.twilio_sid, first.twilio_sid),
        Err(e) => assert_eq!(e.code(), Code::Unavailable, "{e:?}"),
    }
    let again = owner
        .purchase_number(buy("+14155550102", R1))
        .await
        .unwrap()
        .into_inner()
        .number
        .unwrap();
    assert_eq!(again.twilio_sid, first.twilio_sid);
    assert_eq!(w.fake.purchases().len(), 1);
    assert_eq!(w.rows().await, 1);
    // The key used for another number is refused.
    let e = owner
        .purchase_number(buy("+14155550103", R1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("request_id"));
    assert_eq!(w.fake.purchases().len(), 1);
    w.svc.stop().await;
}

#[tokio::test]
async fn twilio_429s_are_retried_after_retry_after() {
    let w = start().await;
    let a = create_customer(&w.svc, "alloy").await;
    let mut owner = w.owner(a).await;
    w.fake.too_many_requests(2, Some(1));
    let started = Instant::now();
    let found = owner
        .search_available_numbers(search("US", "415"))
        .await
        .unwrap()
        .into_inner()
        .numbers;
    assert_eq!(found.len(), 5);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After honoured"
    );
    // A purchase refused with 429 is sent again (Twilio did nothing) and bought once.
    w.fake.too_many_requests(1, None);
    let n = owner
        .purchase_number(buy("+14155550100", R1))
        .await
        .unwrap()
        .into_inner()
        .number
        .unwrap();
    assert_eq!(n.state, NumberState::Active as i32);
    assert_eq!(w.fake.purchases().len(), 2, "the 429 and the purchase");
    assert_eq!(w.fake.owned().len(), 1, "bought once");
    w.svc.stop().await;
}

#[tokio::test]
async fn the_per_tenant_limit_refuses_before_twilio_is_asked() {
    let w = start_with(|n| n.per_tenant = 1).await;
    let a = create_customer(&w.svc, "alloy").await;
    let mut owner = w.owner(a).await;
    owner
        .purchase_number(buy("+14155550100", R1))
        .await
        .unwrap();
    let e = owner
        .purchase_number(buy("+14155550101", R2))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(w.fake.purchases().len(), 1);
    assert_eq!(w.rows().await, 1);
    w.svc.stop().await;
}

#[tokio::test]
async fn tenant_b_cannot_list_or_release_a_numbers() {
    let w = start().await;
    let a = create_customer(&w.svc, "alloy").await;
    let b = create_customer(&w.svc, "echo").await;
    let mut owner_a = w.owner(a).await;
    let mut owner_b = w.owner(b).await;
    owner_a
        .purchase_number(buy("+14155550100", R1))
        .await
        .unwrap();
    let listed = owner_b
        .list_numbers(ListNumbersRequest {})
        .await
        .unwrap()
        .into_inner()
        .numbers;
    assert!(listed.is_empty());
    let e = owner_b
        .release_number(ReleaseNumberRequest {
            phone_number: "+14155550100".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // B cannot buy what A holds either (same key or not).
    let e = owner_b
        .purchase_number(buy("+14155550100", R1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(w.routed_to("+14155550100").await, Some(a));
    assert_eq!(w.fake.releases().len(), 0);
    assert_eq!(w.fake.purchases().len(), 1);
    w.svc.stop().await;
}

#[tokio::test]
async fn a_suspended_tenants_token_is_refused_and_other_scopes_too() {
    let w = start().await;
    let a = create_customer(&w.svc, "alloy").await;
    // A token without `media:numbers` (a staff user's) is refused.
    let staff = w
        .svc
        .tenant_token(a, "staff", mesh::identity::scope::STAFF_SCOPES);
    let mut client = mesh::api::media::number_service_client::NumberServiceClient::with_interceptor(
        w.svc.channel_to(w.svc.addr).await,
        mesh::auth::AttachToken(mesh::auth::TokenSource::fixed(staff.into())),
    );
    let e = client
        .list_numbers(ListNumbersRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut owner = w.owner(a).await;
    owner.list_numbers(ListNumbersRequest {}).await.unwrap();
    set_status(&w.svc, a, CustomerStatus::Suspended).await;
    eventually("the suspended tenant's token is refused", || {
        let mut owner = owner.clone();
        async move {
            owner
                .list_numbers(ListNumbersRequest {})
                .await
                .is_err_and(|e| e.code() == Code::Unauthenticated)
        }
    })
    .await;
    let e = owner
        .purchase_number(buy("+14155550100", R1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(w.fake.purchases().is_empty());
    assert_eq!(w.rows().await, 0);
    w.svc.stop().await;
}

#[tokio::test]
async fn a_pending_customer_buys_nothing_even_with_a_token() {
    let w = start().await;
    let a = create_customer(&w.svc, "alloy").await;
    // Pending as a self sign-up leaves it (no operator RPC sets it).
    w.svc
        .db
        .admin_client()
        .await
        .execute(
            "UPDATE tenant.customers SET status = 'pending' WHERE customer_id = $1",
            &[&a],
        )
        .await
        .unwrap();
    // A token minted anyway (tenant-svc issues none to a pending customer).
    let mut owner = w.owner(a).await;
    let e = owner
        .purchase_number(buy("+14155550100", R1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(w.fake.purchases().is_empty(), "nothing bought");
    assert_eq!(w.rows().await, 0, "nothing stored");
    w.svc.stop().await;
}

async fn set_status(svc: &Svc, customer_id: i64, status: CustomerStatus) {
    use mesh::api::tenant::SetCustomerStatusRequest;
    use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
    use mesh::identity::{names, scope};
    let token = svc.service_token(names::OPERATOR, names::TENANT_SVC, &[scope::TENANT_ADMIN]);
    TenantAdminServiceClient::with_interceptor(
        svc.channel_to(svc.tenant_addr.expect("tenant-svc running"))
            .await,
        mesh::auth::AttachToken(mesh::auth::TokenSource::fixed(token.into())),
    )
    .set_customer_status(SetCustomerStatusRequest {
        customer_id,
        status: status.into(),
    })
    .await
    .expect("the operator sets the status");
}

/// Used by the reconcile tests too.
pub async fn bought(w: &World, customer: i64, number: &str, request_id: &str) -> PlatformNumber {
    w.owner(customer)
        .await
        .purchase_number(buy(number, request_id))
        .await
        .unwrap()
        .into_inner()
        .number
        .unwrap()
}
