//! A text-protocol session: handshake, then lines into the pipeline.
//!
//! A session never touches room state. It runs the username handshake (asking the hub to register
//! the name), then turns every line it reads into an [`Event`] for the pipeline. Bad input is
//! answered directly into the client's outbox and loses nothing else. When the client goes (end
//! of stream, a read error, or the writer giving up) the session sends [`Body::Left`] through the
//! pipeline, behind the client's last lines, so `bye` then EOF still delivers `bye` first.
//!
//! This is the reading side of the connection; [`crate::session::connection::Connection`] runs it in one
//! task with the writing side ([`crate::session::writer`]).
//!
//! On server shutdown the session stops reading and sends nothing more: the hub tells every
//! registered client; the session itself tells a client still in its handshake.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::event::{Body, Client, ClientId, ClientInfo, Role};
use crate::hub::{Outbox, RegisterError};
use crate::metrics::DropReason;
use crate::names::validate_username;
use crate::protocol::{self, server_line};
use crate::session::Sent;
use crate::session::connection;
use crate::session::idle::IdleAlarm;
use crate::session::line_codec::{Frame, clean_text};
use crate::session::line_reader::LineReader;
use crate::session::{Admission, BadLines, MAX_NAME_ATTEMPTS, SessionShared, login, send_next};

/// The future serving one connection, given its two halves (plain TCP or TLS), until it closes.
pub(crate) fn serve<R, W>(
    shared: Arc<SessionShared>,
    id: ClientId,
    read_half: R,
    write_half: W,
    addr: SocketAddr,
    admission: Admission,
) -> impl Future<Output = ()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let frames = LineReader::new(read_half, shared.config.max_line_bytes);
    let reader_shared = shared.clone();
    connection::open(
        shared,
        id,
        (write_half, None),
        admission,
        move |outbox, sent| {
            let _ = outbox.push(server_line(protocol::GREETING));
            read_side(reader_shared, (id, addr), frames, outbox, sent)
        },
    )
}

/// The reading side: the handshake, then lines into the pipeline until the client goes.
///
/// Not an `async fn`: the handshake is boxed before the rest begins, and the rest is an `async`
/// block, which uses what it captures in place where an `async fn` would keep its arguments
/// twice (as passed, and as the locals they are moved into) for the whole life of every idle
/// connection.
fn read_side<R: AsyncRead + Unpin>(
    shared: Arc<SessionShared>,
    (id, addr): (ClientId, SocketAddr),
    mut frames: LineReader<R>,
    outbox: Outbox,
    sent: Arc<Sent>,
) -> impl Future<Output = ()> {
    // Boxed whole, with what only it needs (the client's id and address) and the frames it
    // hands back: the handshake's state is large and needed once, so it should not stay in the
    // session's future (and in memory) for the whole life of an idle connection.
    let greeting = Box::pin({
        let (shared, outbox, sent) = (shared.clone(), outbox.clone(), sent.clone());
        async move {
            let greeted = greet(&shared, (id, addr), &mut frames, &outbox, &sent).await;
            greeted.then_some(frames)
        }
    });
    async move {
        // A `let`, not an `if let`: the latter would keep the awaited value beside `frames`.
        let Some(mut frames) = greeting.await else {
            return;
        };
        read_lines(&shared, &mut frames, &outbox, &sent).await;
    }
}

/// Runs the handshake within its timeout, unless shutdown begins first; true once the client is
/// registered, otherwise the client has been told why not and its outbox is closed.
async fn greet<R: AsyncRead + Unpin>(
    shared: &SessionShared,
    (id, addr): (ClientId, SocketAddr),
    frames: &mut LineReader<R>,
    outbox: &Outbox,
    sent: &Sent,
) -> bool {
    let handshake = tokio::time::timeout(
        shared.config.handshake_timeout,
        handshake(shared, id, addr, frames, outbox, sent),
    );
    let ended = tokio::select! {
        _ = shared.stop_reading.cancelled() => {
            outbox.close(Some(server_line(protocol::SHUTTING_DOWN)), false);
            return false;
        }
        result = handshake => result,
    };
    match ended {
        Ok(Ok(())) => return true,
        Ok(Err(end)) => {
            tracing::info!(client = %id, peer = %addr, reason = %end, "handshake ended");
            match end {
                HandshakeEnd::TooManyAttempts => {
                    shared.metrics.handshake_failure("too_many_attempts")
                }
                HandshakeEnd::Banned(_) => shared.metrics.handshake_failure("banned"),
                HandshakeEnd::Gone | HandshakeEnd::ShuttingDown | HandshakeEnd::Throttled(_) => {}
            }
            outbox.close(end.farewell().as_deref().map(server_line), false);
        }
        Err(_) => {
            tracing::info!(client = %id, peer = %addr, "handshake timed out");
            shared.metrics.handshake_failure("timeout");
            outbox.close(
                Some(server_line("Timed out waiting for a username. Goodbye.")),
                false,
            );
        }
    }
    false
}

/// Why a handshake ended without a registered client.
#[derive(Debug, thiserror::Error)]
enum HandshakeEnd {
    #[error("client went away")]
    Gone,
    #[error("too many invalid usernames or passwords")]
    TooManyAttempts,
    #[error("banned")]
    Banned(String),
    /// Too many wrong passwords for the name or from the address: the connection ends, since
    /// the client's next line is likely the password it typed ahead, which must never be read
    /// as a username (and so shown to the room and written to the log).
    #[error("login throttled")]
    Throttled(String),
    #[error("server shutting down")]
    ShuttingDown,
}

impl HandshakeEnd {
    fn farewell(&self) -> Option<String> {
        match self {
            HandshakeEnd::Gone => None,
            HandshakeEnd::TooManyAttempts => {
                Some("Too many invalid usernames or passwords. Goodbye.".into())
            }
            HandshakeEnd::Banned(why) => Some(format!("Connection refused: {why}.")),
            HandshakeEnd::Throttled(why) => Some(format!("{why}. Goodbye.")),
            HandshakeEnd::ShuttingDown => Some(protocol::SHUTTING_DOWN.into()),
        }
    }
}

/// Asks for a username (and password) until the hub has registered the client, which is then
/// recorded in `sent` in the same step, so the client cannot be left registered unseen.
async fn handshake<R: AsyncRead + Unpin>(
    shared: &SessionShared,
    id: ClientId,
    addr: SocketAddr,
    frames: &mut LineReader<R>,
    outbox: &Outbox,
    sent: &Sent,
) -> Result<(), HandshakeEnd> {
    for attempt in 1..=MAX_NAME_ATTEMPTS {
        let problem = match frames.next().await {
            None | Some(Err(_)) => return Err(HandshakeEnd::Gone),
            Some(Ok(Frame::TooLong)) => {
                shared.metrics.handshake_failure("invalid_name");
                "Invalid username: that line is far too long".to_owned()
            }
            Some(Ok(Frame::InvalidUtf8)) => {
                shared.metrics.handshake_failure("invalid_name");
                "Invalid username: not valid UTF-8".to_owned()
            }
            Some(Ok(Frame::Line(line))) => {
                let name = line.trim();
                match validate_username(name) {
                    Err(e) => {
                        shared.metrics.handshake_failure("invalid_name");
                        format!("Invalid username: {e}")
                    }
                    Ok(()) => match log_in(shared, name, addr, frames, outbox).await? {
                        Err(problem) => problem,
                        Ok((name, role)) => {
                            let client = Arc::new(Client::new(
                                id,
                                addr,
                                ClientInfo {
                                    name: Arc::from(name.as_str()),
                                    room: shared.default_room.clone(),
                                    role,
                                },
                            ));
                            match shared.hub.register(client.clone(), outbox.clone()).await {
                                Ok(()) => {
                                    sent.registered(client);
                                    return Ok(());
                                }
                                Err(RegisterError::ShuttingDown) => {
                                    return Err(HandshakeEnd::ShuttingDown);
                                }
                                Err(e @ RegisterError::Banned { .. }) => {
                                    return Err(HandshakeEnd::Banned(e.to_string()));
                                }
                                Err(e @ RegisterError::NameTaken(_)) => {
                                    shared.metrics.handshake_failure("name_taken");
                                    format!("Invalid username: {e}")
                                }
                                Err(e @ RegisterError::ClusterUnavailable) => e.to_string(),
                            }
                        }
                    },
                }
            }
        };
        let _ = outbox.push(server_line(&problem));
        if attempt < MAX_NAME_ATTEMPTS {
            let _ = outbox.push(server_line(protocol::ASK_AGAIN));
        }
    }
    Err(HandshakeEnd::TooManyAttempts)
}

/// Checks a well-formed name against the accounts: a guest name passes (if guests are allowed);
/// a registered name needs its password. `Ok(Err(problem))` is a refusal the client may retry
/// after; the password is never logged or echoed.
async fn log_in<R: AsyncRead + Unpin>(
    shared: &SessionShared,
    name: &str,
    addr: SocketAddr,
    frames: &mut LineReader<R>,
    outbox: &Outbox,
) -> Result<Result<(String, Role), String>, HandshakeEnd> {
    let account = match login::account(shared, name).await {
        Ok(account) => account,
        Err(refusal) => return Ok(Err(refusal.text)),
    };
    let Some(account) = account else {
        return Ok(login::guest(shared, name).map_err(|r| r.text));
    };
    // A wrong password asks for the password again rather than for a username: a person who
    // thinks the prompt repeated would otherwise type the password as a name for all to see.
    for attempt in 0..MAX_NAME_ATTEMPTS {
        if let Some(refusal) = login::throttled(shared, name, addr) {
            return Err(HandshakeEnd::Throttled(refusal.text));
        }
        let prompt = if attempt == 0 {
            format!("Password required for {}", account.name)
        } else {
            format!("Password for {}:", account.name)
        };
        let _ = outbox.push(server_line(&prompt));
        let password = match frames.next().await {
            None | Some(Err(_)) => return Err(HandshakeEnd::Gone),
            Some(Ok(Frame::Line(password))) => password,
            Some(Ok(_)) => String::new(),
        };
        if password.trim().is_empty() {
            return Ok(Err("No password given; choose a username".to_owned()));
        }
        if login::check_password(shared, &account, addr, password).await {
            return Ok(Ok((account.name.clone(), account.role)));
        }
        let _ = outbox.push(server_line(&format!(
            "Wrong password for {}; try again, or send an empty line to choose another username",
            account.name
        )));
    }
    Err(HandshakeEnd::TooManyAttempts)
}

/// Reads lines into the pipeline until the client goes or the pipeline closes (shutdown).
///
/// Also enforces liveness and input hygiene: a client silent for `idle_timeout` is warned and
/// then disconnected; one that sends `max_bad_lines` over-long or invalid lines within a minute
/// is disconnected. Each gets a `SERVER:` line saying why before the connection closes.
async fn read_lines<R: AsyncRead + Unpin>(
    shared: &SessionShared,
    frames: &mut LineReader<R>,
    outbox: &Outbox,
    sent: &Sent,
) {
    let (idle, liveness) = (&*shared.idle, sent.liveness());
    idle.heard(liveness);
    let mut bad_lines = BadLines::new(shared.config.max_bad_lines);
    // What is decided about each input is a plain function, so this loop (which every idle
    // connection is parked in) keeps nothing across its waits but the two futures.
    let reason = loop {
        // No shutdown branch: at shutdown the hub closes every registered client's outbox, which
        // ends the writing side and with it the connection, and a line read meanwhile finds the
        // pipeline closed. No timer either: the idle watch wakes this side when it is due.
        let input = idle.next_or_alarm(liveness, frames).await;
        match on_input(shared, (outbox, sent), &mut bad_lines, input) {
            Input::Nothing => {}
            Input::Line(line) => {
                if !send_next(shared, sent, Body::Line(line)).await {
                    return;
                }
            }
            Input::End(reason) => break reason,
        }
    };
    send_next(shared, sent, Body::Left(reason)).await;
}

/// What a text client's input comes to.
enum Input {
    /// Nothing for the pipeline (the client has been told whatever it needed to hear).
    Nothing,
    /// A clean line for the pipeline.
    Line(String),
    /// The connection is over, for this reason (the client has been told).
    End(String),
}

/// Decides what one input (or idle alarm) means: counts it, tells the client about a bad line
/// or its silence, and cleans a good line.
fn on_input(
    shared: &SessionShared,
    (outbox, sent): (&Outbox, &Sent),
    bad_lines: &mut BadLines,
    input: Result<Option<std::io::Result<Frame>>, IdleAlarm>,
) -> Input {
    let tell = |text: &str| {
        let _ = outbox.push(server_line(text));
    };
    let frame = match input {
        Err(IdleAlarm::Warn(left)) => {
            tell(&format!(
                "You have been idle for a while; you will be disconnected in {} unless you send something.",
                crate::hub::describe_duration(left)
            ));
            return Input::Nothing;
        }
        Err(IdleAlarm::Expired) => {
            tell(&format!(
                "Disconnected: idle for {}",
                crate::hub::describe_duration(shared.idle.timeout())
            ));
            return Input::End("idle".to_owned());
        }
        Ok(None) => return Input::End("end of stream".to_owned()),
        Ok(Some(Err(error))) => return Input::End(format!("read error: {error}")),
        Ok(Some(Ok(frame))) => frame,
    };
    shared.idle.heard(sent.liveness());
    shared.metrics.lines_received.inc();
    let line = match frame {
        Frame::Line(line) => line,
        bad => {
            if bad == Frame::TooLong {
                shared.metrics.dropped(DropReason::TooLong, 1);
                let max = shared.config.max_line_bytes;
                tell(&format!(
                    "Line too long (the limit is {max} bytes); it was discarded."
                ));
            } else {
                shared.metrics.dropped(DropReason::InvalidUtf8, 1);
                tell("Invalid UTF-8; the line was discarded.");
            }
            if bad_lines.offend() {
                tell("Disconnected: too many invalid lines");
                return Input::End("too many invalid lines".to_owned());
            }
            return Input::Nothing;
        }
    };
    Input::Line(match clean_text(&line) {
        std::borrow::Cow::Borrowed(_) => line,
        std::borrow::Cow::Owned(cleaned) => cleaned,
    })
}
