//! The secrets of portal accounts and what is stored of them.
//!
//! - Session secrets, invitation and reset tokens: 32 random bytes, base64url without padding
//!   (43 characters); only their SHA-256 is stored, so a copy of the database opens nothing.
//! - E-mail addresses and client addresses are looked up by HMAC-SHA256 under the account hash
//!   key (`TENANT_ACCOUNT_HASH_KEY`, else V16's random `tenant.account_hash_key`), with a
//!   different label for each, so a hash of one never matches a hash of the other and a stolen
//!   table cannot be searched for a guessed address without the key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// A new secret (shown once) and the SHA-256 to store.
pub fn new_secret() -> (SecretString, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let text = URL_SAFE_NO_PAD.encode(bytes);
    let hash = secret_hash(&text);
    (SecretString::from(text), hash)
}

/// The stored form of a presented secret; `None` when it cannot be one of ours (wrong length or
/// alphabet), which the callers answer as they answer an unknown one.
pub fn presented(secret: &str) -> Option<Vec<u8>> {
    let ok = secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| secret_hash(secret))
}

fn secret_hash(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes()).to_vec()
}

/// The lookup hash of a normalised e-mail address.
pub fn email_hash(key: &[u8], normalised_email: &str) -> Vec<u8> {
    keyed(key, b"portal-email:", normalised_email.as_bytes())
}

/// The throttle key of a client address (as the gateway computes it).
pub fn address_hash(key: &[u8], address: &str) -> Vec<u8> {
    keyed(key, b"portal-address:", address.trim().as_bytes())
}

fn keyed(key: &[u8], label: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(label);
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn secrets_are_43_characters_and_hash_to_what_is_stored() {
        let (s, h) = new_secret();
        assert_eq!(s.expose_secret().len(), 43);
        assert_eq!(presented(s.expose_secret()), Some(h.clone()));
        assert_eq!(h.len(), 32);
        assert_eq!(presented("short"), None);
        assert_eq!(presented(&"!".repeat(43)), None);
        assert_ne!(new_secret().1, h);
    }

    #[test]
    fn keyed_hashes_depend_on_key_and_label() {
        let a = email_hash(b"k1", "a@example.com");
        assert_eq!(a.len(), 32);
        assert_ne!(a, email_hash(b"k2", "a@example.com"));
        assert_ne!(a, address_hash(b"k1", "a@example.com"));
    }
}
