//! Bursts and backlogs: a client whose socket keeps taking bytes is never cut off as too slow,
//! however far the hub runs ahead of its writer for a moment.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chatpipe::{Event, EventStream, Server, Stage, StageContext};
use common::{TestClient, TestServer, test_config};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

/// Reads until `count` lines `sender: N` (N = 0, 1, …) have arrived, in order. Fails on anything
/// that says the reader was cut off, and on a missing or reordered line.
async fn read_all(mut client: TestClient, who: String, count: usize) -> TestClient {
    let mut next = 0;
    while next < count {
        let line = client
            .next_line()
            .await
            .unwrap_or_else(|| panic!("{who} was disconnected after {next} lines"));
        assert!(
            !line.contains("too slow"),
            "{who} was cut off after {next} lines: {line}"
        );
        let Some(n) = line.strip_prefix("sender: ") else {
            continue; // join notices of later listeners
        };
        assert_eq!(n, next.to_string(), "{who}: line out of order");
        next += 1;
    }
    client
}

/// Logs in `n` listeners and the sender; everyone has seen everyone join when this returns.
async fn room_of(server: &TestServer, n: usize) -> (TestClient, Vec<TestClient>) {
    let mut listeners = Vec::new();
    for i in 0..n {
        listeners.push(server.login(&format!("listener{i}")).await);
    }
    let mut sender = server.login("sender").await;
    for (i, listener) in listeners.iter_mut().enumerate() {
        for j in i + 1..n {
            listener
                .expect(&format!("listener{j} has joined the chat"))
                .await;
        }
        listener.expect("sender has joined the chat").await;
    }
    sender.send("ready?").await;
    sender.expect("sender: ready?").await;
    for listener in &mut listeners {
        listener.expect("sender: ready?").await;
    }
    (sender, listeners)
}

/// Sends `count` numbered lines in one write and checks that the sender and every listener get
/// them all, in order, with nobody cut off.
async fn burst_reaches_everyone(mut sender: TestClient, listeners: Vec<TestClient>, count: usize) {
    let mut readers: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| tokio::spawn(read_all(l, format!("listener{i}"), count)))
        .collect();
    // The sender writes from one task and reads its own echoes in another, as a real client does.
    let mut writer = sender.take_writer();
    readers.push(tokio::spawn(read_all(sender, "sender".into(), count)));
    let paste: String = (0..count).map(|n| format!("{n}\n")).collect();
    writer.write_all(paste.as_bytes()).await.unwrap();
    for reader in readers {
        reader.await.expect("a member failed");
    }
}

/// A 20,000-line paste with the rate limit off reaches all 50 listeners, in order, and nobody is
/// disconnected as too slow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_20000_lines_reaches_50_listeners() {
    let server = TestServer::with_config(test_config()).await;
    let (sender, listeners) = room_of(&server, 50).await;
    burst_reaches_everyone(sender, listeners, 20_000).await;
    server.shutdown().await;
}

/// A stage that holds every event back until it is opened, counting what it holds: a stand-in for
/// a pipeline that stalls for a moment (a slow reload, CPU contention).
struct Gate {
    open: watch::Receiver<bool>,
    held: Arc<AtomicUsize>,
}

impl Stage for Gate {
    fn name(&self) -> &str {
        "gate"
    }

    fn apply(self: Box<Self>, input: EventStream, _: &StageContext) -> EventStream {
        struct State {
            input: Option<EventStream>,
            open: watch::Receiver<bool>,
            held: Arc<AtomicUsize>,
            queue: VecDeque<Event>,
        }
        let state = State {
            input: Some(input),
            open: self.open,
            held: self.held,
            queue: VecDeque::new(),
        };
        Box::pin(futures::stream::unfold(state, |mut s| async move {
            loop {
                let open = *s.open.borrow_and_update();
                if open && let Some(event) = s.queue.pop_front() {
                    return Some((event, s));
                }
                let Some(input) = s.input.as_mut() else {
                    if open {
                        return None;
                    }
                    // The input ended while closed: wait to be opened to release the rest.
                    s.open.changed().await.ok()?;
                    continue;
                };
                // Closing takes effect even while waiting for input.
                let event = tokio::select! {
                    event = input.next() => Some(event),
                    changed = s.open.changed() => {
                        changed.ok()?;
                        None
                    }
                };
                match event {
                    // Decided by the gate as it is now, not as it was when the wait began: the
                    // test closes it before the lines it must hold are even sent.
                    Some(Some(event)) if *s.open.borrow() && s.queue.is_empty() => {
                        return Some((event, s));
                    }
                    Some(Some(event)) => {
                        s.queue.push_back(event);
                        s.held.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(None) => s.input = None,
                    None => {}
                }
            }
        }))
    }
}

/// The pipeline holds 5,000 room lines back, then lets them go at once: every member that reads
/// gets them all, in order, and nobody is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_5000_lines_released_at_once_reaches_everyone() {
    const BACKLOG: usize = 5_000;
    let (open, open_rx) = watch::channel(true);
    let held = Arc::new(AtomicUsize::new(0));
    let server = Server::new(test_config()).pipeline(|p| {
        p.stage(Gate {
            open: open_rx,
            held: held.clone(),
        })
    });
    let server = TestServer::start(server).await;
    let (mut sender, listeners) = room_of(&server, 50).await;
    open.send_replace(false);
    let paste: String = (0..BACKLOG).map(|n| format!("{n}\n")).collect();
    let mut writer = sender.take_writer();
    writer.write_all(paste.as_bytes()).await.unwrap();
    common::wait_until("the gate holds the whole backlog", || {
        held.load(Ordering::SeqCst) >= BACKLOG
    })
    .await;
    open.send_replace(true);
    let mut readers: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| tokio::spawn(read_all(l, format!("listener{i}"), BACKLOG)))
        .collect();
    readers.push(tokio::spawn(read_all(sender, "sender".into(), BACKLOG)));
    for reader in readers {
        reader.await.expect("a member failed");
    }
    server.shutdown().await;
}
