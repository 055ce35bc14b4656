//! Spoken prompts rendered when they change (issue 20): right after tenant-svc commits a change to
//! a tenant's announcement, consent question, message prompt or agent voice, media-svc has the
//! renderings in its object store (here the local folder), before any call asks for them; and
//! `MediaAdminService.PreparePrompts` opens to tenant-svc's token with its one scope only.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::{Mesh, TenantAdmin, create_tenant, with_token};
use media_svc::prompts;
use media_svc::recording::StoreConfig;
use mesh::api::media::PreparePromptsRequest;
use mesh::api::media::media_admin_service_client::MediaAdminServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::*;
use mesh::identity::{names, scope};
use tonic::Code;
use tonic::transport::Channel;

/// How long a change may take to reach the store (rendering runs espeak-ng on a loaded machine).
const WITHIN: Duration = Duration::from_secs(15);

/// Whether the test can run: espeak-ng is required under CI.
fn espeak() -> bool {
    let there = std::process::Command::new("espeak-ng")
        .arg("--version")
        .output()
        .is_ok();
    assert!(
        there || std::env::var("CI").as_deref() != Ok("true"),
        "espeak-ng is missing"
    );
    there
}

fn store_root(mesh: &Mesh) -> PathBuf {
    match &mesh.recording.store {
        StoreConfig::Local(root) => root.clone(),
        StoreConfig::S3(_) => panic!("the test mesh keeps recordings in a local folder"),
    }
}

/// Where the rendering of `text` in the realtime voice `voice` is kept.
fn rendering(root: &Path, text: &str, voice: &str) -> PathBuf {
    let key = prompts::key(prompts::espeak_voice(voice), text.trim());
    root.join(prompts::object_path(&key))
}

/// Waits up to [`WITHIN`] for each of `files` and checks it holds speech; returns how long it
/// took.
async fn stored(files: &[PathBuf]) -> Duration {
    let start = Instant::now();
    for file in files {
        loop {
            if let Ok(audio) = std::fs::read(file)
                && !audio.is_empty()
            {
                assert!(media_svc::audio::energy(&audio) > 100, "audible speech");
                assert_ne!(audio, media_svc::audio::tone_pattern(), "never the tone");
                break;
            }
            assert!(
                start.elapsed() < WITHIN,
                "{} not stored within {WITHIN:?}",
                file.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    start.elapsed()
}

/// The files under `prompts/` in the store.
fn kept(root: &Path) -> usize {
    std::fs::read_dir(root.join("prompts")).map_or(0, |d| d.count())
}

async fn tenant(mesh: &Mesh, n: u32) -> i64 {
    let token = mesh.service_token(names::OPERATOR, names::TENANT_SVC, &[scope::TENANT_ADMIN]);
    let mut admin = TenantAdmin::new(mesh.channel(mesh.tenant).await);
    create_tenant(
        &mut admin,
        &token,
        &format!("owner{n}@prompts{n}.example"),
        &format!("Prompt Shop {n}"),
        AgentConfig::default(),
        &format!("+1415555{:04}", 200 + n),
    )
    .await
}

struct Owner {
    client: TenantServiceClient<Channel>,
    token: String,
}

impl Owner {
    async fn new(mesh: &Mesh, customer: i64) -> Owner {
        Owner {
            client: TenantServiceClient::new(mesh.channel(mesh.tenant).await),
            token: mesh.tenant_token(customer, &[scope::TENANT_READ, scope::TENANT_WRITE]),
        }
    }

    /// Updates the call handling with `edit` applied; returns how long the answer took.
    async fn call_handling(&mut self, edit: impl FnOnce(&mut CallHandling)) -> Duration {
        let mut settings = (self.client)
            .get_call_handling(with_token(GetCallHandlingRequest {}, &self.token))
            .await
            .unwrap()
            .into_inner()
            .settings
            .unwrap();
        edit(&mut settings);
        let start = Instant::now();
        (self.client)
            .update_call_handling(with_token(
                UpdateCallHandlingRequest {
                    settings: Some(settings),
                },
                &self.token,
            ))
            .await
            .expect("the change commits");
        start.elapsed()
    }

    async fn voice(&mut self, voice: &str) -> Duration {
        let start = Instant::now();
        let changed = (self.client)
            .update_agent_config(with_token(
                UpdateAgentConfigRequest {
                    config: Some(AgentConfig {
                        voice: Some(voice.into()),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["voice".into()],
                    }),
                },
                &self.token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(changed.changes_recorded, 1);
        start.elapsed()
    }

    /// Reverts the latest change of the voice.
    async fn revert_voice(&mut self) -> Duration {
        let history = (self.client)
            .list_config_history(with_token(
                ListConfigHistoryRequest {
                    page_size: 50,
                    ..Default::default()
                },
                &self.token,
            ))
            .await
            .unwrap()
            .into_inner();
        let change = (history.changes.iter())
            .find(|c| c.config_key == "voice")
            .expect("the voice change is in the history");
        let start = Instant::now();
        (self.client)
            .revert_config_change(with_token(
                RevertConfigChangeRequest {
                    change_id: change.id,
                },
                &self.token,
            ))
            .await
            .unwrap();
        start.elapsed()
    }
}

#[tokio::test]
async fn prompts_are_in_the_store_right_after_the_text_or_the_voice_changes() {
    if !espeak() {
        return;
    }
    let mesh = Mesh::start().await;
    let root = store_root(&mesh);
    let customer = tenant(&mesh, 1).await;
    let mut owner = Owner::new(&mesh, customer).await;
    let default_message = mesh::call_handling::defaults().message_prompt;
    assert_eq!(kept(&root), 0, "nothing is rendered before a change");

    // The announcement changes (recording ON): it and the message prompt, in the platform's
    // default voice (alloy: the tenant has none of its own).
    let announcement = "Calls to Prompt Shop are recorded to train our staff.";
    let answered = owner
        .call_handling(|s| {
            s.recording_policy = RecordingPolicy::On as i32;
            s.recording_announcement = announcement.into();
        })
        .await;
    let took = stored(&[
        rendering(&root, announcement, "alloy"),
        rendering(&root, &default_message, "alloy"),
    ])
    .await;
    println!("announcement: answered in {answered:?}, stored {took:?} later");

    // The voice changes: the same texts in the new voice (echo is a male espeak-ng variant).
    let answered = owner.voice("echo").await;
    let took = stored(&[
        rendering(&root, announcement, "echo"),
        rendering(&root, &default_message, "echo"),
    ])
    .await;
    println!("voice: answered in {answered:?}, stored {took:?} later");

    // Consent and a message prompt of its own: the announcement followed by the question, as a
    // call says it.
    let (question, message) = ("Press 1 to allow it.", "Leave us a message, please.");
    owner
        .call_handling(|s| {
            s.recording_policy = RecordingPolicy::OnWithConsent as i32;
            s.consent_prompt = question.into();
            s.message_prompt = message.into();
        })
        .await;
    let spoken = format!("{announcement} {question}");
    stored(&[
        rendering(&root, &spoken, "echo"),
        rendering(&root, message, "echo"),
    ])
    .await;

    // Reverting the voice change renders them in the default voice again (never rendered
    // before in that voice).
    let alloy = [
        rendering(&root, &spoken, "alloy"),
        rendering(&root, message, "alloy"),
    ];
    assert!(alloy.iter().all(|f| !f.exists()));
    owner.revert_voice().await;
    stored(&alloy).await;
    // Two announcements and two message prompts in each of two voices, no more: nothing was
    // rendered for a call, and OFF-policy texts are not rendered.
    assert_eq!(kept(&root), 8);
}

/// Tokens `PreparePrompts` refuses.
fn refused_tokens(mesh: &Mesh, customer: i64) -> [String; 5] {
    [
        // The tenant's own token, with every scope a tenant token may carry.
        mesh.tenant_token(customer, scope::TENANT_SCOPES),
        // Another service holding the scope.
        mesh.service_token(
            names::GATEWAY,
            names::MEDIA_SVC,
            &[scope::MEDIA_PREPARE_PROMPTS],
        ),
        mesh.service_token(
            names::MEMORY_SVC,
            names::MEDIA_SVC,
            &[scope::MEDIA_PREPARE_PROMPTS],
        ),
        // tenant-svc with another of its scopes.
        mesh.service_token(
            names::TENANT_SVC,
            names::MEDIA_SVC,
            &[scope::MEDIA_ERASE_TENANT],
        ),
        // The operator without `media:admin`.
        mesh.service_token(
            names::OPERATOR,
            names::MEDIA_SVC,
            &[scope::MEDIA_PREPARE_PROMPTS],
        ),
    ]
}

#[tokio::test]
async fn prepare_prompts_opens_to_tenant_svc_only_and_a_refusal_stores_nothing() {
    if !espeak() {
        return;
    }
    let mesh = Mesh::start().await;
    let root = store_root(&mesh);
    let customer = tenant(&mesh, 2).await;
    let mut media = MediaAdminServiceClient::new(mesh.channel(mesh.media).await);
    let prepare = |id: i64| PreparePromptsRequest { customer_id: id };

    let refused = refused_tokens(&mesh, customer);
    for token in &refused {
        let status = media
            .prepare_prompts(with_token(prepare(customer), token))
            .await
            .expect_err("refused");
        assert!(
            matches!(
                status.code(),
                Code::PermissionDenied | Code::Unauthenticated
            ),
            "{status:?}"
        );
    }
    let tenant_svc = mesh.service_token(
        names::TENANT_SVC,
        names::MEDIA_SVC,
        &[scope::MEDIA_PREPARE_PROMPTS],
    );
    for bad in [0, -4] {
        let status = media
            .prepare_prompts(with_token(prepare(bad), &tenant_svc))
            .await
            .expect_err("bad id");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("customer_id"), "{status:?}");
    }
    // Tenant-svc refuses to speak for a tenant that does not exist: nothing rendered.
    let status = media
        .prepare_prompts(with_token(prepare(customer + 1000), &tenant_svc))
        .await
        .expect_err("no such tenant");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(kept(&root), 0, "a refusal stores nothing");

    // tenant-svc's token with the scope: the message prompt (recording is OFF by default).
    let done = media
        .prepare_prompts(with_token(prepare(customer), &tenant_svc))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (done.rendered, done.already_stored, done.unspoken),
        (1, 0, 0)
    );
    let message = mesh::call_handling::defaults().message_prompt;
    stored(&[rendering(&root, &message, "alloy")]).await;
    // Again: already there, not rendered twice.
    let again = media
        .prepare_prompts(with_token(prepare(customer), &tenant_svc))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.rendered, again.already_stored), (0, 1));
    assert_eq!(kept(&root), 1);
}

#[tokio::test]
async fn a_new_default_voice_renders_the_prompts_of_tenants_without_a_voice_of_their_own() {
    if !espeak() {
        return;
    }
    let mesh = Mesh::start().await;
    let root = store_root(&mesh);
    // Tenant 3 speaks in the platform's default voice, tenant 4 in its own (sage).
    let (plain, own) = (tenant(&mesh, 3).await, tenant(&mesh, 4).await);
    let (mut plain, mut own) = (Owner::new(&mesh, plain).await, Owner::new(&mesh, own).await);
    own.voice("sage").await;
    let (plain_text, own_text) = ("Plain shop, leave a message.", "Own shop, leave a message.");
    plain
        .call_handling(|s| s.message_prompt = plain_text.into())
        .await;
    own.call_handling(|s| s.message_prompt = own_text.into())
        .await;
    stored(&[
        rendering(&root, plain_text, "alloy"),
        rendering(&root, own_text, "sage"),
    ])
    .await;

    let operator = mesh.service_token(names::OPERATOR, names::TENANT_SVC, &[scope::TENANT_ADMIN]);
    TenantAdmin::new(mesh.channel(mesh.tenant).await)
        .update_platform_defaults(with_token(
            UpdatePlatformDefaultsRequest {
                defaults: Some(PlatformDefaults {
                    voice: "ash".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["voice".into()],
                }),
            },
            &operator,
        ))
        .await
        .unwrap();
    // ash is a male espeak-ng variant, sage and alloy female ones.
    stored(&[rendering(&root, plain_text, "ash")]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !rendering(&root, own_text, "ash").exists(),
        "a tenant with its own voice keeps it"
    );
}
