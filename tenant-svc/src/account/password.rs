//! Portal passwords: the acceptance rule (12 to 128 characters, not among the common passwords
//! of `common-passwords.txt`, compared case-insensitively) and Argon2id hashing with OWASP's
//! parameters (m = 19 MiB, t = 2, p = 1; a PHC string with its own random salt). Hashing and
//! verifying take tens of milliseconds of CPU, so they run on the blocking pool.
//!
//! `common-passwords.txt` is the list Django ships (`django/contrib/auth/common-passwords.txt.gz`,
//! BSD licence: 19,640 passwords, lower-cased and deduplicated, from Royce Williams' compilation
//! of breached passwords), one a line.

use std::collections::HashSet;
use std::sync::LazyLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::ExposeSecret as _;

use crate::error::{Result, TenantError};

/// Fewest characters of a password.
pub const MIN_CHARS: usize = 12;
/// Most characters of a password.
pub const MAX_CHARS: usize = 128;
/// Argon2id memory cost in KiB (19 MiB, OWASP's first recommended configuration).
pub const M_COST_KIB: u32 = 19 * 1024;
/// Argon2id passes.
pub const T_COST: u32 = 2;
/// Argon2id lanes.
pub const P_COST: u32 = 1;

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
});

/// A hash of a random password, verified when a sign-in names no known user, so that an
/// unknown address costs the same time as a wrong password.
static DUMMY: LazyLock<String> = LazyLock::new(|| {
    let random = super::secrets::new_secret().0;
    hash_now(random.expose_secret()).expect("hashing a random password succeeds")
});

fn argon2() -> Argon2<'static> {
    let params =
        Params::new(M_COST_KIB, T_COST, P_COST, None).expect("OWASP's parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Whether `password` is acceptable; INVALID_ARGUMENT naming `field` when it is too short, too
/// long, or common.
pub fn check(field: &str, password: &str) -> Result<()> {
    let n = password.chars().count();
    if n < MIN_CHARS {
        return Err(TenantError::invalid(
            field,
            format!("must be at least {MIN_CHARS} characters"),
        ));
    }
    if n > MAX_CHARS {
        return Err(TenantError::invalid(
            field,
            format!("must be at most {MAX_CHARS} characters"),
        ));
    }
    if is_common(password) {
        return Err(TenantError::invalid(
            field,
            "is one of the most common passwords; choose another",
        ));
    }
    Ok(())
}

/// Whether the list holds `password` (case-insensitively).
pub fn is_common(password: &str) -> bool {
    COMMON.contains(password.to_lowercase().as_str())
}

/// How many passwords the list holds.
pub fn common_count() -> usize {
    COMMON.len()
}

fn hash_now(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| TenantError::Internal(format!("password hashing failed: {e}")))
}

fn verify_now(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        // The parameters come from the PHC string, so older hashes keep verifying.
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// The Argon2id PHC string of `password`, on the blocking pool.
pub async fn hash(password: &str) -> Result<String> {
    let password = zeroizing(password);
    tokio::task::spawn_blocking(move || hash_now(password.expose_secret()))
        .await
        .map_err(|e| TenantError::Internal(format!("password hashing task failed: {e}")))?
}

/// Whether `password` matches `phc` (a PHC string); with `None`, verifies against a dummy hash
/// and answers `false`, in the same time. On the blocking pool.
pub async fn verify(password: &str, phc: Option<String>) -> Result<bool> {
    let password = zeroizing(password);
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify_now(password.expose_secret(), &phc),
        None => {
            verify_now(password.expose_secret(), &DUMMY);
            false
        }
    })
    .await
    .map_err(|e| TenantError::Internal(format!("password check task failed: {e}")))
}

/// Warms the dummy hash and the list (the first unknown-address sign-in would otherwise take
/// twice as long as the others, which is what the dummy is there to prevent).
pub async fn warm_up() {
    let _ = tokio::task::spawn_blocking(|| {
        LazyLock::force(&DUMMY);
        LazyLock::force(&COMMON);
    })
    .await;
}

/// A copy of the password for the blocking task.
fn zeroizing(password: &str) -> secrecy::SecretString {
    secrecy::SecretString::from(password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_names_the_field() {
        let e = check("password", "short").unwrap_err();
        assert_eq!(e.to_string(), "password: must be at least 12 characters");
        assert!(check("new_password", &"a".repeat(129)).is_err());
        let e = check("new_password", "Password1234").unwrap_err();
        assert!(e.to_string().starts_with("new_password: is one of"), "{e}");
        check("password", "correct horse battery staple").unwrap();
        assert!(common_count() > 10_000);
    }

    #[tokio::test]
    async fn hashes_verify_and_are_argon2id() {
        let h = hash("correct horse battery staple").await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(
            verify("correct horse battery staple", Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("wrong horse battery staple", Some(h)).await.unwrap());
        assert!(!verify("anything at all", None).await.unwrap());
    }
}
