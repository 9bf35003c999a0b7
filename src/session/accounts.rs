//! Registered accounts: password hashes, roles, and throttling of wrong passwords.
//!
//! Passwords are Argon2id PHC strings checked by [`crate::passwords`]. Verifying costs tens
//! of milliseconds of CPU by design, so sessions verify on the blocking pool, never on a runtime
//! worker. Wrong passwords are counted per name and per address; past `login_failures` within
//! `login_lockout`, further attempts are refused without checking the password, which caps how
//! fast anyone can guess.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{AccountConfig, AdmissionConfig};
use crate::event::Role;
use crate::names::NameKey;

/// One account.
#[derive(Debug, Clone)]
pub struct Account {
    /// The name as configured.
    pub name: String,
    /// The Argon2 PHC string.
    pub password_hash: Arc<str>,
    /// The role the account logs in with.
    pub role: Role,
}

/// The configured accounts and the login policy.
#[derive(Debug)]
pub struct Accounts {
    by_name: HashMap<NameKey, Account>,
    /// Whether names without an account may join.
    pub allow_guests: bool,
    throttle: LoginThrottle,
}

impl Accounts {
    /// From the configuration.
    pub fn new(accounts: &[AccountConfig], admission: &AdmissionConfig) -> Self {
        Accounts {
            by_name: accounts
                .iter()
                .map(|a| {
                    let account = Account {
                        name: a.name.clone(),
                        password_hash: Arc::from(a.password_hash.as_str()),
                        role: a.role,
                    };
                    (NameKey::new(&a.name), account)
                })
                .collect(),
            allow_guests: admission.allow_guests,
            throttle: LoginThrottle::new(admission.login_failures, admission.login_lockout),
        }
    }

    /// The account registered under `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Account> {
        self.by_name.get(&NameKey::new(name))
    }

    /// The throttle for wrong passwords.
    pub fn throttle(&self) -> &LoginThrottle {
        &self.throttle
    }
}

/// Counts wrong passwords per name and per address.
///
/// A `std` mutex held for a map lookup, never across an `.await`.
#[derive(Debug)]
pub struct LoginThrottle {
    max_failures: u32,
    lockout: Duration,
    failures: Mutex<HashMap<ThrottleKey, (u32, Instant)>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ThrottleKey {
    Name(NameKey),
    Address(IpAddr),
}

impl LoginThrottle {
    fn new(max_failures: u32, lockout: Duration) -> Self {
        LoginThrottle {
            max_failures: max_failures.max(1),
            lockout,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// How long logins for `name` from `addr` stay refused, or `None` if they may try.
    pub fn refused_for(&self, name: &str, addr: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut failures = self.lock();
        failures.retain(|_, (_, since)| now.saturating_duration_since(*since) < self.lockout);
        [
            ThrottleKey::Name(NameKey::new(name)),
            ThrottleKey::Address(addr),
        ]
        .iter()
        .filter_map(|key| failures.get(key))
        .filter(|(count, _)| *count >= self.max_failures)
        .map(|(_, since)| {
            self.lockout
                .saturating_sub(now.saturating_duration_since(*since))
        })
        .max()
    }

    /// Records a wrong password for `name` from `addr`.
    pub fn record_failure(&self, name: &str, addr: IpAddr) {
        let now = Instant::now();
        let mut failures = self.lock();
        for key in [
            ThrottleKey::Name(NameKey::new(name)),
            ThrottleKey::Address(addr),
        ] {
            let entry = failures.entry(key).or_insert((0, now));
            entry.0 += 1;
            entry.1 = now;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ThrottleKey, (u32, Instant)>> {
        // Poisoning: the map holds counters only; any state is a valid state.
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn throttle_refuses_after_too_many_failures_then_forgives() {
        let throttle = LoginThrottle::new(2, Duration::from_secs(60));
        let addr: IpAddr = "10.0.0.1".parse().unwrap();
        throttle.record_failure("alice", addr);
        assert_eq!(throttle.refused_for("alice", addr), None);
        throttle.record_failure("ALICE", addr);
        assert_eq!(
            throttle.refused_for("alice", addr),
            Some(Duration::from_secs(60))
        );
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(throttle.refused_for("alice", other).is_some(), "per name");
        assert!(throttle.refused_for("bob", addr).is_some(), "per address");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(throttle.refused_for("alice", addr), None);
    }
}
