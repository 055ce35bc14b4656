//! Stream credentials: what opens one call's Media Stream, and nothing else.
//!
//! The TwiML answer to a call travels through Twilio and is kept in its request inspector, so
//! what it carries must be worth nothing beyond this call's stream. It is a *stream ticket*:
//! signed by media-svc with its own key, typed `stream-ticket+jwt` (so the mesh [`Verifier`]
//! refuses it on every gRPC method, RFC 8725 explicit typing), bound to the CallSid, the
//! AccountSid and the tenant, and valid for [`STREAM_TICKET_LIFETIME`] from the call's first
//! answer. Its claims are fixed by the call row (no random `jti`, `iat` = when the call was first
//! answered) and Ed25519 signatures are deterministic, so a replayed webhook gets the identical
//! text, never a new credential.
//!
//! On Twilio's `start` the gateway exchanges the ticket (`CallService.OpenStream`) for a *stream
//! grant*: typed `stream-grant+jwt`, bound to the CallSid and the StreamSid media-svc bound to
//! the call, valid for [`STREAM_GRANT_LIFETIME`]. The grant never leaves the mesh; it rides in
//! `StreamStart` next to the gateway's service token.
//!
//! Only the issuer verifies its own credentials: [`StreamCredentials`] accepts a key of the
//! trust bundle only when it is bound to its own issuer, so no other service's key can forge
//! one.
//!
//! [`Verifier`]: super::Verifier

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{AuthError, Minter, TrustedKeys, sanitize_for_log};
use crate::domain::{AccountSid, CallSid, CustomerId, StreamSid};

/// JOSE `typ` of stream tickets.
pub const STREAM_TICKET_TYP: &str = "stream-ticket+jwt";

/// JOSE `typ` of stream grants.
pub const STREAM_GRANT_TYP: &str = "stream-grant+jwt";

/// How long a ticket can open its call's stream, from the call's first answer.
pub const STREAM_TICKET_LIFETIME: Duration = Duration::from_secs(120);

/// How long a grant can start its stream (the gateway uses it at once, and again within a
/// second when it retries on another replica).
pub const STREAM_GRANT_LIFETIME: Duration = Duration::from_secs(300);

/// Clock skew tolerated between the issuer's replicas.
const LEEWAY_SECS: u64 = 5;

/// Longest credential text looked at.
const MAX_LEN: usize = 2048;

/// What a stream ticket proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTicket {
    /// The call's tenant.
    pub customer_id: CustomerId,
    /// The call.
    pub call_sid: CallSid,
    /// The Twilio account the call belongs to.
    pub account_sid: AccountSid,
    /// When the call was first answered (Unix seconds): the ticket's `iat`.
    pub issued_at: i64,
}

/// What a stream grant proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamGrant {
    /// The call's tenant.
    pub customer_id: CustomerId,
    /// The call.
    pub call_sid: CallSid,
    /// The one stream bound to the call.
    pub stream_sid: StreamSid,
}

/// The claims of both kinds, as written and read. `kind` repeats the `typ` inside the signed
/// payload.
#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    kind: String,
    customer_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    acct: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    iat: i64,
    exp: i64,
}

/// Mints and verifies one issuer's stream tickets and grants.
#[derive(Clone)]
pub struct StreamCredentials {
    minter: Arc<Minter>,
    trusted: TrustedKeys,
}

impl std::fmt::Debug for StreamCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamCredentials")
            .field("issuer", &self.minter.issuer())
            .finish_non_exhaustive()
    }
}

impl StreamCredentials {
    /// Credentials signed with `minter`'s key; verified against the keys of `trusted` bound to
    /// the same issuer (its other replicas, a rotated key).
    pub fn new(minter: Arc<Minter>, trusted: TrustedKeys) -> Self {
        super::crypto::install();
        Self { minter, trusted }
    }

    /// The ticket for `ticket`: the same text for the same call every time.
    pub fn ticket(&self, ticket: &StreamTicket) -> Result<String, AuthError> {
        self.sign(
            STREAM_TICKET_TYP,
            Claims {
                iss: self.minter.issuer().to_owned(),
                aud: self.minter.issuer().to_owned(),
                sub: ticket.call_sid.as_str().to_owned(),
                kind: STREAM_TICKET_TYP.to_owned(),
                customer_id: ticket.customer_id.get(),
                acct: Some(ticket.account_sid.as_str().to_owned()),
                sid: None,
                iat: ticket.issued_at,
                exp: ticket.issued_at + STREAM_TICKET_LIFETIME.as_secs() as i64,
            },
        )
    }

    /// A grant for `grant`, valid from now for [`STREAM_GRANT_LIFETIME`].
    pub fn grant(&self, grant: &StreamGrant) -> Result<String, AuthError> {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        self.sign(
            STREAM_GRANT_TYP,
            Claims {
                iss: self.minter.issuer().to_owned(),
                aud: self.minter.issuer().to_owned(),
                sub: grant.call_sid.as_str().to_owned(),
                kind: STREAM_GRANT_TYP.to_owned(),
                customer_id: grant.customer_id.get(),
                acct: None,
                sid: Some(grant.stream_sid.as_str().to_owned()),
                iat: now,
                exp: now + STREAM_GRANT_LIFETIME.as_secs() as i64,
            },
        )
    }

    /// The call a valid, unexpired ticket of this issuer opens.
    pub fn verify_ticket(&self, token: &str) -> Result<StreamTicket, AuthError> {
        let claims = self.verify(token, STREAM_TICKET_TYP, STREAM_TICKET_LIFETIME)?;
        let acct = claims
            .acct
            .as_deref()
            .ok_or(AuthError::MissingClaim("acct"))?;
        Ok(StreamTicket {
            customer_id: customer(claims.customer_id)?,
            call_sid: CallSid::parse(&claims.sub).map_err(|_| AuthError::WrongSubject)?,
            account_sid: AccountSid::parse(acct).map_err(|_| AuthError::InvalidClaim("acct"))?,
            issued_at: claims.iat,
        })
    }

    /// The call and stream a valid, unexpired grant of this issuer starts.
    pub fn verify_grant(&self, token: &str) -> Result<StreamGrant, AuthError> {
        let claims = self.verify(token, STREAM_GRANT_TYP, STREAM_GRANT_LIFETIME)?;
        let sid = claims
            .sid
            .as_deref()
            .ok_or(AuthError::MissingClaim("sid"))?;
        Ok(StreamGrant {
            customer_id: customer(claims.customer_id)?,
            call_sid: CallSid::parse(&claims.sub).map_err(|_| AuthError::WrongSubject)?,
            stream_sid: StreamSid::parse(sid).map_err(|_| AuthError::InvalidClaim("sid"))?,
        })
    }

    fn sign(&self, typ: &str, claims: Claims) -> Result<String, AuthError> {
        let key = self.minter.key();
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(typ.to_owned());
        header.kid = Some(key.kid().to_owned());
        jsonwebtoken::encode(&header, &claims, key.encoding_key())
            .map_err(|e| AuthError::MintRefused(format!("signing failed: {e}")))
    }

    /// Every check, in order: size, algorithm, `typ`, a trusted key bound to this issuer, the
    /// signature, `iss`/`aud`/`exp`, `iat` not in the future, the exact lifetime of the kind,
    /// and the `kind` claim.
    fn verify(&self, token: &str, typ: &str, lifetime: Duration) -> Result<Claims, AuthError> {
        if token.len() > MAX_LEN {
            return Err(AuthError::Malformed("token too long"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed("bad header"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::DisallowedAlgorithm(format!("{:?}", header.alg)));
        }
        if header.typ.as_deref() != Some(typ) {
            return Err(AuthError::WrongType);
        }
        let kid = header.kid.ok_or(AuthError::MissingKeyId)?;
        let issuer = self.minter.issuer();
        let key = self
            .trusted
            .trusted(&kid)
            .ok_or_else(|| AuthError::UnknownKey(sanitize_for_log(&kid)))?;
        if key.public.issuer() != issuer {
            return Err(AuthError::WrongIssuer);
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
        validation.set_audience(&[issuer]);
        validation.set_issuer(&[issuer]);
        validation.leeway = LEEWAY_SECS;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|e| AuthError::from_jwt(&e))?
            .claims;
        let now = jsonwebtoken::get_current_timestamp() as i64;
        if claims.iat > now + LEEWAY_SECS as i64 {
            return Err(AuthError::IssuedInFuture);
        }
        if claims.exp.saturating_sub(claims.iat) != lifetime.as_secs() as i64 {
            return Err(AuthError::InvalidClaim("exp"));
        }
        if claims.kind != typ {
            return Err(AuthError::WrongType);
        }
        Ok(claims)
    }
}

fn customer(id: i64) -> Result<CustomerId, AuthError> {
    CustomerId::new(id).map_err(|_| AuthError::InvalidClaim("customer_id"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{DevKeys, names};

    fn ticket(issued_at: i64) -> StreamTicket {
        StreamTicket {
            customer_id: CustomerId::new(7).unwrap(),
            call_sid: CallSid::parse(&format!("CA{:032x}", 1)).unwrap(),
            account_sid: AccountSid::parse(&format!("AC{:032x}", 2)).unwrap(),
            issued_at,
        }
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    #[test]
    fn a_ticket_is_the_same_text_every_time_and_verifies_for_its_call() {
        let keys = DevKeys::generate();
        let media = keys.identity(names::MEDIA_SVC).stream_credentials();
        let t = ticket(now());
        let first = media.ticket(&t).unwrap();
        assert_eq!(media.ticket(&t).unwrap(), first, "deterministic");
        assert_eq!(media.verify_ticket(&first).unwrap(), t);
        // Another replica of the same service (same key) verifies it too.
        let replica = keys.identity(names::MEDIA_SVC).stream_credentials();
        assert_eq!(replica.verify_ticket(&first).unwrap(), t);
    }

    #[test]
    fn an_old_ticket_a_grant_as_ticket_and_another_issuers_ticket_are_refused() {
        let keys = DevKeys::generate();
        let media = keys.identity(names::MEDIA_SVC).stream_credentials();
        let old = media
            .ticket(&ticket(now() - 121 - LEEWAY_SECS as i64))
            .unwrap();
        assert!(matches!(media.verify_ticket(&old), Err(AuthError::Expired)));
        let grant = media
            .grant(&StreamGrant {
                customer_id: CustomerId::new(7).unwrap(),
                call_sid: ticket(0).call_sid,
                stream_sid: StreamSid::parse(&format!("MZ{:032x}", 3)).unwrap(),
            })
            .unwrap();
        assert!(media.verify_grant(&grant).is_ok());
        assert!(matches!(
            media.verify_ticket(&grant),
            Err(AuthError::WrongType)
        ));
        let ticket_text = media.ticket(&ticket(now())).unwrap();
        assert!(matches!(
            media.verify_grant(&ticket_text),
            Err(AuthError::WrongType)
        ));
        // The gateway's key is trusted by the bundle, but not for media-svc's credentials.
        let gateway = keys.identity(names::GATEWAY).stream_credentials();
        let forged = gateway.ticket(&ticket(now())).unwrap();
        assert!(matches!(
            media.verify_ticket(&forged),
            Err(AuthError::WrongIssuer)
        ));
        // A tampered payload no longer verifies.
        let mut parts: Vec<&str> = ticket_text.split('.').collect();
        let other = media.ticket(&ticket(now() - 1)).unwrap();
        parts[1] = other.split('.').nth(1).unwrap();
        assert!(matches!(
            media.verify_ticket(&parts.join(".")),
            Err(AuthError::BadSignature)
        ));
    }

    #[test]
    fn the_mesh_verifier_refuses_tickets_and_grants_as_bearer_tokens() {
        let keys = DevKeys::generate();
        let identity = keys.identity(names::MEDIA_SVC);
        let media = identity.stream_credentials();
        let ticket_text = media.ticket(&ticket(now())).unwrap();
        let verifier = identity.verifier(names::MEDIA_SVC);
        assert!(matches!(
            verifier.verify(&ticket_text),
            Err(AuthError::WrongType)
        ));
    }
}
