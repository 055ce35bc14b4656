//! The personality trends GetEnrichedContext reports, end to end: calls recorded through
//! RecordCall (heuristic summarizer), their scores stored per call, the averages' trends
//! computed from successive calls in call-time order (the last 3 against the 3 before, or with
//! fewer than 4 calls the latest against the earlier ones; 5 points or more is a change).

use mesh::api::common::Speaker;
use mesh::api::memory::*;

use crate::common::*;

/// Satisfaction 90, frustration 15 with the heuristic summarizer.
const HAPPY: &str = "Great, thank you, that was perfect and so helpful!";
/// Satisfaction 0, frustration 90.
const ANGRY: &str = "This is terrible, I am frustrated and angry, it is still broken again";
/// Satisfaction 50, frustration 15.
const LEVEL: &str = "I would like to ask about my appointment on Tuesday";

/// Records a call of `user` on day `day` in which the caller says `words`.
async fn call_on_day(c: &mut Client, t: &str, user: &str, sid: u32, day: i64, words: &str) {
    let r = RecordCallRequest {
        call_sid: call_sid(sid),
        user_id: user.into(),
        call_time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000 + day * 86_400,
            nanos: 0,
        }),
        duration_seconds: 60,
        turns: vec![
            turn(Speaker::Agent, "Hello, how can I help?", 0),
            turn(Speaker::Caller, words, 1000),
        ],
        transferred: false,
    };
    let r = c.record_call(req(r, t)).await.unwrap().into_inner();
    assert!(!r.already_recorded);
}

/// The caller's (satisfaction, frustration) trends and call count, as GetEnrichedContext
/// reports them, after checking the rendered line says the same.
async fn trends(c: &mut Client, t: &str, user: &str) -> (String, String, i32) {
    let ctx = context(c, t, user, None).await;
    let p = ctx.personality.expect("averages after a call");
    let line = format!(
        "- Trend: satisfaction {}, frustration {} (over {} call(s))",
        p.satisfaction_trend, p.frustration_trend, p.call_count
    );
    assert!(ctx.rendered_text.contains(&line), "{}", ctx.rendered_text);
    (p.satisfaction_trend, p.frustration_trend, p.call_count)
}

fn expect(satisfaction: &str, frustration: &str, calls: i32) -> (String, String, i32) {
    (satisfaction.to_owned(), frustration.to_owned(), calls)
}

#[tokio::test]
async fn trends_improve_when_recent_calls_are_happier() {
    let svc = Svc::start().await;
    let mut c = svc.client().await;
    let t = svc.tenant(51);
    // Three angry calls, then three happy ones: the last 3 against the 3 before.
    let caller = "+15554440001";
    for day in 1..=3 {
        call_on_day(&mut c, &t, caller, day as u32, day, ANGRY).await;
    }
    for day in 4..=6 {
        call_on_day(&mut c, &t, caller, day as u32, day, HAPPY).await;
    }
    assert_eq!(
        trends(&mut c, &t, caller).await,
        expect("improving", "improving", 6)
    );
    // Two calls: the latest against the earlier one.
    let caller = "+15554440002";
    call_on_day(&mut c, &t, caller, 11, 1, ANGRY).await;
    call_on_day(&mut c, &t, caller, 12, 2, HAPPY).await;
    assert_eq!(
        trends(&mut c, &t, caller).await,
        expect("improving", "improving", 2)
    );
    svc.stop().await;
}

#[tokio::test]
async fn trends_decline_when_recent_calls_are_angrier() {
    let svc = Svc::start().await;
    let mut c = svc.client().await;
    let t = svc.tenant(52);
    // Recorded out of order: the angry calls (days 4-6) arrive first. Call time decides.
    let caller = "+15554440003";
    for day in 4..=6 {
        call_on_day(&mut c, &t, caller, day as u32, day, ANGRY).await;
    }
    for day in 1..=3 {
        call_on_day(&mut c, &t, caller, day as u32, day, HAPPY).await;
    }
    assert_eq!(
        trends(&mut c, &t, caller).await,
        expect("declining", "declining", 6)
    );
    let caller = "+15554440004";
    call_on_day(&mut c, &t, caller, 11, 1, HAPPY).await;
    call_on_day(&mut c, &t, caller, 12, 2, LEVEL).await;
    assert_eq!(
        trends(&mut c, &t, caller).await,
        expect("declining", "stable", 2),
        "satisfaction 90 -> 50 declines; frustration 15 -> 15 is stable"
    );
    svc.stop().await;
}

#[tokio::test]
async fn trends_are_stable_for_one_call_or_level_calls() {
    let svc = Svc::start().await;
    let mut c = svc.client().await;
    let t = svc.tenant(53);
    // One call, however angry: nothing to compare with.
    let caller = "+15554440005";
    call_on_day(&mut c, &t, caller, 1, 1, ANGRY).await;
    assert_eq!(
        trends(&mut c, &t, caller).await,
        expect("stable", "stable", 1)
    );
    // Calls that sound alike: no change of 5 points.
    let caller = "+15554440006";
    for day in 1..=5 {
        call_on_day(&mut c, &t, caller, 10 + day as u32, day, LEVEL).await;
    }
    assert_eq!(
        trends(&mut c, &t, caller).await,
        expect("stable", "stable", 5)
    );
    svc.stop().await;
}
