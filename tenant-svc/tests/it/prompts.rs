//! tenant-svc asks media-svc to render a tenant's prompts after a change commits
//! (`PreparePrompts`, in the background): with media-svc down (refusing connections) or hung
//! (accepting them and never answering), a change of the texts or the voice still commits and
//! answers at once. The prompts reaching the store is tested across the whole mesh
//! (`tests/tests/it/prompts.rs`).

use std::time::{Duration, Instant};

use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::*;
use mesh::identity::{DevKeys, scope};
use mesh::testkit::TestDb;
use tokio::net::TcpListener;

use crate::common::{self, RW, auth};

/// The most a change may take to answer while media-svc is unreachable (it never waits on it).
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

async fn changes_commit_at_once(db: &TestDb, keys: &DevKeys, media: std::net::SocketAddr) {
    let peers = common::Peers {
        memory: common::dead_addr().await,
        media,
    };
    let replica = common::serve_with_peers(db, keys, None, false, &peers).await;
    let admin_token = common::operator_token(keys, &[scope::TENANT_ADMIN]);
    let customer = TenantAdminServiceClient::new(replica.channel.clone())
        .create_customer(auth(
            CreateCustomerRequest {
                email: format!("owner@{}.example", media.port()),
                business_name: "Prompt Shop".into(),
                ..Default::default()
            },
            &admin_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap()
        .id;
    let token = common::tenant_token(keys, customer, RW);
    let mut client = TenantServiceClient::new(replica.channel.clone());
    let mut settings = mesh::call_handling::defaults();
    settings.recording_policy = RecordingPolicy::On as i32;
    settings.recording_announcement = "Calls to Prompt Shop are recorded.".into();

    let start = Instant::now();
    let updated = client
        .update_call_handling(auth(
            UpdateCallHandlingRequest {
                settings: Some(settings.clone()),
            },
            &token,
        ))
        .await
        .expect("the change commits with media-svc unreachable")
        .into_inner();
    let took = start.elapsed();
    assert!(took < ANSWER_WITHIN, "the answer waited {took:?}");
    assert!(updated.changes_recorded > 0);
    let stored = client
        .get_call_handling(auth(GetCallHandlingRequest {}, &token))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert_eq!(
        stored.recording_announcement,
        settings.recording_announcement
    );

    voice_change_commits_at_once(&mut client, &token).await;
}

/// A voice change answers within [`ANSWER_WITHIN`] and is stored.
async fn voice_change_commits_at_once(
    client: &mut TenantServiceClient<tonic::transport::Channel>,
    token: &str,
) {
    let start = Instant::now();
    let changed = client
        .update_agent_config(auth(
            UpdateAgentConfigRequest {
                config: Some(AgentConfig {
                    voice: Some("echo".into()),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["voice".into()],
                }),
            },
            token,
        ))
        .await
        .expect("the voice change commits with media-svc unreachable")
        .into_inner();
    let took = start.elapsed();
    assert!(took < ANSWER_WITHIN, "the answer waited {took:?}");
    assert_eq!(changed.changes_recorded, 1);
    let customer = client
        .get_my_customer(auth(GetMyCustomerRequest {}, token))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(
        customer.agent_config.unwrap().voice.as_deref(),
        Some("echo")
    );
}

#[tokio::test]
async fn with_media_svc_down_a_change_of_prompts_or_voice_still_commits_at_once() {
    let db = TestDb::new().await;
    let keys = DevKeys::generate();
    changes_commit_at_once(&db, &keys, common::dead_addr().await).await;
}

#[tokio::test]
async fn with_media_svc_hung_a_change_of_prompts_or_voice_still_commits_at_once() {
    let db = TestDb::new().await;
    let keys = DevKeys::generate();
    // Connections are accepted by the kernel and never answered.
    let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
    changes_commit_at_once(&db, &keys, hung.local_addr().unwrap()).await;
    drop(hung);
}
