//! Recordings in a caller's export and erasure and in a tenant's erasure (issue 20),
//! against the served media-svc: the export carries each recording's metadata and its exact
//! WAV; `EraseCaller` deletes the caller's recordings (rows, spool files, objects) and nobody
//! else's; `EraseTenant` deletes the tenant's recordings and destroys its recording keys, and
//! tenant B's recordings stay readable.

use std::path::Path;

use futures::TryStreamExt as _;
use media_svc::recording::{RecordingConfig, RecordingId, RecordingKind, Recordings};
use mesh::api::media::media_admin_service_client::MediaAdminServiceClient;
use mesh::api::media::{
    EraseCallerRequest, EraseTenantRequest, ExportCallerRequest, export_caller_response,
};
use mesh::auth::{AttachToken, TokenSource};
use mesh::domain::{CallSid, CustomerId};
use mesh::identity::{names, scope};

use crate::common::{Svc, register, sid};

const X: &str = "+15551111111";
const Y: &str = "+15552222222";

/// media-svc recording into `dir`, and a handle on the same database, keys and folder (what a
/// call driver would hold).
async fn start(dir: &Path) -> (Svc, Recordings) {
    let config = RecordingConfig::local(dir);
    let served = config.clone();
    let svc = Svc::start_with(
        move |mut c| {
            c.recording = served;
            c
        },
        false,
    )
    .await;
    let rec = Recordings::new(svc.db.db_for_role("media_svc").await, &config).unwrap();
    (svc, rec)
}

/// A call of `customer` from `from` with a one-second recording; its id.
async fn recorded_call(
    svc: &Svc,
    rec: &Recordings,
    customer: i64,
    n: u32,
    from: &str,
) -> RecordingId {
    let call = sid("CA", n);
    svc.client(customer)
        .await
        .register_call(register(&call, from))
        .await
        .unwrap();
    let mut w = rec
        .start(
            CustomerId::new(customer).unwrap(),
            &CallSid::parse(&call).unwrap(),
            RecordingKind::Call,
        )
        .await
        .unwrap()
        .expect("recording is on");
    for ms in (0..1000u32).step_by(20) {
        w.caller(ms, &[0x10; 160]);
    }
    w.finish().await.unwrap()
}

/// Files under `dir` whose name holds `id` (spool or store).
fn files_of(dir: &Path, id: RecordingId) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains(&id.to_string()) {
                n += 1;
            }
        }
    }
    n
}

async fn wav(rec: &Recordings, customer: i64, id: RecordingId) -> Vec<u8> {
    let src = rec
        .wav(CustomerId::new(customer).unwrap(), id)
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = src.read(0..src.len()).try_collect().await.unwrap();
    chunks.concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_carries_the_wav_and_erase_caller_deletes_only_that_callers_recordings() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, rec) = start(dir.path()).await;
    let x1 = recorded_call(&svc, &rec, 1, 1, X).await;
    let y1 = recorded_call(&svc, &rec, 1, 2, Y).await;
    let b_x = recorded_call(&svc, &rec, 2, 3, X).await;
    let want = wav(&rec, 1, x1).await;
    assert!(want.len() > 44);

    // The export: X's call, then the recording's metadata, then exactly its WAV.
    let records: Vec<_> = svc
        .client(1)
        .await
        .export_caller(ExportCallerRequest { caller: X.into() })
        .await
        .unwrap()
        .into_inner()
        .try_collect()
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut heads = Vec::new();
    for r in records {
        match r.record.unwrap() {
            export_caller_response::Record::Recording(h) => heads.push(h),
            export_caller_response::Record::RecordingData(d) => {
                assert_eq!(d.offset, got.len() as u64);
                assert_eq!(d.recording_id, x1.to_string());
                got.extend_from_slice(&d.data);
            }
            _ => {}
        }
    }
    assert_eq!(heads.len(), 1, "X's one recording, not Y's nor tenant 2's");
    assert_eq!(heads[0].recording_id, x1.to_string());
    assert_eq!(heads[0].wav_bytes, want.len() as u64);
    assert_eq!(heads[0].duration_ms, 1000);
    assert_eq!(got, want, "the exact WAV");

    // The erasure: X's recording goes (row and files); Y's and tenant 2's X's stay.
    let r = svc
        .client(1)
        .await
        .erase_caller(EraseCallerRequest { caller: X.into() })
        .await;
    // memory-svc is not running here: media-svc's part is done, memory's reported missing.
    if let Err(e) = &r {
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");
    }
    let rows = |c: i64, id: RecordingId| {
        format!("SELECT count(*) FROM media.recordings WHERE customer_id = {c} AND id = '{id}'")
    };
    assert_eq!(svc.count(&rows(1, x1)).await, 0);
    assert_eq!(files_of(dir.path(), x1), 0, "spool file and object gone");
    assert_eq!(svc.count(&rows(1, y1)).await, 1);
    assert_eq!(svc.count(&rows(2, b_x)).await, 1, "another tenant's X");
    assert_eq!(wav(&rec, 2, b_x).await.len(), want.len(), "still readable");
    assert!(files_of(dir.path(), y1) > 0);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_tenant_deletes_its_recordings_and_keys_and_leaves_tenant_b_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, rec) = start(dir.path()).await;
    let a1 = recorded_call(&svc, &rec, 1, 1, X).await;
    let a2 = recorded_call(&svc, &rec, 1, 2, Y).await;
    let b1 = recorded_call(&svc, &rec, 2, 3, X).await;
    let token = svc.service_token(
        names::TENANT_SVC,
        names::MEDIA_SVC,
        &[scope::MEDIA_ERASE_TENANT],
    );
    let out = MediaAdminServiceClient::with_interceptor(
        svc.channel_to(svc.addr).await,
        AttachToken(TokenSource::fixed(token.into())),
    )
    .erase_tenant(EraseTenantRequest { customer_id: 1 })
    .await
    .unwrap()
    .into_inner();
    let rows = |t: &str| {
        out.counts
            .iter()
            .find(|c| c.table == t)
            .map(|c| c.rows)
            .unwrap_or(-1)
    };
    assert_eq!(rows("media.recordings"), 2);
    assert!(rows("media.recording_keys") >= 1, "{:?}", out.counts);
    for (table, c) in [("media.recordings", 1), ("media.recording_keys", 1)] {
        assert_eq!(
            svc.count(&format!(
                "SELECT count(*) FROM {table} WHERE customer_id = {c}"
            ))
            .await,
            0,
            "{table}"
        );
    }
    assert_eq!(files_of(dir.path(), a1) + files_of(dir.path(), a2), 0);
    // Tenant B: its recording, its key, its files, readable.
    for table in ["media.recordings", "media.recording_keys"] {
        assert_eq!(
            svc.count(&format!(
                "SELECT count(*) FROM {table} WHERE customer_id = 2"
            ))
            .await,
            1,
            "{table}"
        );
    }
    assert!(files_of(dir.path(), b1) > 0);
    assert!(wav(&rec, 2, b1).await.len() > 44);
    svc.stop().await;
}
