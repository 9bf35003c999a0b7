//! Admission by address: how many connections one address may hold and open, and the
//! exemption list (`[admission] exempt`).
//!
//! Exempt addresses (loopback by default, as ergo's default configuration does) skip the
//! per-address limits and address bans, so an operator on the machine itself can never lock
//! themselves out.
//!
//! Invariants: the table holds only addresses with an open connection or a connection opened
//! within the window, and at most `max_new` timestamps per address, so its size is bounded by
//! the traffic of the last ten minutes. The `std` mutex is held for a lookup, never across an
//! `.await`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::addresses::AddressList;

/// The window `per_address_new_per_10m` counts in.
const NEW_CONNECTION_WINDOW: Duration = Duration::from_secs(600);

/// Admissions between sweeps of addresses that have gone quiet.
const SWEEP_EVERY: u64 = 1024;

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Too many open connections from the address.
    #[error("Too many connections from your address (the limit is {0}).")]
    TooManyOpen(usize),
    /// Too many new connections from the address recently.
    #[error(
        "Too many new connections from your address; try again later (the limit is {0} per 10 minutes)."
    )]
    TooManyNew(usize),
}

/// Per-address connection limits. Shared by the accept loop and, through the guards, every
/// connection.
#[derive(Debug)]
pub struct AddressLimits {
    exempt: AddressList,
    max_open: usize,
    max_new: usize,
    state: Mutex<LimitState>,
}

#[derive(Debug, Default)]
struct LimitState {
    by_address: HashMap<IpAddr, AddressState>,
    admissions: u64,
}

#[derive(Debug, Default)]
struct AddressState {
    open: usize,
    recent: VecDeque<Instant>,
}

/// Holds one connection's place in its address's count; released on drop.
#[derive(Debug)]
pub struct AddressGuard {
    limits: Arc<AddressLimits>,
    ip: IpAddr,
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        let mut state = self.limits.lock();
        if let Some(entry) = state.by_address.get_mut(&self.ip) {
            entry.open = entry.open.saturating_sub(1);
            if entry.open == 0 && entry.recent.is_empty() {
                state.by_address.remove(&self.ip);
            }
        }
    }
}

impl AddressLimits {
    /// Limits of `max_open` connections and `max_new` new ones per 10 minutes per address.
    pub fn new(exempt: AddressList, max_open: usize, max_new: usize) -> Self {
        AddressLimits {
            exempt,
            max_open,
            max_new,
            state: Mutex::new(LimitState::default()),
        }
    }

    /// Admits a connection from `ip`: a guard to hold while it is open (`None` for an exempt
    /// address), or why it is refused.
    ///
    /// # Errors
    /// [`Refusal`] when the address is over a limit; nothing is counted then.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Option<AddressGuard>, Refusal> {
        if self.exempt.contains(ip) {
            return Ok(None);
        }
        let now = Instant::now();
        let mut state = self.lock();
        state.admissions += 1;
        if state.admissions.is_multiple_of(SWEEP_EVERY) {
            state.by_address.retain(|_, entry| {
                forget_old(&mut entry.recent, now);
                entry.open > 0 || !entry.recent.is_empty()
            });
        }
        let entry = state.by_address.entry(ip).or_default();
        forget_old(&mut entry.recent, now);
        if entry.open >= self.max_open {
            return Err(Refusal::TooManyOpen(self.max_open));
        }
        if entry.recent.len() >= self.max_new {
            return Err(Refusal::TooManyNew(self.max_new));
        }
        entry.open += 1;
        entry.recent.push_back(now);
        Ok(Some(AddressGuard {
            limits: self.clone(),
            ip,
        }))
    }

    /// Admits a connection from `ip` against the open-connection limit only: for a plain HTTP
    /// connection, which holds a socket (and so counts while open) but is not yet a session. A
    /// page load opens several such connections, so counting them against `max_new` would lock
    /// out a person who reloads the page; the session it upgrades to is counted with
    /// [`AddressLimits::count_new`].
    ///
    /// # Errors
    /// [`Refusal::TooManyOpen`] when the address holds its most connections already.
    pub fn admit_open(self: &Arc<Self>, ip: IpAddr) -> Result<Option<AddressGuard>, Refusal> {
        if self.exempt.contains(ip) {
            return Ok(None);
        }
        let mut state = self.lock();
        let entry = state.by_address.entry(ip).or_default();
        if entry.open >= self.max_open {
            return Err(Refusal::TooManyOpen(self.max_open));
        }
        entry.open += 1;
        Ok(Some(AddressGuard {
            limits: self.clone(),
            ip,
        }))
    }

    /// Counts a new session from `ip` (already holding its open connection through
    /// [`AddressLimits::admit_open`]) against the new-connection limit.
    ///
    /// # Errors
    /// [`Refusal::TooManyNew`] when the address opened its most sessions within the window;
    /// nothing is counted then.
    pub fn count_new(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.exempt.contains(ip) {
            return Ok(());
        }
        let now = Instant::now();
        let mut state = self.lock();
        let entry = state.by_address.entry(ip).or_default();
        forget_old(&mut entry.recent, now);
        if entry.recent.len() >= self.max_new {
            return Err(Refusal::TooManyNew(self.max_new));
        }
        entry.recent.push_back(now);
        Ok(())
    }

    /// Whether a connection from `ip` would be admitted now, without counting it: for a door
    /// that must refuse before expensive work (a TLS handshake) and admits later.
    ///
    /// # Errors
    /// [`Refusal`] when the address is over a limit.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.exempt.contains(ip) {
            return Ok(());
        }
        let now = Instant::now();
        let mut state = self.lock();
        let Some(entry) = state.by_address.get_mut(&ip) else {
            return Ok(());
        };
        forget_old(&mut entry.recent, now);
        if entry.open >= self.max_open {
            return Err(Refusal::TooManyOpen(self.max_open));
        }
        if entry.recent.len() >= self.max_new {
            return Err(Refusal::TooManyNew(self.max_new));
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, LimitState> {
        // Poisoning: counters only; any state is a usable state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn forget_old(recent: &mut VecDeque<Instant>, now: Instant) {
    while recent
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= NEW_CONNECTION_WINDOW)
    {
        recent.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limits_open_and_new_connections_per_address() {
        let limits = Arc::new(AddressLimits::new(
            AddressList::new(&["127.0.0.1".into()]),
            2,
            3,
        ));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = limits.admit(ip).unwrap();
        let _b = limits.admit(ip).unwrap();
        assert_eq!(limits.admit(ip).unwrap_err(), Refusal::TooManyOpen(2));
        drop(a);
        let _c = limits.admit(ip).unwrap();
        drop(_c);
        assert_eq!(limits.admit(ip).unwrap_err(), Refusal::TooManyNew(3));
        tokio::time::advance(NEW_CONNECTION_WINDOW).await;
        assert!(limits.admit(ip).is_ok(), "the window moved on");
        assert!(
            limits
                .admit("127.0.0.1".parse().unwrap())
                .unwrap()
                .is_none(),
            "exempt"
        );
        assert!(
            limits.admit("10.0.0.2".parse().unwrap()).is_ok(),
            "per address"
        );
    }
}
