//! Webhook signing secrets: generation, the rotation overlap, and the signature receivers verify.
//!
//! A secret is 32 bytes from the operating system's generator, written as base64url without
//! padding (43 characters). That text is what the tenant is shown once and what keys the HMAC,
//! so a receiver verifies with the string it stored and never decodes anything. Secrets are held
//! as [`SecretString`] so that no `Debug` or log line can print them.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::error::{Result, TenantError};

/// Random bytes in a secret.
pub const SECRET_BYTES: usize = 32;
/// How long the previous secret keeps signing when the request names no overlap.
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest overlap.
pub const MAX_OVERLAP: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Largest body `SignWebhookEvent` signs.
pub const MAX_BODY: usize = 1024 * 1024;

/// History key of a rotation, and the value recorded instead of any secret.
pub const HISTORY_KEY: &str = "webhook_secret";
/// What history shows for a secret.
pub const ROTATED: &str = "<rotated>";

/// A new secret: 32 bytes from `OsRng`, base64url without padding.
pub fn generate() -> SecretString {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The overlap of a rotation: 24 h when unset, else 0 to 7 days (0: the previous secret stops
/// signing at once).
pub fn overlap(d: Option<&prost_types::Duration>) -> Result<Duration> {
    let Some(d) = d else {
        return Ok(DEFAULT_OVERLAP);
    };
    let valid = d.seconds >= 0 && (0..1_000_000_000).contains(&d.nanos);
    let overlap = valid.then(|| Duration::new(d.seconds as u64, d.nanos as u32));
    match overlap {
        Some(o) if o <= MAX_OVERLAP => Ok(o),
        _ => Err(TenantError::invalid(
            "overlap",
            format!(
                "must be from 0 to {} seconds (7 days)",
                MAX_OVERLAP.as_secs()
            ),
        )),
    }
}

/// Lower-case hex HMAC-SHA256 of `"{timestamp}."` followed by `body`, keyed by the secret's text.
pub fn sign(secret: &SecretString, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the README ("Verifying post-call webhooks"), byte for byte: if this
    /// fails, the README tells receivers something untrue.
    #[test]
    fn the_readme_worked_example_verifies() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("```json\n{\"type\":\"call.completed\"")
            .expect("the README's example body")
            + "```json\n".len();
        let body = &readme[start..start + readme[start..].find('\n').unwrap()];
        assert_eq!(body.len(), 706, "the README says the body is 706 bytes");
        let secret = SecretString::from("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8");
        let expected = "454c4ddaa62eb240ca8ba2efdf0f17f762cf4bf8c707ab6051a0a8d7e5974cf6";
        assert_eq!(sign(&secret, 1794995202, body.as_bytes()), expected);
        assert!(readme.contains(&format!("NeuroSphere-Signature: v1={expected}")));
    }

    #[test]
    fn secrets_are_43_base64url_characters_of_32_random_bytes() {
        let a = generate();
        let b = generate();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), 43);
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(a.expose_secret())
            .unwrap();
        assert_eq!(raw.len(), SECRET_BYTES);
        assert!(!format!("{a:?}").contains(a.expose_secret()));
    }

    #[test]
    fn signature_matches_a_vector_computed_elsewhere() {
        // Python: hmac.new(b"Jefe", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
        let secret = SecretString::from("Jefe".to_owned());
        assert_eq!(
            sign(&secret, 1_700_000_000, b"{\"a\":1}"),
            "fa5f6481efc59da48b19c9dc10196c9953e5651f8304b3a318b6b87d70272e0a"
        );
    }

    #[test]
    fn overlaps_are_bounded() {
        let d = |seconds, nanos| prost_types::Duration { seconds, nanos };
        assert_eq!(overlap(None).unwrap(), DEFAULT_OVERLAP);
        assert_eq!(overlap(Some(&d(0, 0))).unwrap(), Duration::ZERO);
        assert_eq!(overlap(Some(&d(604_800, 0))).unwrap(), MAX_OVERLAP);
        for bad in [d(604_800, 1), d(604_801, 0), d(-1, 0), d(0, -5)] {
            let e = overlap(Some(&bad)).unwrap_err().to_string();
            assert!(e.starts_with("overlap:"), "{e}");
        }
    }
}
