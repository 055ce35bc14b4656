//! `TeamService` with a tenant token (the portal's token of a signed-in owner): the tenant's
//! users and invitations (scope `tenant:team`), here; its API keys (`tenant:keys`) and audit log
//! (`tenant:audit`) are delegated to `keys.rs` and `audit_log.rs`. The customer is always the token's; another tenant's user or invitation id is
//! NOT_FOUND like an unknown one. Every change writes an audit row with the token's subject as
//! the actor, in the change's transaction.

use mesh::api::tenant::*;
use mesh::auth::tenant_caller;
use mesh::domain::CustomerId;
use serde_json::json;
use tonic::{Request, Response, Status};

use super::{RpcResult, TenantSvc};
use crate::account::{self, Role, user_actor};
use crate::error::TenantError;
use crate::store::accounts::{self as db, Invitation, User};
use crate::store::append_audit;
use crate::store::audit::actions;
use crate::wire::timestamp;

/// The caller's customer and subject (`user:<id>` for a portal user).
fn caller<T>(request: &Request<T>) -> std::result::Result<(CustomerId, String), Status> {
    let c = tenant_caller(request)?;
    Ok((c.customer_id, c.subject.clone()))
}

fn member(u: &User, last_sign_in: Option<chrono::DateTime<chrono::Utc>>) -> TeamMember {
    TeamMember {
        id: u.id,
        email: u.email.clone(),
        role: u.role.to_wire() as i32,
        create_time: Some(timestamp(u.created_at)),
        last_sign_in_time: last_sign_in.map(timestamp),
    }
}

fn team_invitation(i: &Invitation) -> TeamInvitation {
    TeamInvitation {
        id: i.id,
        email: i.email.clone(),
        role: i.role.to_wire() as i32,
        create_time: Some(timestamp(i.created_at)),
        expire_time: Some(timestamp(i.expires_at)),
        created_by: i.created_by.clone(),
    }
}

/// FAILED_PRECONDITION when the caller acts on themselves (an owner cannot remove or demote
/// themselves: another owner must).
fn not_yourself(actor: &str, user_id: i64, what: &str) -> Result<(), TenantError> {
    if actor == user_actor(user_id) {
        return Err(TenantError::FailedPrecondition(format!(
            "you cannot {what} yourself; ask another owner"
        )));
    }
    Ok(())
}

/// FAILED_PRECONDITION when `user_id` is the tenant's last owner (the owners are locked, so two
/// concurrent changes cannot both pass).
async fn not_last_owner(
    tx: &mesh::db::Tx<'_>,
    id: CustomerId,
    user_id: i64,
    what: &str,
) -> Result<(), TenantError> {
    let owners = db::lock_owner_ids(tx, id).await?;
    if owners == [user_id] {
        return Err(TenantError::FailedPrecondition(format!(
            "cannot {what} the last owner; make another user an owner first"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl team_service_server::TeamService for TenantSvc {
    async fn list_users(&self, request: Request<ListUsersRequest>) -> RpcResult<ListUsersResponse> {
        let (id, _) = caller(&request)?;
        let users = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| db::list_team(tx, id).await)
            .await?;
        Ok(Response::new(ListUsersResponse {
            users: users.iter().map(|(u, last)| member(u, *last)).collect(),
        }))
    }

    async fn create_invitation(
        &self,
        request: Request<CreateInvitationRequest>,
    ) -> RpcResult<CreateInvitationResponse> {
        let (id, actor) = caller(&request)?;
        let r = request.into_inner();
        let email = account::normalise_email("email", &r.email)?;
        let role = Role::from_wire("role", r.role)?;
        let (token, inv) = self.invite(id, &email, role, &actor).await?;
        Ok(Response::new(CreateInvitationResponse {
            invitation: Some(team_invitation(&inv)),
            token,
        }))
    }

    async fn list_invitations(
        &self,
        request: Request<ListInvitationsRequest>,
    ) -> RpcResult<ListInvitationsResponse> {
        let (id, _) = caller(&request)?;
        let invitations = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| db::list_open_invitations(tx, id).await)
            .await?;
        Ok(Response::new(ListInvitationsResponse {
            invitations: invitations.iter().map(team_invitation).collect(),
        }))
    }

    async fn revoke_invitation(
        &self,
        request: Request<RevokeInvitationRequest>,
    ) -> RpcResult<RevokeInvitationResponse> {
        let (id, actor) = caller(&request)?;
        let inv = request.get_ref().invitation_id;
        self.deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                if !db::revoke_invitation(tx, id, inv).await? {
                    return Err(TenantError::NotFound("invitation"));
                }
                append_audit(
                    tx,
                    id,
                    &actor,
                    actions::INVITATION_REVOKED,
                    &json!({ "invitation_id": inv }),
                )
                .await
            })
            .await?;
        tracing::info!(
            customer_id = id.get(),
            invitation_id = inv,
            "invitation revoked"
        );
        Ok(Response::new(RevokeInvitationResponse {}))
    }

    async fn change_user_role(
        &self,
        request: Request<ChangeUserRoleRequest>,
    ) -> RpcResult<ChangeUserRoleResponse> {
        let (id, actor) = caller(&request)?;
        let r = request.into_inner();
        let role = Role::from_wire("role", r.role)?;
        let (user, last) = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                let before = db::get_user(tx, id, r.user_id)
                    .await?
                    .ok_or(TenantError::NotFound("user"))?;
                if before.role != role {
                    not_yourself(&actor, r.user_id, "change the role of")?;
                    if before.role == Role::Owner {
                        not_last_owner(tx, id, r.user_id, "demote").await?;
                    }
                    db::set_role(tx, id, r.user_id, role).await?;
                    append_audit(
                        tx,
                        id,
                        &actor,
                        actions::ROLE_CHANGED,
                        &json!({
                            "user_id": r.user_id,
                            "from": before.role.as_str(),
                            "to": role.as_str(),
                        }),
                    )
                    .await?;
                }
                let user = db::get_user(tx, id, r.user_id)
                    .await?
                    .ok_or(TenantError::NotFound("user"))?;
                Ok::<_, TenantError>((user, db::last_sign_in(tx, id, r.user_id).await?))
            })
            .await?;
        tracing::info!(
            customer_id = id.get(),
            user_id = user.id,
            role = user.role.as_str(),
            "user role set"
        );
        Ok(Response::new(ChangeUserRoleResponse {
            user: Some(member(&user, last)),
        }))
    }

    async fn remove_user(
        &self,
        request: Request<RemoveUserRequest>,
    ) -> RpcResult<RemoveUserResponse> {
        let (id, actor) = caller(&request)?;
        let user_id = request.get_ref().user_id;
        let ended = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                let user = db::get_user(tx, id, user_id)
                    .await?
                    .ok_or(TenantError::NotFound("user"))?;
                not_yourself(&actor, user_id, "remove")?;
                if user.role == Role::Owner {
                    not_last_owner(tx, id, user_id, "remove").await?;
                }
                let ended = db::revoke_user_sessions(tx, id, user_id, None).await?;
                db::delete_user(tx, id, user_id).await?;
                append_audit(
                    tx,
                    id,
                    &actor,
                    actions::USER_REMOVED,
                    &json!({
                        "user_id": user_id,
                        "role": user.role.as_str(),
                        "ended_sessions": ended,
                    }),
                )
                .await?;
                Ok::<_, TenantError>(ended)
            })
            .await?;
        tracing::info!(
            customer_id = id.get(),
            user_id,
            ended_sessions = ended,
            "user removed"
        );
        Ok(Response::new(RemoveUserResponse {
            sessions_ended: i32::try_from(ended).unwrap_or(i32::MAX),
        }))
    }

    async fn create_api_key(
        &self,
        request: Request<CreateApiKeyRequest>,
    ) -> RpcResult<CreateApiKeyResponse> {
        let caller = tenant_caller(&request)?.clone();
        let r = request.into_inner();
        Ok(Response::new(
            TenantSvc::create_api_key(self, &caller, r).await?,
        ))
    }

    async fn list_api_keys(
        &self,
        request: Request<ListApiKeysRequest>,
    ) -> RpcResult<ListApiKeysResponse> {
        let caller = tenant_caller(&request)?;
        Ok(Response::new(TenantSvc::list_api_keys(self, caller).await?))
    }

    async fn revoke_api_key(
        &self,
        request: Request<RevokeApiKeyRequest>,
    ) -> RpcResult<RevokeApiKeyResponse> {
        let caller = tenant_caller(&request)?.clone();
        let r = request.into_inner();
        Ok(Response::new(
            TenantSvc::revoke_api_key(self, &caller, r).await?,
        ))
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> RpcResult<ListAuditEventsResponse> {
        let caller = tenant_caller(&request)?.clone();
        let r = request.into_inner();
        Ok(Response::new(
            TenantSvc::list_audit_events(self, &caller, r).await?,
        ))
    }
}
