//! `/portal/team` over HTTP against the real mesh (issue 19): an owner invites a staff member
//! with the form and the one-time link shown works (accepted, then signed in with), changes a
//! role, removes a user (whose session then goes to sign-in) and revokes an invitation; staff
//! get the 403 page and no link, and their posts change nothing; a form without its CSRF token
//! or from another origin changes nothing; another tenant's user or invitation id is 404 and
//! changes nothing; removing or demoting yourself, the last owner, is refused with a message.

use mesh::api::tenant::UserRole;

use super::{PASSWORD, PortalMesh};

/// The team of `customer` in the database: users (id, e-mail, role) and pending invitations
/// (id, e-mail, role), ordered by id.
type Team = (Vec<(i64, String, String)>, Vec<(i64, String, String)>);

async fn team_of(portal: &PortalMesh, customer: i64) -> Team {
    let db = portal.mesh.db.admin_client().await;
    let rows = |sql: &'static str| {
        let db = &db;
        async move {
            db.query(sql, &[&customer])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect::<Vec<_>>()
        }
    };
    (
        rows("SELECT id, email, role FROM tenant.users WHERE customer_id = $1 ORDER BY id").await,
        rows(
            "SELECT id, email, role FROM tenant.invitations \
             WHERE customer_id = $1 AND used_at IS NULL ORDER BY id",
        )
        .await,
    )
}

/// The id of the user with `email` in `team`.
fn user_id(team: &Team, email: &str) -> i64 {
    team.0
        .iter()
        .find(|u| u.1 == email)
        .unwrap_or_else(|| panic!("no user {email} in {team:?}"))
        .0
}

/// The invitation link shown on a page, unescaped.
fn link_in(html: &str) -> String {
    let start = r#"id="invitation-link">"#;
    let at = html
        .find(start)
        .unwrap_or_else(|| panic!("no invitation link in:\n{html}"));
    let rest = &html[at + start.len()..];
    rest[..rest.find('<').unwrap()]
        .replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
}

/// The owner invites `email` as `role` with the form; the link shown.
async fn invite_with_form(owner: &mut super::Browser, email: &str, role: &str) -> String {
    let csrf = owner.csrf("/portal/team").await;
    let page = owner
        .post(
            "/portal/team",
            &[("csrf", &csrf), ("email", email), ("role", role)],
        )
        .await;
    assert_eq!(page.status(), 200, "{}", page.body);
    assert_eq!(page.header("cache-control"), "no-store");
    link_in(&page.body)
}

#[tokio::test]
async fn an_owner_invites_changes_a_role_removes_and_revokes() {
    let portal = PortalMesh::start().await;
    let (a, _) = portal.tenants;
    let mut owner = portal
        .signed_in_user(a, "owner@a.example", UserRole::Owner)
        .await;
    let page = owner.get("/portal/team").await;
    assert_eq!(page.status(), 200, "{}", page.body);
    assert!(page.body.contains("owner@a.example <strong>(you)</strong>"));
    assert!(page.body.contains("No open invitations"));
    assert!(
        page.body.contains("href=\"/portal/team\""),
        "the nav links it"
    );

    // Invited with the form: the link is shown once, on the portal's public base URL.
    let link = invite_with_form(&mut owner, "new@a.example", "staff").await;
    let prefix = format!("{}/portal/invite/", portal.origin);
    let token = link
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{link} is not under {prefix}"));
    let listed = owner.get("/portal/team").await;
    assert!(listed.body.contains("new@a.example") && !listed.body.contains(token));
    let team = team_of(&portal, a).await;
    assert_eq!(team.1.len(), 1);
    assert_eq!(team.1[0].1, "new@a.example");
    assert_eq!(team.1[0].2, "staff");

    // The link works: they set a password, sign in, and are staff.
    let mut staff = portal.browser();
    assert_eq!(staff.accept_invitation(token, PASSWORD).await.status(), 303);
    let mut staff = portal.browser();
    let signed = staff.sign_in("new@a.example", PASSWORD).await;
    assert_eq!(signed.status(), 303, "{}", signed.body);
    assert_eq!(staff.get("/portal/").await.status(), 200);
    assert_eq!(staff.get("/portal/team").await.status(), 403);
    let team = team_of(&portal, a).await;
    assert!(team.1.is_empty(), "the invitation was used");
    let new = user_id(&team, "new@a.example");
    assert!(
        team.0
            .contains(&(new, "new@a.example".into(), "staff".into()))
    );

    change_role_and_remove(&portal, &mut owner, &mut staff, a, new).await;
    revoke_an_invitation(&portal, &mut owner, a).await;
}

/// Role changed to owner and back; removal needs its confirmation tick, then the user is gone
/// and their session goes to sign-in.
async fn change_role_and_remove(
    portal: &PortalMesh,
    owner: &mut super::Browser,
    staff: &mut super::Browser,
    a: i64,
    new: i64,
) {
    // Role changed to owner, then back to staff.
    let csrf = owner.csrf("/portal/team").await;
    for role in ["owner", "staff"] {
        let page = owner
            .post(
                &format!("/portal/team/users/{new}/role"),
                &[("csrf", &csrf), ("role", role)],
            )
            .await;
        assert_eq!(page.status(), 303, "{}", page.body);
        assert_eq!(page.header("location"), "/portal/team?done=role");
        assert!(
            team_of(portal, a)
                .await
                .0
                .contains(&(new, "new@a.example".into(), role.into()))
        );
    }

    // Removal needs the confirmation tick; with it the user is gone and signed out.
    let remove = format!("/portal/team/users/{new}/remove");
    let page = owner.post(&remove, &[("csrf", &csrf)]).await;
    assert_eq!(page.status(), 400, "{}", page.body);
    assert!(team_of(portal, a).await.0.iter().any(|u| u.0 == new));
    let page = owner
        .post(&remove, &[("csrf", &csrf), ("confirm", "yes")])
        .await;
    assert_eq!(page.status(), 303, "{}", page.body);
    assert_eq!(page.header("location"), "/portal/team?done=removed");
    assert!(!team_of(portal, a).await.0.iter().any(|u| u.0 == new));
    let page = staff.get("/portal/").await;
    assert_eq!(page.status(), 303, "{}", page.body);
    assert!(page.header("location").starts_with("/portal/sign-in"));
}

/// An invitation revoked with its button: no longer pending, its link stops working.
async fn revoke_an_invitation(portal: &PortalMesh, owner: &mut super::Browser, a: i64) {
    let csrf = owner.csrf("/portal/team").await;
    let prefix = format!("{}/portal/invite/", portal.origin);
    // An invitation revoked: its link stops working.
    let link = invite_with_form(owner, "later@a.example", "owner").await;
    let token = link.strip_prefix(&prefix).unwrap().to_owned();
    let team = team_of(portal, a).await;
    assert_eq!(team.1.len(), 1);
    assert_eq!(team.1[0].2, "owner");
    let page = owner
        .post(
            &format!("/portal/team/invitations/{}/revoke", team.1[0].0),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status(), 303, "{}", page.body);
    assert_eq!(page.header("location"), "/portal/team?done=revoked");
    assert!(team_of(portal, a).await.1.is_empty());
    let page = portal
        .browser()
        .get(&format!("/portal/invite/{token}"))
        .await;
    assert_ne!(page.status(), 200, "a revoked link does not work");
}

/// The four forms of the page, as (path, fields) with `csrf`, aimed at A's staff user, A's
/// owner and A's pending invitation.
fn posts(csrf: &str, ids: (i64, i64, i64)) -> Vec<(String, Vec<(&'static str, String)>)> {
    let (owner_id, staff_id, inv) = ids;
    let c = || ("csrf", csrf.to_owned());
    vec![
        (
            "/portal/team".to_owned(),
            vec![
                c(),
                ("email", "x@a.example".to_owned()),
                ("role", "owner".to_owned()),
            ],
        ),
        (
            format!("/portal/team/users/{staff_id}/role"),
            vec![c(), ("role", "owner".to_owned())],
        ),
        (
            format!("/portal/team/users/{owner_id}/remove"),
            vec![c(), ("confirm", "yes".to_owned())],
        ),
        (format!("/portal/team/invitations/{inv}/revoke"), vec![c()]),
    ]
}

fn form<'a>(f: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    f.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn staff_forged_forms_other_tenants_and_the_last_owner_change_nothing() {
    let portal = PortalMesh::start().await;
    let (a, b) = portal.tenants;
    let mut owner_a = portal
        .signed_in_user(a, "owner@a.example", UserRole::Owner)
        .await;
    let mut staff = portal
        .signed_in_user(a, "staff@a.example", UserRole::Staff)
        .await;
    invite_with_form(&mut owner_a, "pending@a.example", "staff").await;
    let before = team_of(&portal, a).await;
    let ids = (
        user_id(&before, "owner@a.example"),
        user_id(&before, "staff@a.example"),
        before.1[0].0,
    );

    // Staff: the 403 page, no link, and each post refused.
    assert_eq!(staff.get("/portal/team").await.status(), 403);
    let home = staff.get("/portal/").await;
    assert!(!home.body.contains("href=\"/portal/team\""));
    let staff_csrf = staff.csrf("/portal/security").await;
    for (path, f) in posts(&staff_csrf, ids) {
        assert_eq!(staff.post(&path, &form(&f)).await.status(), 403, "{path}");
    }
    assert_eq!(team_of(&portal, a).await, before);

    // The owner's forms without the CSRF token, or from another origin: refused.
    let csrf = owner_a.csrf("/portal/team").await;
    for (path, f) in posts(&csrf, ids) {
        let without: Vec<_> = form(&f).into_iter().filter(|(k, _)| *k != "csrf").collect();
        assert_eq!(owner_a.post(&path, &without).await.status(), 403, "{path}");
        let page = owner_a
            .post_from(&path, &form(&f), Some("https://evil.example"))
            .await;
        assert_eq!(page.status(), 403, "{path}");
    }
    assert_eq!(team_of(&portal, a).await, before);

    another_tenant_gets_404(&portal, b, ids).await;
    assert_eq!(team_of(&portal, a).await, before);
    yourself_is_refused(&mut owner_a, ids.0).await;
    assert_eq!(team_of(&portal, a).await, before);
}

/// Tenant B's owner: A's ids (and non-ids) are 404, nothing of A shown, B unchanged.
async fn another_tenant_gets_404(portal: &PortalMesh, b: i64, ids: (i64, i64, i64)) {
    let mut owner_b = portal
        .signed_in_user(b, "owner@b.example", UserRole::Owner)
        .await;
    let page = owner_b.get("/portal/team").await;
    assert!(!page.body.contains("a.example"), "{}", page.body);
    let before_b = team_of(portal, b).await;
    let csrf_b = super::csrf_of(&page.body);
    for (path, f) in posts(&csrf_b, ids).into_iter().skip(1) {
        let page = owner_b.post(&path, &form(&f)).await;
        assert_eq!(page.status(), 404, "{path}: {}", page.body);
    }
    for path in [
        "/portal/team/users/nope/remove",
        "/portal/team/invitations/-1/revoke",
    ] {
        let page = owner_b
            .post(path, &[("csrf", &csrf_b), ("confirm", "yes")])
            .await;
        assert_eq!(page.status(), 404, "{path}");
    }
    assert_eq!(team_of(portal, b).await, before_b);
}

/// The only owner cannot remove or demote themself (a clear message); a malformed address names
/// the field. The caller checks nothing changed.
async fn yourself_is_refused(owner_a: &mut super::Browser, owner_id: i64) {
    let csrf = owner_a.csrf("/portal/team").await;
    let page = owner_a
        .post(
            &format!("/portal/team/users/{owner_id}/remove"),
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(page.status(), 409, "{}", page.body);
    assert!(
        page.body.contains("you cannot remove yourself"),
        "{}",
        page.body
    );
    let page = owner_a
        .post(
            &format!("/portal/team/users/{owner_id}/role"),
            &[("csrf", &csrf), ("role", "staff")],
        )
        .await;
    assert_eq!(page.status(), 409, "{}", page.body);
    assert!(page.body.contains("yourself"), "{}", page.body);
    let page = owner_a
        .post(
            "/portal/team",
            &[
                ("csrf", &csrf),
                ("email", "not an address"),
                ("role", "staff"),
            ],
        )
        .await;
    assert_eq!(page.status(), 400, "{}", page.body);
    assert!(page.body.contains("email"), "{}", page.body);
}
