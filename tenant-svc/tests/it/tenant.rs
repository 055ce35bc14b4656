//! tenant-svc over real gRPC against a real PostgreSQL: the issue's acceptance list.

use std::time::Duration;

use mesh::api::tenant::edge_service_client::EdgeServiceClient;
use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::*;
use mesh::identity::{DevKeys, names, scope};
use mesh::testkit::TestDb;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{self, Replica, auth};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const PETERSON_NUMBER: &str = "+14155550101";
const SMITH_NUMBER: &str = "+14155550102";

struct Svc {
    db: TestDb,
    keys: DevKeys,
    channel: Channel,
    peers: common::Peers,
    _replica: Replica,
}

impl Svc {
    async fn start() -> Svc {
        let db = TestDb::new().await;
        let keys = DevKeys::generate();
        let legacy = mesh::auth::LegacyVerifier::new(&secrecy::SecretString::from(
            "legacy-secret-for-tests-0123456789abcdef",
        ))
        .unwrap();
        let peers = common::Peers {
            memory: common::dead_addr().await,
            media: common::dead_addr().await,
        };
        let replica = common::serve_with_peers(&db, &keys, Some(legacy), false, &peers).await;
        Svc {
            db,
            keys,
            channel: replica.channel.clone(),
            peers,
            _replica: replica,
        }
    }

    /// memory-svc and media-svc at this replica's peer addresses, until the guard drops.
    async fn erasers(&self) -> tokio::sync::watch::Sender<bool> {
        common::serve_peers(&self.db, &self.keys, &self.peers, true, true).await
    }

    fn operator(&self, scopes: &[&str]) -> String {
        common::operator_token(&self.keys, scopes)
    }

    fn tenant(&self, customer: i64, scopes: &[&str]) -> String {
        common::tenant_token(&self.keys, customer, scopes)
    }

    /// UpdateAgentConfig as `token`'s tenant; panics when refused.
    async fn update_config(
        &self,
        token: &str,
        request: UpdateAgentConfigRequest,
    ) -> UpdateAgentConfigResponse {
        self.tenant_client()
            .update_agent_config(auth(request, token))
            .await
            .unwrap()
            .into_inner()
    }

    /// One page of `token`'s tenant's history.
    async fn history_page(
        &self,
        token: &str,
        page_size: i32,
        page_token: String,
    ) -> ListConfigHistoryResponse {
        let request = ListConfigHistoryRequest {
            page_size,
            page_token,
        };
        self.tenant_client()
            .list_config_history(auth(request, token))
            .await
            .unwrap()
            .into_inner()
    }

    fn admin(&self) -> TenantAdminServiceClient<Channel> {
        TenantAdminServiceClient::new(self.channel.clone())
    }

    fn tenant_client(&self) -> TenantServiceClient<Channel> {
        TenantServiceClient::new(self.channel.clone())
    }

    fn edge(&self) -> EdgeServiceClient<Channel> {
        EdgeServiceClient::new(self.channel.clone())
    }

    async fn count(&self, sql: &str) -> i64 {
        self.db
            .admin_client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    /// A count of one customer's rows with one text parameter.
    async fn count_with(&self, sql: &str, customer: i64, text: &str) -> i64 {
        self.db
            .admin_client()
            .await
            .query_one(sql, &[&customer, &text])
            .await
            .unwrap()
            .get(0)
    }

    async fn snapshot(&self) -> (i64, i64, i64) {
        (
            self.count("SELECT count(*) FROM tenant.customers").await,
            self.count("SELECT count(*) FROM tenant.phone_numbers")
                .await,
            self.count("SELECT count(*) FROM tenant.customer_configurations")
                .await,
        )
    }

    async fn rows_of(&self, customer: i64) -> String {
        let c = self.db.admin_client().await;
        let row = c
            .query_one(
                "SELECT (SELECT row_to_json(x)::text FROM tenant.customers x WHERE customer_id = $1), \
                 (SELECT count(*) FROM tenant.phone_numbers WHERE customer_id = $1), \
                 (SELECT count(*) FROM tenant.customer_configurations WHERE customer_id = $1)",
                &[&customer],
            )
            .await
            .unwrap();
        format!(
            "{:?}|{}|{}",
            row.get::<_, Option<String>>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        )
    }

    /// Creates Peterson (1) and Smith (2) with a number each.
    async fn seed(&self) -> (i64, i64) {
        let token = self.operator(&[scope::TENANT_ADMIN]);
        let mut admin = self.admin();
        let mut ids = Vec::new();
        for (email, name, greeting, voice, number) in [
            (
                "ops@peterson.example",
                "Peterson Family Insurance",
                "Thanks for calling Peterson, this is {agent_name}.",
                "sage",
                PETERSON_NUMBER,
            ),
            (
                "desk@smith.example",
                "Smith Insurance Agency",
                "Smith Insurance & Co, {time_greeting}!",
                "coral",
                SMITH_NUMBER,
            ),
        ] {
            let c = admin
                .create_customer(auth(
                    CreateCustomerRequest {
                        email: email.into(),
                        business_name: name.into(),
                        agent_config: Some(AgentConfig {
                            greeting_new_caller: Some(greeting.into()),
                            voice: Some(voice.into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner()
                .customer
                .unwrap();
            admin
                .assign_phone_number(auth(
                    AssignPhoneNumberRequest {
                        customer_id: c.id,
                        number: number.into(),
                        twilio_account_sid: String::new(),
                    },
                    &token,
                ))
                .await
                .unwrap();
            ids.push(c.id);
        }
        (ids[0], ids[1])
    }

    fn gateway(&self) -> String {
        common::gateway_token(&self.keys, &[scope::TENANT_RESOLVE, scope::TENANT_EXCHANGE])
    }
}

fn resolve(number: &str) -> ResolveNumberRequest {
    ResolveNumberRequest {
        called_number: number.into(),
        account_sid: ACCOUNT.into(),
        call_sid: "CA0123456789abcdef0123456789abcdef".into(),
    }
}

#[tokio::test]
async fn resolving_each_number_gives_its_own_tenant_greeting_and_voice() {
    let s = Svc::start().await;
    let (peterson, smith) = s.seed().await;
    let gw = s.gateway();
    for (number, id, greeting, voice) in [
        (PETERSON_NUMBER, peterson, "Peterson", "sage"),
        (SMITH_NUMBER, smith, "Smith Insurance & Co", "coral"),
    ] {
        let r = s
            .edge()
            .resolve_number(auth(resolve(number), &gw))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.customer_id, id);
        let p = r.profile.unwrap();
        assert!(p.greeting_new_caller.contains(greeting), "{p:?}");
        assert_eq!(p.voice, voice);
        assert_eq!(p.sliders.len(), 30);
        assert_eq!(p.agent_name, "AI Assistant", "platform default");
        // The token is bound to the call, for media-svc only, with `media:calls` only.
        let caller = s
            .keys
            .identity(names::MEDIA_SVC)
            .verifier(names::MEDIA_SVC)
            .verify(&r.tenant_token)
            .unwrap();
        assert_eq!(caller.customer_id().unwrap().get(), id);
        assert_eq!(
            caller.scopes().iter().collect::<Vec<_>>(),
            vec![scope::MEDIA_CALLS]
        );
        for audience in [names::MEMORY_SVC, names::TENANT_SVC] {
            let refused = s
                .keys
                .identity(audience)
                .verifier(audience)
                .verify(&r.tenant_token);
            assert!(refused.is_err(), "{audience} accepted the call token");
        }
        let exp = r.token_expire_time.unwrap().seconds - chrono::Utc::now().timestamp();
        assert!(exp <= 300 && exp > 240, "{exp}");
    }
    // Unknown number, wrong subaccount, suspended tenant.
    let err = s
        .edge()
        .resolve_number(auth(resolve("+14155550199"), &gw))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = s
        .edge()
        .resolve_number(auth(resolve("not-a-number"), &gw))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("called_number"), "{err:?}");
    let mut bad_call = resolve(PETERSON_NUMBER);
    bad_call.call_sid = "XX0123456789abcdef0123456789abcdef".into();
    let err = s
        .edge()
        .resolve_number(auth(bad_call, &gw))
        .await
        .unwrap_err();
    assert!(err.message().starts_with("call_sid"), "{err:?}");
    let op = s.operator(&[scope::TENANT_ADMIN]);
    s.admin()
        .set_customer_status(auth(
            SetCustomerStatusRequest {
                customer_id: smith,
                status: CustomerStatus::Suspended as i32,
            },
            &op,
        ))
        .await
        .unwrap();
    let err = s
        .edge()
        .resolve_number(auth(resolve(SMITH_NUMBER), &gw))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn a_number_pinned_to_a_subaccount_resolves_only_for_that_account() {
    let s = Svc::start().await;
    let (peterson, _) = s.seed().await;
    let op = s.operator(&[scope::TENANT_ADMIN]);
    s.admin()
        .assign_phone_number(auth(
            AssignPhoneNumberRequest {
                customer_id: peterson,
                number: "+14155550103".into(),
                twilio_account_sid: "ACffffffffffffffffffffffffffffffff".into(),
            },
            &op,
        ))
        .await
        .unwrap();
    let gw = s.gateway();
    let err = s
        .edge()
        .resolve_number(auth(resolve("+14155550103"), &gw))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let mut right = resolve("+14155550103");
    right.account_sid = "ACffffffffffffffffffffffffffffffff".into();
    assert_eq!(
        s.edge()
            .resolve_number(auth(right, &gw))
            .await
            .unwrap()
            .into_inner()
            .customer_id,
        peterson
    );
}

#[tokio::test]
async fn a_tenant_token_never_reaches_another_tenant() {
    let s = Svc::start().await;
    let (peterson, smith) = s.seed().await;
    let smith_before = s.rows_of(smith).await;
    let token = s.tenant(peterson, &[scope::TENANT_READ, scope::TENANT_WRITE]);
    let mut t = s.tenant_client();

    // Reads: only Peterson, even with a spoofed customer id in the metadata.
    let mut req = auth(GetMyCustomerRequest {}, &token);
    req.metadata_mut()
        .insert("x-customer-id", smith.to_string().parse().unwrap());
    req.metadata_mut()
        .insert("customer_id", smith.to_string().parse().unwrap());
    let me = t
        .get_my_customer(req)
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(me.id, peterson);
    assert_eq!(me.business_name, "Peterson Family Insurance");
    assert_eq!(me.phone_numbers.len(), 1);
    assert_eq!(me.phone_numbers[0].number, PETERSON_NUMBER);

    // Writes: act on Peterson only.
    let mut req = auth(
        UpdateAgentConfigRequest {
            config: Some(AgentConfig {
                agent_name: Some("Penny".into()),
                ..Default::default()
            }),
            update_mask: None,
        },
        &token,
    );
    req.metadata_mut()
        .insert("x-customer-id", smith.to_string().parse().unwrap());
    let updated = t.update_agent_config(req).await.unwrap().into_inner();
    assert_eq!(updated.customer.unwrap().id, peterson);

    // History and profile: Peterson's only.
    let history = t
        .list_config_history(auth(ListConfigHistoryRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert!(!history.changes.is_empty());
    let profile = t
        .get_effective_profile(auth(GetEffectiveProfileRequest::default(), &token))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(profile.customer_id, peterson);
    assert_eq!(profile.agent_name, "Penny");

    // A token for a customer that does not exist sees nothing.
    let ghost = s.tenant(999, &[scope::TENANT_READ]);
    let err = t
        .get_my_customer(auth(GetMyCustomerRequest {}, &ghost))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(s.rows_of(smith).await, smith_before, "Smith's rows changed");
}

#[tokio::test]
async fn admin_and_tenant_rpcs_refuse_the_other_kind_of_token() {
    let s = Svc::start().await;
    let (peterson, _) = s.seed().await;
    let before = s.snapshot().await;
    let tenant = s.tenant(peterson, &[scope::TENANT_READ, scope::TENANT_WRITE]);
    let err = s
        .admin()
        .list_customers(auth(ListCustomersRequest::default(), &tenant))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = s
        .admin()
        .create_customer(auth(
            CreateCustomerRequest {
                email: "x@y.example".into(),
                business_name: "X".into(),
                ..Default::default()
            },
            &tenant,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let op = s.operator(&[scope::TENANT_ADMIN]);
    let err = s
        .tenant_client()
        .get_my_customer(auth(GetMyCustomerRequest {}, &op))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // The gateway's resolve token cannot administer.
    let err = s
        .admin()
        .list_customers(auth(ListCustomersRequest::default(), &s.gateway()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(s.snapshot().await, before);
}

#[tokio::test]
async fn every_changed_field_appends_exactly_one_history_row() {
    let s = Svc::start().await;
    let (peterson, _) = s.seed().await;
    let token = s.tenant(peterson, &[scope::TENANT_READ, scope::TENANT_WRITE]);
    let history = || {
        s.count("SELECT count(*) FROM tenant.customer_configurations WHERE config_type IN ('agent','slider')")
    };
    let before = history().await;
    let mut sliders = std::collections::HashMap::new();
    sliders.insert("warmth".to_owned(), 80);
    sliders.insert("humor".to_owned(), 20);
    let update = UpdateAgentConfigRequest {
        config: Some(AgentConfig {
            agent_name: Some("Ava".into()),
            sliders,
            time_zone: Some("Europe/Lisbon".into()),
            ..Default::default()
        }),
        update_mask: None,
    };
    let r = s.update_config(&token, update.clone()).await;
    assert_eq!(r.changes_recorded, 4);
    assert_eq!(history().await, before + 4);
    // The same update again changes nothing and appends nothing.
    let r = s.update_config(&token, update).await;
    assert_eq!(r.changes_recorded, 0);
    assert_eq!(history().await, before + 4);
    // Resetting one slider through the mask: one row, with the subject as author.
    let reset = UpdateAgentConfigRequest {
        config: Some(AgentConfig::default()),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["sliders.humor".into()],
        }),
    };
    let r = s.update_config(&token, reset).await;
    assert_eq!(r.changes_recorded, 1);
    let page = s.history_page(&token, 1, String::new()).await;
    assert_eq!(page.changes.len(), 1);
    let newest = &page.changes[0];
    assert_eq!(newest.config_key, "sliders.humor");
    assert_eq!(newest.old_value_json, "20");
    assert_eq!(newest.new_value_json, "");
    assert_eq!(newest.changed_by, "test-user");
    assert!(!page.next_page_token.is_empty());
    let next = s.history_page(&token, 500, page.next_page_token).await;
    assert!(next.changes.iter().all(|c| c.id < newest.id));
    assert!(next.next_page_token.is_empty());
}

#[tokio::test]
async fn effective_profile_follows_platform_defaults_where_not_overridden() {
    let s = Svc::start().await;
    let (peterson, smith) = s.seed().await;
    let p_token = s.tenant(peterson, &[scope::TENANT_READ, scope::TENANT_WRITE]);
    let s_token = s.tenant(smith, &[scope::TENANT_READ]);
    // Peterson overrides the agent name; Smith does not.
    s.tenant_client()
        .update_agent_config(auth(
            UpdateAgentConfigRequest {
                config: Some(AgentConfig {
                    agent_name: Some("Penny".into()),
                    ..Default::default()
                }),
                update_mask: None,
            },
            &p_token,
        ))
        .await
        .unwrap();
    let op = s.operator(&[scope::TENANT_ADMIN]);
    let mut defaults = PlatformDefaults {
        agent_name: "Riley".into(),
        ..Default::default()
    };
    defaults.sliders.insert("caution".into(), 90);
    s.admin()
        .update_platform_defaults(auth(
            UpdatePlatformDefaultsRequest {
                defaults: Some(defaults),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["agent_name".into(), "sliders.caution".into()],
                }),
            },
            &op,
        ))
        .await
        .unwrap();
    let profile = |t: String| {
        let mut c = s.tenant_client();
        async move {
            c.get_effective_profile(auth(GetEffectiveProfileRequest::default(), &t))
                .await
                .unwrap()
                .into_inner()
                .profile
                .unwrap()
        }
    };
    let p = profile(p_token.clone()).await;
    let sm = profile(s_token).await;
    assert_eq!(p.agent_name, "Penny");
    assert_eq!(sm.agent_name, "Riley");
    assert_eq!(p.sliders["caution"], 90);
    assert_eq!(sm.sliders["caution"], 90);
    assert_eq!(sm.sliders["warmth"], 50);
    assert_eq!(sm.voice, "coral");
    assert_eq!(sm.time_zone, "UTC");
}

/// A draft (the portal's preview of unsaved changes) is merged like an update, validated like
/// one (the error names the `draft.` field), returned with the platform defaults, and stored
/// nowhere: no override, no history row.
#[tokio::test]
async fn a_draft_profile_is_validated_like_an_update_and_stored_nowhere() {
    let s = Svc::start().await;
    let (peterson, _) = s.seed().await;
    let token = s.tenant(peterson, &[scope::TENANT_READ]);
    let before = s.snapshot().await;
    let rows_before = s.rows_of(peterson).await;
    let mut draft = AgentConfig {
        agent_name: Some("Draft Dora".into()),
        ..Default::default()
    };
    draft.sliders.insert("warmth".into(), 90);
    let answer = s
        .tenant_client()
        .get_effective_profile(auth(
            GetEffectiveProfileRequest {
                draft: Some(draft.clone()),
                draft_mask: None,
            },
            &token,
        ))
        .await
        .expect("a read-only token previews a draft")
        .into_inner();
    let p = answer.profile.unwrap();
    assert_eq!(
        (p.agent_name.as_str(), p.sliders["warmth"]),
        ("Draft Dora", 90)
    );
    let defaults = answer.defaults.expect("the platform defaults come along");
    assert_eq!(defaults.sliders["warmth"], 50);
    assert_eq!(defaults.sliders.len(), 30);
    assert_eq!(s.snapshot().await, before, "a preview stores nothing");
    assert_eq!(
        s.rows_of(peterson).await,
        rows_before,
        "a preview stores nothing"
    );
    let saved = s
        .tenant_client()
        .get_effective_profile(auth(GetEffectiveProfileRequest::default(), &token))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_ne!(saved.agent_name, "Draft Dora");
    draft.sliders.insert("warmth".into(), 101);
    let r = s
        .tenant_client()
        .get_effective_profile(auth(
            GetEffectiveProfileRequest {
                draft: Some(draft),
                draft_mask: None,
            },
            &token,
        ))
        .await;
    refused(&s, r, Code::InvalidArgument, "draft.sliders.warmth", before).await;
    // A transfer target outside the customer's transfer regions (its own numbers: US) is
    // refused as a save would refuse it.
    let draft = AgentConfig {
        transfer_rules: Some(TransferRuleList {
            rules: vec![TransferRule {
                keyword: "lisbon".into(),
                number: "+351212345678".into(),
                description: "the Lisbon office".into(),
            }],
        }),
        ..Default::default()
    };
    let r = s
        .tenant_client()
        .get_effective_profile(auth(
            GetEffectiveProfileRequest {
                draft: Some(draft),
                draft_mask: None,
            },
            &token,
        ))
        .await;
    refused(&s, r, Code::InvalidArgument, "transfer_rules", before).await;
}

/// Reverting a history entry sets that one field back (a set value, or the platform default when
/// it was unset) and is itself recorded; another tenant's entry is NOT_FOUND, a non-agent entry
/// FAILED_PRECONDITION, a read-only token PERMISSION_DENIED, and none of those stores anything.
#[tokio::test]
async fn a_change_is_reverted_as_a_recorded_update_of_its_one_field() {
    let s = Svc::start().await;
    let (peterson, smith) = s.seed().await;
    let token = s.tenant(peterson, &[scope::TENANT_READ, scope::TENANT_WRITE]);
    let mut sliders = std::collections::HashMap::new();
    sliders.insert("warmth".to_owned(), 90);
    let update = UpdateAgentConfigRequest {
        config: Some(AgentConfig {
            agent_name: Some("Ava".into()),
            greeting_new_caller: Some("Hello from {agent_name}.".into()),
            sliders,
            ..Default::default()
        }),
        update_mask: None,
    };
    assert_eq!(s.update_config(&token, update).await.changes_recorded, 3);
    let page = s.history_page(&token, 10, String::new()).await;
    let entry = |key: &str| {
        page.changes
            .iter()
            .find(|c| c.config_key == key)
            .unwrap()
            .id
    };
    let revert = |id: i64, token: String| {
        let mut c = s.tenant_client();
        async move {
            c.revert_config_change(auth(RevertConfigChangeRequest { change_id: id }, &token))
                .await
        }
    };
    let profile = || {
        let mut c = s.tenant_client();
        let token = token.clone();
        async move {
            c.get_effective_profile(auth(GetEffectiveProfileRequest::default(), &token))
                .await
                .unwrap()
                .into_inner()
                .profile
                .unwrap()
        }
    };

    // The greeting had Peterson's own value before: it comes back; the others stay.
    let r = revert(entry("greeting_new_caller"), token.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.changes_recorded, 1);
    let p = profile().await;
    assert_eq!(
        p.greeting_new_caller,
        "Thanks for calling Peterson, this is {agent_name}."
    );
    assert_eq!((p.agent_name.as_str(), p.sliders["warmth"]), ("Ava", 90));
    // The slider was unset before: back to the platform default. The revert is in the history.
    let r = revert(entry("sliders.warmth"), token.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.changes_recorded, 1);
    assert_eq!(profile().await.sliders["warmth"], 50);
    let newest = &s.history_page(&token, 1, String::new()).await.changes[0];
    assert_eq!(
        (newest.config_key.as_str(), newest.old_value_json.as_str()),
        ("sliders.warmth", "90")
    );
    assert_eq!(newest.new_value_json, "");
    // Reverting it again changes nothing and records nothing.
    let before = s.snapshot().await;
    let r = revert(entry("sliders.warmth"), token.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.changes_recorded, 0);
    assert_eq!(s.snapshot().await, before);

    revert_refusals(&s, peterson, smith, entry("agent_name"), before).await;
    assert_eq!(profile().await.agent_name, "Ava");
    reverts_audited(&s, peterson).await;
}

/// Audited in the same transactions: one update, two reverts (the no-op none), by the token's
/// subject, naming fields and never their values.
async fn reverts_audited(s: &Svc, peterson: i64) {
    let audited = |action: &'static str| {
        s.count_with(
            "SELECT count(*) FROM tenant.audit_log WHERE customer_id = $1 AND action = $2 \
             AND actor = 'test-user' AND detail::text NOT LIKE '%Ava%' \
             AND detail::text NOT LIKE '%Hello%'",
            peterson,
            action,
        )
    };
    assert_eq!(audited("agent.updated").await, 1);
    assert_eq!(audited("agent.reverted").await, 2);
}

/// Another tenant's entry or an unknown id (NOT_FOUND, alike), a read-only token
/// (PERMISSION_DENIED), a phone-number entry (FAILED_PRECONDITION): nothing stored.
async fn revert_refusals(
    s: &Svc,
    peterson: i64,
    smith: i64,
    agent_name: i64,
    before: (i64, i64, i64),
) {
    let token = s.tenant(peterson, &[scope::TENANT_READ, scope::TENANT_WRITE]);
    let revert = |id: i64, token: String| {
        let mut c = s.tenant_client();
        async move {
            c.revert_config_change(auth(RevertConfigChangeRequest { change_id: id }, &token))
                .await
        }
    };
    // Another tenant cannot revert Peterson's entries, nor learn they exist.
    let smith_token = s.tenant(smith, &[scope::TENANT_READ, scope::TENANT_WRITE]);
    let err = revert(agent_name, smith_token).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = revert(i64::MAX, token.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // A read-only token may not revert.
    let read_only = s.tenant(peterson, &[scope::TENANT_READ]);
    let err = revert(agent_name, read_only).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // A phone-number entry is not agent configuration.
    let number_entry: i64 =
        s.db.admin_client()
            .await
            .query_one(
                "SELECT max(id) FROM tenant.customer_configurations \
             WHERE customer_id = $1 AND config_type = 'phone_number'",
                &[&peterson],
            )
            .await
            .unwrap()
            .get(0);
    let err = revert(number_entry, token.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(s.snapshot().await, before, "refusals store nothing");
}

async fn refused<T: std::fmt::Debug>(
    s: &Svc,
    r: Result<T, tonic::Status>,
    code: Code,
    field: &str,
    before: (i64, i64, i64),
) {
    let err = r.unwrap_err();
    assert_eq!(err.code(), code, "{err:?}");
    assert!(
        err.message().contains(field),
        "message {:?} does not name {field}",
        err.message()
    );
    assert_eq!(s.snapshot().await, before, "something was stored");
}

#[tokio::test]
async fn each_validation_rule_refuses_and_stores_nothing() {
    let s = Svc::start().await;
    let (peterson, smith) = s.seed().await;
    let before = s.snapshot().await;
    operator_input_is_refused(&s, peterson, smith, before).await;
    agent_config_input_is_refused(&s, peterson, before).await;
}

/// CreateCustomer and AssignPhoneNumber with a bad or taken value.
async fn operator_input_is_refused(s: &Svc, peterson: i64, smith: i64, before: (i64, i64, i64)) {
    let op = s.operator(&[scope::TENANT_ADMIN]);
    let voice = AgentConfig {
        voice: Some("nova".into()),
        ..Default::default()
    };
    for (email, business_name, agent_config, code, field) in [
        ("not-an-email", "X", None, Code::InvalidArgument, "email"),
        (
            "dup@x.example",
            "X",
            Some(voice),
            Code::InvalidArgument,
            "agent_config.voice",
        ),
        (
            "OPS@peterson.example",
            "Copy",
            None,
            Code::AlreadyExists,
            "email",
        ),
    ] {
        let request = CreateCustomerRequest {
            email: email.into(),
            business_name: business_name.into(),
            agent_config,
            ..Default::default()
        };
        let r = s.admin().create_customer(auth(request, &op)).await;
        refused(s, r, code, field, before).await;
    }
    let assign = |number: &str, sid: &str| {
        let request = AssignPhoneNumberRequest {
            customer_id: peterson,
            number: number.into(),
            twilio_account_sid: sid.into(),
        };
        let mut admin = s.admin();
        let request = auth(request, &op);
        async move { admin.assign_phone_number(request).await }
    };
    let r = assign("+1555", "").await;
    refused(s, r, Code::InvalidArgument, "number", before).await;
    let r = assign("+14155550199", "AC12").await;
    refused(s, r, Code::InvalidArgument, "twilio_account_sid", before).await;
    // Another tenant's number: ALREADY_EXISTS, naming nobody.
    let err = assign(SMITH_NUMBER, "").await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(
        !err.message().contains("Smith") && !err.message().contains(&smith.to_string()),
        "{err:?}"
    );
    assert_eq!(s.snapshot().await, before);
}

/// UpdateAgentConfig with each kind of bad value (alone, or among good ones) or a bad mask.
async fn agent_config_input_is_refused(s: &Svc, peterson: i64, before: (i64, i64, i64)) {
    let token = s.tenant(peterson, &[scope::TENANT_WRITE]);
    let update = |config: AgentConfig, paths: &[&str]| {
        let mut c = s.tenant_client();
        let update_mask = (!paths.is_empty()).then(|| prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        });
        let request = auth(
            UpdateAgentConfigRequest {
                config: Some(config),
                update_mask,
            },
            &token,
        );
        async move { c.update_agent_config(request).await }
    };
    let fable = AgentConfig {
        voice: Some("fable".into()),
        ..Default::default()
    };
    let r = update(fable, &[]).await;
    let msg = r.as_ref().unwrap_err().message().to_owned();
    assert!(msg.contains("text-to-speech"), "{msg}");
    refused(s, r, Code::InvalidArgument, "config.voice", before).await;
    for (config, field) in bad_agent_configs() {
        let r = update(config, &[]).await;
        refused(s, r, Code::InvalidArgument, field, before).await;
    }
    let r = update(AgentConfig::default(), &["colour"]).await;
    refused(s, r, Code::InvalidArgument, "update_mask", before).await;
}

/// Agent configurations with one bad value each, and what the refusal must name.
fn bad_agent_configs() -> Vec<(AgentConfig, &'static str)> {
    let cfg = AgentConfig::default;
    let slider = |name: &str, value| AgentConfig {
        sliders: [(name.to_owned(), value)].into(),
        ..cfg()
    };
    let text = |set: fn(&mut AgentConfig, String), value: String| {
        let mut c = cfg();
        set(&mut c, value);
        c
    };
    let rules = TransferRuleList {
        rules: vec![TransferRule {
            keyword: "claims".into(),
            number: "12345".into(),
            description: String::new(),
        }],
    };
    vec![
        (slider("warmth", 101), "config.sliders.warmth"),
        (slider("charisma", 50), "charisma"),
        (
            text(|c, v| c.agent_name = Some(v), "x".repeat(61)),
            "config.agent_name",
        ),
        (
            text(|c, v| c.greeting_new_caller = Some(v), "y".repeat(501)),
            "config.greeting_new_caller",
        ),
        (
            text(
                |c, v| c.greeting_returning_caller = Some(v),
                "Hi\u{1b}[2J".into(),
            ),
            "config.greeting_returning_caller",
        ),
        (
            text(
                |c, v| c.greeting_new_caller = Some(v),
                "Hello {caller_name}".into(),
            ),
            "unknown placeholder",
        ),
        (
            AgentConfig {
                transfer_rules: Some(rules),
                ..cfg()
            },
            "config.transfer_rules[0].number",
        ),
        (
            text(|c, v| c.time_zone = Some(v), "Atlantis/Capital".into()),
            "config.time_zone",
        ),
        // One bad field among good ones: nothing of the request is stored.
        (
            AgentConfig {
                agent_name: Some("Fine".into()),
                voice: Some("onyx".into()),
                ..cfg()
            },
            "config.voice",
        ),
    ]
}

#[tokio::test]
async fn issued_and_exchanged_tokens_are_bounded_and_scoped() {
    let s = Svc::start().await;
    let (peterson, _) = s.seed().await;
    let op = s.operator(&[scope::TENANT_ADMIN]);
    let issue = |scopes: Vec<&str>, ttl: i64| {
        let mut a = s.admin();
        let op = op.clone();
        let scopes = scopes.into_iter().map(str::to_owned).collect();
        async move {
            a.issue_tenant_token(auth(
                IssueTenantTokenRequest {
                    customer_id: peterson,
                    scopes,
                    audiences: vec![],
                    ttl: Some(prost_types::Duration {
                        seconds: ttl,
                        nanos: 0,
                    }),
                    subject: "team-billing".into(),
                },
                &op,
            ))
            .await
        }
    };
    let err = issue(vec!["tenant:admin"], 60).await.unwrap_err();
    assert!(err.message().starts_with("scopes"), "{err:?}");
    let err = issue(vec!["tenant:read"], 25 * 3600).await.unwrap_err();
    assert!(err.message().starts_with("ttl"), "{err:?}");
    let token = issue(vec!["tenant:read"], 600)
        .await
        .unwrap()
        .into_inner()
        .token;
    let me = s
        .tenant_client()
        .get_my_customer(auth(GetMyCustomerRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.customer.unwrap().id, peterson);
    // The issued token has no write scope.
    let err = s
        .tenant_client()
        .update_agent_config(auth(UpdateAgentConfigRequest::default(), &token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    legacy_tokens_become_short_memory_tokens(&s, peterson).await;
}

/// Legacy exchange: a valid HS256 token becomes a short memory-svc token for that tenant; a
/// garbage one is refused.
async fn legacy_tokens_become_short_memory_tokens(s: &Svc, peterson: i64) {
    let legacy = mesh::auth::LegacyVerifier::new(&secrecy::SecretString::from(
        "legacy-secret-for-tests-0123456789abcdef",
    ))
    .unwrap();
    let old = legacy.mint_for_tests(
        mesh::domain::CustomerId::new(peterson).unwrap(),
        Duration::from_secs(120),
    );
    let r = s
        .edge()
        .exchange_legacy_token(auth(
            ExchangeLegacyTokenRequest { legacy_token: old },
            &s.gateway(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.customer_id, peterson);
    let caller = s
        .keys
        .identity(names::MEMORY_SVC)
        .verifier(names::MEMORY_SVC)
        .verify(&r.tenant_token)
        .unwrap();
    assert!(caller.scopes().contains("memory:write"));
    assert!(r.token_expire_time.unwrap().seconds <= chrono::Utc::now().timestamp() + 121);
    assert!(
        s.keys
            .identity(names::MEDIA_SVC)
            .verifier(names::MEDIA_SVC)
            .verify(&r.tenant_token)
            .is_err()
    );
    let err = s
        .edge()
        .exchange_legacy_token(auth(
            ExchangeLegacyTokenRequest {
                legacy_token: "garbage".into(),
            },
            &s.gateway(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn customers_are_listed_paginated_and_offboarding_removes_only_one() {
    let s = Svc::start().await;
    let (peterson, smith) = s.seed().await;
    let op = s.operator(&[scope::TENANT_ADMIN]);
    let list = |page_token: String| {
        let mut admin = s.admin();
        let request = auth(
            ListCustomersRequest {
                page_size: 1,
                page_token,
            },
            &op,
        );
        async move { admin.list_customers(request).await.map(|r| r.into_inner()) }
    };
    let page = list(String::new()).await.unwrap();
    assert_eq!(page.customers.len(), 1);
    assert_eq!(page.customers[0].id, peterson);
    let page2 = list(page.next_page_token).await.unwrap();
    assert_eq!(page2.customers[0].id, smith);
    let err = list("nope!".into()).await.unwrap_err();
    assert!(err.message().starts_with("page_token"));

    let smith_before = s.rows_of(smith).await;
    let _erasers = s.erasers().await;
    let delete = || {
        let mut admin = s.admin();
        let request = auth(
            DeleteCustomerRequest {
                customer_id: peterson,
            },
            &op,
        );
        async move { admin.delete_customer(request).await }
    };
    delete().await.unwrap();
    assert_eq!(
        s.count(&format!(
            "SELECT count(*) FROM tenant.phone_numbers WHERE customer_id = {peterson}"
        ))
        .await,
        0
    );
    assert_eq!(
        s.count(&format!(
            "SELECT count(*) FROM tenant.customer_configurations WHERE customer_id = {peterson}"
        ))
        .await,
        0
    );
    assert_eq!(s.rows_of(smith).await, smith_before);
    let err = delete().await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // The released number can be assigned to another customer.
    s.admin()
        .assign_phone_number(auth(
            AssignPhoneNumberRequest {
                customer_id: smith,
                number: PETERSON_NUMBER.into(),
                twilio_account_sid: String::new(),
            },
            &op,
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn tenant_tables_are_protected_by_forced_rls() {
    let s = Svc::start().await;
    let admin = s.db.admin_client().await;
    mesh::testkit::assert_rls_everywhere(&admin).await;
    // As tenant_svc with no tenant set, the tables fail closed.
    let db = s.db.db_for_role("tenant_svc").await;
    let r = db
        .service_tx(async |tx| tx.query("SELECT * FROM tenant.customers", &[]).await)
        .await;
    assert!(r.is_err(), "read without tenant context succeeded");
}

/// `GetPlatformDefaults`: an operator reads what the platform answers for every field a customer
/// has not set (first the migration's row, then what `UpdatePlatformDefaults` stored); tokens
/// that are not an operator's `tenant:admin` are refused and read nothing.
#[tokio::test]
async fn an_operator_reads_the_stored_platform_defaults_and_tenants_cannot() {
    let s = Svc::start().await;
    let (peterson, _) = s.seed().await;
    let op = s.operator(&[scope::TENANT_ADMIN]);
    let read = |token: String| {
        let mut admin = s.admin();
        async move {
            admin
                .get_platform_defaults(auth(GetPlatformDefaultsRequest {}, &token))
                .await
                .map(|r| r.into_inner().defaults.unwrap())
        }
    };
    let first = read(op.clone()).await.unwrap();
    assert_eq!(first.agent_name, "AI Assistant");
    assert_eq!(first.voice, "alloy");
    assert_eq!(first.time_zone, "UTC");
    assert_eq!(first.sliders.len(), 30);
    assert!(first.sliders.values().all(|v| *v == 50));
    assert!(first.update_time.is_some());

    let mut update = PlatformDefaults {
        agent_name: "Riley".into(),
        voice: "sage".into(),
        ..Default::default()
    };
    update.sliders.insert("warmth".into(), 80);
    let stored = s
        .admin()
        .update_platform_defaults(auth(
            UpdatePlatformDefaultsRequest {
                defaults: Some(update),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["agent_name".into(), "voice".into(), "sliders.warmth".into()],
                }),
            },
            &op,
        ))
        .await
        .unwrap()
        .into_inner()
        .defaults
        .unwrap();
    let read_back = read(op.clone()).await.unwrap();
    assert_eq!(read_back, stored, "the answer is what the update stored");
    assert_eq!(
        (read_back.agent_name.as_str(), read_back.voice.as_str()),
        ("Riley", "sage")
    );
    assert_eq!(read_back.sliders["warmth"], 80);
    assert_eq!(
        read_back.sliders["humor"], 50,
        "fields outside the mask kept"
    );
    assert_eq!(read_back.greeting_new_caller, first.greeting_new_caller);

    // A tenant token (every tenant scope), the gateway's token and an operator token without
    // `tenant:admin` are refused.
    let tenant = s.tenant(
        peterson,
        &[
            scope::TENANT_READ,
            scope::TENANT_WRITE,
            scope::TENANT_WEBHOOK,
        ],
    );
    for token in [tenant, s.gateway(), s.operator(&[scope::TENANT_RESOLVE])] {
        let err = read(token).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    }
}
