//! The hub's side of the store: loading what was kept at start-up, saving changes, and carrying
//! on once they are committed.
//!
//! The hub never waits on disk. A change is applied to the hub's state at once (a ban keeps the
//! troll out from this moment) and handed to the store with a continuation; the continuation
//! comes back through the hub's request channel after the commit, and only then is anyone told
//! "done". When the commit fails, the one who asked is told why and that the change holds only
//! until the server restarts. Chat history is queued without waiting and is best-effort.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{Ban, Request, Room, RoomHub, Until};
use crate::event::Role;
use crate::hub::delivery::Delivery;
use crate::names::NameKey;
use crate::store::{AuditEntry, Change, HistoryLine, LineKind, Snapshot, StoredRoom};

impl Until {
    /// The wall-clock time this ends at, for the store; `None` until lifted.
    pub(super) fn to_system(self) -> Option<SystemTime> {
        match self {
            Until::Lifted => None,
            Until::At(at) => Some(SystemTime::now() + at.saturating_duration_since(Instant::now())),
        }
    }

    /// From a stored wall-clock end; `None` when it is already over.
    pub(super) fn from_system(until: Option<SystemTime>) -> Option<Until> {
        match until {
            None => Some(Until::Lifted),
            Some(at) => {
                let left = at.duration_since(SystemTime::now()).ok()?;
                Some(Until::after(Some(left.max(Duration::from_millis(1)))))
            }
        }
    }
}

impl RoomHub {
    /// Loads what the store kept: accounts' names and roles, bans, mutes, rooms and their
    /// settings, and the newest history of each room. Call before [`RoomHub::run`].
    pub fn restore(&mut self, mut snapshot: Snapshot) {
        self.queue.restore(&mut snapshot);
        self.settings.metrics.queue_length.set(self.queue.length());
        for account in &snapshot.accounts {
            let key = NameKey::new(&account.name);
            if self.settings.configured.contains(&key) {
                tracing::warn!(
                    name = %account.name,
                    "an account is both in the configuration file and in the store; the configuration file wins"
                );
                continue;
            }
            self.settings.registered.insert(key, account.role);
        }
        for ban in snapshot.bans {
            let Some(until) = Until::from_system(ban.until) else {
                continue;
            };
            self.bans.push(Ban {
                name: NameKey::new(&ban.name),
                shown: ban.name,
                addr: ban.addr,
                until,
                reason: ban.reason,
            });
        }
        for mute in snapshot.mutes {
            if let Some(until) = Until::from_system(mute.until) {
                self.put_mute(mute, until);
            }
        }
        for stored in snapshot.rooms {
            let name: Arc<str> = Arc::from(stored.name.as_str());
            if !stored.permanent && !self.is_configured_permanent(&name) {
                // Settings of a room that is not kept die with it; this one emptied in a crash.
                continue;
            }
            let room = self.rooms.entry(name).or_default();
            room.kept = stored.permanent;
            room.moderated = stored.moderated;
            room.topic = stored.topic;
            room.voiced = stored.voiced.iter().map(|n| NameKey::new(n)).collect();
        }
        for permanent in self.configured_permanent_rooms() {
            self.rooms.entry(permanent).or_default();
        }
        let keep = self.settings.rooms.history;
        for line in snapshot.history {
            if let Some(room) = self.rooms.get_mut(line.room.as_str()) {
                if room.history.len() == keep {
                    room.history.pop_front();
                }
                room.history.push_back(history_delivery(&line));
            }
        }
        self.update_gauges();
        tracing::info!(
            accounts = snapshot.accounts.len(),
            bans = self.bans.len(),
            mutes = self.mutes.len(),
            rooms = self.rooms.len(),
            "restored from the store"
        );
    }

    /// The default room and `[rooms] permanent`, which exist from the start.
    fn configured_permanent_rooms(&self) -> Vec<Arc<str>> {
        std::iter::once(self.default_room.clone())
            .chain(
                self.settings
                    .rooms
                    .permanent
                    .iter()
                    .map(|r| Arc::from(r.as_str())),
            )
            .collect()
    }

    /// Saves `changes` in one transaction, then runs `then` in the hub with the outcome (the
    /// cause, on failure). Without a store, `then` runs at once with success.
    pub(super) fn persist(
        &mut self,
        changes: Vec<Change>,
        then: impl FnOnce(&mut RoomHub, Result<(), String>) + Send + 'static,
    ) {
        // In a cluster, the other servers make the shared part of it too.
        self.replicate(&changes);
        self.persist_here(changes, then);
    }

    /// Like [`RoomHub::persist`], for this server's store only (a change another server of the
    /// cluster made).
    pub(super) fn persist_here(
        &mut self,
        changes: Vec<Change>,
        then: impl FnOnce(&mut RoomHub, Result<(), String>) + Send + 'static,
    ) {
        let Some(store) = &self.settings.store else {
            then(self, Ok(()));
            return;
        };
        // Moderators' panels follow the audit log as it is saved.
        let audited: Vec<AuditEntry> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Audit(entry) => Some(entry.clone()),
                _ => None,
            })
            .collect();
        let then = move |hub: &mut RoomHub, result: Result<(), String>| {
            if result.is_ok() && !audited.is_empty() {
                hub.tell_moderators(&Delivery::Audit(Arc::from(audited)));
            }
            then(hub, result);
        };
        let me = self.me.clone();
        // `then` runs once: after the commit on the hub's task, or here if the job could not
        // even be queued. The slot is taken by whichever comes first.
        let slot = Arc::new(std::sync::Mutex::new(Some(then)));
        let on_commit = slot.clone();
        let queued = store.write(
            changes,
            Box::new(move |result| {
                let taken = on_commit.lock().ok().and_then(|mut s| s.take());
                let Some(then) = taken else { return };
                let result = result.map_err(|e| e.to_string());
                // The store thread may wait here: the hub drains its requests first, and never
                // waits on the store.
                let _ = me.blocking_send(Request::Continue(Box::new(move |hub| then(hub, result))));
            }),
        );
        if let Err(error) = queued {
            let taken = slot.lock().ok().and_then(|mut s| s.take());
            if let Some(then) = taken {
                then(self, Err(error.to_string()));
            }
        }
    }

    /// Saves `changes` and tells `id` `done` once they are committed, or why not.
    pub(super) fn persist_and_tell(
        &mut self,
        id: crate::event::ClientId,
        changes: Vec<Change>,
        done: String,
    ) {
        self.persist(changes, move |hub, result| match result {
            Ok(()) => hub.tell(id, &done),
            Err(cause) => hub.tell(id, &not_saved(&cause)),
        });
    }

    /// What a moderator's panel starts from: the queue, and (from the store) the recent audit
    /// log. Doors without a panel render neither.
    pub(super) fn send_moderator_view(&mut self, id: crate::event::ClientId) {
        // The panel's first view is bounded like a page of `/reports`: the oldest entries that
        // fit half the outbox, and a line saying how to see the rest. (Sent whole, a long queue
        // made one frame larger than the outbox may hold, and the moderator was cut off.)
        let Some(member) = self.members.get(&id) else {
            return;
        };
        let (view, held_left, reports_left) = self.queue.view(member.outbox.byte_bound() / 2);
        let rendered = self
            .settings
            .doors
            .get(member.door)
            .render_to(&view, &member.client.name());
        let Some(bytes) = rendered else {
            return; // a door without a panel
        };
        let outbox = member.outbox.clone();
        self.pending.queue(id, &outbox, bytes);
        if held_left + reports_left > 0 {
            self.tell(
                id,
                &format!(
                    "The panel shows the oldest of the queue; {held_left} more held lines (/held) and {reports_left} more reports (/reports) wait."
                ),
            );
        }
        let (Some(store), Some(recipient)) = (self.settings.store.clone(), self.recipient(id))
        else {
            return;
        };
        let _ = store.recent_audit(
            50,
            Box::new(move |entries| {
                if let Ok(entries) = entries {
                    recipient.deliver(&Delivery::Audit(Arc::from(entries)));
                }
            }),
        );
    }

    /// Queues a room line for the store's history (best-effort; never waits).
    pub(super) fn record_history(&self, room: &str, kind: LineKind, sender: &str, text: &str) {
        if let Some(store) = &self.settings.store {
            store.record_history(HistoryLine {
                room: room.to_owned(),
                at: SystemTime::now(),
                kind,
                sender: sender.to_owned(),
                text: text.to_owned(),
            });
        }
    }

    /// The stored form of `room`'s settings.
    pub(super) fn room_change(&self, name: &str, room: &Room) -> Change {
        let mut voiced: Vec<String> = room.voiced.iter().map(ToString::to_string).collect();
        voiced.sort();
        Change::Room(StoredRoom {
            name: name.to_owned(),
            permanent: room.kept,
            moderated: room.moderated,
            topic: room.topic.clone(),
            voiced,
        })
    }

    /// Forgets the stored settings of a room that is gone (it was not kept).
    pub(super) fn forget_room(&mut self, name: &str) {
        let change = Change::Room(StoredRoom {
            name: name.to_owned(),
            ..StoredRoom::default()
        });
        self.persist(vec![change], |_, result| {
            if let Err(cause) = result {
                tracing::warn!(%cause, "a room's settings could not be forgotten");
            }
        });
    }

    /// Names with a role from the store or the configuration, for `/role` checks.
    pub(super) fn registered_role(&self, name: &str) -> Option<Role> {
        self.settings.registered.get(&NameKey::new(name)).copied()
    }
}

/// An audit log entry, also written to the `chatpipe::audit` log target.
pub(super) fn audit(who: &str, whom: &str, what: &str, why: &str, until: Until) -> Change {
    let shown = match until.remaining(Instant::now()) {
        Some(Some(left)) => super::describe_duration(left),
        _ => String::new(),
    };
    tracing::info!(target: "chatpipe::audit", who, whom, what, why, until = shown, "moderation");
    Change::Audit(AuditEntry {
        at: SystemTime::now(),
        who: who.to_owned(),
        whom: whom.to_owned(),
        what: what.to_owned(),
        why: why.to_owned(),
        until: until.to_system(),
    })
}

/// What the asker is told when a change could not be saved.
pub(super) fn not_saved(cause: &str) -> String {
    format!(
        "That could not be saved ({cause}); it holds only until the server restarts. The operator has been told in the log."
    )
}

/// A stored history line as a delivery, for replay.
pub(super) fn history_delivery(line: &HistoryLine) -> Delivery {
    Delivery::History {
        room: Arc::from(line.room.as_str()),
        kind: line.kind,
        from: Arc::from(line.sender.as_str()),
        text: Arc::from(line.text.as_str()),
        at: line.at,
    }
}
