//! Toll fraud on tenant-svc's side: transfer rules are checked against the customer's transfer
//! regions when they are saved, and migration V14 turns stored calling codes into regions.

use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
use mesh::api::tenant::tenant_service_client::TenantServiceClient;
use mesh::api::tenant::*;
use mesh::identity::{DevKeys, scope};
use mesh::testkit::{TestDb, TestPostgres};
use tonic::Code;

use crate::common::{self, RW, auth};

/// A customer with one US number, and a client holding its tenant token.
async fn customer_with_a_us_number(
    db: &TestDb,
    keys: &DevKeys,
) -> (
    i64,
    String,
    TenantServiceClient<tonic::transport::Channel>,
    common::Replica,
) {
    let replica = common::serve(db, keys, None, false).await;
    let op = common::operator_token(keys, &[scope::TENANT_ADMIN]);
    let mut admin = TenantAdminServiceClient::new(replica.channel.clone());
    let id = admin
        .create_customer(auth(
            CreateCustomerRequest {
                email: "ops@transfers.example".into(),
                business_name: "Transfers".into(),
                ..Default::default()
            },
            &op,
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap()
        .id;
    admin
        .assign_phone_number(auth(
            AssignPhoneNumberRequest {
                customer_id: id,
                number: "+12025550173".into(),
                ..Default::default()
            },
            &op,
        ))
        .await
        .unwrap();
    let token = common::tenant_token(keys, id, RW);
    let client = TenantServiceClient::new(replica.channel.clone());
    (id, token, client, replica)
}

fn rules_to(number: &str) -> UpdateAgentConfigRequest {
    UpdateAgentConfigRequest {
        config: Some(AgentConfig {
            transfer_rules: Some(TransferRuleList {
                rules: vec![TransferRule {
                    keyword: "claims".into(),
                    number: number.into(),
                    description: "the claims desk".into(),
                }],
            }),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["transfer_rules".into()],
        }),
    }
}

async fn stored_rules(db: &TestDb, id: i64) -> (String, i64) {
    let row = db
        .admin_client()
        .await
        .query_one(
            "SELECT coalesce(transfer_rules::text, ''), \
             (SELECT count(*) FROM tenant.customer_configurations WHERE customer_id = $1) \
             FROM tenant.customers WHERE customer_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn a_transfer_rule_outside_the_transfer_regions_is_refused_on_save_and_stores_nothing() {
    let db = TestDb::new().await;
    let keys = DevKeys::generate();
    let (id, token, mut client, _replica) = customer_with_a_us_number(&db, &keys).await;
    let before = stored_rules(&db, id).await;
    // Jamaica shares +1 with the US; +1 900 is premium rate; +44 is another region.
    for (number, why) in [
        ("+18769295555", "region JM"),
        ("+19002223333", "premium_rate"),
        ("+442071838750", "region GB"),
        ("+80012345678", "non_geographic"),
    ] {
        let err = client
            .update_agent_config(auth(rules_to(number), &token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{number}");
        assert!(
            err.message()
                .starts_with("config.transfer_rules[0].number:")
                && err.message().contains(why),
            "{number}: {}",
            err.message()
        );
        assert_eq!(
            stored_rules(&db, id).await,
            before,
            "{number}: nothing stored"
        );
    }
    // The region of the customer's own number is allowed by default.
    client
        .update_agent_config(auth(rules_to("+14158675309"), &token))
        .await
        .unwrap();
    // Listing transfer regions replaces that default: Jamaica in, the US out.
    client
        .update_outbound_settings(auth(
            UpdateOutboundSettingsRequest {
                settings: Some(OutboundSettings {
                    transfer_regions: vec!["JM".into()],
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["transfer_regions".into()],
                }),
            },
            &token,
        ))
        .await
        .unwrap();
    client
        .update_agent_config(auth(rules_to("+18769295555"), &token))
        .await
        .unwrap();
    let err = client
        .update_agent_config(auth(rules_to("+12025550100"), &token))
        .await
        .unwrap_err();
    assert!(err.message().contains("region US"), "{}", err.message());
}

/// Applies the embedded migrations below `until` to a fresh database; returns its admin client.
async fn migrated_until(until: i64) -> (tokio_postgres::Client, String) {
    let server = TestPostgres::global().await;
    let name = format!("v14_{}_{}", std::process::id(), rand_suffix());
    let (maint, conn) = tokio_postgres::connect(&server.maintenance_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    maint
        .batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE template0"))
        .await
        .unwrap();
    let (client, conn) = tokio_postgres::connect(&server.admin_url(&name), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    for (version, file, sql) in mesh::migrations::embedded() {
        if version < until {
            client
                .batch_execute(&format!("BEGIN;\n{sql}\nCOMMIT;"))
                .await
                .unwrap_or_else(|e| panic!("V{version}__{file}: {e}"));
        }
    }
    (client, name)
}

#[tokio::test]
async fn v14_migrates_calling_codes_to_regions() {
    let (db, name) = migrated_until(14).await;
    db.batch_execute(
        "INSERT INTO tenant.customers (customer_id, email, business_name) OVERRIDING SYSTEM VALUE \
         VALUES (1, 'a@a.example', 'A'), (2, 'b@b.example', 'B'), (3, 'c@c.example', 'C');
         INSERT INTO tenant.outbound_settings (customer_id, allowed_country_codes) VALUES
         (1, '{1,351}'), (2, '{44,882,7}'), (3, '{}');",
    )
    .await
    .unwrap();
    let v14 = mesh::migrations::embedded()
        .into_iter()
        .find(|(v, _, _)| *v == 14)
        .unwrap()
        .2;
    db.batch_execute(&format!("BEGIN;\n{v14}\nCOMMIT;"))
        .await
        .unwrap();
    let rows = db
        .query(
            "SELECT customer_id, allowed_regions, allowed_number_types, transfer_regions, \
             max_call_minutes FROM tenant.outbound_settings ORDER BY customer_id",
            &[],
        )
        .await
        .unwrap();
    let regions: Vec<(i64, Vec<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        regions,
        [
            (1, vec!["CA".to_owned(), "PT".into(), "US".into()]),
            // +882 is non-geographic: it now needs the kind allowed, not a region.
            (2, vec!["GB".to_owned(), "RU".into()]),
            (3, vec![]),
        ]
    );
    for r in &rows {
        assert!(r.get::<_, Vec<String>>(2).is_empty());
        assert!(r.get::<_, Vec<String>>(3).is_empty());
        assert_eq!(r.get::<_, i32>(4), 0);
    }
    let forced: bool = db
        .query_one(
            "SELECT relforcerowsecurity FROM pg_class WHERE oid = 'tenant.outbound_settings'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(forced, "V14 leaves the table's RLS forced");
    drop(db);
    let server = TestPostgres::global().await;
    let (maint, conn) = tokio_postgres::connect(&server.maintenance_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let _ = maint
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await;
}

/// A name part unique enough for one test server (time in nanoseconds).
fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
