//! Recordings against a real S3-compatible server (moto): uploaded and read back byte for
//! byte; with the server down the call path is unaffected, the recording waits in the spool and
//! is uploaded, unchanged, once the server is back.

use std::time::{Duration, Instant};

use media_svc::recording::{RecordingState, S3Config, StoreConfig};
use object_store::ObjectStoreExt as _;
use secrecy::SecretString;

use super::moto::{self, Moto};
use super::recordings::{Rig, check_wav, cid, feed, read_all, wait_for_state};

const BUCKET: &str = "recordings-test";

fn s3(endpoint: String) -> StoreConfig {
    StoreConfig::S3(S3Config {
        bucket: BUCKET.into(),
        endpoint: Some(endpoint),
        region: "us-east-1".into(),
        access_key_id: Some("testing".into()),
        secret_access_key: Some(SecretString::from("testing")),
    })
}

async fn object(store: &StoreConfig, customer: i64, id: uuid::Uuid) -> Vec<u8> {
    let s = media_svc::recording::store::build(store).unwrap();
    let path = media_svc::recording::store::object_path(cid(customer), id);
    s.get(&path).await.unwrap().bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn a_recording_is_uploaded_to_s3_and_read_back_from_it() {
    if !moto::available() {
        return;
    }
    let moto = Moto::start(moto::free_port(), BUCKET).await;
    let store = s3(moto.endpoint());
    let rig = Rig::new(|c| c.store = store.clone()).await;
    let sid = rig.call(1, 1).await;
    let mut w = rig.writer(1, &sid).await;
    let want = feed(&mut w);
    let id = w.finish().await.unwrap();
    let spooled = std::fs::read(rig.dir.path().join(format!("spool/1-{id}.rec"))).unwrap();
    rig.upload();
    wait_for_state(&rig.rec, 1, id, RecordingState::Stored).await;
    assert!(rig.spool_files().is_empty());
    assert_eq!(
        object(&store, 1, id.0).await,
        spooled,
        "the object is the sealed file"
    );
    check_wav(&read_all(&rig.rec, 1, id).await, &want);
    // Deleting removes the object from the bucket.
    assert!(rig.rec.delete(cid(1), id).await.unwrap());
    let s = media_svc::recording::store::build(&store).unwrap();
    let path = media_svc::recording::store::object_path(cid(1), id.0);
    assert!(matches!(
        s.head(&path).await,
        Err(object_store::Error::NotFound { .. })
    ));
    moto.stop().await;
}

#[tokio::test]
async fn with_the_store_down_the_recording_waits_in_the_spool_and_is_uploaded_when_it_is_back() {
    if !moto::available() {
        return;
    }
    let port = moto::free_port();
    let store = s3(format!("http://127.0.0.1:{port}"));
    let rig = Rig::new(|c| c.store = store.clone()).await;
    rig.upload();
    let sid = rig.call(1, 1).await;

    // The call path: starting, feeding and finishing never wait for the store.
    let began = Instant::now();
    let mut w = rig.writer(1, &sid).await;
    let want = feed(&mut w);
    let id = w.finish().await.unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );
    let spooled = std::fs::read(rig.dir.path().join(format!("spool/1-{id}.rec"))).unwrap();

    // The store stays down for a while: the recording waits, whole, readable from the spool.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let row = rig.rec.row(cid(1), id).await.unwrap().unwrap();
    assert_eq!(row.state, RecordingState::Spooled);
    assert_eq!(rig.spool_files(), [format!("1-{id}.rec")]);
    check_wav(&read_all(&rig.rec, 1, id).await, &want);

    // The store is back: uploaded, the same bytes, the spool emptied.
    let moto = Moto::start(port, BUCKET).await;
    wait_for_state(&rig.rec, 1, id, RecordingState::Stored).await;
    assert_eq!(object(&store, 1, id.0).await, spooled);
    assert!(rig.spool_files().is_empty());
    check_wav(&read_all(&rig.rec, 1, id).await, &want);
    moto.stop().await;
}
