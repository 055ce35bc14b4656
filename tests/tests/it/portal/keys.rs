//! `/portal/tokens` and the audit log of `/portal/security` over HTTP against the real mesh
//! (issue 19): an owner creates an API key with the form and sees its secret once, the
//! key exchanges at `POST /v1/tokens`, the list shows its last use, revoking it stops it; staff
//! get the 403 page and no link; another tenant's key id is 404 and changes nothing; a form
//! without its CSRF token changes nothing; the owner's activity log shows the key's creation.

use mesh::api::tenant::UserRole;

use super::PortalMesh;

/// The secret on a page (`nsk_` + 43 base64url characters), if any.
fn secret_in(html: &str) -> Option<String> {
    let at = html.find("nsk_")?;
    let tail = &html[at..];
    let end = tail[4..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .map_or(tail.len(), |n| n + 4);
    let s = &tail[..end];
    (s.len() == 47).then(|| s.to_owned())
}

/// Keys of `customer` in the database: (all, active).
async fn keys_of(portal: &PortalMesh, customer: i64) -> (i64, i64) {
    let row = portal
        .mesh
        .db
        .admin_client()
        .await
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE revoked_at IS NULL) FROM tenant.api_keys WHERE customer_id = $1",
            &[&customer],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// `POST /v1/tokens` with `secret`: the status.
async fn exchange_status(portal: &PortalMesh, secret: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/v1/tokens", portal.http))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The id of the first key's revoke form on the tokens page.
fn first_key_id(html: &str) -> String {
    let at = html
        .find("/portal/tokens/")
        .unwrap_or_else(|| panic!("no revoke form in:\n{html}"));
    let rest = &html[at + "/portal/tokens/".len()..];
    rest[..rest.find('/').unwrap()].to_owned()
}

#[tokio::test]
async fn an_owner_creates_a_key_sees_it_once_and_revokes_it() {
    let portal = PortalMesh::start().await;
    let (a, _) = portal.tenants;
    let mut owner = portal
        .signed_in_user(a, "owner@a.example", UserRole::Owner)
        .await;
    let page = owner.get("/portal/tokens").await;
    assert_eq!(page.status(), 200, "{}", page.body);
    assert!(page.body.contains("No keys yet"));
    let csrf = super::csrf_of(&page.body);

    // Created: the secret on the answer, once.
    let page = owner
        .post(
            "/portal/tokens",
            &[
                ("csrf", &csrf),
                ("name", "CRM sync"),
                ("scope_memory_read", "on"),
                ("scope_tenant_read", "on"),
                ("minutes", "30"),
            ],
        )
        .await;
    assert_eq!(page.status(), 200, "{}", page.body);
    assert_eq!(page.header("cache-control"), "no-store");
    let secret = secret_in(&page.body).expect("the secret is shown");
    assert_eq!(keys_of(&portal, a).await, (1, 1));
    let listed = owner.get("/portal/tokens").await;
    assert!(!listed.body.contains(&secret[4..]), "never shown again");
    assert!(
        listed.body.contains(&format!("{}…", &secret[..4])) || listed.body.contains(&secret[43..])
    );
    assert!(listed.body.contains("CRM sync") && listed.body.contains("30 min"));
    assert!(listed.body.contains("Never"), "not used yet");

    // Used: the exchange works and the list shows a last use.
    assert_eq!(exchange_status(&portal, &secret).await, 200);
    let listed = owner.get("/portal/tokens").await;
    assert!(!listed.body.contains(">Never<"), "{}", listed.body);

    // Revoked with the form: the exchange stops.
    let id = first_key_id(&listed.body);
    let csrf = super::csrf_of(&listed.body);
    let page = owner
        .post(&format!("/portal/tokens/{id}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(page.status(), 303, "{}", page.body);
    assert_eq!(page.header("location"), "/portal/tokens?done=revoked");
    assert_eq!(keys_of(&portal, a).await, (1, 0));
    assert_eq!(exchange_status(&portal, &secret).await, 401);
    let listed = owner.get("/portal/tokens?done=revoked").await;
    assert!(listed.body.contains("Revoked "), "{}", listed.body);

    // The owner's activity log shows the key's creation and revocation, with who did it.
    let security = owner.get("/portal/security").await;
    assert_eq!(security.status(), 200);
    assert!(security.body.contains("Activity log"), "{}", security.body);
    assert!(security.body.contains("keys.created") && security.body.contains("keys.revoked"));
    assert!(security.body.contains("owner@a.example"));
    assert!(!security.body.contains(&secret[4..]));
}

#[tokio::test]
async fn staff_other_tenants_and_forged_forms_change_no_key() {
    let portal = PortalMesh::start().await;
    let (a, b) = portal.tenants;
    let mut owner_a = portal
        .signed_in_user(a, "owner@a.example", UserRole::Owner)
        .await;
    let csrf = owner_a.csrf("/portal/tokens").await;
    let page = owner_a
        .post(
            "/portal/tokens",
            &[
                ("csrf", &csrf),
                ("name", "A's key"),
                ("scope_media_read", "on"),
            ],
        )
        .await;
    assert_eq!(page.status(), 200);
    let id = first_key_id(&owner_a.get("/portal/tokens").await.body);

    // No permission ticked (a forged team or key scope is not a field): refused, nothing stored.
    let page = owner_a
        .post(
            "/portal/tokens",
            &[
                ("csrf", &csrf),
                ("name", "sneaky"),
                ("scope_tenant_keys", "on"),
            ],
        )
        .await;
    assert_eq!(page.status(), 422, "{}", page.body);
    assert!(page.body.contains("Choose at least one permission"));
    assert_eq!(keys_of(&portal, a).await, (1, 1));

    // Without the CSRF token, or from another origin: refused, nothing stored.
    let page = owner_a
        .post(
            "/portal/tokens",
            &[("name", "no csrf"), ("scope_media_read", "on")],
        )
        .await;
    assert_eq!(page.status(), 403);
    let page = owner_a
        .post_from(
            "/portal/tokens",
            &[
                ("csrf", &csrf),
                ("name", "elsewhere"),
                ("scope_media_read", "on"),
            ],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(page.status(), 403);
    assert_eq!(keys_of(&portal, a).await, (1, 1));

    staff_are_refused(&portal, a, &id).await;
    another_tenant_gets_404(&portal, a, b, &id).await;
}

/// Staff: the 403 page, no link, no activity log; nothing stored.
async fn staff_are_refused(portal: &PortalMesh, a: i64, id: &str) {
    let mut staff = portal
        .signed_in_user(a, "staff@a.example", UserRole::Staff)
        .await;
    let page = staff.get("/portal/tokens").await;
    assert_eq!(page.status(), 403);
    let home = staff.get("/portal/").await;
    assert!(!home.body.contains("href=\"/portal/tokens\""));
    let security = staff.get("/portal/security").await;
    assert!(!security.body.contains("Activity log"));
    let staff_csrf = staff.csrf("/portal/security").await;
    let page = staff
        .post(
            "/portal/tokens",
            &[
                ("csrf", &staff_csrf),
                ("name", "staff key"),
                ("scope_media_read", "on"),
            ],
        )
        .await;
    assert_eq!(page.status(), 403);
    let page = staff
        .post(
            &format!("/portal/tokens/{id}/revoke"),
            &[("csrf", &staff_csrf)],
        )
        .await;
    assert_eq!(page.status(), 403);
    assert_eq!(keys_of(portal, a).await, (1, 1));
}

/// Tenant B's owner: A's key id is 404, nothing of A shown, A's key still active.
async fn another_tenant_gets_404(portal: &PortalMesh, a: i64, b: i64, id: &str) {
    let mut owner_b = portal
        .signed_in_user(b, "owner@b.example", UserRole::Owner)
        .await;
    let page = owner_b.get("/portal/tokens").await;
    assert!(!page.body.contains("A&#x27;s key") && !page.body.contains("A's key"));
    let csrf_b = super::csrf_of(&page.body);
    for bad in [id, "not-a-key"] {
        let page = owner_b
            .post(
                &format!("/portal/tokens/{bad}/revoke"),
                &[("csrf", &csrf_b)],
            )
            .await;
        assert_eq!(page.status(), 404, "{bad}");
    }
    assert_eq!(keys_of(portal, a).await, (1, 1));
    assert_eq!(keys_of(portal, b).await, (0, 0));
}
