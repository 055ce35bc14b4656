//! The portal's call reads over real gRPC and PostgreSQL: `ListCalls`' direction filter with the
//! others, and `GetCallStats` counted in the tenant's time zone (checked against the same
//! figures computed here with chrono-tz, for zones 25 hours apart), one tenant only, with a
//! staff token (`media:read` alone).

use crate::common;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use chrono_tz::Tz;
use common::{Svc, register, sid};
use mesh::api::media::*;
use mesh::identity::scope;
use tonic::Code;

/// Local midnight of the day `at` falls on in `tz`, as an instant.
fn midnight(tz: Tz, day: chrono::NaiveDate) -> DateTime<Utc> {
    tz.from_local_datetime(&day.and_hms_opt(0, 0, 0).unwrap())
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

/// One seeded call: when it was registered, its billed minutes, whether it is still running.
struct Seeded {
    at: DateTime<Utc>,
    minutes: i64,
    running: bool,
}

/// The figures `GetCallStats` must answer for `calls` in `tz`, computed here.
fn expected(tz: Tz, calls: &[Seeded]) -> GetCallStatsResponse {
    let today = Utc::now().with_timezone(&tz).date_naive();
    let from_today = midnight(tz, today);
    let from_week = midnight(
        tz,
        today - chrono::Days::new(u64::from(today.weekday().num_days_from_monday())),
    );
    let from_month = midnight(tz, today.with_day(1).unwrap());
    let count = |from: DateTime<Utc>| calls.iter().filter(|c| c.at >= from).count() as i64;
    let days = (0..30)
        .rev()
        .map(|back| {
            let day = today - chrono::Days::new(back);
            let of_day: Vec<&Seeded> = calls
                .iter()
                .filter(|c| c.at.with_timezone(&tz).date_naive() == day)
                .collect();
            DailyCalls {
                date: day.format("%Y-%m-%d").to_string(),
                calls: of_day.len() as i64,
                minutes: of_day.iter().map(|c| c.minutes).sum(),
            }
        })
        .collect();
    GetCallStatsResponse {
        calls_today: count(from_today),
        calls_this_week: count(from_week),
        minutes_this_month: calls
            .iter()
            .filter(|c| c.at >= from_month)
            .map(|c| c.minutes)
            .sum(),
        calls_in_progress: calls.iter().filter(|c| c.running).count() as i64,
        days,
    }
}

/// Sets a registered call's creation time, status, duration and direction, as if it had
/// happened then.
async fn backdate(
    svc: &Svc,
    call_sid: &str,
    at: DateTime<Utc>,
    status: CallStatus,
    seconds: i32,
    direction: CallDirection,
) {
    let n = svc
        .db
        .admin_client()
        .await
        .execute(
            "UPDATE media.calls SET created_at = $2, status = $3, duration_seconds = $4, \
             direction = $5 WHERE call_sid = $1",
            &[
                &call_sid,
                &at,
                &(status as i32 as i16),
                &seconds,
                &(direction as i32 as i16),
            ],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// Tenant 1's calls: 101 at Kiritimati's midnight today (61 s), 102 one second before it (30 s,
/// outbound), 103 forty days ago (600 s), 104 ringing now; tenant 2: 200 now, 201 running.
async fn seed(svc: &Svc) -> Vec<Seeded> {
    let mut a = svc.client(1).await;
    let mut b = svc.client(2).await;
    for n in 101..=104 {
        a.register_call(register(&sid("CA", n), "+15551111111"))
            .await
            .unwrap();
    }
    for n in 200..=201 {
        b.register_call(register(&sid("CA", n), "+15552222222"))
            .await
            .unwrap();
    }
    let kiritimati: Tz = "Pacific/Kiritimati".parse().unwrap();
    let k_midnight = midnight(
        kiritimati,
        Utc::now().with_timezone(&kiritimati).date_naive(),
    );
    let forty_days_ago = Utc::now() - chrono::Duration::days(40);
    let done = CallStatus::Completed;
    let inbound = CallDirection::Inbound;
    backdate(svc, &sid("CA", 101), k_midnight, done, 61, inbound).await;
    let before = k_midnight - chrono::Duration::seconds(1);
    backdate(
        svc,
        &sid("CA", 102),
        before,
        done,
        30,
        CallDirection::OutboundApi,
    )
    .await;
    backdate(svc, &sid("CA", 103), forty_days_ago, done, 600, inbound).await;
    backdate(svc, &sid("CA", 200), Utc::now(), done, 3600, inbound).await;
    let now_of = |n: u32| {
        let s = sid("CA", n);
        async move {
            svc.db
                .admin_client()
                .await
                .query_one(
                    "SELECT created_at FROM media.calls WHERE call_sid = $1",
                    &[&s],
                )
                .await
                .unwrap()
                .get::<_, DateTime<Utc>>(0)
        }
    };
    vec![
        Seeded {
            at: k_midnight,
            minutes: 2,
            running: false,
        },
        Seeded {
            at: before,
            minutes: 1,
            running: false,
        },
        Seeded {
            at: forty_days_ago,
            minutes: 10,
            running: false,
        },
        Seeded {
            at: now_of(104).await,
            minutes: 0,
            running: true,
        },
    ]
}

fn sids(r: &ListCallsResponse) -> Vec<String> {
    r.calls.iter().map(|c| c.call_sid.clone()).collect()
}

#[tokio::test]
async fn list_calls_filters_by_direction_with_the_other_filters() {
    let svc = Svc::start().await;
    seed(&svc).await;
    let mut staff = svc
        .client_with(svc.tenant_token(1, "staff", &[scope::MEDIA_READ]))
        .await;
    let before = svc.count("SELECT count(*) FROM media.calls").await;
    let list = |direction: CallDirection, status: CallStatus| ListCallsRequest {
        direction: direction as i32,
        status: status as i32,
        ..Default::default()
    };
    let any = CallStatus::Unspecified;
    let out = staff
        .list_calls(list(CallDirection::OutboundApi, any))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sids(&out), [sid("CA", 102)]);
    let inbound = staff
        .list_calls(list(CallDirection::Inbound, any))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        sids(&inbound),
        [sid("CA", 104), sid("CA", 101), sid("CA", 103)],
        "newest first, tenant 2's inbound calls absent"
    );
    let done_inbound = staff
        .list_calls(list(CallDirection::Inbound, CallStatus::Completed))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sids(&done_inbound), [sid("CA", 101), sid("CA", 103)]);
    assert!(
        staff
            .list_calls(list(CallDirection::OutboundDial, any))
            .await
            .unwrap()
            .into_inner()
            .calls
            .is_empty()
    );
    // Direction with a time range and pages of one.
    let ranged = ListCallsRequest {
        direction: CallDirection::Inbound as i32,
        start_time: Some(prost_types::Timestamp {
            seconds: (Utc::now() - chrono::Duration::days(3)).timestamp(),
            nanos: 0,
        }),
        page_size: 1,
        ..Default::default()
    };
    let first = staff.list_calls(ranged.clone()).await.unwrap().into_inner();
    assert_eq!(sids(&first), [sid("CA", 104)]);
    let second = staff
        .list_calls(ListCallsRequest {
            page_token: first.next_page_token,
            ..ranged
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sids(&second), [sid("CA", 101)]);
    assert!(second.next_page_token.is_empty());

    let e = staff
        .list_calls(ListCallsRequest {
            direction: 9,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("`direction`"), "{}", e.message());
    assert_eq!(svc.count("SELECT count(*) FROM media.calls").await, before);
    svc.stop().await;
}

#[tokio::test]
async fn call_stats_count_in_the_tenants_time_zone_for_that_tenant_only() {
    let svc = Svc::start().await;
    let seeded = seed(&svc).await;
    let mut staff = svc
        .client_with(svc.tenant_token(1, "staff", &[scope::MEDIA_READ]))
        .await;
    let stats = |zone: &str| GetCallStatsRequest {
        time_zone: zone.into(),
    };
    for zone in [
        "Pacific/Kiritimati",
        "Pacific/Pago_Pago",
        "Europe/Paris",
        "UTC",
    ] {
        let got = staff
            .get_call_stats(stats(zone))
            .await
            .unwrap()
            .into_inner();
        let want = expected(zone.parse().unwrap(), &seeded);
        assert_eq!(got, want, "{zone}");
    }
    // In Kiritimati, 101 is today's and 102 yesterday's: the day boundary is local.
    let k = staff
        .get_call_stats(stats("Pacific/Kiritimati"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(k.days.len(), 30);
    assert_eq!((k.days[29].calls, k.days[29].minutes), (2, 2));
    assert_eq!((k.days[28].calls, k.days[28].minutes), (1, 1));
    assert_eq!(k.calls_today, 2);
    assert_eq!(
        k.calls_in_progress, 1,
        "104 rings; tenant 2's running call is not ours"
    );

    // Tenant 2 sees its own figures only.
    let b = svc
        .client(2)
        .await
        .get_call_stats(stats("UTC"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.calls_today, 2);
    assert_eq!(b.days[29].minutes, 60);

    for bad in ["", "Mars/Olympus", "+02:00"] {
        let e = staff.get_call_stats(stats(bad)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
        assert!(e.message().contains("`time_zone`"), "{}", e.message());
    }
    let writer = svc
        .client_with(svc.tenant_token(1, "w", &[scope::MEDIA_CALLS]))
        .await
        .get_call_stats(stats("UTC"))
        .await
        .unwrap_err();
    assert_eq!(writer.code(), Code::PermissionDenied);
    svc.stop().await;
}
