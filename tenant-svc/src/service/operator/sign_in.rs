//! Operators' sign-in, sessions and accounts: `OperatorService.OperatorSignIn`,
//! `OperatorSignOut`, `GetOperatorSession` and the session check every console action starts
//! with ([`TenantSvc::operator_session`]); `OperatorAdminService` (`neurosphere operator add`).
//!
//! Sign-in needs the password and the current TOTP code; every failure gets one message in the
//! same time, counts towards the operator's throttle (10 a minute) and the client address's
//! (30 a minute, shared with the portal's sign-in), and nothing else is stored. A code's time
//! step is recorded in the transaction that creates the session, so a code works once. Nothing
//! here logs an e-mail address, a password, a code, a secret or a client address.

use mesh::api::tenant::*;
use secrecy::ExposeSecret as _;

use crate::account::secrets::{address_hash, email_hash, new_secret, presented};
use crate::account::{self, MAX_ADDRESS_FAILURES, THROTTLE_WINDOW, password, summarise_user_agent};
use crate::error::{Result, TenantError};
use crate::operator::{MAX_ACCOUNT_FAILURES, SESSION_ENDED, SIGN_IN_FAILED, seal, totp};
use crate::service::TenantSvc;
use crate::store::accounts as accounts_db;
use crate::store::operators::{self as db, OperatorRow};
use crate::wire::timestamp;

/// A verified operator session: who acts.
#[derive(Debug, Clone)]
pub struct OperatorCaller {
    /// The operator.
    pub operator_id: i64,
    /// The session.
    pub session_id: i64,
    /// The session's idle expiry after this request.
    pub idle_expires_at: chrono::DateTime<chrono::Utc>,
}

impl OperatorCaller {
    /// The actor of the operator's changes in audit logs and history.
    pub fn actor(&self) -> String {
        crate::operator::operator_actor(self.operator_id)
    }
}

/// INVALID_ARGUMENT naming `field` when a required text is blank.
fn required(field: &str, v: &str) -> Result<()> {
    if v.trim().is_empty() {
        return Err(TenantError::invalid(field, "is required"));
    }
    Ok(())
}

/// A random initial password: 24 base64url characters (144 bits).
fn initial_password() -> secrecy::SecretString {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    secrecy::SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

impl TenantSvc {
    /// The key that seals operators' TOTP secrets.
    async fn totp_key(&self) -> Result<ring::aead::LessSafeKey> {
        Ok(seal::key(&self.account_key().await?))
    }

    /// The operator session of `secret`, touched (its idle expiry moved on); UNAUTHENTICATED for
    /// an unknown, ended or expired session or a disabled operator. Every console action starts
    /// here.
    pub(crate) async fn operator_session(&self, secret: &str) -> Result<OperatorCaller> {
        let hash = presented(secret).ok_or(TenantError::Unauthenticated(SESSION_ENDED))?;
        let idle = self.deps.accounts.operators.session_idle;
        let s = self
            .deps
            .core
            .db
            .service_tx(async |tx| db::touch_session(tx, &hash, idle).await)
            .await?
            .ok_or(TenantError::Unauthenticated(SESSION_ENDED))?;
        Ok(OperatorCaller {
            operator_id: s.operator_id,
            session_id: s.id,
            idle_expires_at: s.idle_expires_at,
        })
    }

    /// Records a failed operator sign-in: the operator's (when known) and the address's.
    async fn record_operator_failure(
        &self,
        operator: Option<i64>,
        address: &[u8],
        reason: &str,
    ) -> Result<()> {
        self.deps
            .core
            .db
            .service_tx(async |tx| {
                if let Some(id) = operator {
                    db::record_failure(tx, id).await?;
                }
                accounts_db::record_address_failure(tx, address).await
            })
            .await?;
        tracing::info!(operator_id = operator, reason, "operator sign-in failed");
        Ok(())
    }

    pub(super) async fn operator_sign_in(
        &self,
        r: OperatorSignInRequest,
    ) -> Result<OperatorSignInResponse> {
        required("client_address", &r.client_address)?;
        required("password", &r.password)?;
        required("totp_code", &r.totp_code)?;
        if !totp::well_formed(r.totp_code.trim()) {
            return Err(TenantError::invalid("totp_code", "must be 6 digits"));
        }
        let email = account::normalise_email("email", &r.email)?;
        let key = self.account_key().await?;
        let address = address_hash(&key, &r.client_address);
        let Some(op) = self
            .operator_to_try(&email_hash(&key, &email), &address, &r.password)
            .await?
        else {
            return Err(TenantError::Unauthenticated(SIGN_IN_FAILED));
        };
        let password_ok = password::verify(&r.password, Some(op.password_hash.clone())).await?;
        if !password_ok || op.disabled {
            let reason = if op.disabled { "disabled" } else { "password" };
            self.record_operator_failure(Some(op.id), &address, reason)
                .await?;
            return Err(TenantError::Unauthenticated(SIGN_IN_FAILED));
        }
        let Some(step) = self.totp_step(&op, r.totp_code.trim()).await? else {
            self.record_operator_failure(Some(op.id), &address, "code")
                .await?;
            return Err(TenantError::Unauthenticated(SIGN_IN_FAILED));
        };
        let Some((secret, session)) = self
            .start_operator_session(op.id, step, &r.user_agent)
            .await?
        else {
            self.record_operator_failure(Some(op.id), &address, "code_reused")
                .await?;
            return Err(TenantError::Unauthenticated(SIGN_IN_FAILED));
        };
        tracing::info!(
            operator_id = op.id,
            session_id = session.id,
            "operator signed in"
        );
        Ok(OperatorSignInResponse {
            operator: Some(Operator {
                id: op.id,
                email: op.email,
            }),
            session: Some(OperatorSession {
                secret: secret.expose_secret().to_owned(),
                idle_expire_time: Some(timestamp(session.idle_expires_at)),
                expire_time: Some(timestamp(session.expires_at)),
            }),
        })
    }

    /// The operator a sign-in is for, when it may be tried: RESOURCE_EXHAUSTED when the address
    /// or the operator is throttled; `None` (a failure recorded, the time of a password check
    /// spent) when the address is unknown.
    async fn operator_to_try(
        &self,
        email_hash: &[u8],
        address: &[u8],
        password_typed: &str,
    ) -> Result<Option<OperatorRow>> {
        let (address_failures, found) = self
            .deps
            .core
            .db
            .service_tx(async |tx| {
                let a = accounts_db::address_failures(tx, address, THROTTLE_WINDOW).await?;
                let found = match db::by_email_hash(tx, email_hash).await? {
                    Some(o) => {
                        let f = db::failures(tx, o.id, THROTTLE_WINDOW).await?;
                        Some((o, f))
                    }
                    None => None,
                };
                Ok::<_, TenantError>((a, found))
            })
            .await?;
        if let Some(secs) = address_failures.retry_after(MAX_ADDRESS_FAILURES, THROTTLE_WINDOW) {
            tracing::info!(
                retry_after = secs,
                "operator sign-in refused: too many failures from one address"
            );
            return Err(TenantError::Throttled(secs));
        }
        let Some((op, failures)) = found else {
            // An unknown address costs what a wrong password costs.
            password::verify(password_typed, None).await?;
            self.record_operator_failure(None, address, "unknown")
                .await?;
            return Ok(None);
        };
        if let Some(secs) = failures.retry_after(MAX_ACCOUNT_FAILURES, THROTTLE_WINDOW) {
            tracing::info!(
                operator_id = op.id,
                retry_after = secs,
                "operator sign-in refused: too many failures for the account"
            );
            return Err(TenantError::Throttled(secs));
        }
        Ok(Some(op))
    }

    /// Takes TOTP `step` for the operator and creates a session in one transaction: of two
    /// sign-ins racing with one code, one commits and the other finds the step used (`None`).
    async fn start_operator_session(
        &self,
        operator_id: i64,
        step: u64,
        user_agent: &str,
    ) -> Result<Option<(secrecy::SecretString, db::OperatorSessionRow)>> {
        let (secret, secret_hash) = new_secret();
        let cfg = &self.deps.accounts.operators;
        let ua = summarise_user_agent(user_agent);
        let session = self
            .deps
            .core
            .db
            .service_tx(async |tx| {
                if !db::accept_step(tx, operator_id, step as i64).await? {
                    return Ok(None);
                }
                Ok::<_, TenantError>(Some(
                    db::insert_session(
                        tx,
                        operator_id,
                        &secret_hash,
                        &ua,
                        cfg.session_idle,
                        cfg.session_max,
                    )
                    .await?,
                ))
            })
            .await?;
        Ok(session.map(|s| (secret, s)))
    }

    /// The time step `code` is the operator's code of (now, one step of drift either way, later
    /// than the last accepted); `None` when it is not.
    async fn totp_step(&self, op: &OperatorRow, code: &str) -> Result<Option<u64>> {
        let key = self.totp_key().await?;
        let account = self.account_key().await?;
        let owner = email_hash(&account, &op.email.to_lowercase());
        let secret = seal::open(&key, &owner, &op.totp_sealed)?;
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let last = op.totp_last_step.max(0) as u64;
        Ok(totp::verify(&secret, code, totp::step_at(now), last))
    }

    pub(super) async fn operator_sign_out(&self, r: OperatorSignOutRequest) -> Result<()> {
        let Some(hash) = presented(&r.session_secret) else {
            return Ok(());
        };
        if let Some((sid, op)) = self
            .deps
            .core
            .db
            .service_tx(async |tx| db::revoke_session(tx, &hash).await)
            .await?
        {
            tracing::info!(operator_id = op, session_id = sid, "operator signed out");
        }
        Ok(())
    }

    pub(super) async fn get_operator_session(
        &self,
        r: GetOperatorSessionRequest,
    ) -> Result<GetOperatorSessionResponse> {
        let caller = self.operator_session(&r.session_secret).await?;
        let op = self
            .deps
            .core
            .db
            .service_tx(async |tx| db::get(tx, caller.operator_id).await)
            .await?
            .ok_or(TenantError::Unauthenticated(SESSION_ENDED))?;
        Ok(GetOperatorSessionResponse {
            operator: Some(Operator {
                id: op.id,
                email: op.email,
            }),
            session_id: caller.session_id,
            idle_expire_time: Some(timestamp(caller.idle_expires_at)),
        })
    }

    pub(super) async fn add_operator(
        &self,
        by: &str,
        r: AddOperatorRequest,
    ) -> Result<AddOperatorResponse> {
        let email = account::normalise_email("email", &r.email)?;
        let key = self.account_key().await?;
        let hash = email_hash(&key, &email);
        let secret = totp::new_secret();
        let sealed = seal::seal(&self.totp_key().await?, &hash, &secret)?;
        let initial = initial_password();
        let password_hash = password::hash(initial.expose_secret()).await?;
        let id = self
            .deps
            .core
            .db
            .service_tx(async |tx| db::insert(tx, &hash, &email, &password_hash, &sealed, by).await)
            .await
            .map_err(super::super::taken(
                "an operator with this e-mail address already exists",
            ))?;
        tracing::info!(operator_id = id, by, "operator added");
        Ok(AddOperatorResponse {
            operator: Some(Operator {
                id,
                email: email.clone(),
            }),
            initial_password: initial.expose_secret().to_owned(),
            otpauth_uri: totp::otpauth_uri(&secret, &email),
        })
    }

    pub(super) async fn disable_operator(
        &self,
        by: &str,
        r: DisableOperatorRequest,
    ) -> Result<DisableOperatorResponse> {
        let email = account::normalise_email("email", &r.email)?;
        let hash = email_hash(&self.account_key().await?, &email);
        let (id, ended) = self
            .deps
            .core
            .db
            .service_tx(async |tx| db::disable(tx, &hash).await)
            .await?
            .ok_or(TenantError::NotFound("operator"))?;
        tracing::info!(
            operator_id = id,
            ended_sessions = ended,
            by,
            "operator disabled"
        );
        Ok(DisableOperatorResponse {
            ended_sessions: ended as i64,
        })
    }
}
