//! The hub alone, without sockets, on a paused clock: mutes and bans expire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chatpipe::event::{Body, Client, ClientId, ClientInfo, Command, Event, Role};
use chatpipe::hub::{Batch, HubHandle, HubSettings, Outbox, RegisterError, RoomHub};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

struct Member {
    client: Arc<Client>,
    outbox: Outbox,
}

async fn join(
    hub: &HubHandle,
    id: u64,
    name: &str,
    ip: &str,
    role: Role,
) -> Result<Member, RegisterError> {
    let addr: SocketAddr = format!("{ip}:5000").parse().unwrap();
    let client = Arc::new(Client::new(
        ClientId(id),
        addr,
        ClientInfo {
            name: Arc::from(name),
            room: Arc::from("lobby"),
            role,
        },
    ));
    let outbox = Outbox::new(1024, 1 << 20, std::time::Duration::from_secs(2));
    hub.register(client.clone(), outbox.clone()).await?;
    Ok(Member { client, outbox })
}

/// Reads the member's outbox until a line equal to `expected` arrives.
async fn expect(member: &Member, expected: &str) {
    loop {
        match member.outbox.next_batch().await {
            Batch::Lines(lines, _) => {
                // One queued item may hold several lines (a multi-line notice).
                for item in lines {
                    if String::from_utf8_lossy(&item)
                        .lines()
                        .any(|l| l == expected)
                    {
                        return;
                    }
                }
            }
            Batch::Close(last) => panic!("closed (last line {last:?}) before {expected:?}"),
        }
    }
}

fn event(member: &Member, body: Body) -> Event {
    Event::new(member.client.clone(), 0, body)
}

/// A mute ends by itself when its time is up; so does a ban, by name and by address.
#[tokio::test(start_paused = true)]
async fn mutes_and_bans_expire() {
    let (hub, handle) = RoomHub::new(HubSettings::default());
    let (events, rx) = mpsc::channel(16);
    let hub_task = tokio::spawn(hub.run(ReceiverStream::new(rx)));
    let moderator = join(&handle, 1, "mod", "10.0.0.1", Role::Moderator)
        .await
        .unwrap();
    let bob = join(&handle, 2, "bob", "10.0.0.2", Role::User)
        .await
        .unwrap();

    let mute = Command::Mute {
        name: "bob".into(),
        duration: Some(Duration::from_secs(60)),
        reason: None,
    };
    events
        .send(event(&moderator, Body::Command(mute)))
        .await
        .unwrap();
    expect(&bob, "SERVER: bob was muted by mod for 1m").await;
    events
        .send(event(&bob, Body::Chat("hi".into())))
        .await
        .unwrap();
    expect(&bob, "SERVER: You are muted for another 1m.").await;
    tokio::time::advance(Duration::from_secs(61)).await;
    events
        .send(event(&bob, Body::Chat("free again".into())))
        .await
        .unwrap();
    expect(&moderator, "bob: free again").await;

    let ban = Command::Ban {
        name: "bob".into(),
        duration: Some(Duration::from_secs(3600)),
        reason: None,
    };
    events
        .send(event(&moderator, Body::Command(ban)))
        .await
        .unwrap();
    expect(&moderator, "SERVER: bob was banned by mod for 1h").await;
    let refused = join(&handle, 3, "bob", "10.0.0.9", Role::User).await.err();
    assert!(
        matches!(&refused, Some(RegisterError::Banned { remaining: Some(d), .. }) if *d <= Duration::from_secs(3600)),
        "by name: {refused:?}"
    );
    let refused = join(&handle, 4, "robert", "10.0.0.2", Role::User)
        .await
        .err();
    assert!(
        matches!(refused, Some(RegisterError::Banned { .. })),
        "by address: {refused:?}"
    );
    tokio::time::advance(Duration::from_secs(3601)).await;
    join(&handle, 5, "bob", "10.0.0.2", Role::User)
        .await
        .expect("the ban has expired");

    drop(events);
    hub_task.await.unwrap().unwrap();
}

/// A held line nobody decides on expires as denied after `[moderation] hold_for`, on a paused
/// clock: the sender is told, the moderators' queue is empty.
#[tokio::test(start_paused = true)]
async fn held_lines_expire_as_denied() {
    let settings = HubSettings {
        moderation: chatpipe::config::ModerationConfig {
            hold_for: Duration::from_secs(3600),
            reports_per_hour: 10,
            ..Default::default()
        },
        ..HubSettings::default()
    };
    let (hub, handle) = RoomHub::new(settings);
    let (events, rx) = mpsc::channel(16);
    let hub_task = tokio::spawn(hub.run(ReceiverStream::new(rx)));
    let moderator = join(&handle, 1, "mod", "10.0.0.1", Role::Moderator)
        .await
        .unwrap();
    let alice = join(&handle, 2, "alice", "10.0.0.2", Role::User)
        .await
        .unwrap();
    let held = Body::Held {
        filter: "review".into(),
        reason: "listed word".into(),
        action: false,
        text: "borderline".into(),
    };
    events.send(event(&alice, held)).await.unwrap();
    expect(
        &alice,
        "SERVER: Your message is held for review by a moderator.",
    )
    .await;
    expect(
        &moderator,
        "SERVER: [held #1] alice in lobby (review): borderline",
    )
    .await;
    // Not yet: an hour has not passed.
    tokio::time::advance(Duration::from_secs(1800)).await;
    events
        .send(event(&moderator, Body::Command(Command::Held(1))))
        .await
        .unwrap();
    expect(&moderator, "SERVER: Held lines (1):").await;
    tokio::time::advance(Duration::from_secs(1900)).await;
    expect(
        &alice,
        "SERVER: Your message held for review was not approved: nobody reviewed it within 1h.",
    )
    .await;
    events
        .send(event(&moderator, Body::Command(Command::Held(1))))
        .await
        .unwrap();
    expect(&moderator, "SERVER: No lines are waiting for review.").await;
    drop(events);
    hub_task.await.unwrap().unwrap();
}
