//! `AccountService` (the gateway's `tenant:portal` token, for the tenant portal) and
//! `AccountAdminService` (an operator's `tenant:admin`): invitations, sign-in with its two
//! throttles, sessions, password changes and resets, and exchanging a session for a tenant token
//! whose scopes follow the user's role.
//!
//! Lookups made before the tenant is known (an e-mail's users, an invitation, a reset, a
//! session) return ids through V16's definer functions; everything else happens in the tenant's
//! own transaction, where the change and its audit row commit together. Passwords are hashed and
//! verified on the blocking pool, outside any transaction. Nothing here logs an e-mail address,
//! a password, a secret or a client address.

use std::sync::Arc;

use mesh::api::tenant::*;
use mesh::domain::CustomerId;
use mesh::identity::names;
use secrecy::ExposeSecret as _;
use serde_json::json;
use tonic::{Request, Response};

use super::{RpcResult, TenantSvc, changed_by_service, target_customer};
use crate::account::secrets::{address_hash, email_hash, new_secret, presented};
use crate::account::{
    self, MAX_ACCOUNT_FAILURES, MAX_ADDRESS_FAILURES, Role, SESSION_ENDED, SIGN_IN_FAILED,
    THROTTLE_WINDOW, password, summarise_user_agent, user_actor,
};
use crate::customer::CustomerStatus;
use crate::error::{Result, TenantError};
use crate::store::accounts::{self as db, Session, User};
use crate::store::audit::actions;
use crate::store::{self, append_audit};
use crate::wire::timestamp;

/// Who a failed sign-in's audit row names as actor: nobody known acted.
const ANONYMOUS: &str = "anonymous";

/// The answer for an unknown, used or expired invitation.
const NO_INVITATION: &str = "invitation";
/// The answer for an unknown, used or expired reset token.
const NO_RESET: &str = "password reset";
/// ALREADY_EXISTS for a second user with one address in one customer.
const USER_EXISTS: &str = "the customer already has a user with this e-mail address";

/// A user as the portal shows them.
pub(super) fn portal_user(id: CustomerId, u: &User, business_name: &str) -> PortalUser {
    PortalUser {
        id: u.id,
        email: u.email.clone(),
        role: u.role.to_wire() as i32,
        customer_id: id.get(),
        business_name: business_name.to_owned(),
    }
}

/// A new session as the browser gets it.
pub(super) fn new_session(secret: &secrecy::SecretString, s: &Session) -> NewSession {
    NewSession {
        secret: secret.expose_secret().to_owned(),
        idle_expire_time: Some(timestamp(s.idle_expires_at)),
        expire_time: Some(timestamp(s.expires_at)),
    }
}

/// INVALID_ARGUMENT naming `field` when a required text is blank.
fn required(field: &str, v: &str) -> Result<()> {
    if v.trim().is_empty() {
        return Err(TenantError::invalid(field, "is required"));
    }
    Ok(())
}

/// A signed-in request: the session (open) and its user (enabled).
struct Signed {
    id: CustomerId,
    session: Session,
    user: User,
}

/// The session `sid` of the current tenant and its user, or UNAUTHENTICATED.
async fn signed(tx: &mesh::db::Tx<'_>, id: CustomerId, sid: i64) -> Result<Signed> {
    let session = db::open_session(tx, id, sid)
        .await?
        .ok_or(TenantError::Unauthenticated(SESSION_ENDED))?;
    let user = db::get_user(tx, id, session.user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or(TenantError::Unauthenticated(SESSION_ENDED))?;
    Ok(Signed { id, session, user })
}

impl TenantSvc {
    /// The key of e-mail and client address hashes: the configured one, else the database's
    /// (read once per replica).
    pub(crate) async fn account_key(&self) -> Result<Arc<Vec<u8>>> {
        if let Some(k) = &self.deps.accounts.hash_key {
            return Ok(Arc::new(k.expose_secret().to_vec()));
        }
        self.account_key
            .get_or_try_init(async || {
                let key = self
                    .deps
                    .core
                    .db
                    .service_tx(async |tx| db::account_hash_key(tx).await)
                    .await?;
                Ok::<_, TenantError>(Arc::new(key))
            })
            .await
            .cloned()
    }

    /// The (customer, session) of a presented session secret, or UNAUTHENTICATED. The rpc span
    /// learns the tenant here.
    async fn session_ids(&self, secret: &str) -> Result<(CustomerId, i64)> {
        let hash = presented(secret).ok_or(TenantError::Unauthenticated(SESSION_ENDED))?;
        let found = self
            .deps
            .core
            .db
            .service_tx(async |tx| db::session_by_secret_hash(tx, &hash).await)
            .await?
            .ok_or(TenantError::Unauthenticated(SESSION_ENDED))?;
        mesh::telemetry::record_customer(found.0);
        Ok(found)
    }

    /// Runs `f` on the open session of `secret` and its user, in their tenant's transaction.
    async fn with_session<T>(
        &self,
        secret: &str,
        f: impl AsyncFnOnce(&mesh::db::Tx<'_>, &Signed) -> Result<T>,
    ) -> Result<T> {
        let (id, sid) = self.session_ids(secret).await?;
        self.deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                let s = signed(tx, id, sid).await?;
                f(tx, &s).await
            })
            .await
    }

    /// Creates a session for `user` in the current transaction: a new secret, stored hashed.
    pub(super) async fn start_session(
        &self,
        tx: &mesh::db::Tx<'_>,
        id: CustomerId,
        user_id: i64,
        user_agent: &str,
    ) -> Result<(secrecy::SecretString, Session)> {
        let (secret, hash) = new_secret();
        let cfg = &self.deps.accounts;
        let session = db::insert_session(
            tx,
            id,
            user_id,
            &hash,
            &summarise_user_agent(user_agent),
            cfg.session_idle,
            cfg.session_max,
        )
        .await?;
        Ok((secret, session))
    }

    /// Creates a one-time invitation of `email` (normalised) to `id` with `role`, by `actor`;
    /// NOT_FOUND for an unknown customer, ALREADY_EXISTS when it has a user with that address.
    /// A pending invitation of the same address is replaced. Returns the token (shown once)
    /// and the invitation. Shared by
    /// `AccountAdminService.InviteUser` and `TeamService.CreateInvitation`.
    pub(crate) async fn invite(
        &self,
        id: CustomerId,
        email: &str,
        role: Role,
        actor: &str,
    ) -> Result<(String, db::Invitation)> {
        let key = self.account_key().await?;
        let email_hash = email_hash(&key, email);
        let (token, token_hash) = new_secret();
        let inv = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                store::require_customer_core(tx, id).await?;
                if db::user_exists(tx, id, &email_hash).await? {
                    return Err(TenantError::AlreadyExists(USER_EXISTS));
                }
                // A new invitation replaces a pending one of the same address.
                db::revoke_invitations_of(tx, id, &email_hash).await?;
                let (inv, _) = db::insert_invitation(
                    tx,
                    id,
                    &token_hash,
                    &email_hash,
                    email,
                    role,
                    actor,
                    account::INVITATION_TTL,
                )
                .await?;
                append_audit(
                    tx,
                    id,
                    actor,
                    actions::INVITED,
                    &json!({ "invitation_id": inv, "role": role.as_str() }),
                )
                .await?;
                db::get_invitation(tx, id, inv, false)
                    .await?
                    .ok_or(TenantError::NotFound(NO_INVITATION))
            })
            .await?;
        tracing::info!(
            customer_id = id.get(),
            invitation_id = inv.id,
            role = role.as_str(),
            "invitation created"
        );
        Ok((token.expose_secret().to_owned(), inv))
    }

    /// Records a failed sign-in of each of `users` (the per-account throttle and the audit log)
    /// and of the client address.
    async fn record_failures(
        &self,
        users: &[(CustomerId, i64)],
        address: &[u8],
        reason: &str,
    ) -> Result<()> {
        let pool = &self.deps.core.db;
        for &(id, user_id) in users {
            pool.tenant_tx(id, async |tx| {
                db::record_user_failure(tx, id, user_id).await?;
                append_audit(
                    tx,
                    id,
                    ANONYMOUS,
                    actions::SIGN_IN_FAILED,
                    &json!({ "user_id": user_id, "reason": reason }),
                )
                .await
            })
            .await?;
            tracing::info!(customer_id = id.get(), user_id, reason, "sign-in failed");
        }
        pool.service_tx(async |tx| db::record_address_failure(tx, address).await)
            .await
    }

    /// The users a sign-in may be for (one per customer with a user of this e-mail hash) that
    /// are not throttled, and the longest wait of those that are; RESOURCE_EXHAUSTED when the
    /// client address is throttled.
    async fn candidates(
        &self,
        email_hash: &[u8],
        address: &[u8],
    ) -> Result<(Vec<(CustomerId, User)>, Option<u64>)> {
        let pool = &self.deps.core.db;
        let (address_failures, candidates) = pool
            .service_tx(async |tx| {
                Ok::<_, TenantError>((
                    db::address_failures(tx, address, THROTTLE_WINDOW).await?,
                    db::users_by_email_hash(tx, email_hash).await?,
                ))
            })
            .await?;
        if let Some(secs) = address_failures.retry_after(MAX_ADDRESS_FAILURES, THROTTLE_WINDOW) {
            tracing::info!(
                retry_after = secs,
                "sign-in refused: too many failures from one address"
            );
            return Err(TenantError::Throttled(secs));
        }
        let mut tried = Vec::new();
        let mut throttled: Option<u64> = None;
        for (id, user_id) in candidates {
            let found = pool
                .tenant_tx(id, async |tx| {
                    let Some(user) = db::get_user(tx, id, user_id).await? else {
                        return Ok::<_, TenantError>(None);
                    };
                    let failures = db::user_failures(tx, id, user_id, THROTTLE_WINDOW).await?;
                    Ok(Some((user, failures)))
                })
                .await?;
            let Some((user, failures)) = found else {
                continue;
            };
            match failures.retry_after(MAX_ACCOUNT_FAILURES, THROTTLE_WINDOW) {
                Some(secs) => {
                    tracing::info!(
                        customer_id = id.get(),
                        user_id,
                        retry_after = secs,
                        "sign-in refused: too many failures for the account"
                    );
                    throttled = Some(throttled.map_or(secs, |t| t.max(secs)));
                }
                None => tried.push((id, user)),
            }
        }
        Ok((tried, throttled))
    }

    /// Signs `user` of `id` in: a new session and its audit row (refused while the customer is
    /// suspended).
    async fn signed_in(
        &self,
        id: CustomerId,
        user: &User,
        user_agent: &str,
    ) -> Result<SignInResponse> {
        mesh::telemetry::record_customer(id);
        let (secret, session, customer) = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                let customer = store::require_customer_core(tx, id).await?;
                // A pending customer's owner signs in to see that they are waiting; the session
                // mints no token until the customer is approved (`exchange_session`).
                customer.require_not_suspended()?;
                let (secret, session) = self.start_session(tx, id, user.id, user_agent).await?;
                append_audit(
                    tx,
                    id,
                    &user_actor(user.id),
                    actions::SIGN_IN,
                    &json!({ "session_id": session.id }),
                )
                .await?;
                Ok::<_, TenantError>((secret, session, customer))
            })
            .await?;
        tracing::info!(
            customer_id = id.get(),
            user_id = user.id,
            session_id = session.id,
            "signed in"
        );
        Ok(SignInResponse {
            user: Some(portal_user(id, user, &customer.business_name)),
            session: Some(new_session(&secret, &session)),
        })
    }
}

#[tonic::async_trait]
impl account_service_server::AccountService for TenantSvc {
    async fn get_invitation(
        &self,
        request: Request<GetInvitationRequest>,
    ) -> RpcResult<GetInvitationResponse> {
        let hash =
            presented(&request.get_ref().token).ok_or(TenantError::NotFound(NO_INVITATION))?;
        let pool = &self.deps.core.db;
        let (id, inv) = pool
            .service_tx(async |tx| db::invitation_by_token_hash(tx, &hash).await)
            .await?
            .ok_or(TenantError::NotFound(NO_INVITATION))?;
        mesh::telemetry::record_customer(id);
        let (inv, customer) = pool
            .tenant_tx(id, async |tx| {
                let inv = db::get_invitation(tx, id, inv, false)
                    .await?
                    .filter(|i| i.open)
                    .ok_or(TenantError::NotFound(NO_INVITATION))?;
                Ok::<_, TenantError>((inv, store::require_customer_core(tx, id).await?))
            })
            .await?;
        Ok(Response::new(GetInvitationResponse {
            business_name: customer.business_name,
            email: inv.email,
            role: inv.role.to_wire() as i32,
            expire_time: Some(timestamp(inv.expires_at)),
        }))
    }

    async fn accept_invitation(
        &self,
        request: Request<AcceptInvitationRequest>,
    ) -> RpcResult<AcceptInvitationResponse> {
        let r = request.into_inner();
        let hash = presented(&r.token).ok_or(TenantError::NotFound(NO_INVITATION))?;
        password::check("password", &r.password)?;
        let pool = &self.deps.core.db;
        let (id, inv_id) = pool
            .service_tx(async |tx| db::invitation_by_token_hash(tx, &hash).await)
            .await?
            .ok_or(TenantError::NotFound(NO_INVITATION))?;
        mesh::telemetry::record_customer(id);
        // A cheap NOT_FOUND before the expensive hash; checked again, locked, below.
        pool.tenant_tx(id, async |tx| {
            db::get_invitation(tx, id, inv_id, false)
                .await?
                .filter(|i| i.open)
                .ok_or(TenantError::NotFound(NO_INVITATION))
        })
        .await?;
        let password_hash = password::hash(&r.password).await?;
        let key = self.account_key().await?;
        let (user, secret, session, business_name) = pool
            .tenant_tx(id, async |tx| {
                let inv = db::get_invitation(tx, id, inv_id, true)
                    .await?
                    .filter(|i| i.open)
                    .ok_or(TenantError::NotFound(NO_INVITATION))?;
                let email_hash = email_hash(&key, &inv.email);
                if db::user_exists(tx, id, &email_hash).await? {
                    return Err(TenantError::AlreadyExists(USER_EXISTS));
                }
                let user_id =
                    db::insert_user(tx, id, &email_hash, &inv.email, inv.role, &password_hash)
                        .await
                        .map_err(super::taken(USER_EXISTS))?;
                db::use_invitation(tx, id, inv.id, Some(user_id)).await?;
                let actor = user_actor(user_id);
                append_audit(
                    tx,
                    id,
                    &actor,
                    actions::INVITATION_ACCEPTED,
                    &json!({ "invitation_id": inv.id, "role": inv.role.as_str() }),
                )
                .await?;
                let (secret, session) = self.start_session(tx, id, user_id, &r.user_agent).await?;
                append_audit(
                    tx,
                    id,
                    &actor,
                    actions::SIGN_IN,
                    &json!({ "session_id": session.id }),
                )
                .await?;
                let user = db::get_user(tx, id, user_id)
                    .await?
                    .ok_or(TenantError::NotFound("user"))?;
                let customer = store::require_customer_core(tx, id).await?;
                Ok((user, secret, session, customer.business_name))
            })
            .await?;
        tracing::info!(
            customer_id = id.get(),
            user_id = user.id,
            "invitation accepted"
        );
        Ok(Response::new(AcceptInvitationResponse {
            user: Some(portal_user(id, &user, &business_name)),
            session: Some(new_session(&secret, &session)),
        }))
    }

    async fn sign_in(&self, request: Request<SignInRequest>) -> RpcResult<SignInResponse> {
        let r = request.into_inner();
        required("client_address", &r.client_address)?;
        required("password", &r.password)?;
        let email = account::normalise_email("email", &r.email)?;
        let key = self.account_key().await?;
        let address = address_hash(&key, &r.client_address);
        let (mut tried, throttled) = self.candidates(&email_hash(&key, &email), &address).await?;
        if tried.is_empty() {
            if let Some(secs) = throttled {
                // Refused before the password is looked at; nothing is recorded.
                return Err(TenantError::Throttled(secs).into());
            }
            // An unknown address costs what a wrong password costs.
            password::verify(&r.password, None).await?;
            self.record_failures(&[], &address, "unknown").await?;
            return Err(TenantError::Unauthenticated(SIGN_IN_FAILED).into());
        }
        let mut winner = None;
        for (i, (_, user)) in tried.iter().enumerate() {
            let ok = password::verify(&r.password, Some(user.password_hash.clone())).await?;
            if ok && !user.disabled && winner.is_none() {
                winner = Some(i);
            }
        }
        let Some(i) = winner else {
            let users: Vec<(CustomerId, i64)> = tried.iter().map(|(id, u)| (*id, u.id)).collect();
            let reason = if tried.iter().all(|(_, u)| u.disabled) {
                "disabled"
            } else {
                "password"
            };
            self.record_failures(&users, &address, reason).await?;
            return Err(TenantError::Unauthenticated(SIGN_IN_FAILED).into());
        };
        let (id, user) = tried.swap_remove(i);
        Ok(Response::new(
            self.signed_in(id, &user, &r.user_agent).await?,
        ))
    }

    async fn request_password_reset(
        &self,
        request: Request<RequestPasswordResetRequest>,
    ) -> RpcResult<RequestPasswordResetResponse> {
        let r = request.into_inner();
        required("client_address", &r.client_address)?;
        let email = account::normalise_email("email", &r.email)?;
        let key = self.account_key().await?;
        let email_hash = email_hash(&key, &email);
        let pool = &self.deps.core.db;
        let candidates = pool
            .service_tx(async |tx| db::users_by_email_hash(tx, &email_hash).await)
            .await?;
        let mut mails = Vec::new();
        for (id, user_id) in candidates {
            let (token, token_hash) = new_secret();
            let mail = pool
                .tenant_tx(id, async |tx| {
                    let Some(user) = db::get_user(tx, id, user_id).await?.filter(|u| !u.disabled)
                    else {
                        return Ok::<_, TenantError>(None);
                    };
                    if let Some(age) = db::last_reset_age(tx, id, user_id).await?
                        && age < account::RESET_INTERVAL.as_secs_f64()
                    {
                        return Ok(None);
                    }
                    let expires =
                        db::insert_reset(tx, id, user_id, &token_hash, account::RESET_TTL).await?;
                    append_audit(
                        tx,
                        id,
                        ANONYMOUS,
                        actions::PASSWORD_RESET_REQUESTED,
                        &json!({ "user_id": user_id }),
                    )
                    .await?;
                    let customer = store::require_customer_core(tx, id).await?;
                    Ok(Some(PasswordResetMail {
                        email: user.email,
                        token: token.expose_secret().to_owned(),
                        business_name: customer.business_name,
                        expire_time: Some(timestamp(expires)),
                    }))
                })
                .await?;
            if mail.is_some() {
                tracing::info!(customer_id = id.get(), user_id, "password reset requested");
            }
            mails.extend(mail);
        }
        Ok(Response::new(RequestPasswordResetResponse { mails }))
    }

    async fn reset_password(
        &self,
        request: Request<ResetPasswordRequest>,
    ) -> RpcResult<ResetPasswordResponse> {
        let r = request.into_inner();
        let hash = presented(&r.token).ok_or(TenantError::NotFound(NO_RESET))?;
        password::check("new_password", &r.new_password)?;
        let pool = &self.deps.core.db;
        let (id, reset) = pool
            .service_tx(async |tx| db::reset_by_token_hash(tx, &hash).await)
            .await?
            .ok_or(TenantError::NotFound(NO_RESET))?;
        mesh::telemetry::record_customer(id);
        let password_hash = password::hash(&r.new_password).await?;
        let (user_id, ended) = pool
            .tenant_tx(id, async |tx| {
                let user_id = db::use_reset(tx, id, reset)
                    .await?
                    .ok_or(TenantError::NotFound(NO_RESET))?;
                db::set_password(tx, id, user_id, &password_hash).await?;
                db::clear_user_failures(tx, id, user_id).await?;
                let ended = db::revoke_user_sessions(tx, id, user_id, None).await?;
                append_audit(
                    tx,
                    id,
                    &user_actor(user_id),
                    actions::PASSWORD_RESET,
                    &json!({ "ended_sessions": ended }),
                )
                .await?;
                Ok::<_, TenantError>((user_id, ended))
            })
            .await?;
        tracing::info!(
            customer_id = id.get(),
            user_id,
            ended_sessions = ended,
            "password reset"
        );
        Ok(Response::new(ResetPasswordResponse {}))
    }

    async fn exchange_session(
        &self,
        request: Request<ExchangeSessionRequest>,
    ) -> RpcResult<ExchangeSessionResponse> {
        let (id, sid) = self.session_ids(&request.get_ref().session_secret).await?;
        let idle = self.deps.accounts.session_idle;
        let (session, user, customer) = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                let session = db::touch_session(tx, id, sid, idle)
                    .await?
                    .ok_or(TenantError::Unauthenticated(SESSION_ENDED))?;
                let user = db::get_user(tx, id, session.user_id)
                    .await?
                    .filter(|u| !u.disabled)
                    .ok_or(TenantError::Unauthenticated(SESSION_ENDED))?;
                let customer = store::require_customer_core(tx, id).await?;
                Ok::<_, TenantError>((session, user, customer))
            })
            .await?;
        if customer.status == CustomerStatus::Pending {
            // No tenant token for a customer awaiting approval: the portal shows the waiting
            // page and nothing else.
            tracing::debug!(
                customer_id = id.get(),
                user_id = user.id,
                "session of a pending customer: no token"
            );
            return Ok(Response::new(ExchangeSessionResponse {
                tenant_token: String::new(),
                token_expire_time: None,
                scopes: Vec::new(),
                user: Some(portal_user(id, &user, &customer.business_name)),
                session_id: sid,
                idle_expire_time: Some(timestamp(session.idle_expires_at)),
                pending_approval: true,
            }));
        }
        customer.require_active()?;
        let scopes = user.role.scopes();
        let (token, expire_time) = self.mint(
            id,
            &user_actor(user.id),
            &[names::TENANT_SVC, names::MEMORY_SVC, names::MEDIA_SVC],
            scopes,
            account::PORTAL_TOKEN_TTL,
        )?;
        tracing::debug!(
            customer_id = id.get(),
            user_id = user.id,
            session_id = sid,
            "session exchanged"
        );
        Ok(Response::new(ExchangeSessionResponse {
            tenant_token: token,
            token_expire_time: Some(expire_time),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            user: Some(portal_user(id, &user, &customer.business_name)),
            session_id: sid,
            idle_expire_time: Some(timestamp(session.idle_expires_at)),
            pending_approval: false,
        }))
    }

    async fn sign_out(&self, request: Request<SignOutRequest>) -> RpcResult<SignOutResponse> {
        let Ok((id, sid)) = self.session_ids(&request.get_ref().session_secret).await else {
            return Ok(Response::new(SignOutResponse {}));
        };
        self.deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                if let Some(s) = db::open_session(tx, id, sid).await?
                    && db::revoke_session(tx, id, sid).await?
                {
                    append_audit(
                        tx,
                        id,
                        &user_actor(s.user_id),
                        actions::SIGNED_OUT,
                        &json!({ "session_id": sid }),
                    )
                    .await?;
                }
                Ok::<_, TenantError>(())
            })
            .await?;
        Ok(Response::new(SignOutResponse {}))
    }

    async fn sign_out_everywhere(
        &self,
        request: Request<SignOutEverywhereRequest>,
    ) -> RpcResult<SignOutEverywhereResponse> {
        let ended = self
            .with_session(&request.get_ref().session_secret, async |tx, s| {
                let ended = db::revoke_user_sessions(tx, s.id, s.user.id, None).await?;
                append_audit(
                    tx,
                    s.id,
                    &user_actor(s.user.id),
                    actions::SIGNED_OUT_EVERYWHERE,
                    &json!({ "ended_sessions": ended }),
                )
                .await?;
                Ok(ended)
            })
            .await?;
        Ok(Response::new(SignOutEverywhereResponse {
            ended_sessions: ended as i64,
        }))
    }

    async fn change_password(
        &self,
        request: Request<ChangePasswordRequest>,
    ) -> RpcResult<ChangePasswordResponse> {
        let r = request.into_inner();
        required("current_password", &r.current_password)?;
        password::check("new_password", &r.new_password)?;
        let (id, sid) = self.session_ids(&r.session_secret).await?;
        let pool = &self.deps.core.db;
        let (user, failures) = pool
            .tenant_tx(id, async |tx| {
                let s = signed(tx, id, sid).await?;
                let failures = db::user_failures(tx, id, s.user.id, THROTTLE_WINDOW).await?;
                Ok::<_, TenantError>((s.user, failures))
            })
            .await?;
        if let Some(secs) = failures.retry_after(MAX_ACCOUNT_FAILURES, THROTTLE_WINDOW) {
            return Err(TenantError::Throttled(secs).into());
        }
        if !password::verify(&r.current_password, Some(user.password_hash.clone())).await? {
            pool.tenant_tx(id, async |tx| {
                db::record_user_failure(tx, id, user.id).await?;
                append_audit(
                    tx,
                    id,
                    &user_actor(user.id),
                    actions::SIGN_IN_FAILED,
                    &json!({ "user_id": user.id, "reason": "change_password" }),
                )
                .await
            })
            .await?;
            return Err(TenantError::invalid("current_password", "is not correct").into());
        }
        let password_hash = password::hash(&r.new_password).await?;
        let (secret, session) = pool
            .tenant_tx(id, async |tx| {
                let s = signed(tx, id, sid).await?;
                db::set_password(tx, id, s.user.id, &password_hash).await?;
                // Every session ends, this one included; a new one replaces it.
                let ended = db::revoke_user_sessions(tx, id, s.user.id, None).await?;
                let ua = if r.user_agent.trim().is_empty() {
                    s.session.user_agent.clone()
                } else {
                    r.user_agent.clone()
                };
                let (secret, session) = self.start_session(tx, id, s.user.id, &ua).await?;
                append_audit(
                    tx,
                    id,
                    &user_actor(s.user.id),
                    actions::PASSWORD_CHANGED,
                    &json!({ "ended_sessions": ended.saturating_sub(1), "session_id": session.id }),
                )
                .await?;
                Ok::<_, TenantError>((secret, session))
            })
            .await?;
        tracing::info!(
            customer_id = id.get(),
            user_id = user.id,
            "password changed"
        );
        Ok(Response::new(ChangePasswordResponse {
            session: Some(new_session(&secret, &session)),
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> RpcResult<ListSessionsResponse> {
        let sessions = self
            .with_session(&request.get_ref().session_secret, async |tx, s| {
                Ok(db::list_sessions(tx, s.id, s.user.id)
                    .await?
                    .into_iter()
                    .map(|x| SessionInfo {
                        id: x.id,
                        create_time: Some(timestamp(x.created_at)),
                        last_seen_time: Some(timestamp(x.last_seen_at)),
                        user_agent: x.user_agent,
                        current: x.id == s.session.id,
                        expire_time: Some(timestamp(x.expires_at)),
                    })
                    .collect())
            })
            .await?;
        Ok(Response::new(ListSessionsResponse { sessions }))
    }

    async fn revoke_session(
        &self,
        request: Request<RevokeSessionRequest>,
    ) -> RpcResult<RevokeSessionResponse> {
        let r = request.into_inner();
        self.with_session(&r.session_secret, async |tx, s| {
            if !db::revoke_user_session(tx, s.id, s.user.id, r.session_id).await? {
                return Err(TenantError::NotFound("session"));
            }
            append_audit(
                tx,
                s.id,
                &user_actor(s.user.id),
                actions::SESSION_REVOKED,
                &json!({ "session_id": r.session_id }),
            )
            .await
        })
        .await?;
        Ok(Response::new(RevokeSessionResponse {}))
    }
}

#[tonic::async_trait]
impl account_admin_service_server::AccountAdminService for TenantSvc {
    async fn invite_user(
        &self,
        request: Request<InviteUserRequest>,
    ) -> RpcResult<InviteUserResponse> {
        let by = changed_by_service(&request)?;
        let r = request.into_inner();
        let id = target_customer("customer_id", r.customer_id)?;
        let email = account::normalise_email("email", &r.email)?;
        let role = Role::from_wire("role", r.role)?;
        let (token, inv) = self.invite(id, &email, role, &by).await?;
        Ok(Response::new(InviteUserResponse {
            token,
            expire_time: Some(timestamp(inv.expires_at)),
            invitation_id: inv.id,
        }))
    }
}
