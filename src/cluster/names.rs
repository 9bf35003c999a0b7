//! Names claimed cluster-wide in the `chatpipe_names` key-value bucket.
//!
//! A name belongs to at most one server: every write is a compare-and-set on the entry's revision
//! (create-if-absent to claim, update-at-revision to refresh, delete-at-revision to release), so a
//! server never overwrites or deletes an entry another server wrote. The revisions this server
//! wrote are kept in one map shared by every clone (sessions claim, the heartbeat refreshes); its
//! lock is never held across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_nats::jetstream::kv;
use bytes::Bytes;

/// Names claimed cluster-wide; shared by the sessions (claiming) and the heartbeat (refreshing).
///
/// Every write is compare-and-set on the entry's revision: a claim creates the entry only if
/// it is absent, and a refresh updates it only if it is still the revision this server wrote.
/// So a server cut off from NATS for longer than the name's lifetime, whose entry expired and
/// was claimed by another server meanwhile, finds out on its next refresh (the name is lost:
/// [`ClusterInput::NameLost`](super::ClusterInput::NameLost)) instead of overwriting the other's claim.
#[derive(Clone)]
pub struct NameClaims {
    pub(super) node: Arc<str>,
    pub(super) names: kv::Store,
    /// The names held (lower case), with the revision of the entry this server last wrote.
    pub(super) held: Arc<Mutex<HashMap<String, u64>>>,
}

impl std::fmt::Debug for NameClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameClaims")
            .field("node", &self.node)
            .finish()
    }
}

impl NameClaims {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims `name` for this server: `Ok(false)` when another server (or this one) holds it.
    ///
    /// # Errors
    /// When NATS cannot be asked.
    pub async fn claim(&self, name: &str) -> Result<bool, String> {
        let key = name.to_ascii_lowercase();
        let value = Bytes::copy_from_slice(self.node.as_bytes());
        match self.names.create(&key, value).await {
            Ok(revision) => {
                self.held().insert(key, revision);
                Ok(true)
            }
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Gives `name` up (in the background).
    pub fn release(&self, name: &str) {
        let key = name.to_ascii_lowercase();
        let Some(revision) = self.held().remove(&key) else {
            return;
        };
        let names = self.names.clone();
        tokio::spawn(async move {
            // Only the entry this server wrote: if the name went to another server meanwhile,
            // it stays theirs.
            if let Err(error) = names.delete_expect_revision(&key, Some(revision)).await {
                tracing::debug!(%error, name = %key, "cannot release a name in the cluster; it expires on its own");
            }
        });
    }

    /// Gives up every name held.
    pub(super) async fn release_all(&self) {
        let held: Vec<(String, u64)> = self.held().drain().collect();
        for (key, revision) in held {
            let _ = self
                .names
                .delete_expect_revision(&key, Some(revision))
                .await;
        }
    }

    /// Writes every held name again, so none expires while held; returns the names found lost
    /// to another server (no longer held here). Stops at the first failure to reach NATS (the
    /// next heartbeat tries again).
    pub(super) async fn refresh(&self) -> Vec<String> {
        let held: Vec<(String, u64)> = self.held().iter().map(|(k, r)| (k.clone(), *r)).collect();
        let value = Bytes::copy_from_slice(self.node.as_bytes());
        let mut lost = Vec::new();
        for (key, revision) in held {
            let written = match self.names.update(&key, value.clone(), revision).await {
                Ok(revision) => revision,
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    // Not our entry any more: it expired (NATS was out of reach, or restarted),
                    // and perhaps another server claimed the name since.
                    match self.names.create(&key, value.clone()).await {
                        Ok(revision) => revision,
                        Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                            if self.held().get(&key) == Some(&revision) {
                                self.held().remove(&key);
                                tracing::warn!(name = %key, "a name held here was claimed by another server while this one was cut off");
                                lost.push(key);
                            }
                            continue;
                        }
                        Err(error) => {
                            tracing::debug!(%error, name = %key, "cannot claim a name again");
                            return lost;
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, name = %key, "cannot refresh a name");
                    return lost;
                }
            };
            // Record the new revision, unless the name was given up meanwhile: then give up
            // what was just written too.
            let still_held = match self.held().get_mut(&key) {
                Some(held) if *held == revision => {
                    *held = written;
                    true
                }
                _ => false,
            };
            if !still_held {
                let _ = self.names.delete_expect_revision(&key, Some(written)).await;
            }
        }
        lost
    }
}
