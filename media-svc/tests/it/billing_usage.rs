//! Billable usage captured per call: the realtime model's tokens summed from every
//! `response.done` (a fake Realtime server reporting known usage), stored with the call and added
//! to its month once, however often the call is finalised; the local backend stores zeros.

use crate::common;
use crate::fakes;

use common::{CallStream, In, Out, Svc, register, sid};
use fakes::{FakeRealtime, fake_twilio};
use media_svc::BackendChoice;
use media_svc::backend::openai::{ApiShape, OpenAiConfig};
use mesh::api::media::{CallStatus, StreamStop, UpdateCallStatusRequest};
use mesh::identity::scope;
use serde_json::json;

/// media-svc with the `openai-realtime` backend pointed at a fake, and a real tenant-svc.
pub async fn realtime_world() -> (Svc, FakeRealtime, i64) {
    let realtime = FakeRealtime::start().await;
    let (twilio_url, _twilio) = fake_twilio().await;
    let url = realtime.url.clone();
    let svc = Svc::start_with(
        move |mut c| {
            c.backend = BackendChoice::OpenAi(OpenAiConfig {
                url,
                model: "gpt-realtime".into(),
                api_key: "sk-test-key".to_owned().into(),
                shape: ApiShape::Ga,
                stall_timeout: media_svc::backend::openai::DEFAULT_STALL_TIMEOUT,
            });
            c.twilio.base_url = twilio_url;
            c.peer_timeout = std::time::Duration::from_secs(5);
            c
        },
        true,
    )
    .await;
    let customer = common::create_customer(&svc, "marin").await;
    (svc, realtime, customer)
}

/// A GA `response.usage` with every detail.
pub fn ga_usage(
    text: u64,
    audio: u64,
    cached_text: u64,
    cached_audio: u64,
    out_text: u64,
    out_audio: u64,
) -> serde_json::Value {
    json!({
        "total_tokens": text + audio + out_text + out_audio,
        "input_tokens": text + audio,
        "output_tokens": out_text + out_audio,
        "input_token_details": {
            "text_tokens": text, "audio_tokens": audio, "image_tokens": 0,
            "cached_tokens": cached_text + cached_audio,
            "cached_tokens_details": {"text_tokens": cached_text, "audio_tokens": cached_audio, "image_tokens": 0}
        },
        "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio}
    })
}

/// Registers and streams one call of `customer`, returns the stream and the fake's session.
pub async fn open_call(
    svc: &Svc,
    realtime: &mut FakeRealtime,
    customer: i64,
    call_sid: &str,
) -> (CallStream, fakes::FakeConn) {
    let mut client = svc
        .client_with(svc.tenant_token(customer, call_sid, scope::CALL_SCOPES))
        .await;
    client
        .register_call(register(call_sid, "+15551111111"))
        .await
        .unwrap();
    let call = CallStream::open(&mut client, &mut svc.gateway_client().await, call_sid)
        .await
        .unwrap();
    let mut conn = realtime.next_conn().await;
    conn.next_of("session.update").await;
    (call, conn)
}

/// The six token columns of a call, or `None` while unset.
async fn call_tokens(svc: &Svc, call_sid: &str) -> Option<[i64; 6]> {
    let row = svc
        .db
        .admin_client()
        .await
        .query_one(
            "SELECT model_input_text_tokens, model_input_audio_tokens, model_cached_text_tokens, \
               model_cached_audio_tokens, model_output_text_tokens, model_output_audio_tokens \
             FROM media.calls WHERE call_sid = $1",
            &[&call_sid],
        )
        .await
        .unwrap();
    let first: Option<i64> = row.get(0);
    first.map(|_| std::array::from_fn(|i| row.get::<_, i64>(i)))
}

/// The six token sums of a tenant's current month.
async fn month_tokens(svc: &Svc, customer: i64) -> [i64; 6] {
    let row = svc
        .db
        .admin_client()
        .await
        .query_one(
            "SELECT input_text_tokens, input_audio_tokens, cached_text_tokens, cached_audio_tokens, \
               output_text_tokens, output_audio_tokens FROM media.usage_monthly \
             WHERE customer_id = $1 AND month = date_trunc('month', now() AT TIME ZONE 'UTC')::date",
            &[&customer],
        )
        .await
        .unwrap();
    std::array::from_fn(|i| row.get::<_, i64>(i))
}

/// Ends a call from the edge and waits until it is finalised.
async fn hang_up(svc: &Svc, call: &mut CallStream, call_sid: &str) {
    call.send(In::Stop(StreamStop {})).await;
    while let Some(out) = call.next().await {
        assert!(
            matches!(out, Out::Audio(_) | Out::Mark(_) | Out::Clear(_)),
            "{out:?}"
        );
    }
    common::eventually("the call finalised", || async {
        svc.count(&format!(
            "SELECT count(*) FROM media.calls WHERE call_sid = '{call_sid}' AND usage_counted"
        ))
        .await
            == 1
    })
    .await;
}

#[tokio::test]
async fn model_usage_is_summed_from_every_response_done_and_counted_once() {
    let (svc, mut realtime, customer) = realtime_world().await;
    let call_sid = sid("CA", 201);
    let (mut call, conn) = open_call(&svc, &mut realtime, customer, &call_sid).await;
    // Three responses: GA with every detail, an older beta answer without cached details (its
    // cached tokens count as text first), and a cancelled response with no usage at all.
    conn.response_done("resp_1", ga_usage(1000, 2000, 400, 500, 30, 700));
    conn.response_done(
        "resp_2",
        json!({"input_tokens": 350, "output_tokens": 90,
               "input_token_details": {"text_tokens": 50, "audio_tokens": 300, "cached_tokens": 80},
               "output_token_details": {"text_tokens": 10, "audio_tokens": 80}}),
    );
    conn.response_done("resp_3", serde_json::Value::Null);
    // The events are handled in order: a transcript after them is stored once they are counted.
    conn.send(json!({"type": "response.output_audio_transcript.done", "item_id": "i", "transcript": "Bye."}));
    common::eventually("the transcript after the usage", || async {
        svc.count("SELECT count(*) FROM media.transcript_turns")
            .await
            == 1
    })
    .await;
    assert_eq!(
        call_tokens(&svc, &call_sid).await,
        None,
        "set when the call ends"
    );
    hang_up(&svc, &mut call, &call_sid).await;
    let want = [1050, 2300, 450, 530, 40, 780];
    assert_eq!(call_tokens(&svc, &call_sid).await, Some(want));
    assert_eq!(month_tokens(&svc, customer).await, want);

    // Twilio's final status callback finalises the call again: nothing is counted twice.
    let mut edge = svc
        .client_with(svc.tenant_token(customer, &call_sid, scope::CALL_SCOPES))
        .await;
    edge.update_call_status(UpdateCallStatusRequest {
        call_sid: call_sid.clone(),
        status: CallStatus::Completed as i32,
        sequence_number: 9,
        duration_seconds: 61,
        event_time: None,
    })
    .await
    .unwrap();
    assert_eq!(month_tokens(&svc, customer).await, want);

    // A second call of the same tenant adds to the month.
    let second = sid("CA", 202);
    let (mut call, conn) = open_call(&svc, &mut realtime, customer, &second).await;
    conn.response_done("resp_4", ga_usage(1, 2, 0, 0, 3, 4));
    conn.send(json!({"type": "response.output_audio_transcript.done", "item_id": "j", "transcript": "Hi."}));
    common::eventually("the second transcript", || async {
        svc.count("SELECT count(*) FROM media.transcript_turns")
            .await
            == 2
    })
    .await;
    hang_up(&svc, &mut call, &second).await;
    assert_eq!(call_tokens(&svc, &second).await, Some([1, 2, 0, 0, 3, 4]));
    assert_eq!(
        month_tokens(&svc, customer).await,
        [1051, 2302, 450, 530, 43, 784]
    );
    svc.stop().await;
}

/// The local backend reports no usage: its calls store zeros (not NULL, not an error).
#[tokio::test]
async fn a_backend_that_reports_nothing_stores_zeros() {
    let svc = Svc::start().await;
    let call_sid = sid("CA", 203);
    let mut client = svc
        .client_with(svc.tenant_token(1, &call_sid, scope::CALL_SCOPES))
        .await;
    let mut call = CallStream::open(&mut client, &mut svc.gateway_client().await, &call_sid)
        .await
        .unwrap();
    hang_up(&svc, &mut call, &call_sid).await;
    assert_eq!(call_tokens(&svc, &call_sid).await, Some([0; 6]));
    assert_eq!(month_tokens(&svc, 1).await, [0; 6]);
    svc.stop().await;
}
