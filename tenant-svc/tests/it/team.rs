//! `TeamService`'s team part (issue 19) with a signed-in owner's portal token: listing users,
//! invitations (created, replaced, listed, revoked), role changes and removals with the
//! last-owner and yourself rules, another tenant's ids, staff refused, and the scopes of the API
//! key and audit RPCs.

use mesh::api::tenant::team_service_client::TeamServiceClient;
use mesh::api::tenant::*;
use mesh::identity::scope;
use tonic::Code;
use tonic::transport::Channel;

use crate::accounts::{PASSWORD, Svc};
use crate::common::{self, auth};

fn team(s: &Svc) -> TeamServiceClient<Channel> {
    TeamServiceClient::new(s.channel.clone())
}

/// The tenant token of a user's session.
async fn token_of(s: &Svc, secret: &str) -> String {
    s.exchange(secret).await.unwrap().tenant_token
}

/// ChangeUserRole of `user_id` to `role` with `token`.
fn role_request(
    user_id: i64,
    role: UserRole,
    token: &str,
) -> tonic::Request<ChangeUserRoleRequest> {
    auth(
        ChangeUserRoleRequest {
            user_id,
            role: role as i32,
        },
        token,
    )
}

/// Whether an invitation token still opens its page.
async fn link_works(s: &Svc, token: &str) -> bool {
    s.accounts()
        .get_invitation(auth(
            GetInvitationRequest {
                token: token.into(),
            },
            &s.portal_token(),
        ))
        .await
        .is_ok()
}

/// An owner invites, re-invites (the older link stops working), lists and revokes invitations;
/// an address already in the team is ALREADY_EXISTS; staff are refused and store nothing.
#[tokio::test]
async fn an_owner_manages_invitations_and_staff_cannot() {
    let s = Svc::start().await;
    let c = s.customer("Peterson").await;
    let owner = token_of(
        &s,
        &s.user(c, "owner@peterson.example", UserRole::Owner).await,
    )
    .await;
    let invite = |email: &str, role: UserRole| {
        auth(
            CreateInvitationRequest {
                email: email.into(),
                role: role as i32,
            },
            &owner,
        )
    };
    let first = team(&s)
        .create_invitation(invite("Desk@Peterson.example", UserRole::Staff))
        .await
        .unwrap()
        .into_inner();
    let inv = first.invitation.unwrap();
    assert_eq!(
        (inv.email.as_str(), inv.role),
        ("desk@peterson.example", UserRole::Staff as i32)
    );
    assert!(inv.created_by.starts_with("user:"), "{}", inv.created_by);
    let second = team(&s)
        .create_invitation(invite("desk@peterson.example", UserRole::Staff))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !link_works(&s, &first.token).await,
        "the replaced link still works"
    );
    assert!(link_works(&s, &second.token).await);
    let listed = team(&s)
        .list_invitations(auth(ListInvitationsRequest {}, &owner))
        .await
        .unwrap()
        .into_inner()
        .invitations;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, second.invitation.as_ref().unwrap().id);

    let e = team(&s)
        .create_invitation(invite("owner@peterson.example", UserRole::Staff))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let e = team(&s)
        .create_invitation(invite("desk@peterson.example", UserRole::Unspecified))
        .await
        .unwrap_err();
    assert!(e.message().starts_with("role"), "{}", e.message());

    team(&s)
        .revoke_invitation(auth(
            RevokeInvitationRequest {
                invitation_id: listed[0].id,
            },
            &owner,
        ))
        .await
        .unwrap();
    assert!(!link_works(&s, &second.token).await);
    let e = team(&s)
        .revoke_invitation(auth(
            RevokeInvitationRequest {
                invitation_id: listed[0].id,
            },
            &owner,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    staff_cannot_manage_the_team(&s, c).await;
}

/// Staff hold no `tenant:team`: refused, nothing stored; the owner's changes were audited.
async fn staff_cannot_manage_the_team(s: &Svc, c: i64) {
    let staff = token_of(
        s,
        &s.user(c, "staff@peterson.example", UserRole::Staff).await,
    )
    .await;
    let before = s.snapshot().await;
    let e = team(s)
        .create_invitation(auth(
            CreateInvitationRequest {
                email: "x@peterson.example".into(),
                role: UserRole::Owner as i32,
            },
            &staff,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = team(s)
        .list_users(auth(ListUsersRequest {}, &staff))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(s.snapshot().await, before);
    let actions = s.audit_actions(c).await;
    for a in ["team.invited", "team.invitation_revoked"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
}

/// Roles and removals: owners first in the list; nobody demotes or removes themselves; the last
/// owner is neither demoted nor removed; removing ends the user's sessions; another tenant's user
/// id is NOT_FOUND and changes nothing.
#[tokio::test]
async fn roles_and_removals_keep_an_owner_and_stay_in_the_tenant() {
    let s = Svc::start().await;
    let peterson = s.customer("Peterson").await;
    let smith = s.customer("Smith").await;
    let owner_secret = s
        .user(peterson, "owner@peterson.example", UserRole::Owner)
        .await;
    let owner = token_of(&s, &owner_secret).await;
    let owner_id = s.exchange(&owner_secret).await.unwrap().user.unwrap().id;
    let staff_secret = s
        .user(peterson, "abby@peterson.example", UserRole::Staff)
        .await;
    let staff_id = s.exchange(&staff_secret).await.unwrap().user.unwrap().id;
    let smith_secret = s.user(smith, "owner@smith.example", UserRole::Owner).await;
    let smith_id = s.exchange(&smith_secret).await.unwrap().user.unwrap().id;

    let users = team(&s)
        .list_users(auth(ListUsersRequest {}, &owner))
        .await
        .unwrap()
        .into_inner()
        .users;
    let emails: Vec<&str> = users.iter().map(|u| u.email.as_str()).collect();
    assert_eq!(emails, ["owner@peterson.example", "abby@peterson.example"]);
    assert!(users.iter().all(|u| u.last_sign_in_time.is_some()));

    // Yourself, and (with a token that is not the owner's own) the last owner.
    let e = team(&s)
        .change_user_role(role_request(owner_id, UserRole::Staff, &owner))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let other = common::tenant_token(&s.keys, peterson, &[scope::TENANT_TEAM]);
    let e = team(&s)
        .change_user_role(role_request(owner_id, UserRole::Staff, &other))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    let e = team(&s)
        .remove_user(auth(RemoveUserRequest { user_id: owner_id }, &other))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    another_tenants_user_is_not_found(&s, &owner, smith_id, &smith_secret).await;

    // Promote the staff user; the next exchange carries the owner's scopes.
    let promoted = team(&s)
        .change_user_role(role_request(staff_id, UserRole::Owner, &owner))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(promoted.role, UserRole::Owner as i32);
    assert!(
        s.exchange(&staff_secret)
            .await
            .unwrap()
            .scopes
            .iter()
            .any(|x| x == scope::TENANT_TEAM)
    );
    // With two owners, one may remove the other: their sessions end.
    let removed = team(&s)
        .remove_user(auth(RemoveUserRequest { user_id: staff_id }, &owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.sessions_ended, 1);
    assert_eq!(
        s.exchange(&staff_secret).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        s.sign_in("abby@peterson.example", PASSWORD)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let actions = s.audit_actions(peterson).await;
    for a in ["team.role_changed", "team.user_removed"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
}

/// Another tenant's user id: NOT_FOUND for a role change and a removal, and untouched.
async fn another_tenants_user_is_not_found(
    s: &Svc,
    owner: &str,
    smith_id: i64,
    smith_secret: &str,
) {
    let before = s.snapshot().await;
    let e = team(s)
        .change_user_role(role_request(smith_id, UserRole::Staff, owner))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = team(s)
        .remove_user(auth(RemoveUserRequest { user_id: smith_id }, owner))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(s.snapshot().await, before);
    s.exchange(smith_secret).await.unwrap();
}

/// The API key and audit RPCs need their own scopes (`tenant:keys`, `tenant:audit`), not
/// `tenant:team`.
#[tokio::test]
async fn key_and_audit_rpcs_need_their_scopes() {
    let s = Svc::start().await;
    let c = s.customer("Peterson").await;
    let team_only = common::tenant_token(&s.keys, c, &[scope::TENANT_TEAM]);
    let e = team(&s)
        .list_api_keys(auth(ListApiKeysRequest {}, &team_only))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = team(&s)
        .list_audit_events(auth(ListAuditEventsRequest::default(), &team_only))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
}
