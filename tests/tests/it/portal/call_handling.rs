//! `/portal/call-handling` over HTTP against the real mesh (issue 20): an owner saves
//! the recording policy, texts, retention, message limits and opening hours (read back, and
//! stored for that tenant only); staff are refused; a bad value is a 400 page naming the field;
//! a form without its CSRF token is refused; none of the refusals stores anything.

use mesh::api::tenant::UserRole;

use super::{Browser, PortalMesh, csrf_of};

/// Everything stored for call handling (the settings rows, their history and audit entries).
async fn stored(portal: &PortalMesh) -> String {
    let client = portal.mesh.db.admin_client().await;
    let row = client
        .query_one(
            "SELECT (SELECT coalesce(string_agg(row_to_json(s)::text, '|'), '') \
                     FROM tenant.call_handling s), \
                    (SELECT count(*) FROM tenant.customer_configurations \
                     WHERE config_type = 'call_handling'), \
                    (SELECT count(*) FROM tenant.audit_log \
                     WHERE action = 'call_handling.updated')",
            &[],
        )
        .await
        .unwrap();
    format!(
        "{}|{}|{}",
        row.get::<_, String>(0),
        row.get::<_, i64>(1),
        row.get::<_, i64>(2)
    )
}

/// A complete form (what the page posts), with `csrf`, changed by `overrides`.
fn form<'a>(csrf: &'a str, overrides: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        ("csrf", csrf),
        ("recording_policy", "on_with_consent"),
        ("recording_announcement", "Calls to Peterson are recorded."),
        ("consent_prompt", "Press 1 if we may record this call."),
        ("retention_days", "30"),
        (
            "message_prompt",
            "Please leave your message after the tone.",
        ),
        ("message_max_seconds", "90"),
        ("monday", "09:00-12:00, 13:00-17:30"),
        ("friday", "22:00-02:00"),
        ("messages_after_hours", "on"),
    ];
    for (k, v) in overrides {
        if let Some(f) = fields.iter_mut().find(|(name, _)| name == k) {
            f.1 = v;
        } else {
            fields.push((k, v));
        }
    }
    fields
}

/// Bad values and a form without its CSRF token: refused, the field named, nothing stored.
async fn bad_values_are_named_and_not_stored(portal: &PortalMesh, owner: &mut Browser, csrf: &str) {
    let nothing = stored(portal).await;
    // Bad values: 400, the field named and marked, nothing stored.
    let cases: [(&str, &str, &str); 5] = [
        ("retention_days", "0", "retention_days"),
        ("retention_days", "ninety", "retention_days"),
        ("message_max_seconds", "301", "message_max_seconds"),
        ("tuesday", "9 to 5", "opening_hours.tuesday"),
        ("wednesday", "10:00-10:00", "opening_hours.wednesday"),
    ];
    for (field, value, named) in cases {
        let page = owner
            .post("/portal/call-handling", &form(csrf, &[(field, value)]))
            .await;
        assert_eq!(page.status(), 400, "{field}={value}: {}", page.body);
        assert!(page.body.contains(named), "{field}={value}: {}", page.body);
        assert!(page.body.contains(r#"aria-invalid="true""#), "{field}");
        assert!(page.body.contains(value), "the form keeps what was typed");
        assert_eq!(
            stored(portal).await,
            nothing,
            "{field}={value}: nothing stored"
        );
    }
    let page = owner
        .post(
            "/portal/call-handling",
            &form(csrf, &[("consent_prompt", "")]),
        )
        .await;
    assert_eq!(page.status(), 400, "{}", page.body);
    assert!(
        page.body.contains("settings.consent_prompt"),
        "{}",
        page.body
    );
    // Without the CSRF token: 403, nothing stored.
    let without: Vec<_> = form(csrf, &[]).into_iter().skip(1).collect();
    let page = owner.post("/portal/call-handling", &without).await;
    assert_eq!(page.status(), 403, "{}", page.body);
    assert_eq!(stored(portal).await, nothing);
}

/// Staff: no link, 403 on the page and the form.
async fn staff_are_refused(portal: &PortalMesh, a: i64) {
    // Staff: no link, 403 on the page and the form, nothing stored.
    let mut staff = portal
        .signed_in_user(a, "staff@peterson.example", UserRole::Staff)
        .await;
    let home = staff.get("/portal/").await;
    assert!(!home.body.contains(r#"href="/portal/call-handling""#));
    let staff_csrf = csrf_of(&home.body);
    assert_eq!(staff.get("/portal/call-handling").await.status(), 403);
    let page = staff
        .post("/portal/call-handling", &form(&staff_csrf, &[]))
        .await;
    assert_eq!(page.status(), 403, "{}", page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_saves_staff_is_refused_and_bad_input_is_named_and_not_stored() {
    let portal = PortalMesh::start().await;
    let (a, b) = portal.tenants;
    let mut owner = portal
        .signed_in_user(a, "owner@peterson.example", UserRole::Owner)
        .await;
    let page = owner.get("/portal/call-handling").await;
    assert_eq!(page.status(), 200, "{}", page.body);
    assert!(
        page.body.contains(r#"href="/portal/call-handling""#),
        "nav link"
    );
    assert!(page.body.contains("This call is recorded."), "the default");
    let csrf = csrf_of(&page.body);
    let nothing = stored(&portal).await;

    bad_values_are_named_and_not_stored(&portal, &mut owner, &csrf).await;
    staff_are_refused(&portal, a).await;
    assert_eq!(stored(&portal).await, nothing);

    // The owner saves: redirected, read back, stored for tenant A only.
    let page = owner.post("/portal/call-handling", &form(&csrf, &[])).await;
    assert_eq!(page.status(), 303, "{}", page.body);
    let page = owner.get("/portal/call-handling?saved=1").await;
    assert!(page.body.contains("Saved."));
    assert!(page.body.contains("Calls to Peterson are recorded."));
    assert!(page.body.contains(r#"value="30""#), "{}", page.body);
    assert!(page.body.contains(r#"value="09:00-12:00, 13:00-17:30""#));
    assert!(page.body.contains(r#"value="22:00-02:00""#));
    assert!(page.body.contains(r#"value="on_with_consent" checked"#));
    let client = portal.mesh.db.admin_client().await;
    let rows: Vec<(i64, String, i32)> = client
        .query(
            "SELECT customer_id, recording_policy, retention_days FROM tenant.call_handling",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rows, [(a, "on_with_consent".to_owned(), 30)]);
    // Tenant B's owner still sees the defaults.
    let mut other = portal
        .signed_in_user(b, "owner@other.example", UserRole::Owner)
        .await;
    let page = other.get("/portal/call-handling").await;
    assert!(!page.body.contains("Calls to Peterson"), "{}", page.body);
    assert!(page.body.contains(r#"value="90""#));
    portal.mesh.shutdown().await;
}
