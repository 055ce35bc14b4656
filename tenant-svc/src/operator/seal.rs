//! Operators' TOTP secrets at rest: AES-256-GCM (ring) under a key derived from the account
//! hash key (`TENANT_ACCOUNT_HASH_KEY`, else V16's per-database key) with its own label, so a copy
//! of `tenant.operators` alone yields no second factor when the key is configured outside the
//! database. Stored as nonce (12 random bytes) || ciphertext || tag; the operator's e-mail hash
//! (unique, fixed at creation) is the associated data, so a sealed secret copied onto another
//! operator's row does not open.

use hmac::{Hmac, Mac};
use rand::RngCore as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::Sha256;

use crate::error::{Result, TenantError};

/// The sealing key of operators' TOTP secrets, from the account hash key.
pub fn key(account_key: &[u8]) -> LessSafeKey {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(account_key).expect("HMAC takes keys of any length");
    mac.update(b"operator-totp-seal:");
    let k = mac.finalize().into_bytes();
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &k).expect("32 bytes is an AES-256 key"))
}

/// `secret` sealed for the operator whose e-mail hash is `owner`.
pub fn seal(key: &LessSafeKey, owner: &[u8], secret: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut data = secret.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(owner),
        &mut data,
    )
    .map_err(|_| TenantError::Internal("sealing a TOTP secret failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Ok(out)
}

/// The secret sealed for `owner`; INTERNAL when it does not open (wrong key or row).
pub fn open(key: &LessSafeKey, owner: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    let bad = || TenantError::Internal("an operator's TOTP secret does not open".into());
    if sealed.len() < NONCE_LEN {
        return Err(bad());
    }
    let (nonce, data) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
    let mut data = data.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(owner), &mut data)
        .map_err(|_| bad())?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_operator() {
        let k = key(b"an account hash key of thirty-two bytes!");
        let s = seal(&k, b"seven", b"12345678901234567890").unwrap();
        assert_eq!(s.len(), 12 + 20 + 16);
        assert_eq!(open(&k, b"seven", &s).unwrap(), b"12345678901234567890");
        assert!(open(&k, b"eight", &s).is_err());
        assert!(open(&key(b"another key"), b"seven", &s).is_err());
        assert_ne!(seal(&k, b"seven", b"12345678901234567890").unwrap(), s);
    }
}
