//! Carrying out the commands that reach the hub.

use std::sync::Arc;

use super::RoomHub;
use crate::event::{ClientId, Command};
use crate::hub::delivery::Delivery;
use crate::names::NameKey;
use crate::protocol;

impl RoomHub {
    /// Carries out `command`, sent by `id` to `room`.
    pub(super) fn handle_command(&mut self, id: ClientId, room: &Arc<str>, command: Command) {
        match command {
            Command::Quit => self.remove(
                id,
                "quit",
                Some(Delivery::coded("goodbye", protocol::GOODBYE)),
                false,
            ),
            Command::Nick(new) => self.rename(id, &new),
            Command::Who => self.who(id, room),
            Command::Rooms => self.list_rooms(id),
            Command::Join(to) => self.join(id, &to),
            Command::Leave => self.leave(id, room),
            Command::Topic(None) => self.show_topic(id, room),
            Command::History(count) => self.show_history(id, room, count),
            Command::Register(password) => self.register_account(id, password),
            Command::Password { old, new } => self.change_password(id, old, new),
            Command::Unregister(password) => self.unregister_account(id, password),
            Command::Report { name, reason } => self.report(id, room, &name, reason),
            moderation => self.moderate(id, room, moderation),
        }
    }

    fn rename(&mut self, id: ClientId, new: &str) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        let old = member.client.name();
        let old_key = NameKey::new(&old);
        let new_key = NameKey::new(new);
        if *old == *new {
            self.tell(id, &format!("You are already known as {new}."));
            return;
        }
        if new_key != old_key
            && (self.names.contains_key(&new_key) || self.remote_member(new).is_some())
        {
            self.tell(id, &format!("The username {new} is already taken."));
            return;
        }
        // A registered name needs its password: only its owner (already logged in under a
        // case variant of it) may take it.
        if new_key != old_key && self.settings.registered.contains_key(&new_key) {
            self.tell(
                id,
                &format!("The username {new} is registered; log in as {new} to use it."),
            );
            return;
        }
        let addr = member.client.addr().ip();
        if new_key != old_key
            && let Some(ban) = self.ban_on(&new_key, addr)
        {
            self.tell(id, &format!("You cannot take the name {new}: {ban}."));
            return;
        }
        // In a cluster the new name is claimed cluster-wide first; the rename is finished when
        // the claim is through (and refused if another server holds the name).
        if new_key != old_key
            && let Some(link) = &self.settings.cluster
        {
            let (claims, me, new) = (link.claims.clone(), self.me.clone(), new.to_owned());
            tokio::spawn(async move {
                let claimed = claims.claim(&new).await;
                let work: super::Continuation = Box::new(move |hub: &mut RoomHub| {
                    match claimed {
                    Ok(true) => hub.finish_rename(id, &new),
                    Ok(false) => hub.tell(id, &format!("The username {new} is already taken.")),
                    Err(_) => hub.tell(
                        id,
                        "Names cannot be checked right now (the cluster is unreachable); try again in a moment.",
                    ),
                }
                });
                let _ = me.send(super::Request::Continue(work)).await;
            });
            return;
        }
        self.finish_rename(id, new);
    }

    /// Renames `id` to `new` (checked already) and tells its rooms.
    fn finish_rename(&mut self, id: ClientId, new: &str) {
        let Some(member) = self.members.get(&id) else {
            // Gone meanwhile: a name claimed for it is given back.
            self.release_name(new);
            return;
        };
        let old = member.client.name();
        let (old_key, new_key) = (NameKey::new(&old), NameKey::new(new));
        if new_key != old_key && self.names.contains_key(&new_key) {
            self.release_name(new);
            self.tell(id, &format!("The username {new} is already taken."));
            return;
        }
        let rooms = member.rooms.clone();
        member.client.update(|info| info.name = Arc::from(new));
        self.names.remove(&old_key);
        self.names.insert(new_key.clone(), id);
        if new_key != old_key {
            // A mute follows the person, not the name: the new name joins it and the old one
            // stays in it, so neither the rename nor a reconnect under either name lifts it.
            self.mute_follows_rename(&old_key, new);
        }
        tracing::info!(client = %id, old = %old, new = %new, "client renamed");
        let new: Arc<str> = Arc::from(new);
        self.rename_in_cluster(&old, &new);
        let mut told = super::Told::across(rooms.len());
        for room in &rooms {
            let event = crate::cluster::wire::RoomEvent::Renamed {
                node: String::new(),
                old: old.to_string(),
                new: new.to_string(),
            };
            self.publish_presence(room, event);
            let renamed = Delivery::Renamed {
                room: room.clone(),
                old: old.clone(),
                new: new.clone(),
            };
            self.broadcast_once(room, &renamed, &mut told);
        }
    }
}
