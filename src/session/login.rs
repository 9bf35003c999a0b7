//! The steps of logging in that every front door shares: finding the account behind a name
//! (the configuration file's first, then the store's), checking a password against the throttle,
//! and what a refusal says. Each door drives them in its own words (the text protocol asks for
//! the password on a line of its own; the web door gets it in its `hello`).

use std::net::SocketAddr;
use std::sync::Arc;

use super::SessionShared;
use super::accounts::Account;
use crate::event::Role;
use crate::passwords::verify_password;

/// Why a login was refused, in words for the client and a code for doors that have codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: &'static str,
    pub(crate) text: String,
}

impl Refusal {
    fn new(code: &'static str, text: String) -> Refusal {
        Refusal { code, text }
    }
}

/// The account behind `name`, if it is registered; `Err` when the store cannot say.
pub(crate) async fn account(
    shared: &SessionShared,
    name: &str,
) -> Result<Option<Account>, Refusal> {
    if let Some(account) = shared.accounts.get(name) {
        return Ok(Some(account.clone()));
    }
    match shared.store.account(name).await {
        Ok(stored) => Ok(stored.map(|a| Account {
            name: a.name,
            password_hash: Arc::from(a.password_hash),
            role: a.role,
        })),
        Err(error) => {
            tracing::error!(%error, "cannot read accounts from the store");
            Err(Refusal::new(
                "unavailable",
                format!("Accounts cannot be checked right now ({error}); try again in a moment"),
            ))
        }
    }
}

/// A guest's name and role, when guests may join.
pub(crate) fn guest(shared: &SessionShared, name: &str) -> Result<(String, Role), Refusal> {
    if shared.accounts.allow_guests {
        return Ok((name.to_owned(), Role::User));
    }
    shared.metrics.handshake_failure("not_registered");
    Err(Refusal::new(
        "not_registered",
        format!("Only registered users may join; {name} is not registered"),
    ))
}

/// A refusal when `name` or `addr` has failed too often lately.
pub(crate) fn throttled(shared: &SessionShared, name: &str, addr: SocketAddr) -> Option<Refusal> {
    let wait = shared.accounts.throttle().refused_for(name, addr.ip())?;
    shared.metrics.handshake_failure("throttled");
    Some(Refusal::new(
        "throttled",
        format!(
            "Too many failed logins; try again in {}",
            crate::hub::describe_duration(wait)
        ),
    ))
}

/// Checks `password` for `account` on the blocking pool; a wrong one is counted against the
/// name and the address, and logged (never the password).
pub(crate) async fn check_password(
    shared: &SessionShared,
    account: &Account,
    addr: SocketAddr,
    password: String,
) -> bool {
    let hash = account.password_hash.clone();
    let matches = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .unwrap_or(false);
    if !matches {
        shared
            .accounts
            .throttle()
            .record_failure(&account.name, addr.ip());
        shared.metrics.handshake_failure("wrong_password");
        tracing::info!(name = %account.name, peer = %addr, "wrong password");
    }
    matches
}

/// A guest, or a registered account with the right password, for doors that get the password
/// with the name (the web door's `hello`, IRC's `PASS`).
pub(crate) async fn log_in(
    shared: &SessionShared,
    name: &str,
    password: Option<String>,
    addr: SocketAddr,
) -> Result<(String, Role), Refusal> {
    let Some(account) = account(shared, name).await? else {
        return guest(shared, name);
    };
    if let Some(refusal) = throttled(shared, name, addr) {
        return Err(refusal);
    }
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        return Err(Refusal {
            code: "password_required",
            text: format!("Password required for {}", account.name),
        });
    };
    if check_password(shared, &account, addr, password).await {
        Ok((account.name.clone(), account.role))
    } else {
        Err(Refusal {
            code: "wrong_password",
            text: format!("Wrong password for {}", account.name),
        })
    }
}
