//! jsonwebtoken's crypto provider, with Ed25519 keys kept prepared.
//!
//! jsonwebtoken (RustCrypto backend) builds an `ed25519_dalek` key from its bytes on every
//! signature and every verification: for signing that is a PKCS#8 parse plus deriving the public
//! key (a full scalar multiplication, as expensive as the signature itself); for verifying, a
//! point decompression (~6 µs). tenant-svc signs a token for every incoming call and every
//! service verifies one per request, so this provider remembers the prepared keys by their bytes
//! and hands out copies. Everything else (HS256 for the legacy tokens, other algorithms) goes to
//! jsonwebtoken's own RustCrypto provider unchanged, and the signatures are byte-for-byte the
//! same (Ed25519 signing is deterministic).
//!
//! [`install`] makes it the process default; it must run before jsonwebtoken is first used,
//! so every constructor in this module's parent that leads to signing or verifying calls it. If
//! something used jsonwebtoken earlier, its default provider stays: slower, equally correct.

use std::sync::{Mutex, OnceLock, PoisonError};

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, rust_crypto};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{Error, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// Distinct keys remembered of each kind; a process holds a handful (its own signing key, the
/// trust bundle's public keys). Past it the memory starts again, so it cannot grow.
const MAX_KEYS: usize = 64;

static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();
static SIGNING: Mutex<Vec<(Vec<u8>, ed25519_dalek::SigningKey)>> = Mutex::new(Vec::new());
static VERIFYING: Mutex<Vec<([u8; 32], ed25519_dalek::VerifyingKey)>> = Mutex::new(Vec::new());

/// Installs the provider as jsonwebtoken's process default (idempotent).
pub(crate) fn install() {
    let provider = PROVIDER.get_or_init(|| CryptoProvider {
        signer_factory: signer,
        verifier_factory: verifier,
        key_utils: rust_crypto::DEFAULT_PROVIDER.key_utils.clone(),
    });
    // Err: already installed (by us, or jsonwebtoken chose its default on first use).
    let _ = provider.install_default();
}

fn signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if *alg != Algorithm::EdDSA {
        return (rust_crypto::DEFAULT_PROVIDER.signer_factory)(alg, key);
    }
    let der = key.as_bytes();
    let mut keys = SIGNING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, k)) = keys.iter().find(|(d, _)| d.as_slice() == der) {
        return Ok(Box::new(EdSigner(k.clone())));
    }
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    let k =
        ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|_| ErrorKind::InvalidEddsaKey)?;
    if keys.len() >= MAX_KEYS {
        keys.clear();
    }
    keys.push((der.to_vec(), k.clone()));
    Ok(Box::new(EdSigner(k)))
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if *alg != Algorithm::EdDSA {
        return (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(alg, key);
    }
    // For Ed25519, jsonwebtoken's "DER" decoding key is the raw 32-byte public key.
    let bytes: [u8; 32] = key
        .try_get_as_bytes()?
        .get(..32)
        .and_then(|b| b.try_into().ok())
        .ok_or(ErrorKind::InvalidEddsaKey)?;
    let mut keys = VERIFYING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, k)) = keys.iter().find(|(b, _)| *b == bytes) {
        return Ok(Box::new(EdVerifier(*k)));
    }
    let k =
        ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| ErrorKind::InvalidEddsaKey)?;
    if keys.len() >= MAX_KEYS {
        keys.clear();
    }
    keys.push((bytes, k));
    Ok(Box::new(EdVerifier(k)))
}

struct EdSigner(ed25519_dalek::SigningKey);

impl Signer<Vec<u8>> for EdSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, Error> {
        Ok(self.0.sign(msg).to_bytes().to_vec())
    }
}

impl JwtSigner for EdSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct EdVerifier(ed25519_dalek::VerifyingKey);

impl Verifier<Vec<u8>> for EdVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), Error> {
        let signature = ed25519_dalek::Signature::from_slice(signature)?;
        // Same check as jsonwebtoken's own RustCrypto verifier (`verify`, not `verify_strict`),
        // so exactly the same tokens are accepted.
        ed25519_dalek::Verifier::verify(&self.0, msg, &signature)?;
        Ok(())
    }
}

impl JwtVerifier for EdVerifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_keys_sign_and_verify_exactly_like_jsonwebtokens_own_provider() {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let der = key.to_pkcs8_der().unwrap();
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        let decoding = DecodingKey::from_ed_der(key.verifying_key().as_bytes());
        let msg = b"header.claims";
        let ours = signer(&Algorithm::EdDSA, &encoding).unwrap();
        let theirs =
            (rust_crypto::DEFAULT_PROVIDER.signer_factory)(&Algorithm::EdDSA, &encoding).unwrap();
        let sig = ours.try_sign(msg).unwrap();
        assert_eq!(sig, theirs.try_sign(msg).unwrap(), "same signature bytes");
        // Twice: the second use comes from the remembered key.
        let again = signer(&Algorithm::EdDSA, &encoding).unwrap();
        assert_eq!(again.try_sign(msg).unwrap(), sig);

        for _ in 0..2 {
            let v = verifier(&Algorithm::EdDSA, &decoding).unwrap();
            assert!(v.verify(msg, &sig).is_ok());
            assert!(v.verify(b"header.claimz", &sig).is_err(), "other message");
            let mut bad = sig.clone();
            bad[0] ^= 1;
            assert!(v.verify(msg, &bad).is_err(), "altered signature");
            assert!(
                v.verify(msg, &sig[..63].to_vec()).is_err(),
                "short signature"
            );
        }
        let other = DecodingKey::from_ed_der(
            ed25519_dalek::SigningKey::from_bytes(&[8u8; 32])
                .verifying_key()
                .as_bytes(),
        );
        assert!(
            verifier(&Algorithm::EdDSA, &other)
                .unwrap()
                .verify(msg, &sig)
                .is_err(),
            "another key"
        );
    }

    #[test]
    fn other_algorithms_go_to_jsonwebtokens_provider() {
        let key = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let s = signer(&Algorithm::HS256, &key).unwrap();
        assert_eq!(s.algorithm(), Algorithm::HS256);
        let d = DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let v = verifier(&Algorithm::HS256, &d).unwrap();
        assert!(v.verify(b"m", &s.try_sign(b"m").unwrap()).is_ok());
    }
}
