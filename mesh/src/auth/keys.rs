//! Ed25519 keys: the issuer's private [`SigningKey`], its [`PublicKey`], and the verifier's
//! [`TrustedKeys`] with their JSON trust-bundle form.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{DecodingKey, EncodingKey};
use rand::RngCore as _;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{AuthError, b64url, is_token_word};

/// An issuer's private Ed25519 key, with the `kid` verifiers know it by and the issuer it is
/// bound to. `Debug` shows only `kid` and `issuer`; the key bytes are zeroized on drop.
pub struct SigningKey {
    kid: String,
    issuer: String,
    key: ed25519_dalek::SigningKey,
    /// The same key as PKCS#8 DER for jsonwebtoken, prepared once.
    encoding: EncodingKey,
}

impl SigningKey {
    /// A fresh random key for `issuer`, with kid `<issuer>-<8 random hex digits>`.
    ///
    /// # Panics
    /// If `issuer` is not a service name (1-120 printable ASCII characters, no spaces): the
    /// issuer is a constant of the calling program, and such a key could never be published
    /// in a trust bundle.
    pub fn generate(issuer: &str) -> SigningKey {
        assert!(
            is_token_word(issuer) && issuer.len() <= 120,
            "issuer {issuer:?} is not a service name"
        );
        let mut rng = rand::rngs::OsRng;
        let key = ed25519_dalek::SigningKey::generate(&mut rng);
        let kid = format!("{issuer}-{:08x}", rng.next_u32());
        Self::build(issuer, &kid, key)
            .expect("a freshly generated Ed25519 key always encodes as PKCS#8")
    }

    /// Loads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) Ed25519 key.
    pub fn from_pkcs8_pem(issuer: &str, kid: &str, pem: &str) -> Result<SigningKey, AuthError> {
        if !is_token_word(issuer) || !is_token_word(kid) {
            return Err(AuthError::InvalidKey(
                "issuer and kid must be 1-128 printable ASCII characters without spaces".into(),
            ));
        }
        // The parse error names only the structural problem, never key bytes.
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| AuthError::InvalidKey(format!("not a PKCS#8 Ed25519 private key: {e}")))?;
        Self::build(issuer, kid, key)
    }

    fn build(issuer: &str, kid: &str, key: ed25519_dalek::SigningKey) -> Result<Self, AuthError> {
        super::crypto::install();
        let der = key
            .to_pkcs8_der()
            .map_err(|e| AuthError::InvalidKey(format!("cannot encode key as PKCS#8: {e}")))?;
        Ok(SigningKey {
            kid: kid.to_owned(),
            issuer: issuer.to_owned(),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            key,
        })
    }

    /// The key as PKCS#8 PEM, for storing in a secret manager.
    pub fn to_pkcs8_pem(&self) -> SecretString {
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("an Ed25519 key always encodes as PKCS#8 PEM");
        // `pem` is `Zeroizing<String>`: copy into the secret, the original is wiped on drop.
        SecretString::from(pem.as_str())
    }

    /// The public half, to publish in trust bundles.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            kid: self.kid.clone(),
            issuer: self.issuer.clone(),
            bytes: self.key.verifying_key().to_bytes(),
        }
    }

    /// The key id put in every token's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The issuer (`iss`) this key signs for.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// A public Ed25519 key bound to one issuer: a token it verifies must claim that `iss`.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    kid: String,
    issuer: String,
    bytes: [u8; 32],
}

impl PublicKey {
    /// Builds a key from its raw 32 bytes. Refuses bytes that are not a valid curve point or
    /// are a weak (small-order) key, which would let forged signatures verify.
    pub fn new(kid: &str, issuer: &str, bytes: [u8; 32]) -> Result<PublicKey, AuthError> {
        if !is_token_word(kid) || !is_token_word(issuer) {
            return Err(AuthError::InvalidKey(
                "issuer and kid must be 1-128 printable ASCII characters without spaces".into(),
            ));
        }
        let point = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| AuthError::InvalidKey(format!("key {kid}: not an Ed25519 point")))?;
        if point.is_weak() {
            return Err(AuthError::InvalidKey(format!(
                "key {kid}: weak Ed25519 key"
            )));
        }
        Ok(PublicKey {
            kid: kid.to_owned(),
            issuer: issuer.to_owned(),
            bytes,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The issuer this key is trusted for.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("x", &b64url().encode(self.bytes))
            .finish()
    }
}

/// One trusted key, with its jsonwebtoken form prepared once.
#[derive(Clone)]
pub(crate) struct TrustedKey {
    pub(crate) public: PublicKey,
    pub(crate) decoding: DecodingKey,
}

/// The keys a verifier accepts, by `kid`. Rotation: publish the new key next to the old one,
/// switch the issuer to the new key, and remove the old one once its tokens have expired; a
/// removed kid stops verifying at once.
#[derive(Clone, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<String, TrustedKey>,
}

impl TrustedKeys {
    /// An empty set (verifies nothing).
    pub fn new() -> TrustedKeys {
        TrustedKeys::default()
    }

    /// Adds or replaces the key with this `kid`; returns the replaced key.
    pub fn insert(&mut self, key: PublicKey) -> Option<PublicKey> {
        super::crypto::install();
        // For Ed25519, jsonwebtoken's "DER" key is the raw 32-byte public key.
        let decoding = DecodingKey::from_ed_der(&key.bytes);
        self.keys
            .insert(
                key.kid.clone(),
                TrustedKey {
                    public: key,
                    decoding,
                },
            )
            .map(|old| old.public)
    }

    /// Builder form of [`TrustedKeys::insert`].
    pub fn with(mut self, key: PublicKey) -> TrustedKeys {
        self.insert(key);
        self
    }

    /// Removes the key with this `kid`; tokens signed with it stop verifying.
    pub fn remove(&mut self, kid: &str) -> Option<PublicKey> {
        self.keys.remove(kid).map(|k| k.public)
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.get(kid).map(|k| &k.public)
    }

    pub(crate) fn trusted(&self, kid: &str) -> Option<&TrustedKey> {
        self.keys.get(kid)
    }

    /// All keys, ordered by kid.
    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values().map(|k| &k.public)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parses a trust bundle:
    /// `{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"…","iss":"…","x":"…"}]}`
    /// (`x` is the 32-byte public key, base64url without padding). Refuses other key types,
    /// duplicate kids, keys without an issuer, and any entry carrying private material (`d`).
    pub fn from_json(json: &str) -> Result<TrustedKeys, AuthError> {
        let bundle: BundleIn = serde_json::from_str(json)
            .map_err(|e| AuthError::InvalidTrustBundle(format!("not a trust bundle: {e}")))?;
        let mut keys = TrustedKeys::new();
        for (i, jwk) in bundle.keys.into_iter().enumerate() {
            let bad = |why: &str| AuthError::InvalidTrustBundle(format!("key #{i}: {why}"));
            if jwk.d.is_some() {
                return Err(bad(
                    "contains private key material (\"d\"); publish public keys only",
                ));
            }
            if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
                return Err(bad("only kty OKP with crv Ed25519 is accepted"));
            }
            if jwk.alg.as_deref() != Some("EdDSA") {
                return Err(bad("alg must be EdDSA"));
            }
            if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
                return Err(bad("use must be sig"));
            }
            let raw = b64url()
                .decode(jwk.x.as_bytes())
                .map_err(|_| bad("x is not base64url without padding"))?;
            let bytes: [u8; 32] = raw.try_into().map_err(|_| bad("x must be 32 bytes"))?;
            let key = PublicKey::new(&jwk.kid, &jwk.iss, bytes)
                .map_err(|e| AuthError::InvalidTrustBundle(format!("key #{i}: {e}")))?;
            if keys.insert(key).is_some() {
                return Err(bad("duplicate kid"));
            }
        }
        Ok(keys)
    }

    /// The trust bundle JSON (see [`TrustedKeys::from_json`]), keys ordered by kid.
    pub fn to_json(&self) -> String {
        let bundle = BundleOut {
            keys: self
                .iter()
                .map(|k| JwkOut {
                    kty: "OKP",
                    crv: "Ed25519",
                    alg: "EdDSA",
                    use_: "sig",
                    kid: &k.kid,
                    iss: &k.issuer,
                    x: b64url().encode(k.bytes),
                })
                .collect(),
        };
        serde_json::to_string(&bundle).expect("a trust bundle always serializes")
    }
}

impl fmt::Debug for TrustedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[derive(Deserialize)]
struct BundleIn {
    keys: Vec<JwkIn>,
}

#[derive(Deserialize)]
struct JwkIn {
    kty: String,
    crv: String,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    kid: String,
    iss: String,
    x: String,
    d: Option<serde::de::IgnoredAny>,
}

#[derive(Serialize)]
struct BundleOut<'a> {
    keys: Vec<JwkOut<'a>>,
}

#[derive(Serialize)]
struct JwkOut<'a> {
    kty: &'static str,
    crv: &'static str,
    alg: &'static str,
    #[serde(rename = "use")]
    use_: &'static str,
    kid: &'a str,
    iss: &'a str,
    x: String,
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn generated_kid_names_the_issuer() {
        let key = SigningKey::generate("gateway");
        let suffix = key
            .kid()
            .strip_prefix("gateway-")
            .expect("kid starts with issuer");
        assert_eq!(suffix.len(), 8);
        assert!(suffix.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(key.issuer(), "gateway");
    }

    #[test]
    fn debug_never_prints_key_material() {
        let key = SigningKey::generate("tenant-svc");
        let pem = key.to_pkcs8_pem();
        let body: String = pem
            .expose_secret()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(&body)
            .unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains(key.kid()));
        assert!(!debug.contains(&body));
        // No fragment of the private key in any encoding we use.
        let secret = key.key.to_bytes();
        for encoded in [
            b64url().encode(secret),
            base64::engine::general_purpose::STANDARD.encode(secret),
            secret
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            format!("{secret:?}"),
            format!("{der:?}"),
        ] {
            assert!(
                !debug.contains(&encoded[..16.min(encoded.len())]),
                "{debug}"
            );
        }
        assert!(!format!("{pem:?}").contains(&body));
    }

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let key = SigningKey::generate("gateway");
        let again =
            SigningKey::from_pkcs8_pem("gateway", key.kid(), key.to_pkcs8_pem().expose_secret())
                .unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert!(matches!(
            SigningKey::from_pkcs8_pem(
                "gateway",
                "k1",
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            ),
            Err(AuthError::InvalidKey(_))
        ));
        assert!(SigningKey::from_pkcs8_pem("", "k1", key.to_pkcs8_pem().expose_secret()).is_err());
    }

    #[test]
    fn trust_bundle_round_trips() {
        let a = SigningKey::generate("tenant-svc").public_key();
        let b = SigningKey::generate("gateway").public_key();
        let keys = TrustedKeys::new().with(a.clone()).with(b.clone());
        let json = keys.to_json();
        let back = TrustedKeys::from_json(&json).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.get(a.kid()), Some(&a));
        assert_eq!(back.get(b.kid()).unwrap().issuer(), "gateway");
        assert_eq!(back.to_json(), json);

        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let first = &v["keys"][0];
        assert_eq!(first["kty"], "OKP");
        assert_eq!(first["crv"], "Ed25519");
        assert_eq!(first["alg"], "EdDSA");
        assert_eq!(
            first["x"].as_str().unwrap().len(),
            43,
            "32 bytes, base64url, no padding"
        );
    }

    #[test]
    fn trust_bundle_accepts_the_documented_format() {
        let key = SigningKey::generate("tenant-svc").public_key();
        let x = b64url().encode(key.bytes());
        let json = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"k1","iss":"tenant-svc","x":"{x}"}}]}}"#
        );
        let keys = TrustedKeys::from_json(&json).unwrap();
        assert_eq!(keys.get("k1").unwrap().bytes(), key.bytes());
    }

    #[test]
    fn trust_bundle_refuses_unsafe_entries() {
        let key = SigningKey::generate("tenant-svc").public_key();
        let x = b64url().encode(key.bytes());
        let entry = |extra: &str| {
            format!(
                r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"k1","iss":"tenant-svc","x":"{x}"{extra}}}]}}"#
            )
        };
        let refused = [
            entry(r#","d":"AAAA""#),
            entry(r#","use":"enc""#),
            entry("").replace("Ed25519\"", "X25519\""),
            entry("").replace("\"EdDSA\"", "\"HS256\""),
            entry("").replace(r#","iss":"tenant-svc""#, ""),
            entry("").replace(&x, &x[..40]),
            entry("").replace(&x, &format!("{x}=")),
            // Two entries with the same kid.
            entry("").replace("]}", &format!(r#",{{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"k1","iss":"gateway","x":"{x}"}}]}}"#)),
            // The identity point: a weak key.
            entry("").replace(&x, &b64url().encode({
                let mut id = [0u8; 32];
                id[0] = 1;
                id
            })),
            "[]".to_owned(),
        ];
        for json in refused {
            assert!(
                matches!(
                    TrustedKeys::from_json(&json),
                    Err(AuthError::InvalidTrustBundle(_))
                ),
                "accepted {json}"
            );
        }
    }

    #[test]
    fn insert_and_remove_by_kid() {
        let a = SigningKey::generate("gateway").public_key();
        let mut keys = TrustedKeys::new();
        assert!(keys.insert(a.clone()).is_none());
        assert_eq!(keys.insert(a.clone()), Some(a.clone()));
        assert_eq!(keys.remove(a.kid()), Some(a.clone()));
        assert!(keys.is_empty());
        assert!(keys.remove(a.kid()).is_none());
    }
}
