//! `SignupService` (the gateway's `tenant:portal` token, for the portal's `/portal/signup`) and
//! onboarding's mails: self sign-up with its two daily limits, verification by a mailed link
//! that creates the customer (pending unless `TENANT_SIGNUP_AUTO_APPROVE`) and its owner in one
//! transaction, the owners' "approved: choose your number" mail on PENDING -> ACTIVE, and the
//! welcome mail with the customer's first routed number.
//!
//! No answer says whether an address is known: `SignUp` answers the same empty response for
//! every accepted request, mails in the background (its timing says nothing either), and drops
//! silently what is over one address's daily allowance. Logs carry sign-up and customer ids,
//! never an address, a name, a password or a token.

use std::net::IpAddr;
use std::time::Duration;

use mesh::api::tenant::*;
use mesh::domain::CustomerId;
use secrecy::ExposeSecret as _;
use serde_json::json;
use tonic::{Request, Response};

use super::account::{new_session, portal_user};
use super::{RpcResult, TenantSvc, taken};
use crate::account::secrets::{address_hash, email_hash, new_secret, presented};
use crate::account::{self, Role, password, user_actor};
use crate::customer::CustomerStatus;
use crate::error::{Result, TenantError};
use crate::model::{Overrides, diff};
use crate::notice::{self, Notice};
use crate::store::accounts as users;
use crate::store::audit::actions;
use crate::store::signups::{self as sql, NewSignup};
use crate::store::{self, NewCustomer, append_audit};
use crate::validate;

/// How long a verification link is valid.
pub const SIGNUP_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Verification mails one e-mail address gets in 24 hours; more sign-ups of it are dropped
/// silently (the answer is the same).
pub const SIGNUPS_PER_EMAIL_PER_DAY: i64 = 3;
/// The answer for an unknown, used or expired verification token.
const NO_SIGNUP: &str = "sign-up";
/// Who the audit log and history name for what a sign-up created.
const SIGNUP_ACTOR: &str = "signup";

/// The key of a client address's limit: the IPv4 address, or the IPv6 /64 (one subscriber's
/// usual allocation), as the gateway keys its own limits; INVALID_ARGUMENT naming `field` when
/// it is not an address.
pub fn address_key(field: &str, s: &str) -> Result<String> {
    let ip: IpAddr = s
        .trim()
        .parse()
        .map_err(|_| TenantError::invalid(field, "must be an IP address"))?;
    Ok(match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    })
}

/// The new customer's agent: the platform defaults, with a greeting for new callers that names
/// the business (the one field the profile model lets name it); the default greeting when the
/// business's name does not fit a greeting's rules.
fn agent_for(business: &str) -> Overrides {
    let config = AgentConfig {
        greeting_new_caller: Some(format!(
            "{{time_greeting}}! Thank you for calling {business}. This is {{agent_name}}. \
             How can I help you?"
        )),
        ..Default::default()
    };
    Overrides::default()
        .apply(&config, &[], "agent_config")
        .unwrap_or_default()
}

/// A checked `SignUp` request.
struct SignUp {
    business_name: String,
    contact_name: String,
    email: String,
    address: String,
}

impl SignUp {
    fn parse(r: &SignUpRequest) -> Result<Self> {
        let business_name = validate::business_name("business_name", &r.business_name)?;
        let contact_name = validate::contact_name("contact_name", &r.contact_name)?;
        if contact_name.is_empty() {
            return Err(TenantError::invalid("contact_name", "must not be empty"));
        }
        let email = account::normalise_email("email", &r.email)?;
        password::check("password", &r.password)?;
        let address = address_key("client_address", &r.client_address)?;
        Ok(Self {
            business_name,
            contact_name,
            email,
            address,
        })
    }
}

impl TenantSvc {
    /// Mails `notice` to each active owner of `id`, in the background (after the change that
    /// caused it committed). Failures are logged and counted, never the address.
    pub(super) async fn mail_owners_soon(&self, id: CustomerId, kind: &'static str, n: Notice) {
        let Some(mail) = self.deps.accounts.owner_mail.clone() else {
            tracing::info!(
                customer_id = id.get(),
                kind,
                "owners not mailed: mail is not configured"
            );
            return;
        };
        let owners = match self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| sql::owner_addresses(tx, id).await)
            .await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(customer_id = id.get(), kind, error = %e, "owners not mailed: cannot read them");
                return;
            }
        };
        tokio::spawn(async move {
            let mut sent = 0;
            for to in owners {
                match mail.mailer.send(&to, &n.subject, n.body.clone()).await {
                    Ok(()) => sent += 1,
                    Err(e) => {
                        metrics::counter!("tenant_onboarding_mail_failures_total", "kind" => kind)
                            .increment(1);
                        tracing::warn!(customer_id = id.get(), kind, error = %e, "owner not mailed");
                    }
                }
            }
            tracing::info!(customer_id = id.get(), kind, sent, "owners mailed");
        });
    }

    /// After a committed PENDING -> ACTIVE: the approval's audit row (unless the change was
    /// audited already, as the console's `operator.approved`) and, once per customer, the
    /// owners' "approved: choose your number" mail.
    pub(super) async fn approved(&self, id: CustomerId, by: &str, audit: bool) -> Result<()> {
        let (first, customer) = self
            .deps
            .core
            .db
            .tenant_tx(id, async |tx| {
                if audit {
                    append_audit(tx, id, by, actions::CUSTOMER_APPROVED, &json!({})).await?;
                }
                let first = sql::claim_approved_mail(tx, id).await?;
                Ok::<_, TenantError>((first, store::require_customer_core(tx, id).await?))
            })
            .await?;
        tracing::info!(customer_id = id.get(), "customer approved");
        if first && let Some(mail) = &self.deps.accounts.owner_mail {
            let n = notice::approved(&customer.business_name, &mail.base_url);
            self.mail_owners_soon(id, "approved", n).await;
        }
        Ok(())
    }

    /// The welcome mail for `number`, after the assignment that claimed it committed.
    pub(super) async fn welcome(&self, id: CustomerId, number: &str) {
        let Some(mail) = &self.deps.accounts.owner_mail else {
            return;
        };
        let business = match self.customer_core(id).await {
            Ok(c) => c.business_name,
            Err(e) => {
                tracing::warn!(customer_id = id.get(), error = %e, "welcome not mailed");
                return;
            }
        };
        let n = notice::welcome(&business, &mail.base_url, number);
        self.mail_owners_soon(id, "welcome", n).await;
    }

    async fn sign_up_now(&self, r: &SignUpRequest) -> Result<()> {
        let s = SignUp::parse(r)?;
        let Some(mail) = self.deps.accounts.owner_mail.clone() else {
            return Err(TenantError::FailedPrecondition(
                "self sign-up is not available: this platform sends no mail".into(),
            ));
        };
        let key = self.account_key().await?;
        let email_hash = email_hash(&key, &s.email);
        let address_hash = address_hash(&key, &s.address);
        let limit = self.deps.accounts.signup.per_address_per_day;
        let db = &self.deps.core.db;
        let check = async || {
            let (by_address, by_email, wait) = db
                .service_tx(async |tx| sql::counts(tx, &address_hash, &email_hash).await)
                .await?;
            if by_address >= limit {
                tracing::info!(
                    retry_after = wait,
                    "sign-up refused: address over its daily limit"
                );
                return Err(TenantError::Throttled(wait));
            }
            Ok::<_, TenantError>(by_email < SIGNUPS_PER_EMAIL_PER_DAY)
        };
        // Refused before the password is hashed: a flood costs no hash.
        check().await?;
        let password_hash = password::hash(&r.password).await?;
        if !check().await? {
            // Dropped with the same answer: the requester learns nothing about the address.
            tracing::info!("sign-up dropped: e-mail address over its daily limit");
            return Ok(());
        }
        let (token, token_hash) = new_secret();
        let new = NewSignup {
            token_hash: &token_hash,
            email_hash: &email_hash,
            address_hash: &address_hash,
            email: &s.email,
            business_name: &s.business_name,
            contact_name: &s.contact_name,
            password_hash: &password_hash,
            ttl: SIGNUP_TTL,
        };
        let signup_id = db
            .service_tx(async |tx| sql::insert(tx, &new).await)
            .await?;
        tracing::info!(signup_id, "sign-up recorded");
        let n = notice::verify_signup(
            &s.business_name,
            &mail.base_url,
            token.expose_secret(),
            SIGNUP_TTL.as_secs() / 3600,
        );
        let to = s.email;
        // In the background: the answer does not wait for (or reveal anything by) the mail.
        tokio::spawn(async move {
            match mail.mailer.send(&to, &n.subject, n.body).await {
                Ok(()) => tracing::info!(signup_id, "verification mailed"),
                Err(e) => {
                    metrics::counter!("tenant_onboarding_mail_failures_total", "kind" => "verify")
                        .increment(1);
                    tracing::warn!(signup_id, error = %e, "verification not mailed");
                }
            }
        });
        Ok(())
    }

    /// In the new customer's transaction: claims the sign-up with `hash` (NOT_FOUND when it is
    /// not open), creates the customer in `status` with the business-named agent and its owner,
    /// audits both, and starts the owner's first session.
    async fn create_signed_up(
        &self,
        tx: &mesh::db::Tx<'_>,
        id: CustomerId,
        hash: &[u8],
        status: CustomerStatus,
        user_agent: &str,
    ) -> Result<(users::User, secrecy::SecretString, users::Session, String)> {
        let c = sql::claim(tx, hash)
            .await?
            .ok_or(TenantError::NotFound(NO_SIGNUP))?;
        let overrides = agent_for(&c.business_name);
        let new = NewCustomer {
            email: &c.email,
            business_name: &c.business_name,
            contact_name: &c.contact_name,
            contact_phone: "",
            package_tier: "starter",
            overrides: &overrides,
        };
        store::insert_customer(tx, id, &new).await?;
        if status != CustomerStatus::Active {
            store::set_status(tx, id, status).await?;
        }
        store::record_changes(
            tx,
            id,
            &diff(&Overrides::default(), &overrides),
            SIGNUP_ACTOR,
        )
        .await?;
        let user_id = users::insert_user(
            tx,
            id,
            &c.email_hash,
            &c.email,
            Role::Owner,
            &c.password_hash,
        )
        .await?;
        let actor = user_actor(user_id);
        append_audit(
            tx,
            id,
            &actor,
            actions::SIGNED_UP,
            &json!({ "status": status.as_str() }),
        )
        .await?;
        let (secret, session) = self.start_session(tx, id, user_id, user_agent).await?;
        append_audit(
            tx,
            id,
            &actor,
            actions::SIGN_IN,
            &json!({ "session_id": session.id }),
        )
        .await?;
        let user = users::get_user(tx, id, user_id)
            .await?
            .ok_or(TenantError::NotFound("user"))?;
        Ok((user, secret, session, c.business_name))
    }

    async fn verify_signup_now(&self, r: &VerifySignupRequest) -> Result<VerifySignupResponse> {
        let hash = presented(&r.token).ok_or(TenantError::NotFound(NO_SIGNUP))?;
        let db = &self.deps.core.db;
        // A cheap NOT_FOUND before an id is taken; claimed atomically below.
        if !db
            .service_tx(async |tx| sql::is_open(tx, &hash).await)
            .await?
        {
            return Err(TenantError::NotFound(NO_SIGNUP));
        }
        let id = db
            .service_tx(async |tx| store::next_customer_id(tx).await)
            .await?;
        mesh::telemetry::record_customer(id);
        let status = if self.deps.accounts.signup.auto_approve {
            CustomerStatus::Active
        } else {
            CustomerStatus::Pending
        };
        let (user, secret, session, business) = db
            .tenant_tx(id, async |tx| {
                self.create_signed_up(tx, id, &hash, status, &r.user_agent)
                    .await
            })
            .await
            .map_err(taken(
                "an account with this e-mail address already exists; sign in or reset the password",
            ))?;
        tracing::info!(
            customer_id = id.get(),
            user_id = user.id,
            status = status.as_str(),
            "sign-up verified: customer created"
        );
        Ok(VerifySignupResponse {
            user: Some(portal_user(id, &user, &business)),
            session: Some(new_session(&secret, &session)),
            status: status.to_pb() as i32,
        })
    }
}

#[tonic::async_trait]
impl signup_service_server::SignupService for TenantSvc {
    async fn sign_up(&self, request: Request<SignUpRequest>) -> RpcResult<SignUpResponse> {
        self.sign_up_now(request.get_ref()).await?;
        Ok(Response::new(SignUpResponse {}))
    }

    async fn verify_signup(
        &self,
        request: Request<VerifySignupRequest>,
    ) -> RpcResult<VerifySignupResponse> {
        Ok(Response::new(
            self.verify_signup_now(request.get_ref()).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_keyed_by_ipv4_or_the_ipv6_64() {
        assert_eq!(address_key("a", "203.0.113.7").unwrap(), "203.0.113.7");
        assert_eq!(
            address_key("a", "2001:db8:1:2:aaaa::1").unwrap(),
            address_key("a", "2001:db8:1:2:ffff::9").unwrap()
        );
        assert_ne!(
            address_key("a", "2001:db8:1:2::1").unwrap(),
            address_key("a", "2001:db8:1:3::1").unwrap()
        );
        assert_eq!(
            address_key("a", "::ffff:203.0.113.7").unwrap(),
            "203.0.113.7"
        );
        assert!(
            address_key("client_address", "nope")
                .unwrap_err()
                .to_string()
                .starts_with("client_address:")
        );
    }

    #[test]
    fn the_new_agent_greets_with_the_business_name() {
        let o = agent_for("Acme Plumbing");
        assert!(
            o.greeting_new_caller
                .unwrap()
                .contains("calling Acme Plumbing")
        );
        assert!(
            o.agent_name.is_none() && o.voice.is_none(),
            "the rest is the platform's"
        );
    }
}
