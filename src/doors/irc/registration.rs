//! Registration: what an IRC client says before the hub has taken it (`CAP`, `PASS`, `NICK`,
//! `USER`, SASL `PLAIN` through `AUTHENTICATE`), and `CAP`, which a client may also send later.
//!
//! The client is registered with the hub only once `NICK` and `USER` have come, capability
//! negotiation has ended (`CAP END`, or it never began) and no SASL exchange is half done; the
//! writer learns who the client is before the client can send a line that could come back as an
//! echo. A registered name is never taken as a guest: without SASL or `PASS` the client is told
//! to log in or choose another nick. Every refused attempt (a registered name without a password,
//! a name in use) counts, and after `MAX_NAME_ATTEMPTS` the connection closes; a wrong `PASS`
//! closes it at once. SASL data is bounded (`MAX_SASL`) and passwords go through the shared
//! login throttle. Nothing here passes the rate limit (the client is not in the pipeline yet):
//! the handshake timeout bounds registration instead.

use std::sync::Arc;

use base64::Engine as _;
use futures::StreamExt;
use tokio::io::AsyncRead;

use super::message::{Malformed, Message};
use super::output::Cap;
use super::render::{HOST, SERVER};
use super::session::Session;
use crate::event::{Client, ClientInfo, Role};
use crate::hub::RegisterError;
use crate::names::validate_username;
use crate::session::MAX_NAME_ATTEMPTS;
use crate::session::line_codec::Frame;
use crate::session::line_reader::LineReader;
use crate::session::login;

/// SASL data arrives in chunks of 400 base64 bytes; `PLAIN` never needs more than this.
const MAX_SASL: usize = 1200;

/// What registration has gathered so far.
#[derive(Default)]
struct Registration {
    nick: Option<String>,
    user: bool,
    password: Option<String>,
    /// `CAP LS` or `REQ` was sent and `CAP END` not yet: registration waits.
    negotiating: bool,
    /// SASL `PLAIN` under way: the base64 gathered so far.
    sasl: Option<String>,
    /// The account SASL logged in.
    account: Option<(String, Role)>,
    failures: usize,
}

/// What an `AUTHENTICATE` line did.
enum SaslStep {
    /// Nothing to do yet (more data to come, or a reply already sent).
    Pending,
    /// The credentials to check: account name and password.
    Check(String, String),
}

impl Session {
    /// Runs registration until the hub has taken the client; `Err` with the reason to close.
    pub(super) async fn register<R: AsyncRead + Unpin>(
        &mut self,
        frames: &mut LineReader<R>,
    ) -> Result<(), String> {
        let mut state = Registration::default();
        loop {
            let line = match frames.next().await {
                None | Some(Err(_)) => return Err("connection closed".into()),
                Some(Ok(Frame::TooLong)) => {
                    self.numeric("417", &[], "Input line was too long");
                    continue;
                }
                Some(Ok(Frame::InvalidUtf8)) => {
                    self.notice("Invalid UTF-8; the line was discarded.");
                    continue;
                }
                Some(Ok(Frame::Line(line))) => line,
            };
            let message = match Message::parse(&line) {
                Ok(message) => message,
                Err(Malformed::Empty) => continue,
                Err(Malformed::TooLong) => {
                    self.numeric("417", &[], "Input line was too long");
                    continue;
                }
            };
            match message.command.as_str() {
                "CAP" => self.cap(&message, Some(&mut state.negotiating)),
                "PASS" => match message.param(0) {
                    Some(password) => state.password = Some(password.to_owned()),
                    None => self.numeric("461", &["PASS"], "Not enough parameters"),
                },
                "NICK" => match message.param(0) {
                    None | Some("") => self.numeric("431", &[], "No nickname given"),
                    Some(nick) => match validate_username(nick) {
                        Ok(()) => state.nick = Some(nick.to_owned()),
                        Err(problem) => {
                            self.shared().metrics.handshake_failure("invalid_name");
                            self.numeric("432", &[nick], &format!("Erroneous nickname: {problem}"));
                        }
                    },
                },
                "USER" if message.params.len() >= 4 => state.user = true,
                "USER" => self.numeric("461", &["USER"], "Not enough parameters"),
                "AUTHENTICATE" => {
                    if let SaslStep::Check(name, password) = self.authenticate(&message, &mut state)
                    {
                        self.check_sasl(&name, password, &mut state).await;
                    }
                }
                "PING" => self.pong(&message),
                "PONG" => {}
                "QUIT" => return Err("Quit".into()),
                _ => self.numeric("451", &[], "You have not registered"),
            }
            if state.negotiating || !state.user || state.sasl.is_some() {
                continue;
            }
            let Some(nick) = state.nick.take() else {
                continue;
            };
            match self.try_register(nick, &mut state).await {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    state.failures += 1;
                    if state.failures >= MAX_NAME_ATTEMPTS {
                        self.shared().metrics.handshake_failure("too_many_attempts");
                        return Err("Too many invalid nicknames or passwords".into());
                    }
                }
                Err(farewell) => return Err(farewell),
            }
        }
    }

    /// Logs `nick` in and asks the hub to take it: `Ok(false)` when the client may try another
    /// nick (it has been told why), `Err` when the connection should close.
    async fn try_register(
        &mut self,
        nick: String,
        state: &mut Registration,
    ) -> Result<bool, String> {
        let (name, role) = match state.account.clone() {
            Some(account) => account,
            None => match login::account(self.shared(), &nick).await {
                Err(refusal) => return Err(refusal.text),
                Ok(Some(account)) if state.password.is_none() => {
                    self.numeric(
                        "433",
                        &[&nick],
                        &format!(
                            "{} is registered: log in with SASL PLAIN or PASS, or choose another nickname",
                            account.name
                        ),
                    );
                    return Ok(false);
                }
                Ok(_) => {
                    let password = state.password.clone();
                    match login::log_in(self.shared(), &nick, password, self.addr).await {
                        Ok(login) => login,
                        Err(refusal) if refusal.code == "wrong_password" => {
                            self.numeric("464", &[], "Password incorrect");
                            return Err(refusal.text);
                        }
                        Err(refusal) => return Err(refusal.text),
                    }
                }
            },
        };
        let client = Arc::new(Client::new(
            self.id,
            self.addr,
            ClientInfo {
                name: Arc::from(name.as_str()),
                room: self.shared().default_room.clone(),
                role,
            },
        ));
        let registered = self
            .shared()
            .hub
            .register_at(self.door.door, client.clone(), self.outbox.clone())
            .await;
        match registered {
            Ok(()) => {
                // Before the client can send a line that could come back as an echo: the writer
                // needs to know whose lines are its own.
                self.output.registered(client.clone());
                tracing::info!(client = %self.id, name = %name, peer = %self.addr, "IRC client registered");
                self.sent.registered(client);
                Ok(true)
            }
            Err(RegisterError::ShuttingDown) => Err(crate::protocol::SHUTTING_DOWN.into()),
            Err(e @ RegisterError::Banned { .. }) => {
                self.shared().metrics.handshake_failure("banned");
                self.numeric("465", &[], &format!("You are banned: {e}"));
                Err(format!("Connection refused: {e}"))
            }
            Err(e @ RegisterError::NameTaken(_)) => {
                self.shared().metrics.handshake_failure("name_taken");
                self.numeric("433", &[&name], &format!("Nickname is already in use: {e}"));
                Ok(false)
            }
            Err(e @ RegisterError::ClusterUnavailable) => {
                self.notice(&e.to_string());
                Ok(false)
            }
        }
    }

    /// `CAP LS|LIST|REQ|END`. During registration, `negotiating` says whether to wait.
    pub(super) fn cap(&self, message: &Message<'_>, negotiating: Option<&mut bool>) {
        let sub = message.param(0).unwrap_or("").to_ascii_uppercase();
        let wait = match sub.as_str() {
            "LS" => {
                let v302 = message.param(1).and_then(|v| v.parse::<u32>().ok()) >= Some(302);
                let caps: Vec<&str> = Cap::ALL.into_iter().map(|c| c.advertised(v302)).collect();
                self.reply(|out, me| {
                    out.raw(&format!(":{SERVER} CAP {me} LS :{}", caps.join(" ")));
                });
                Some(true)
            }
            "LIST" => {
                let on = self.output.enabled().join(" ");
                self.reply(|out, me| out.raw(&format!(":{SERVER} CAP {me} LIST :{on}")));
                None
            }
            "REQ" => {
                let asked = message.param(1).unwrap_or("");
                let wanted: Option<Vec<(Cap, bool)>> = asked
                    .split_ascii_whitespace()
                    .map(|name| match name.strip_prefix('-') {
                        Some(name) => Cap::named(name).map(|cap| (cap, false)),
                        None => Cap::named(name).map(|cap| (cap, true)),
                    })
                    .collect();
                let verdict = match wanted {
                    Some(changes) if !changes.is_empty() => {
                        for (cap, on) in changes {
                            self.output.set(cap, on);
                        }
                        "ACK"
                    }
                    _ => "NAK",
                };
                self.reply(|out, me| out.raw(&format!(":{SERVER} CAP {me} {verdict} :{asked}")));
                Some(true)
            }
            "END" => Some(false),
            _ => {
                self.numeric("410", &[&sub], "Invalid CAP command");
                None
            }
        };
        if let (Some(negotiating), Some(wait)) = (negotiating, wait) {
            *negotiating = wait;
        }
    }

    /// One `AUTHENTICATE` line of SASL `PLAIN`.
    fn authenticate(&self, message: &Message<'_>, state: &mut Registration) -> SaslStep {
        let Some(data) = message.param(0) else {
            self.numeric("461", &["AUTHENTICATE"], "Not enough parameters");
            return SaslStep::Pending;
        };
        if state.account.is_some() {
            self.numeric("907", &[], "You have already authenticated using SASL");
            return SaslStep::Pending;
        }
        if data == "*" {
            state.sasl = None;
            self.numeric("906", &[], "SASL authentication aborted");
            return SaslStep::Pending;
        }
        let Some(gathered) = state.sasl.as_mut() else {
            if data.eq_ignore_ascii_case("PLAIN") {
                state.sasl = Some(String::new());
                self.reply(|out, _| out.raw("AUTHENTICATE +"));
            } else {
                self.numeric("908", &["PLAIN"], "are available SASL mechanisms");
                self.numeric("904", &[], "SASL authentication failed");
            }
            return SaslStep::Pending;
        };
        if data != "+" {
            gathered.push_str(data);
        }
        if gathered.len() > MAX_SASL {
            state.sasl = None;
            self.numeric("905", &[], "SASL message too long");
            return SaslStep::Pending;
        }
        if data.len() == 400 {
            return SaslStep::Pending;
        }
        let Some(gathered) = state.sasl.take() else {
            return SaslStep::Pending;
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(gathered.as_bytes())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let mut parts = decoded.as_deref().unwrap_or("").splitn(3, '\0');
        let (authzid, authcid, password) = (parts.next(), parts.next(), parts.next());
        match (authzid, authcid, password) {
            (Some(authzid), Some(authcid), Some(password)) => {
                let name = if authcid.is_empty() { authzid } else { authcid };
                SaslStep::Check(name.to_owned(), password.to_owned())
            }
            _ => {
                self.numeric(
                    "904",
                    &[],
                    "SASL authentication failed: not PLAIN credentials",
                );
                SaslStep::Pending
            }
        }
    }

    /// Checks SASL credentials against the accounts: `900` and `903`, or `904`.
    async fn check_sasl(&self, name: &str, password: String, state: &mut Registration) {
        let shared = self.shared();
        let account = match login::account(shared, name).await {
            Ok(Some(account)) => account,
            Ok(None) => {
                self.numeric("904", &[], "SASL authentication failed: no such account");
                return;
            }
            Err(refusal) => {
                self.numeric("904", &[], &refusal.text);
                return;
            }
        };
        if let Some(refusal) = login::throttled(shared, name, self.addr) {
            self.numeric("904", &[], &refusal.text);
            return;
        }
        if !login::check_password(shared, &account, self.addr, password).await {
            self.numeric("904", &[], "SASL authentication failed");
            return;
        }
        let who = format!("{0}!{0}@{HOST}", account.name);
        self.numeric(
            "900",
            &[&who, &account.name],
            &format!("You are now logged in as {}", account.name),
        );
        self.numeric("903", &[], "SASL authentication successful");
        state.account = Some((account.name.clone(), account.role));
    }
}
