//! The call page's player and `/portal/calls/{CallSid}/recording` over HTTP against the real
//! mesh (issue 20), with a real recording written through media-svc's own writer (the
//! same keys, spool and store as the running media-svc): the whole file and single ranges
//! (206 bytes equal to the slice of the whole body), 416 past the end, HEAD, `no-store`;
//! downloads for owners only; tenant B gets 404 for A's call page and recording, and NOT_FOUND
//! from `ReadRecording` with its own token, while A's token reads the same bytes the portal
//! serves. Every recording of a call, by id: `recordings`.

use e2e::with_token;
use futures::StreamExt as _;
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::media::{
    CallDirection, CallStatus, GetCallRequest, ReadRecordingRequest, RecordingState,
    RegisterCallRequest, UpdateCallStatusRequest,
};
use mesh::api::tenant::UserRole;
use mesh::identity::scope;
use reqwest::Method;

use super::{Browser, PortalMesh, Raw};

/// Three seconds of stereo 16-bit PCM at 8 kHz behind a 44-byte header.
const WAV_BYTES: usize = 44 + 3 * 8000 * 4;

pub(super) fn sid(n: u32) -> String {
    format!("CA{:016x}{n:016x}", 0x20u64)
}

/// A finished inbound call of `customer` with two transcript turns (0 s and 1.5 s).
pub(super) async fn finished_call(portal: &PortalMesh, customer: i64, n: u32) -> String {
    let mesh = &portal.mesh;
    let token = mesh.tenant_token(customer, &[scope::MEDIA_CALLS]);
    let mut media = CallServiceClient::new(mesh.channel(mesh.media).await);
    media
        .register_call(with_token(
            RegisterCallRequest {
                call_sid: sid(n),
                account_sid: e2e::ACCOUNT_SID.into(),
                from: "+14155550123".into(),
                to: "+14158675309".into(),
                direction: CallDirection::Inbound as i32,
                status: CallStatus::Ringing as i32,
            },
            &token,
        ))
        .await
        .expect("register call");
    media
        .update_call_status(with_token(
            UpdateCallStatusRequest {
                call_sid: sid(n),
                status: CallStatus::Completed as i32,
                sequence_number: 1,
                duration_seconds: 3,
                event_time: None,
            },
            &token,
        ))
        .await
        .expect("complete call");
    let admin = mesh.db.admin_client().await;
    for (seq, (speaker, text, at)) in [
        (2_i16, "Thank you for calling, how can I help?", 0_i64),
        (1, "I would like to renew my boat policy please.", 1500),
    ]
    .iter()
    .enumerate()
    {
        admin
            .execute(
                "INSERT INTO media.transcript_turns (customer_id, call_sid, seq, speaker, text, offset_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&customer, &sid(n), &(seq as i32), speaker, text, at],
            )
            .await
            .expect("transcript turn");
    }
    sid(n)
}

/// `ReadRecording` with `token`: the bytes, or the status.
async fn read_grpc(
    portal: &PortalMesh,
    token: &str,
    call_sid: &str,
    offset: u64,
    length: Option<u64>,
) -> Result<Vec<u8>, tonic::Status> {
    let mesh = &portal.mesh;
    let mut media = CallServiceClient::new(mesh.channel(mesh.media).await);
    let mut stream = media
        .read_recording(with_token(
            ReadRecordingRequest {
                call_sid: call_sid.into(),
                offset,
                length,
                ..Default::default()
            },
            token,
        ))
        .await?
        .into_inner();
    let mut bytes = Vec::new();
    let mut at = offset;
    while let Some(message) = stream.next().await {
        let m = message?;
        assert!(m.data.len() <= 64 * 1024, "a chunk over 64 KiB");
        assert_eq!((m.offset, m.content_type.as_str()), (at, "audio/wav"));
        assert_eq!(m.total_bytes, WAV_BYTES as u64);
        at += m.data.len() as u64;
        bytes.extend_from_slice(&m.data);
    }
    Ok(bytes)
}

pub(super) fn check_audio_headers(r: &Raw, what: &str) {
    assert_eq!(r.header("content-type"), "audio/wav", "{what}");
    assert_eq!(r.header("accept-ranges"), "bytes", "{what}");
    assert_eq!(r.header("cache-control"), "no-store", "{what}");
    assert_eq!(
        r.header("content-disposition"),
        "",
        "{what}: not a download"
    );
}

#[tokio::test]
async fn the_recording_plays_whole_and_in_ranges_with_the_player_on_the_call_page() {
    let portal = PortalMesh::start().await;
    let (a, _) = portal.tenants;
    let call = finished_call(&portal, a, 1).await;
    let unrecorded = finished_call(&portal, a, 2).await;
    portal.mesh.record_call(a, &call, 3).await;
    let mut owner = portal
        .signed_in_user(a, "owner@play.example", UserRole::Owner)
        .await;
    let path = format!("/portal/calls/{call}/recording");
    check_pages(&mut owner, &call, &unrecorded).await;
    let whole = check_ranges(&mut owner, &path).await;

    // An owner's download: the same bytes as an attachment.
    let download = owner
        .fetch(Method::GET, &format!("{path}?download=1"), &[])
        .await;
    assert_eq!(download.status, 200);
    assert_eq!(
        download.header("content-disposition"),
        format!("attachment; filename=\"recording-{call}.wav\"")
    );
    assert_eq!(download.body, whole);

    // GetCall describes it.
    let token = portal.mesh.tenant_token(a, &[scope::MEDIA_READ]);
    let mut media = CallServiceClient::new(portal.mesh.channel(portal.mesh.media).await);
    let got = media
        .get_call(with_token(
            GetCallRequest {
                call_sid: call.clone(),
            },
            &token,
        ))
        .await
        .expect("GetCall")
        .into_inner()
        .call
        .expect("call");
    let recording = got.recording.expect("Call.recording");
    assert_eq!(recording.duration_ms, 3000);
    // In the spool, or already uploaded by media-svc's uploader.
    assert!(
        [
            RecordingState::Spooled as i32,
            RecordingState::Stored as i32
        ]
        .contains(&recording.state),
        "{recording:?}"
    );
}

/// The recorded call's page (player, "Play from" links, download link, script) and an
/// unrecorded call's (no player; its recording is a 404).
async fn check_pages(owner: &mut Browser, call: &str, unrecorded: &str) {
    let path = format!("/portal/calls/{call}/recording");
    // The page: a player reading the endpoint, a "play from" link per turn, a download link.
    let page = owner.get(&format!("/portal/calls/{call}")).await;
    assert_eq!(page.status(), 200);
    assert!(
        page.body.contains(&format!(
            r#"<audio id="recording" class="player" controls preload="metadata" src="{path}""#
        )),
        "no player:\n{}",
        page.body
    );
    assert!(page.body.contains(&format!(r#"href="{path}#t=0.000""#)));
    assert!(
        page.body
            .contains(&format!(r#"href="{path}#t=1.500" data-seek="1.500""#))
    );
    assert!(page.body.contains(&format!(r#"href="{path}?download=1""#)));
    assert!(
        page.body
            .contains(r#"<script src="/portal/static/player.js" defer>"#)
    );
    let script = owner
        .fetch(Method::GET, "/portal/static/player.js", &[])
        .await;
    assert_eq!(script.status, 200);
    assert!(script.header("content-type").starts_with("text/javascript"));
    // A call without a recording: no player, and its recording is the same 404.
    let page = owner.get(&format!("/portal/calls/{unrecorded}")).await;
    assert_eq!(page.status(), 200);
    assert!(!page.body.contains("<audio") && !page.body.contains("/recording"));
    let none = owner
        .fetch(
            Method::GET,
            &format!("/portal/calls/{unrecorded}/recording"),
            &[],
        )
        .await;
    assert_eq!(none.status, 404);
}

/// The whole file, single ranges (206, the slice of the whole), 416, several ranges, HEAD;
/// answers the whole file.
async fn check_ranges(owner: &mut Browser, path: &str) -> Vec<u8> {
    // The whole file.
    let whole = owner.fetch(Method::GET, path, &[]).await;
    assert_eq!(whole.status, 200);
    check_audio_headers(&whole, "whole");
    assert_eq!(whole.body.len(), WAV_BYTES);
    assert_eq!(whole.header("content-length"), WAV_BYTES.to_string());
    assert_eq!(&whole.body[0..4], b"RIFF");
    assert_eq!(&whole.body[8..12], b"WAVE");
    let data_len = u32::from_le_bytes(whole.body[40..44].try_into().unwrap()) as usize;
    assert_eq!(data_len, WAV_BYTES - 44, "the header says the exact length");

    // Single ranges: 206, Content-Range, exactly the slice of the whole body.
    let total = WAV_BYTES;
    for (range, from, to) in [
        ("bytes=0-1", 0, 2),
        ("bytes=100-1099", 100, 1100),
        ("bytes=40-70000", 40, 70_001),
        ("bytes=95000-", 95_000, total),
        ("bytes=-500", total - 500, total),
        ("bytes=90000-999999", 90_000, total),
    ] {
        let part = owner.fetch(Method::GET, path, &[("range", range)]).await;
        assert_eq!(part.status, 206, "{range}");
        check_audio_headers(&part, range);
        assert_eq!(
            part.header("content-range"),
            format!("bytes {from}-{}/{total}", to - 1),
            "{range}"
        );
        assert_eq!(part.header("content-length"), (to - from).to_string());
        assert_eq!(part.body, &whole.body[from..to], "{range}");
    }
    // Past the end: 416 with the size; several ranges: the whole file (allowed by RFC 9110).
    for range in [format!("bytes={total}-"), "bytes=-0".to_owned()] {
        let past = owner.fetch(Method::GET, path, &[("range", &range)]).await;
        assert_eq!(past.status, 416, "{range}");
        assert_eq!(past.header("content-range"), format!("bytes */{total}"));
        assert_eq!(past.header("cache-control"), "no-store");
    }
    let several = owner
        .fetch(Method::GET, path, &[("range", "bytes=0-1,5-6")])
        .await;
    assert_eq!((several.status, several.body.len()), (200, total));

    // HEAD: the headers, no body.
    let head = owner.fetch(Method::HEAD, path, &[]).await;
    assert_eq!(head.status, 200);
    check_audio_headers(&head, "HEAD");
    assert_eq!(head.header("content-length"), total.to_string());
    assert!(head.body.is_empty());

    whole.body
}

#[tokio::test]
async fn staff_listen_but_cannot_download_and_tenant_b_reaches_nothing_of_a() {
    let portal = PortalMesh::start().await;
    let (a, _) = portal.tenants;
    let call = finished_call(&portal, a, 1).await;
    portal.mesh.record_call(a, &call, 3).await;
    let path = format!("/portal/calls/{call}/recording");
    let recordings = || portal.count("media.recordings");
    assert_eq!(recordings().await, 1);

    // Staff: the player, no download link; the download URL is the 403 page.
    let mut staff = portal
        .signed_in_user(a, "desk@play.example", UserRole::Staff)
        .await;
    let page = staff.get(&format!("/portal/calls/{call}")).await;
    assert!(page.body.contains("<audio"));
    assert!(
        !page.body.contains("download=1"),
        "staff see no download link"
    );
    let listen = staff.fetch(Method::GET, &path, &[]).await;
    assert_eq!((listen.status, listen.body.len()), (200, WAV_BYTES));
    let refused = staff
        .fetch(Method::GET, &format!("{path}?download=1"), &[])
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("content-disposition"), "");
    assert!(!refused.body.starts_with(b"RIFF"));

    tenant_b_gets_404_for_all_of_it(&portal, &call).await;
    // Signed out: to the sign-in page, never the audio.
    let mut stranger = portal.browser();
    let r = stranger.fetch(Method::GET, &path, &[]).await;
    assert_eq!(r.status, 303);
    assert!(r.body.is_empty());

    grpc_reads_only_in_the_tenant_and_with_the_scope(&portal, &call).await;

    // Reading changed nothing.
    assert_eq!(recordings().await, 1);
}

/// Tenant B's owner: A's call page and recording are the 404 page, in every form.
async fn tenant_b_gets_404_for_all_of_it(portal: &PortalMesh, call: &str) {
    let (_, b) = portal.tenants;
    let path = format!("/portal/calls/{call}/recording");
    let mut other = portal
        .signed_in_user(b, "owner@other.example", UserRole::Owner)
        .await;
    for (method, url, range) in [
        (Method::GET, format!("/portal/calls/{call}"), ""),
        (Method::GET, path.clone(), ""),
        (Method::GET, path.clone(), "bytes=0-99"),
        (Method::HEAD, path.clone(), ""),
        (Method::GET, format!("{path}?download=1"), ""),
    ] {
        let headers: Vec<(&str, &str)> = if range.is_empty() {
            vec![]
        } else {
            vec![("range", range)]
        };
        let r = other.fetch(method.clone(), &url, &headers).await;
        assert_eq!(r.status, 404, "{method} {url} {range}");
        assert_eq!(r.header("content-range"), "");
        assert!(!r.body.starts_with(b"RIFF"));
    }
}

/// `ReadRecording`: B's token with the scope gets NOT_FOUND for A's call, the same answer as an
/// unknown call; A's token without the scope is refused; A's token reads it whole, a range, and
/// past the end is OUT_OF_RANGE.
async fn grpc_reads_only_in_the_tenant_and_with_the_scope(portal: &PortalMesh, call: &str) {
    let (a, b) = portal.tenants;
    let call = call.to_owned();
    // gRPC: B's token (with the scope) gets NOT_FOUND, exactly as for an unknown call; A's
    // token without the scope is refused; A's token reads the bytes the portal serves.
    let b_token = portal
        .mesh
        .tenant_token(b, &[scope::MEDIA_READ, scope::MEDIA_RECORDINGS]);
    let err = read_grpc(portal, &b_token, &call, 0, None)
        .await
        .unwrap_err();
    let unknown = read_grpc(portal, &b_token, &sid(99), 0, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(
        (err.code(), err.message()),
        (unknown.code(), unknown.message())
    );
    let a_read_only = portal.mesh.tenant_token(a, &[scope::MEDIA_READ]);
    let denied = read_grpc(portal, &a_read_only, &call, 0, None)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let a_token = portal.mesh.tenant_token(a, &[scope::MEDIA_RECORDINGS]);
    let grpc = read_grpc(portal, &a_token, &call, 0, None)
        .await
        .expect("A reads");
    assert_eq!(grpc.len(), WAV_BYTES);
    assert_eq!(&grpc[..4], b"RIFF");
    let part = read_grpc(portal, &a_token, &call, 1000, Some(70_000))
        .await
        .expect("range");
    assert_eq!(part, &grpc[1000..71_000]);
    let past = read_grpc(portal, &a_token, &call, WAV_BYTES as u64 + 1, None)
        .await
        .unwrap_err();
    assert_eq!(past.code(), tonic::Code::OutOfRange);
}
