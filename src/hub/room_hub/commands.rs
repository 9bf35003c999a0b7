//! Carrying out the commands that reach the hub.

use std::sync::Arc;

use super::RoomHub;
use crate::event::{ClientId, Command};
use crate::names::NameKey;
use crate::protocol;
use crate::store::{Change, StoredMute};

impl RoomHub {
    pub(super) fn handle_command(&mut self, id: ClientId, command: Command) {
        match command {
            Command::Quit => self.remove(
                id,
                "quit",
                Some(protocol::server_line(protocol::GOODBYE)),
                false,
            ),
            Command::Nick(new) => self.rename(id, &new),
            Command::Who => self.who(id),
            Command::Rooms => self.list_rooms(id),
            Command::Join(room) => self.move_to(id, &room),
            Command::Leave => {
                let room = self.default_room.clone();
                self.move_to(id, &room);
            }
            Command::Topic(None) => self.show_topic(id),
            Command::History(count) => self.show_history(id, count),
            Command::Register(password) => self.register_account(id, password),
            Command::Password { old, new } => self.change_password(id, old, new),
            Command::Unregister(password) => self.unregister_account(id, password),
            moderation => self.moderate(id, moderation),
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
        if new_key != old_key && self.names.contains_key(&new_key) {
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
        let Some(member) = self.members.get(&id) else {
            return;
        };
        let room = member.room.clone();
        member.client.update(|info| info.name = Arc::from(new));
        self.names.remove(&old_key);
        self.names.insert(new_key.clone(), id);
        if new_key != old_key
            && let Some(until) = self.mutes.remove(&old_key)
        {
            // A mute follows the person, not the name: renaming must not lift it, now or after
            // a reconnect.
            self.mutes.insert(new_key, until);
            let changes = vec![
                Change::Unmute {
                    name: old.to_string(),
                },
                Change::Mute(StoredMute {
                    name: new.to_owned(),
                    until: until.to_system(),
                    reason: "muted under another name".to_owned(),
                }),
            ];
            self.persist(changes, |_, result| {
                if let Err(cause) = result {
                    tracing::error!(%cause, "a mute could not follow a rename");
                }
            });
        }
        tracing::info!(client = %id, old = %old, new = %new, "client renamed");
        self.broadcast(&room, protocol::renamed_line(&old, new));
    }
}
