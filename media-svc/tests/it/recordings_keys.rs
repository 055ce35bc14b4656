//! Recordings at rest: tampering with the stored bytes is detected (a flipped byte, swapped or
//! dropped segments), the wrong tenant key opens nothing, a platform key rotation rewraps the
//! tenant keys and old recordings stay readable, and a recording cut by a crash is sealed at the
//! next start.

use std::time::Duration;

use futures::TryStreamExt as _;
use media_svc::error::MediaError;
use media_svc::recording::{
    PlatformKeys, RecordingConfig, RecordingId, RecordingState, Recordings,
};

use super::recordings::{Rig, check_wav, cid, feed, read_all, wait_for_state};

const SEG: usize = 2 * 8000 + 16;
const HEADER: usize = 32;

async fn read(
    rec: &Recordings,
    id: RecordingId,
    range: std::ops::Range<u64>,
) -> Result<Vec<u8>, MediaError> {
    let wav = rec.wav(cid(1), id).await?;
    let parts: Vec<bytes::Bytes> = wav.read(range).try_collect().await?;
    Ok(parts.concat())
}

fn seg(i: usize) -> std::ops::Range<usize> {
    HEADER + i * SEG..HEADER + (i + 1) * SEG
}

#[tokio::test]
async fn a_flipped_byte_a_swapped_or_dropped_segment_or_the_wrong_tenant_key_never_reads() {
    let rig = Rig::new(|_| {}).await;
    let sid = rig.call(1, 1).await;
    let mut w = rig.writer(1, &sid).await;
    let want = feed(&mut w);
    let id = w.finish().await.unwrap();
    let path = rig.dir.path().join(format!("spool/1-{id}.rec"));
    let original = std::fs::read(&path).unwrap();
    assert_eq!(
        original.len(),
        HEADER + 3 * SEG + 16,
        "three full one-second segments and an empty last one"
    );
    let good = read_all(&rig.rec, 1, id).await;
    let first_second = 44..44 + 4 * 8000u64;
    let all = 0..u64::MAX;

    // A flipped byte in segment 1: segment 0 still reads (only what a range covers is
    // decrypted), anything covering segment 1 fails.
    let mut t = original.clone();
    t[seg(1).start + 100] ^= 0x01;
    std::fs::write(&path, &t).unwrap();
    assert_eq!(
        read(&rig.rec, id, first_second.clone()).await.unwrap(),
        good[44..44 + 32_000]
    );
    assert!(read(&rig.rec, id, all.clone()).await.is_err());

    // Segments 0 and 1 swapped.
    let mut t = original.clone();
    t[seg(0)].copy_from_slice(&original[seg(1)]);
    t[seg(1)].copy_from_slice(&original[seg(0)]);
    std::fs::write(&path, &t).unwrap();
    assert!(read(&rig.rec, id, first_second.clone()).await.is_err());

    // Cut off at a segment boundary (the last two seconds gone), the row made to match: what
    // now ends the file was not sealed as the last segment.
    let admin = rig.db.admin_client().await;
    let set_row = async |frames: i64, bytes: usize| {
        admin
            .execute(
                "UPDATE media.recordings SET frames = $1, object_bytes = $2",
                &[&frames, &(bytes as i64)],
            )
            .await
            .unwrap();
    };
    std::fs::write(&path, &original[..seg(1).end]).unwrap();
    set_row(8000, seg(1).start + 16).await;
    assert!(read(&rig.rec, id, all.clone()).await.is_err());

    // The middle segment dropped, the row made to match: segment 2 is not at index 1.
    let mut t = original[..seg(1).start].to_vec();
    t.extend_from_slice(&original[seg(2).start..]);
    std::fs::write(&path, &t).unwrap();
    set_row(16000, t.len()).await;
    assert!(read(&rig.rec, id, all.clone()).await.is_err());

    // Put back: reads again.
    std::fs::write(&path, &original).unwrap();
    set_row(24000, original.len()).await;
    check_wav(&read_all(&rig.rec, 1, id).await, &want);

    // The tenant's keys destroyed (a tenant erasure): unreadable. A new tenant key (the next
    // recording makes one) does not open the old recording either.
    assert_eq!(rig.rec.destroy_tenant_keys(cid(1)).await.unwrap(), 1);
    assert!(matches!(
        rig.rec.wav(cid(1), id).await,
        Err(MediaError::FailedPrecondition(_))
    ));
    let sid2 = rig.call(1, 2).await;
    let w2 = rig.writer(1, &sid2).await;
    w2.finish().await.unwrap();
    assert!(matches!(
        rig.rec.wav(cid(1), id).await,
        Err(MediaError::Internal(_))
    ));
}

/// Only the keys of `versions` from `keys`.
fn only(keys: &PlatformKeys, versions: &[u32]) -> PlatformKeys {
    let text = keys.to_setting();
    let kept: Vec<&str> = text
        .split(',')
        .filter(|e| versions.iter().any(|v| e.starts_with(&format!("{v}:"))))
        .collect();
    PlatformKeys::parse(&kept.join(",")).unwrap()
}

#[tokio::test]
async fn a_platform_key_rotation_rewraps_tenant_keys_and_old_recordings_stay_readable() {
    let rig = Rig::new(|_| {}).await;
    let sid = rig.call(1, 1).await;
    let mut w = rig.writer(1, &sid).await;
    let want = feed(&mut w);
    let id = w.finish().await.unwrap();
    let v1 = rig.config.keys.clone().unwrap();
    let both = v1.with_new_version();
    let with = |keys: PlatformKeys| {
        let mut c: RecordingConfig = rig.config.clone();
        c.keys = Some(keys);
        c
    };
    let db = rig.db.db_for_role("media_svc").await;
    let rotated = Recordings::new(db.clone(), &with(both.clone())).unwrap();
    assert_eq!(rotated.rewrap_tenant_keys().await.unwrap(), 1);
    assert_eq!(
        rotated.rewrap_tenant_keys().await.unwrap(),
        0,
        "nothing left"
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM media.recording_keys WHERE platform_version = 2")
            .await,
        1
    );
    // Version 1 can go: the recording reads with version 2 alone, no longer with 1 alone.
    let v2_only = Recordings::new(db.clone(), &with(only(&both, &[2]))).unwrap();
    check_wav(&read_all(&v2_only, 1, id).await, &want);
    let v1_only = Recordings::new(db, &with(only(&both, &[1]))).unwrap();
    assert!(matches!(
        v1_only.wav(cid(1), id).await,
        Err(MediaError::Internal(_))
    ));
}

#[tokio::test]
async fn a_recording_cut_by_a_crash_is_sealed_truncated_and_uploaded_at_the_next_start() {
    let rig = Rig::new(|_| {}).await;
    let sid = rig.call(1, 1).await;
    let mut w = rig.writer(1, &sid).await;
    for ms in (0..10_000u32).step_by(20) {
        w.caller(ms, &[0x33; 160]);
        if ms % 1000 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The process dies: the writer never finishes, the file stays `.part`.
    std::mem::forget(w);
    let id = rig.rec.for_call(cid(1), &sid).await.unwrap()[0].id;
    assert_eq!(rig.spool_files(), [format!("1-{id}.part")]);
    tokio::time::sleep(Duration::from_millis(20)).await;

    // The next run (same keys and folders) seals what was written and uploads it.
    let next = Recordings::new(rig.db.db_for_role("media_svc").await, &rig.config).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(media_svc::recording::upload::run(next.clone(), stopped));
    let row = wait_for_state(&next, 1, RecordingId(id), RecordingState::Stored).await;
    assert!(row.truncated);
    assert_eq!(
        row.frames,
        5 * 8000,
        "the whole segments written before the crash"
    );
    let wav = read_all(&next, 1, RecordingId(id)).await;
    assert_eq!(wav.len(), 44 + 5 * 8000 * 4);
    let caller = mesh::g711::ulaw_to_linear(0x33);
    assert!(
        wav[44..]
            .chunks(4)
            .all(|f| i16::from_le_bytes([f[0], f[1]]) == caller)
    );
    let _ = stop.send(true);
}
