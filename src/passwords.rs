//! Password hashing: Argon2id PHC strings (`chatpipe hash-password` makes one).
//!
//! Neutral ground: the configuration checks hashes, the hub hashes on `/register`, and the
//! sessions' login verifies; none of them is the other's.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Checks that `hash` is a PHC string Argon2 can verify against.
///
/// # Errors
/// What is wrong with it.
pub fn check_hash(hash: &str) -> Result<(), String> {
    PasswordHash::new(hash)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Hashes a password with Argon2id and a random salt.
///
/// # Errors
/// When hashing fails (no randomness available).
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

/// True if `password` matches `hash`. CPU-heavy: call it off the async workers.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify() {
        let hash = hash_password("hunter42").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(check_hash(&hash).is_ok());
        assert!(verify_password(&hash, "hunter42"));
        assert!(!verify_password(&hash, "hunter43"));
        assert!(check_hash("plaintext").is_err());
    }
}
