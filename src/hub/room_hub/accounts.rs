//! Account commands: `/register`, `/password`, `/unregister`, and `/role` for admins.
//!
//! Hashing and checking passwords costs tens of milliseconds of CPU, and the store answers in
//! its own time, so each command runs as a small task of its own (tracked, so shutdown waits for
//! it): it hashes on the blocking pool, waits for the store's commit, and only then answers —
//! straight into the asker's outbox, or back through the hub when the hub's state must change
//! too (who is registered, with which role). Passwords never leave these tasks except as hashes.

use super::persistence::{audit, not_saved};
use super::{Request, RoomHub, Until};
use crate::event::{ClientId, Role, Secret};
use crate::hub::delivery::Recipient;
use crate::names::NameKey;
use crate::passwords::{hash_password, verify_password};
use crate::store::{Change, Store, StoredAccount};

/// What an account task needs from the hub.
struct AccountTask {
    store: Store,
    recipient: Recipient,
    name: String,
    me: tokio::sync::mpsc::Sender<Request>,
}

impl AccountTask {
    fn tell(&self, text: &str) {
        self.recipient.tell(text);
    }

    /// Carries on in the hub.
    async fn in_hub(&self, work: impl FnOnce(&mut RoomHub) + Send + 'static) {
        let _ = self.me.send(Request::Continue(Box::new(work))).await;
    }

    /// The stored account of this name whose password is `password`, or a refusal said to the
    /// asker.
    async fn check(&self, password: Secret) -> Option<StoredAccount> {
        let account = match self.store.account(&self.name).await {
            Ok(Some(account)) => account,
            Ok(None) => {
                self.tell(&format!("{} is not a registered name.", self.name));
                return None;
            }
            Err(error) => {
                self.tell(&format!("Your account could not be read ({error})."));
                return None;
            }
        };
        let hash = account.password_hash.clone();
        let matches =
            tokio::task::spawn_blocking(move || verify_password(&hash, password.expose()))
                .await
                .unwrap_or(false);
        if matches {
            Some(account)
        } else {
            self.tell("Wrong password.");
            None
        }
    }
}

/// Hashes `password` on the blocking pool.
async fn hash(password: Secret) -> Result<String, String> {
    tokio::task::spawn_blocking(move || hash_password(password.expose()))
        .await
        .map_err(|e| e.to_string())?
}

impl RoomHub {
    /// The task context for an account command of `id`, or `None` (the asker told why) when
    /// the server keeps no accounts.
    fn account_task(&mut self, id: ClientId) -> Option<AccountTask> {
        let recipient = self.recipient(id)?;
        let name = self.members.get(&id)?.client.name().to_string();
        let Some(store) = self.settings.store.clone() else {
            self.tell(id, "This server keeps no accounts.");
            return None;
        };
        if self.settings.configured.contains(&NameKey::new(&name)) {
            self.tell(
                id,
                &format!("The account {name} is set in the server's configuration file; the operator manages it."),
            );
            return None;
        }
        Some(AccountTask {
            store,
            recipient,
            name,
            me: self.me.clone(),
        })
    }

    /// `/register PASSWORD`: the asker's current name becomes a registered account.
    pub(super) fn register_account(&mut self, id: ClientId, password: Secret) {
        let Some(task) = self.account_task(id) else {
            return;
        };
        let key = NameKey::new(&task.name);
        if self.settings.registered.contains_key(&key) {
            self.tell(id, &format!("{} is registered already.", task.name));
            return;
        }
        self.settings.tasks.spawn(async move {
            let password_hash = match hash(password).await {
                Ok(hash) => hash,
                Err(error) => return task.tell(&format!("Registration failed ({error}).")),
            };
            let account = StoredAccount {
                name: task.name.clone(),
                password_hash,
                role: Role::User,
            };
            if let Err(error) = task
                .store
                .write_and_wait(vec![Change::Register(account)])
                .await
            {
                tracing::warn!(name = %task.name, %error, "registration failed");
                return task.tell(&format!("Registration failed ({error})."));
            }
            tracing::info!(name = %task.name, "account registered");
            let name = task.name.clone();
            task.in_hub(move |hub| {
                hub.settings.registered.insert(key, Role::User);
                hub.tell(
                    id,
                    &format!(
                        "{name} is now registered to you: from now on, log in with your password."
                    ),
                );
            })
            .await;
        });
    }

    /// `/password OLD NEW`.
    pub(super) fn change_password(&mut self, id: ClientId, old: Secret, new: Secret) {
        let Some(task) = self.account_task(id) else {
            return;
        };
        self.settings.tasks.spawn(async move {
            if task.check(old).await.is_none() {
                return;
            }
            let password_hash = match hash(new).await {
                Ok(hash) => hash,
                Err(error) => {
                    return task.tell(&format!("The password was not changed ({error})."));
                }
            };
            let change = Change::SetPassword {
                name: task.name.clone(),
                password_hash,
            };
            match task.store.write_and_wait(vec![change]).await {
                Ok(()) => task.tell("Your password is changed."),
                Err(error) => task.tell(&format!("The password was not changed ({error}).")),
            }
        });
    }

    /// `/unregister PASSWORD`: the account is deleted; the asker keeps the name as a guest until
    /// they leave.
    pub(super) fn unregister_account(&mut self, id: ClientId, password: Secret) {
        let Some(task) = self.account_task(id) else {
            return;
        };
        self.settings.tasks.spawn(async move {
            if task.check(password).await.is_none() {
                return;
            }
            let change = Change::Unregister {
                name: task.name.clone(),
            };
            if let Err(error) = task.store.write_and_wait(vec![change]).await {
                return task.tell(&format!("The account was not deleted ({error})."));
            }
            tracing::info!(name = %task.name, "account unregistered");
            let name = task.name.clone();
            task.in_hub(move |hub| {
                hub.settings.registered.remove(&NameKey::new(&name));
                hub.tell(
                    id,
                    &format!("{name} is no longer registered; anyone may take it once you leave."),
                );
            })
            .await;
        });
    }

    /// `/role NAME ROLE` by an admin: saved, then in force at once if NAME is online.
    pub(super) fn set_role(
        &mut self,
        id: ClientId,
        actor_role: Role,
        actor_name: &str,
        name: &str,
        role: Role,
    ) {
        if actor_role != Role::Admin {
            self.tell(id, "Permission denied");
            return;
        }
        let key = NameKey::new(name);
        if self.settings.configured.contains(&key) {
            self.tell(
                id,
                &format!("{name}'s role is set in the server's configuration file."),
            );
            return;
        }
        if !self.settings.registered.contains_key(&key) {
            self.tell(
                id,
                &format!("{name} is not registered; only registered names have roles."),
            );
            return;
        }
        let changes = vec![
            Change::SetRole {
                name: name.to_owned(),
                role,
            },
            audit(actor_name, name, "role", role.as_str(), Until::Lifted),
        ];
        let (name, actor_name) = (name.to_owned(), actor_name.to_owned());
        self.persist(changes, move |hub, result| {
            if let Err(cause) = result {
                hub.tell(id, &not_saved(&cause));
                return;
            }
            if let Some(target) = hub.give_role(key, &name, role) {
                hub.tell(
                    target,
                    &format!("{actor_name} made you {}.", role_phrase(role)),
                );
            }
            hub.tell(id, &format!("{name} is now {}.", role_phrase(role)));
        });
    }

    /// Records `role` for the registered name `name` (whose key is `key`) and, when its member is
    /// online here, gives it the role at once and tells its rooms. Returns the member, if online.
    pub(super) fn give_role(&mut self, key: NameKey, name: &str, role: Role) -> Option<ClientId> {
        self.settings.registered.insert(key, role);
        let target = self.find(name)?;
        let member = self.members.get(&target)?;
        let was = member.role();
        member.client.update(|info| info.role = role);
        let shown = member.client.name();
        for room in member.rooms.clone() {
            self.announce_role(&room, &shown, was, role);
        }
        Some(target)
    }
}

/// "a moderator", "an admin", "a user".
fn role_phrase(role: Role) -> &'static str {
    match role {
        Role::User => "a user",
        Role::Moderator => "a moderator",
        Role::Admin => "an admin",
    }
}
