//! The key hierarchy of recordings at rest, all AES-256-GCM (ring):
//!
//! - a **platform key** per version, from the secret setting `MEDIA_RECORDING_KEYS`
//!   (`2:<base64>,1:<base64>`): the highest version wraps new tenant keys, older versions only
//!   unwrap (rotation: add a version; the rewrap pass moves every tenant key to it);
//! - a **tenant key** per customer (`media.recording_keys`), wrapped by a platform key;
//! - a **data key** per recording (`media.recordings.wrapped_key`), wrapped by the tenant key;
//! - each fixed-size **segment** of the recording sealed with the data key, its nonce the
//!   segment index (unique: one key per recording), its AAD the recording id, the index and
//!   whether it is the last segment, so no segment can be altered, swapped, reordered, dropped
//!   or cut off at the end without opening failing.
//!
//! Every wrap carries its own AAD (what is wrapped, for whom, which version), so a wrapped key
//! copied to another row or tenant does not unwrap.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use uuid::Uuid;

/// Bytes of every key.
pub const KEY_LEN: usize = 32;
/// Bytes of an AEAD tag.
pub const TAG_LEN: usize = 16;
/// Bytes of a wrapped key: nonce, key, tag.
pub const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

/// Why a key or segment did not open (tampered, truncated, or the wrong key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("recording crypto: {0}")]
pub struct CryptoError(pub &'static str);

/// 32 secret bytes. Never printed.
#[derive(Clone)]
pub struct SecretKey([u8; KEY_LEN]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut k)
            .expect("the system random source works");
        Self(k)
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("32-byte key"))
    }

    /// Wraps `key` under this key with a random nonce; `aad` says what it is.
    pub fn wrap(&self, key: &SecretKey, aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random source works");
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&key.0);
        let mut body = out.split_off(NONCE_LEN);
        self.aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .expect("sealing 32 bytes cannot fail");
        out.extend_from_slice(&body);
        out
    }

    /// Opens what [`SecretKey::wrap`] made with the same `aad`.
    pub fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<SecretKey, CryptoError> {
        if wrapped.len() != WRAPPED_LEN {
            return Err(CryptoError("wrapped key has the wrong length"));
        }
        let nonce: [u8; NONCE_LEN] = wrapped[..NONCE_LEN].try_into().expect("length checked");
        let mut body = wrapped[NONCE_LEN..].to_vec();
        let plain = self
            .aead()
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .map_err(|_| CryptoError("wrapped key does not open with this key"))?;
        Ok(SecretKey(
            plain
                .try_into()
                .map_err(|_| CryptoError("bad key length"))?,
        ))
    }
}

/// AAD of a tenant key wrapped by platform key `platform_version`.
pub fn tenant_key_aad(customer: i64, version: i32, platform_version: u32) -> Vec<u8> {
    let mut a = b"neurosphere/recording-tenant-key/v1".to_vec();
    a.extend_from_slice(&customer.to_be_bytes());
    a.extend_from_slice(&version.to_be_bytes());
    a.extend_from_slice(&platform_version.to_be_bytes());
    a
}

/// AAD of a recording's data key wrapped by tenant key `key_version`.
pub fn data_key_aad(customer: i64, recording: Uuid, key_version: i32) -> Vec<u8> {
    let mut a = b"neurosphere/recording-data-key/v1".to_vec();
    a.extend_from_slice(&customer.to_be_bytes());
    a.extend_from_slice(recording.as_bytes());
    a.extend_from_slice(&key_version.to_be_bytes());
    a
}

/// The platform keys by version, from `MEDIA_RECORDING_KEYS`.
#[derive(Clone)]
pub struct PlatformKeys {
    keys: BTreeMap<u32, SecretKey>,
}

impl fmt::Debug for PlatformKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions: Vec<_> = self.keys.keys().collect();
        write!(f, "PlatformKeys(versions {versions:?}, <redacted>)")
    }
}

impl PlatformKeys {
    /// Parses `2:<base64 of 32 bytes>,1:<base64>` (order free, versions positive and distinct).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (version, b64) = part
                .split_once(':')
                .ok_or("expected `<version>:<base64 key>` entries separated by commas")?;
            let version: u32 = version
                .trim()
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or("a key version must be a positive integer")?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| format!("key version {version} is not valid base64"))?;
            let key: [u8; KEY_LEN] = bytes
                .try_into()
                .map_err(|_| format!("key version {version} must be 32 bytes"))?;
            if keys.insert(version, SecretKey(key)).is_some() {
                return Err(format!("key version {version} is listed twice"));
            }
        }
        if keys.is_empty() {
            return Err("no key listed".into());
        }
        Ok(Self { keys })
    }

    /// One fresh random key, version 1 (local runs and tests).
    pub fn generate() -> Self {
        Self {
            keys: BTreeMap::from([(1, SecretKey::generate())]),
        }
    }

    /// The setting's text for these keys (what `neurosphere up` keeps under `.neurosphere/`).
    pub fn to_setting(&self) -> String {
        self.keys
            .iter()
            .rev()
            .map(|(v, k)| {
                format!(
                    "{v}:{}",
                    base64::engine::general_purpose::STANDARD.encode(k.0)
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// These keys plus a new random version above the highest (a rotation).
    pub fn with_new_version(&self) -> Self {
        let mut keys = self.keys.clone();
        keys.insert(self.current().0 + 1, SecretKey::generate());
        Self { keys }
    }

    /// The version that wraps new tenant keys, and its key.
    pub fn current(&self) -> (u32, &SecretKey) {
        let (v, k) = self.keys.iter().next_back().expect("never empty");
        (*v, k)
    }

    /// The key of `version`, if configured.
    pub fn get(&self, version: u32) -> Option<&SecretKey> {
        self.keys.get(&version)
    }
}

/// A recording's data key, ready to seal and open its segments.
pub struct DataKey {
    key: LessSafeKey,
    recording: Uuid,
}

impl DataKey {
    /// The AEAD key of `recording`.
    pub fn new(key: &SecretKey, recording: Uuid) -> Self {
        Self {
            key: key.aead(),
            recording,
        }
    }

    fn nonce_and_aad(&self, index: u64, last: bool) -> (Nonce, [u8; 28]) {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[4..].copy_from_slice(&index.to_be_bytes());
        let mut aad = [0u8; 28];
        aad[..3].copy_from_slice(b"NSR");
        aad[3..19].copy_from_slice(self.recording.as_bytes());
        aad[19..27].copy_from_slice(&index.to_be_bytes());
        aad[27] = u8::from(last);
        (Nonce::assume_unique_for_key(nonce), aad)
    }

    /// Seals segment `index` in place (the tag is appended).
    pub fn seal(&self, index: u64, last: bool, segment: &mut Vec<u8>) {
        let (nonce, aad) = self.nonce_and_aad(index, last);
        self.key
            .seal_in_place_append_tag(nonce, Aad::from(aad), segment)
            .expect("segments are far below the AEAD's limit");
    }

    /// Opens sealed segment `index` in place; returns the plaintext part.
    pub fn open<'a>(
        &self,
        index: u64,
        last: bool,
        sealed: &'a mut [u8],
    ) -> Result<&'a mut [u8], CryptoError> {
        let (nonce, aad) = self.nonce_and_aad(index, last);
        self.key
            .open_in_place(nonce, Aad::from(aad), sealed)
            .map_err(|_| CryptoError("segment does not open: altered, moved or cut"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_keys_parse_pick_the_highest_and_never_print_a_key() {
        let keys = PlatformKeys::generate().with_new_version();
        let text = keys.to_setting();
        let parsed = PlatformKeys::parse(&text).unwrap();
        assert_eq!(parsed.current().0, 2);
        assert!(parsed.get(1).is_some());
        assert!(!format!("{parsed:?}").contains(&text[2..10]));
        for bad in ["", "x:AAAA", "0:AAAA", "1:AAAA", "1:not base64!"] {
            assert!(PlatformKeys::parse(bad).is_err(), "{bad:?}");
        }
        let one = keys.to_setting();
        let first = one.split(',').next().unwrap();
        assert!(PlatformKeys::parse(&format!("{first},{first}")).is_err());
    }

    #[test]
    fn a_wrapped_key_opens_only_with_its_key_and_its_aad() {
        let (kek, other) = (SecretKey::generate(), SecretKey::generate());
        let key = SecretKey::generate();
        let aad = tenant_key_aad(7, 1, 1);
        let wrapped = kek.wrap(&key, &aad);
        assert_eq!(wrapped.len(), WRAPPED_LEN);
        assert_eq!(kek.unwrap_key(&wrapped, &aad).unwrap().0, key.0);
        assert!(other.unwrap_key(&wrapped, &aad).is_err(), "wrong key");
        assert!(
            kek.unwrap_key(&wrapped, &tenant_key_aad(8, 1, 1)).is_err(),
            "another tenant's AAD"
        );
        let mut flipped = wrapped.clone();
        flipped[20] ^= 1;
        assert!(kek.unwrap_key(&flipped, &aad).is_err(), "flipped byte");
    }

    #[test]
    fn segments_open_only_at_their_index_with_their_last_flag() {
        let id = Uuid::new_v4();
        let key = SecretKey::generate();
        let dk = DataKey::new(&key, id);
        let mut seg = vec![0x55u8; 100];
        dk.seal(3, false, &mut seg);
        assert_eq!(seg.len(), 100 + TAG_LEN);
        assert_eq!(
            dk.open(3, false, &mut seg.clone()).unwrap(),
            &[0x55u8; 100][..]
        );
        assert!(dk.open(4, false, &mut seg.clone()).is_err(), "moved");
        assert!(dk.open(3, true, &mut seg.clone()).is_err(), "claimed last");
        assert!(
            DataKey::new(&key, Uuid::new_v4())
                .open(3, false, &mut seg.clone())
                .is_err(),
            "another recording"
        );
        let mut flipped = seg.clone();
        flipped[0] ^= 0x80;
        assert!(dk.open(3, false, &mut flipped).is_err(), "flipped byte");
    }
}
