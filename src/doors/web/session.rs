//! One WebSocket connection: the `hello` handshake, then JSON frames into the pipeline, and the
//! outbox out as one text frame per delivery.
//!
//! The client sends `{"type":"hello","name":"alice"}` (with `"password"` for a registered
//! name), then `{"type":"line","room":"games","text":"..."}` for every line, typed exactly as in
//! `nc` (commands included). The limits are the text protocol's: a line longer than
//! `max_line_bytes` is refused with a notice, the rate limit and the filters are the pipeline's,
//! the outbox has the same bounds, and a connection that sends nothing — not even the pong to the
//! server's pings — for `idle_timeout` is closed. A malformed frame gets a `notice` with the code
//! `bad_frame` and a reason; binary frames are refused the same way; too many bad frames close
//! the connection like too many bad lines do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::WebState;
use super::render::JsonRender;
use crate::event::{Body, Client, ClientId, ClientInfo};
use crate::hub::{Batch, Delivery, Outbox, RegisterError, Render};
use crate::metrics::DropReason;
use crate::names::{validate_room_name, validate_username};
use crate::session::Sent;
use crate::session::idle::IdleAlarm;
use crate::session::line_codec::clean_text;
use crate::session::login;
use crate::session::{Admission, BadLines, MAX_NAME_ATTEMPTS, send, send_next};

/// The server pings at most this often (and at half the idle timeout if that is shorter), so a
/// browser tab that is open but quiet answers with pongs and stays connected.
const PING_EVERY: Duration = Duration::from_secs(30);

/// What a client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum Incoming {
    Hello {
        name: String,
        #[serde(default)]
        password: Option<String>,
    },
    Line {
        #[serde(default)]
        room: Option<String>,
        text: String,
    },
}

/// Tells the client something on the web door (a JSON notice).
fn tell(outbox: &Outbox, code: &'static str, text: &str) {
    if let Some(bytes) = JsonRender.render(&Delivery::coded(code, text)) {
        let _ = outbox.push(bytes);
    }
}

/// Serves one WebSocket until it closes. The writer runs as a task of its own.
pub(crate) async fn run(
    state: WebState,
    id: ClientId,
    socket: WebSocket,
    addr: SocketAddr,
    admission: Admission,
) {
    let shared = state.shared.clone();
    let config = &shared.config;
    let outbox = shared.new_outbox();
    let closed = CancellationToken::new();
    let (sink, mut stream) = socket.split();
    let ping_every = if config.idle_timeout.is_zero() {
        PING_EVERY
    } else {
        (config.idle_timeout / 2).min(PING_EVERY)
    };
    shared.tasks.spawn(write_loop(
        sink,
        outbox.clone(),
        Writer {
            client: id,
            write_timeout: config.write_timeout,
            ping_every,
            cut: shared.cut.clone(),
            closed: closed.clone(),
            admission,
        },
    ));
    tell(
        &outbox,
        "hello",
        r#"Welcome to chatpipe! Send {"type":"hello","name":"NAME"} to join."#,
    );
    let handshake = Box::pin(tokio::time::timeout(
        config.handshake_timeout,
        handshake(&state, id, addr, &mut stream, &outbox),
    ));
    let client = tokio::select! {
        _ = shared.stop_reading.cancelled() => {
            outbox.close(JsonRender.render(&Delivery::coded("shutting_down", crate::protocol::SHUTTING_DOWN)), false);
            return;
        }
        _ = closed.cancelled() => return,
        result = handshake => match result {
            Ok(Some(client)) => client,
            Ok(None) => {
                outbox.close(None, false);
                return;
            }
            Err(_) => {
                shared.metrics.handshake_failure("timeout");
                let bye = Delivery::coded("timeout", "Timed out waiting for a hello. Goodbye.");
                outbox.close(JsonRender.render(&bye), false);
                return;
            }
        },
    };
    read_frames(&state, client, &mut stream, &outbox, &closed).await;
}

/// The next text frame's payload; `None` when the connection ends. Pings and pongs are skipped
/// (they still count as life, which the caller's timer sees through `alive`).
async fn next_text(
    stream: &mut SplitStream<WebSocket>,
    outbox: &Outbox,
) -> Option<Result<Utf8Bytes, ()>> {
    loop {
        match stream.next().await? {
            Ok(Message::Text(text)) => return Some(Ok(text)),
            Ok(Message::Binary(_)) => {
                tell(
                    outbox,
                    "bad_frame",
                    "Binary frames are refused; send JSON text frames.",
                );
                return Some(Err(()));
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) | Err(_) => return None,
        }
    }
}

/// Runs the `hello` exchange: `Some(client)` once registered with the hub, `None` when the
/// client went or used up its attempts (it has been told why).
async fn handshake(
    state: &WebState,
    id: ClientId,
    addr: SocketAddr,
    stream: &mut SplitStream<WebSocket>,
    outbox: &Outbox,
) -> Option<Arc<Client>> {
    let shared = &state.shared;
    for _ in 0..MAX_NAME_ATTEMPTS {
        let text = match next_text(stream, outbox).await? {
            Ok(text) => text,
            Err(()) => continue,
        };
        let (name, password) = match serde_json::from_str::<Incoming>(&text) {
            Ok(Incoming::Hello { name, password }) => (name.trim().to_owned(), password),
            Ok(Incoming::Line { .. }) => {
                tell(
                    outbox,
                    "hello_first",
                    "Say hello first: {\"type\":\"hello\",\"name\":\"NAME\"}.",
                );
                continue;
            }
            Err(error) => {
                tell(
                    outbox,
                    "bad_frame",
                    &format!("Not a message this server knows: {error}"),
                );
                continue;
            }
        };
        if let Err(problem) = validate_username(&name) {
            shared.metrics.handshake_failure("invalid_name");
            tell(
                outbox,
                "invalid_name",
                &format!("Invalid username: {problem}"),
            );
            continue;
        }
        let (name, role) = match login::log_in(shared, &name, password, addr).await {
            Ok(login) => login,
            Err(refusal) => {
                tell(outbox, refusal.code, &refusal.text);
                continue;
            }
        };
        let client = Arc::new(Client::new(
            id,
            addr,
            ClientInfo {
                name: Arc::from(name.as_str()),
                room: Arc::from(state.shared.default_room.as_ref()),
                role,
            },
        ));
        match shared
            .hub
            .register_at(state.door, client.clone(), outbox.clone())
            .await
        {
            Ok(()) => return Some(client),
            Err(RegisterError::ShuttingDown) => {
                tell(outbox, "shutting_down", crate::protocol::SHUTTING_DOWN);
                return None;
            }
            Err(e @ RegisterError::Banned { .. }) => {
                shared.metrics.handshake_failure("banned");
                tell(outbox, "banned", &format!("Connection refused: {e}."));
                return None;
            }
            Err(e @ RegisterError::NameTaken(_)) => {
                shared.metrics.handshake_failure("name_taken");
                tell(outbox, "name_taken", &format!("Invalid username: {e}"));
            }
            Err(e @ RegisterError::ClusterUnavailable) => {
                tell(outbox, "unavailable", &e.to_string());
            }
        }
    }
    shared.metrics.handshake_failure("too_many_attempts");
    tell(
        outbox,
        "too_many_attempts",
        "Too many invalid usernames or passwords. Goodbye.",
    );
    None
}

/// Reads frames into the pipeline until the client goes or shutdown begins.
async fn read_frames(
    state: &WebState,
    client: Arc<Client>,
    stream: &mut SplitStream<WebSocket>,
    outbox: &Outbox,
    closed: &CancellationToken,
) {
    let shared = &state.shared;
    let config = &shared.config;
    let max = config.max_line_bytes;
    // The record the idle watch looks at; it also numbers the client's events.
    let sent = Arc::new(Sent::default());
    sent.registered(client);
    let (idle, liveness) = (&*shared.idle, sent.liveness());
    idle.watch(&sent);
    idle.heard(liveness);
    let mut bad = BadLines::new(config.max_bad_lines);
    let reason = loop {
        let message = tokio::select! {
            _ = shared.stop_reading.cancelled() => return,
            _ = closed.cancelled() => break "connection closed".to_owned(),
            alarm = std::future::poll_fn(|cx| idle.poll_alarm(liveness, cx)) => match alarm {
                // Pings keep a live browser talking; silence means the connection is dead.
                IdleAlarm::Warn(_) => continue,
                IdleAlarm::Expired => {
                    let notice = format!(
                        "Disconnected: idle for {}",
                        crate::hub::describe_duration(idle.timeout())
                    );
                    tell(outbox, "idle", &notice);
                    break "idle".to_owned();
                }
            },
            message = stream.next() => message,
        };
        idle.heard(liveness);
        let text = match message {
            None | Some(Ok(Message::Close(_))) => break "end of stream".to_owned(),
            Some(Err(error)) => break format!("read error: {error}"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Binary(_))) => {
                let refusal = "Binary frames are refused; send JSON text frames.";
                if let Some(reason) = refuse_bad(outbox, &mut bad, "bad_frame", refusal) {
                    break reason;
                }
                continue;
            }
            Some(Ok(Message::Text(text))) => text,
        };
        shared.metrics.lines_received.inc();
        let (room, line) = match serde_json::from_str::<Incoming>(&text) {
            Ok(Incoming::Line { room, text }) => (room, text),
            Ok(Incoming::Hello { .. }) => {
                tell(outbox, "bad_frame", "You are already logged in.");
                continue;
            }
            Err(error) => {
                let refusal = format!("Not a message this server knows: {error}");
                if let Some(reason) = refuse_bad(outbox, &mut bad, "bad_frame", &refusal) {
                    break reason;
                }
                continue;
            }
        };
        if line.len() > max {
            shared.metrics.dropped(DropReason::TooLong, 1);
            let refusal = format!("Line too long (the limit is {max} bytes); it was discarded.");
            if let Some(reason) = refuse_bad(outbox, &mut bad, "too_long", &refusal) {
                break reason;
            }
            continue;
        }
        let room = match room.map(|r| r.to_ascii_lowercase()) {
            Some(room) if validate_room_name(&room).is_err() => {
                tell(
                    outbox,
                    "bad_frame",
                    &format!("`{room}` is not a room name."),
                );
                continue;
            }
            room => room.map(|r| Arc::<str>::from(r.as_str())),
        };
        let line = clean_text(&line).into_owned();
        let Some(mut event) = sent.event(Body::Line(line)) else {
            return;
        };
        event.room = room;
        if !send(shared, event).await {
            return;
        }
    };
    send_next(shared, &sent, Body::Left(reason)).await;
}

/// Tells the client why its frame was refused and counts the offence: the reason to close the
/// connection when it is one too many.
fn refuse_bad(
    outbox: &Outbox,
    bad: &mut BadLines,
    code: &'static str,
    text: &str,
) -> Option<String> {
    tell(outbox, code, text);
    if !bad.offend() {
        return None;
    }
    tell(
        outbox,
        "too_many_invalid_lines",
        "Disconnected: too many invalid lines",
    );
    Some("too many invalid lines".to_owned())
}

/// What the writer needs besides its sink and outbox.
struct Writer {
    client: ClientId,
    write_timeout: Duration,
    ping_every: Duration,
    cut: CancellationToken,
    closed: CancellationToken,
    admission: Admission,
}

/// Sends the outbox's batches as text frames (one per delivery, flushed once per batch), and a
/// ping every `ping_every`, until the outbox closes or a write fails or takes too long.
async fn write_loop(mut sink: SplitSink<WebSocket, Message>, outbox: Outbox, ctx: Writer) {
    let _closed = ctx.closed.clone().drop_guard();
    let _admission = ctx.admission;
    let mut ping = tokio::time::interval(ctx.ping_every);
    ping.tick().await;
    loop {
        let batch = tokio::select! {
            _ = ctx.cut.cancelled() => return,
            _ = ping.tick() => {
                let sent = tokio::time::timeout(ctx.write_timeout, sink.send(Message::Ping(bytes::Bytes::new()))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    outbox.close(None, true);
                    return;
                }
                continue;
            }
            batch = outbox.next_batch() => batch,
        };
        let (lines, last) = match batch {
            Batch::Lines(lines, _) => (lines, None),
            Batch::Close(last) => (std::collections::VecDeque::new(), Some(last)),
        };
        let frames = lines.iter().cloned().chain(last.clone().flatten());
        let write = async {
            for bytes in frames {
                let text = Utf8Bytes::try_from(bytes).map_err(|_| axum::Error::new("not UTF-8"))?;
                sink.feed(Message::Text(text)).await?;
                outbox.progressed();
            }
            sink.flush().await
        };
        match tokio::time::timeout(ctx.write_timeout, write).await {
            Ok(Ok(())) => outbox.written(),
            Ok(Err(error)) => {
                tracing::debug!(client = %ctx.client, %error, "web write failed");
                outbox.close(None, true);
                return;
            }
            Err(_) => {
                tracing::info!(client = %ctx.client, "web write timed out");
                outbox.close(None, true);
                return;
            }
        }
        if last.is_some() {
            let close = CloseFrame {
                code: axum::extract::ws::close_code::NORMAL,
                reason: Utf8Bytes::from_static("bye"),
            };
            let _ = tokio::time::timeout(ctx.write_timeout, sink.send(Message::Close(Some(close))))
                .await;
            return;
        }
    }
}
