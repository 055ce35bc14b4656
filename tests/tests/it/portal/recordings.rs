//! Every recording of a call over HTTP against the real mesh (issue 20): a call that
//! switched to taking a message has a labelled player per recording (Call, Message; "Play from"
//! on the Call one), each address serving its own bytes (those `ReadRecording` gives for its
//! id); another call's or tenant's recording id is a 404 in every form, and B reaches none of
//! A's; the calls list says which calls have a recording and a message, in words.

use e2e::with_token;
use futures::StreamExt as _;
use media_svc::recording::RecordingKind;
use mesh::api::media::ReadRecordingRequest;
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::tenant::UserRole;
use mesh::identity::scope;
use reqwest::Method;

use super::recording::{check_audio_headers, finished_call, sid};
use super::{Browser, PortalMesh};

/// The whole recording `id` of `call` through `ReadRecording` with `token`.
async fn read_grpc_by_id(portal: &PortalMesh, token: &str, call: &str, id: &str) -> Vec<u8> {
    let mesh = &portal.mesh;
    let mut media = CallServiceClient::new(mesh.channel(mesh.media).await);
    let mut stream = media
        .read_recording(with_token(
            ReadRecordingRequest {
                call_sid: call.into(),
                recording_id: id.into(),
                ..Default::default()
            },
            token,
        ))
        .await
        .expect("ReadRecording by id")
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(m) = stream.next().await {
        bytes.extend_from_slice(&m.expect("chunk").data);
    }
    bytes
}

/// Tenant A's call that switched to taking a message (its conversation, 3 s, then the message,
/// 2 s, and the callback task), another recorded call, an unrecorded one, and B's recorded call.
struct Both {
    call: String,
    call_id: uuid::Uuid,
    message_id: uuid::Uuid,
    other: String,
    other_id: uuid::Uuid,
    unrecorded: String,
    b_call: String,
    b_id: uuid::Uuid,
}

async fn seed_both(portal: &PortalMesh) -> Both {
    let (a, b) = portal.tenants;
    let call = finished_call(portal, a, 1).await;
    let call_id = portal.mesh.record(a, &call, 3, RecordingKind::Call).await;
    let message_id = portal
        .mesh
        .record(a, &call, 2, RecordingKind::Message)
        .await;
    let admin = portal.mesh.db.admin_client().await;
    admin
        .execute(
            "INSERT INTO media.callback_tasks (customer_id, task_id, call_sid, reason, recording_id) \
             VALUES ($1, $2, $3, 'backend_down', $4)",
            &[&a, &uuid::Uuid::new_v4(), &call, &message_id],
        )
        .await
        .expect("task");
    let other = finished_call(portal, a, 2).await;
    let other_id = portal.mesh.record_call(a, &other, 1).await;
    let unrecorded = finished_call(portal, a, 3).await;
    let b_call = sid(4);
    admin
        .execute(
            "INSERT INTO media.calls (customer_id, call_sid, account_sid, called, direction, status) \
             VALUES ($1, $2, 'AC' || repeat('0', 32), '+14155550101', 1, 5)",
            &[&b, &b_call],
        )
        .await
        .expect("B's call");
    let b_id = portal.mesh.record_call(b, &b_call, 1).await;
    Both {
        call,
        call_id,
        message_id,
        other,
        other_id,
        unrecorded,
        b_call,
        b_id,
    }
}

#[tokio::test]
async fn a_call_and_its_message_each_have_a_player_and_the_calls_list_marks_them() {
    let portal = PortalMesh::start().await;
    let (a, _) = portal.tenants;
    let t = seed_both(&portal).await;
    let recordings = || portal.count("media.recordings");
    assert_eq!(recordings().await, 4);
    let call = &t.call;
    let mut owner = portal
        .signed_in_user(a, "owner@both.example", UserRole::Owner)
        .await;
    // The call page: two labelled players; "Play from" seeks the Call recording.
    let page = owner.get(&format!("/portal/calls/{call}")).await;
    assert_eq!(page.status(), 200);
    let first = format!("/portal/calls/{call}/recording");
    let second = format!("/portal/calls/{call}/recordings/{}", t.message_id);
    assert_eq!(page.matches_count("<audio "), 2, "{}", page.body);
    assert!(page.body.contains(&format!(
        r#"<audio id="recording" class="player" controls preload="metadata" src="{first}""#
    )));
    assert!(page.body.contains(&format!(r#"src="{second}""#)));
    assert!(page.body.contains("<h3>Call</h3>"));
    assert!(page.body.contains("<h3>Message</h3>"));
    assert!(
        page.body
            .contains(&format!(r#"href="{first}#t=1.500" data-seek="1.500""#))
    );
    assert!(!page.body.contains(&format!("{second}#t=")));

    // Each address serves its own recording: the bytes ReadRecording gives for its id.
    let token = portal.mesh.tenant_token(a, &[scope::MEDIA_RECORDINGS]);
    for (path, id, seconds) in [
        (first.clone(), t.call_id, 3),
        (
            format!("/portal/calls/{call}/recordings/{}", t.call_id),
            t.call_id,
            3,
        ),
        (second.clone(), t.message_id, 2),
    ] {
        let got = owner.fetch(Method::GET, &path, &[]).await;
        assert_eq!(got.status, 200, "{path}");
        check_audio_headers(&got, &path);
        assert_eq!(got.body.len(), 44 + seconds * 8000 * 4, "{path}");
        assert_eq!(
            got.body,
            read_grpc_by_id(&portal, &token, call, &id.to_string()).await
        );
        let part = owner
            .fetch(Method::GET, &path, &[("range", "bytes=100-199")])
            .await;
        assert_eq!((part.status, &part.body[..]), (206, &got.body[100..200]));
    }

    recording_ids_of_other_calls_and_tenants_are_404(&portal, &mut owner, &t).await;
    the_calls_list_marks_recordings_and_messages(&mut owner, &t).await;
    assert_eq!(recordings().await, 4, "reading changed nothing");
}

/// Another call's recording through this call, B's recording, an unknown or malformed id: 404,
/// never audio. B reaches none of A's by A's call and id, nor through its own call.
async fn recording_ids_of_other_calls_and_tenants_are_404(
    portal: &PortalMesh,
    owner: &mut Browser,
    t: &Both,
) {
    let (call, unrecorded, b_call) = (&t.call, &t.unrecorded, &t.b_call);
    let mine = [
        format!("/portal/calls/{call}/recordings/{}", t.other_id),
        format!("/portal/calls/{call}/recordings/{}", t.b_id),
        format!("/portal/calls/{call}/recordings/{}", uuid::Uuid::new_v4()),
        format!("/portal/calls/{call}/recordings/not-a-uuid"),
        format!("/portal/calls/{unrecorded}/recordings/{}", t.call_id),
    ];
    for path in &mine {
        let r = owner.fetch(Method::GET, path, &[]).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.body.starts_with(b"RIFF"));
    }
    let (_, b) = portal.tenants;
    let mut other_owner = portal
        .signed_in_user(b, "owner@both-b.example", UserRole::Owner)
        .await;
    let second = format!("/portal/calls/{call}/recordings/{}", t.message_id);
    let theirs = [
        second.clone(),
        format!("/portal/calls/{call}/recordings/{}", t.call_id),
        format!("/portal/calls/{b_call}/recordings/{}", t.message_id),
        format!("{second}?download=1"),
    ];
    for path in &theirs {
        for method in [Method::GET, Method::HEAD] {
            let r = other_owner.fetch(method.clone(), path, &[]).await;
            assert_eq!(r.status, 404, "{method} {path}");
            assert!(!r.body.starts_with(b"RIFF"));
        }
    }
}

/// The calls list: per row, "Recorded" and "Message" in words (not colour alone), "None" for
/// neither.
async fn the_calls_list_marks_recordings_and_messages(owner: &mut Browser, t: &Both) {
    let list = owner.get("/portal/calls").await;
    assert_eq!(list.status(), 200);
    let row = |sid: &str| {
        let at = list
            .body
            .find(&format!("/portal/calls/{sid}\""))
            .expect("row");
        let end = at + list.body[at..].find("</tr>").expect("row end");
        list.body[at..end].to_owned()
    };
    let both = row(&t.call);
    assert!(
        both.contains(">Recorded</span>") && both.contains(">Message</span>"),
        "{both}"
    );
    let only = row(&t.other);
    assert!(
        only.contains(">Recorded</span>") && !only.contains(">Message</span>"),
        "{only}"
    );
    let none = row(&t.unrecorded);
    assert!(
        !none.contains(">Recorded</span>") && none.contains(">None</span>"),
        "{none}"
    );
}
