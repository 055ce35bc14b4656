//! Call-handling settings (issue 20) over real gRPC against a real PostgreSQL: defaults
//! with the profile's time zone, a whole-message update with history and its audit entry in the
//! same transaction, validation naming the field with nothing stored, scopes, and tenant
//! isolation.

use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::*;
use mesh::call_handling::defaults;
use mesh::identity::{DevKeys, scope};
use mesh::testkit::TestDb;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{self, RW, Replica, auth};

struct Svc {
    db: TestDb,
    keys: DevKeys,
    channel: Channel,
    _replica: Replica,
}

impl Svc {
    async fn start() -> Svc {
        let db = TestDb::new().await;
        let keys = DevKeys::generate();
        let replica = common::serve(&db, &keys, None, false).await;
        Svc {
            db,
            keys,
            channel: replica.channel.clone(),
            _replica: replica,
        }
    }

    async fn customer(&self, n: usize) -> i64 {
        let token = common::operator_token(&self.keys, &[scope::TENANT_ADMIN]);
        TenantAdminServiceClient::new(self.channel.clone())
            .create_customer(auth(
                CreateCustomerRequest {
                    email: format!("owner{n}@shop{n}.example"),
                    business_name: format!("Shop {n}"),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap()
            .id
    }

    fn client(&self) -> TenantServiceClient<Channel> {
        TenantServiceClient::new(self.channel.clone())
    }

    fn token(&self, customer: i64, scopes: &[&str]) -> String {
        common::tenant_token(&self.keys, customer, scopes)
    }

    async fn get(&self, customer: i64) -> GetCallHandlingResponse {
        self.client()
            .get_call_handling(auth(
                GetCallHandlingRequest {},
                &self.token(customer, &[scope::TENANT_READ]),
            ))
            .await
            .unwrap()
            .into_inner()
    }

    async fn update(
        &self,
        token: &str,
        settings: CallHandling,
    ) -> Result<UpdateCallHandlingResponse, tonic::Status> {
        self.client()
            .update_call_handling(auth(
                UpdateCallHandlingRequest {
                    settings: Some(settings),
                },
                token,
            ))
            .await
            .map(|r| r.into_inner())
    }

    /// Everything stored for a customer's call handling: the row, its history and audit entries.
    async fn rows_of(&self, customer: i64) -> String {
        let row = self
            .db
            .admin_client()
            .await
            .query_one(
                "SELECT (SELECT row_to_json(s)::text FROM tenant.call_handling s \
                         WHERE customer_id = $1), \
                        (SELECT count(*) FROM tenant.customer_configurations \
                         WHERE customer_id = $1 AND config_type = 'call_handling'), \
                        (SELECT count(*) FROM tenant.audit_log \
                         WHERE customer_id = $1 AND action = 'call_handling.updated')",
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
}

fn period(open: u32, close: u32) -> OpenPeriod {
    OpenPeriod {
        open_minute: open,
        close_minute: close,
    }
}

fn shop_hours() -> CallHandling {
    CallHandling {
        recording_policy: RecordingPolicy::OnWithConsent as i32,
        recording_announcement: "  Calls to Shop 0 are recorded.  ".into(),
        consent_prompt: "Press 1 to allow the recording.".into(),
        retention_days: 30,
        message_prompt: "Please leave a message.".into(),
        message_max_seconds: 60,
        opening_hours: Some(OpeningHours {
            monday: vec![period(780, 1050), period(540, 720)],
            friday: vec![period(1320, 120)],
            ..Default::default()
        }),
        messages_after_hours: true,
    }
}

#[tokio::test]
async fn defaults_then_an_owner_update_with_history_and_audit() {
    let svc = Svc::start().await;
    let a = svc.customer(0).await;
    let got = svc.get(a).await;
    assert_eq!(got.settings.unwrap(), defaults(), "never set: the defaults");
    assert!(!got.time_zone.is_empty(), "the profile's time zone");
    assert_eq!(svc.rows_of(a).await, "None|0|0");

    let owner = svc.token(a, RW);
    let r = svc.update(&owner, shop_hours()).await.unwrap();
    assert_eq!(r.changes_recorded, 8);
    let saved = r.settings.unwrap();
    assert_eq!(
        saved.recording_announcement,
        "Calls to Shop 0 are recorded."
    );
    assert_eq!(
        saved.opening_hours.as_ref().unwrap().monday,
        [period(540, 720), period(780, 1050)],
        "sorted"
    );
    assert_eq!(svc.get(a).await.settings.unwrap(), saved, "read back");
    let stored = svc.rows_of(a).await;
    assert!(stored.ends_with("|8|1"), "{stored}");
    // The audit entry names fields, never the texts.
    let detail: String = svc
        .db
        .admin_client()
        .await
        .query_one(
            "SELECT detail::text FROM tenant.audit_log WHERE customer_id = $1 \
             AND action = 'call_handling.updated'",
            &[&a],
        )
        .await
        .unwrap()
        .get(0);
    assert!(detail.contains("retention_days"), "{detail}");
    assert!(!detail.contains("recorded"), "{detail}");

    // The same settings again: nothing changes, nothing recorded.
    let again = svc.update(&owner, saved.clone()).await.unwrap();
    assert_eq!(again.changes_recorded, 0);
    assert_eq!(svc.rows_of(a).await, stored);
}

#[tokio::test]
async fn bad_input_names_the_field_and_stores_nothing() {
    let svc = Svc::start().await;
    let a = svc.customer(0).await;
    let owner = svc.token(a, RW);
    svc.update(&owner, shop_hours()).await.unwrap();
    let before = svc.rows_of(a).await;
    let cases: Vec<(CallHandling, &str)> = vec![
        (
            CallHandling {
                retention_days: 3651,
                ..shop_hours()
            },
            "settings.retention_days",
        ),
        (
            CallHandling {
                message_max_seconds: 5,
                ..shop_hours()
            },
            "settings.message_max_seconds",
        ),
        (
            CallHandling {
                recording_policy: RecordingPolicy::Unspecified as i32,
                ..shop_hours()
            },
            "settings.recording_policy",
        ),
        (
            CallHandling {
                consent_prompt: "x".repeat(501),
                ..shop_hours()
            },
            "settings.consent_prompt",
        ),
        (
            CallHandling {
                opening_hours: Some(OpeningHours {
                    wednesday: vec![period(600, 1500)],
                    ..Default::default()
                }),
                ..shop_hours()
            },
            "settings.opening_hours.wednesday[0].close_minute",
        ),
    ];
    for (settings, field) in cases {
        let e = svc.update(&owner, settings).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}");
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
        assert_eq!(svc.rows_of(a).await, before, "{field}: nothing stored");
    }
    let e = svc
        .client()
        .update_call_handling(auth(UpdateCallHandlingRequest { settings: None }, &owner))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(svc.rows_of(a).await, before);
}

#[tokio::test]
async fn read_scope_cannot_write_and_tenants_are_isolated() {
    let svc = Svc::start().await;
    let (a, b) = (svc.customer(0).await, svc.customer(1).await);
    // A portal STAFF token holds tenant:read only.
    let staff = svc.token(a, &[scope::TENANT_READ]);
    let e = svc.update(&staff, shop_hours()).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(svc.rows_of(a).await, "None|0|0");
    let none = svc.token(a, &[scope::TENANT_WEBHOOK]);
    let e = svc
        .client()
        .get_call_handling(auth(GetCallHandlingRequest {}, &none))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // A's update touches A only; B still reads the defaults.
    svc.update(&svc.token(a, RW), shop_hours()).await.unwrap();
    assert_eq!(svc.get(b).await.settings.unwrap(), defaults());
    assert_eq!(svc.rows_of(b).await, "None|0|0");
    assert_eq!(svc.get(a).await.settings.unwrap().retention_days, 30);
}
