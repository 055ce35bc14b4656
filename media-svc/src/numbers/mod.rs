//! The platform's phone numbers at Twilio: search with prices, purchases safe against lost
//! answers, imports, releases and reconcile. Parts: [`client`] (Twilio's REST and Pricing APIs
//! with the platform's API key) and [`wire`] (its records, prices in minor units, our
//! webhooks), [`store`] (`media.numbers`, V26), [`ops`] (the flows: purchase with its intent
//! row and lookup, import, release, routing through tenant-svc), [`reconcile`] (Twilio against
//! the platform, under an advisory lock; also the background task) and [`service`]
//! (`NumberService`, `NumberAdminService`).
//!
//! Routing stays tenant-svc's: after a purchase or import media-svc calls
//! `TenantAdminService.AssignPhoneNumber` (and `ReleasePhoneNumber` before releasing at Twilio)
//! with its own service token, scope `tenant:numbers`. A number bought but not routed (tenant-svc
//! down) is drift that reconcile repairs.

pub mod client;
pub mod ops;
pub mod reconcile;
pub mod service;
pub mod store;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use mesh::db::{Db, DbError};
use mesh::domain::AccountSid;
use mesh::identity::Identity;
use mesh::status::{ServiceError, ServiceErrorCode};
use secrecy::SecretString;

use crate::peers::Peers;
use client::{RestClient, RestConfig, Retry, Webhooks};

/// The numbers' settings.
#[derive(Clone)]
pub struct NumbersConfig {
    /// `TWILIO_PRICING_BASE_URL`.
    pub pricing_base_url: String,
    /// `TWILIO_API_KEY_SID`.
    pub api_key_sid: Option<String>,
    /// `TWILIO_API_KEY_SECRET`.
    pub api_key_secret: Option<SecretString>,
    /// `MEDIA_NUMBERS_PER_TENANT`.
    pub per_tenant: u32,
    /// `MEDIA_NUMBERS_RECONCILE_SECONDS` (zero: off).
    pub reconcile_every: Duration,
    /// Time one Twilio request has.
    pub request_timeout: Duration,
    /// Retry pacing of Twilio requests.
    pub retry: Retry,
}

impl std::fmt::Debug for NumbersConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumbersConfig")
            .field("pricing_base_url", &self.pricing_base_url)
            .field("api_key_sid", &self.api_key_sid)
            .field(
                "api_key_secret",
                &self.api_key_secret.as_ref().map(|_| "<set>"),
            )
            .field("per_tenant", &self.per_tenant)
            .field("reconcile_every", &self.reconcile_every)
            .finish()
    }
}

impl Default for NumbersConfig {
    fn default() -> Self {
        Self {
            pricing_base_url: "https://pricing.twilio.com".into(),
            api_key_sid: None,
            api_key_secret: None,
            per_tenant: 5,
            reconcile_every: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(10),
            retry: Retry::default(),
        }
    }
}

/// What the numbers' handlers and the reconcile task share.
#[derive(Clone)]
pub struct Numbers {
    /// Pool.
    pub db: Db,
    /// Twilio, or the setting that is missing.
    pub rest: Result<Arc<RestClient>, &'static str>,
    /// tenant-svc (routing) and the tenant tokens reconcile reads customers with.
    pub peers: Peers,
    /// media-svc's identity (its service token for `tenant:numbers`).
    pub identity: Identity,
    /// Our webhooks.
    pub hooks: Webhooks,
    /// Numbers per tenant.
    pub per_tenant: u32,
    /// Background reconcile interval (zero: off).
    pub reconcile_every: Duration,
}

impl Numbers {
    /// Built from the settings; Twilio is "not configured" (with the missing setting's name)
    /// when the account, the API key or its secret is unset.
    pub fn new(
        db: Db,
        peers: Peers,
        identity: Identity,
        api_base_url: &str,
        account: Option<&AccountSid>,
        public_base_url: &str,
        config: &NumbersConfig,
    ) -> Self {
        let rest = match (account, &config.api_key_sid, &config.api_key_secret) {
            (None, _, _) => Err("TWILIO_ACCOUNT_SID"),
            (_, None, _) => Err("TWILIO_API_KEY_SID"),
            (_, _, None) => Err("TWILIO_API_KEY_SECRET"),
            (Some(account), Some(sid), Some(secret)) => Ok(Arc::new(RestClient::new(RestConfig {
                api_base_url: api_base_url.to_owned(),
                pricing_base_url: config.pricing_base_url.clone(),
                account: account.clone(),
                key_sid: sid.clone(),
                key_secret: secret.clone(),
                timeout: config.request_timeout,
                retry: config.retry,
            }))),
        };
        Self {
            db,
            rest,
            peers,
            identity,
            hooks: Webhooks::under(public_base_url),
            per_tenant: config.per_tenant,
            reconcile_every: config.reconcile_every,
        }
    }

    /// The client, or FAILED_PRECONDITION naming the missing setting.
    pub fn rest(&self) -> Result<&RestClient, NumbersError> {
        self.rest.as_deref().map_err(|missing| {
            NumbersError::FailedPrecondition(format!(
                "Twilio numbers are not configured: {missing} is not set"
            ))
        })
    }
}

/// Everything the numbers can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NumbersError {
    /// A request field is invalid; the message names the field.
    #[error("invalid `{field}`: {message}")]
    InvalidArgument {
        /// The field, as named in the proto.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// No such number for this customer.
    #[error("number not found")]
    NotFound,
    /// Another customer holds the number (names nobody).
    #[error("{0}")]
    AlreadyExists(String),
    /// The state refuses it (not configured, not available, the limit).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Another reconcile is running.
    #[error("{0}")]
    Aborted(String),
    /// Twilio or tenant-svc cannot answer now (words written for clients).
    #[error("{0}")]
    Unavailable(String),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbError),
}

impl NumbersError {
    /// An invalid field.
    pub fn invalid(field: &'static str, message: impl std::fmt::Display) -> Self {
        Self::InvalidArgument {
            field,
            message: message.to_string(),
        }
    }
}

impl ServiceError for NumbersError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            Self::InvalidArgument { .. } => ServiceErrorCode::InvalidArgument,
            Self::NotFound => ServiceErrorCode::NotFound,
            Self::AlreadyExists(_) => ServiceErrorCode::AlreadyExists,
            Self::FailedPrecondition(_) | Self::Aborted(_) => ServiceErrorCode::FailedPrecondition,
            Self::Unavailable(_) => ServiceErrorCode::Unavailable,
            Self::Db(db) => db.error_code(),
        }
    }

    fn public_message(&self) -> Option<String> {
        match self {
            Self::Unavailable(m) => Some(m.clone()),
            _ => None,
        }
    }
}

impl From<NumbersError> for tonic::Status {
    fn from(e: NumbersError) -> Self {
        if let NumbersError::Aborted(m) = &e {
            return tonic::Status::aborted(m.clone());
        }
        mesh::status::to_status(&e)
    }
}
