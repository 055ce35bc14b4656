//! The operators' second factor: TOTP as RFC 6238 defines it (HMAC-SHA-1 over the 30-second time
//! step since the Unix epoch, dynamic truncation of RFC 4226, 6 digits), built on the `hmac` and
//! `sha1` crates already in the tree (the RustCrypto implementations) and checked against the
//! RFC's own test vectors below. A code is accepted for the current step and one step either side
//! (clock drift), and only for a step later than the last one accepted (the caller stores it), so
//! a code seen once cannot be replayed.

use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha1::Sha1;

/// Length of a secret in bytes (160 bits, RFC 4226's recommendation for HMAC-SHA-1).
pub const SECRET_LEN: usize = 20;
/// Seconds per time step.
pub const STEP_SECS: u64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Steps of drift accepted either side of the current one.
pub const DRIFT_STEPS: u64 = 1;

/// A new random secret.
pub fn new_secret() -> [u8; SECRET_LEN] {
    let mut s = [0u8; SECRET_LEN];
    rand::rngs::OsRng.fill_bytes(&mut s);
    s
}

/// The time step of `unix_secs`.
pub fn step_at(unix_secs: u64) -> u64 {
    unix_secs / STEP_SECS
}

/// The code of `step` with `digits` digits (RFC 4226 section 5.3).
pub fn code(secret: &[u8], step: u64, digits: u32) -> u32 {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = (h[19] & 0x0f) as usize;
    let bin = u32::from_be_bytes([
        h[offset] & 0x7f,
        h[offset + 1],
        h[offset + 2],
        h[offset + 3],
    ]);
    bin % 10u32.pow(digits)
}

/// Whether `typed` is six ASCII digits (anything else is never a code).
pub fn well_formed(typed: &str) -> bool {
    typed.len() == DIGITS as usize && typed.bytes().all(|b| b.is_ascii_digit())
}

/// The step `typed` is the code of, within the drift around `now_step` and after `last_step`
/// (the last step accepted for this secret); `None` when it is none of them. Compares every
/// candidate in constant time.
pub fn verify(secret: &[u8], typed: &str, now_step: u64, last_step: u64) -> Option<u64> {
    if !well_formed(typed) {
        return None;
    }
    let typed = typed.as_bytes();
    let mut found = None;
    for step in now_step.saturating_sub(DRIFT_STEPS)..=now_step + DRIFT_STEPS {
        let expected = format!("{:06}", code(secret, step, DIGITS));
        let same: bool = subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), typed).into();
        if same && step > last_step && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// RFC 4648 base32 without padding, as authenticator apps take a secret.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The `otpauth://` URI an authenticator app enrols from (Google's Key Uri Format): issuer
/// "NeuroSphere", the account's e-mail as label.
pub fn otpauth_uri(secret: &[u8], account: &str) -> String {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc("NeuroSphere"),
        enc(account),
        base32(secret),
        enc("NeuroSphere"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1: the secret is the ASCII "12345678901234567890".
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc_6238_test_vectors() {
        let vectors = [
            (59u64, 94_287_082u32),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000, 65_353_130),
        ];
        for (t, expected) in vectors {
            assert_eq!(code(RFC_SECRET, step_at(t), 8), expected, "T = {t}");
            assert_eq!(
                code(RFC_SECRET, step_at(t), 6),
                expected % 1_000_000,
                "T = {t}"
            );
        }
    }

    #[test]
    fn a_code_is_accepted_within_one_step_and_only_after_the_last_accepted() {
        let now = step_at(1_234_567_890);
        let c = |step| format!("{:06}", code(RFC_SECRET, step, 6));
        assert_eq!(verify(RFC_SECRET, &c(now), now, 0), Some(now));
        assert_eq!(verify(RFC_SECRET, &c(now - 1), now, 0), Some(now - 1));
        assert_eq!(verify(RFC_SECRET, &c(now + 1), now, 0), Some(now + 1));
        assert_eq!(verify(RFC_SECRET, &c(now - 2), now, 0), None);
        assert_eq!(verify(RFC_SECRET, &c(now + 2), now, 0), None);
        // Replay: the step was accepted already.
        assert_eq!(verify(RFC_SECRET, &c(now), now, now), None);
        assert_eq!(verify(RFC_SECRET, &c(now - 1), now, now - 1), None);
        for bad in ["", "12345", "1234567", "12a456", " 123456"] {
            assert_eq!(verify(RFC_SECRET, bad, now, 0), None, "{bad:?}");
        }
    }

    #[test]
    fn base32_and_the_uri() {
        // RFC 4648 section 10.
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(RFC_SECRET), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let uri = otpauth_uri(RFC_SECRET, "ops@example.com");
        assert_eq!(
            uri,
            "otpauth://totp/NeuroSphere:ops%40example%2Ecom?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=NeuroSphere&algorithm=SHA1&digits=6&period=30"
        );
    }
}
