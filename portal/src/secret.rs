//! Opaque secrets as the portal handles them (session secrets, CSRF cookies): 32 random bytes,
//! base64url without padding; and the tokens derived from them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Length of a base64url-encoded 32-byte secret.
pub const SECRET_LEN: usize = 43;

/// A fresh secret: 32 bytes from the operating system's generator, base64url.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `value` has the shape of a secret (43 base64url characters).
pub fn looks_like_secret(value: &str) -> bool {
    value.len() == SECRET_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A token derived from `secret` for one `purpose`: SHA-256 over a purpose label and the
/// secret, base64url. It can be shown in a page (it does not reveal the secret) and is
/// unguessable without the secret.
pub fn derive(purpose: &str, secret: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"neurosphere-portal:");
    hash.update(purpose.as_bytes());
    hash.update([0u8]);
    hash.update(secret.as_bytes());
    URL_SAFE_NO_PAD.encode(hash.finalize())
}

/// The SHA-256 of a secret, as a cache key (the secret itself is never kept as a key).
pub fn fingerprint(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Constant-time equality of two tokens.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_and_well_formed() {
        let (a, b) = (generate(), generate());
        assert!(looks_like_secret(&a) && looks_like_secret(&b));
        assert_ne!(a, b);
        assert!(!looks_like_secret(&format!("{}=", &a[..42])));
        assert_ne!(derive("csrf", &a), derive("csrf", &b));
        assert_ne!(derive("csrf", &a), derive("other", &a));
        assert!(same(&derive("csrf", &a), &derive("csrf", &a)));
        assert!(!same("abc", "abd"));
    }
}
