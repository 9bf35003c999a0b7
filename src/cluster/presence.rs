//! Who is where: the node subscription (`chatpipe.all` and `chatpipe.node.<node>`), the
//! heartbeat that lists this server's members and refreshes its names, and the watch on the link
//! to NATS.
//!
//! A server learns of another's members only from its heartbeats, and of its death only from
//! their absence ([`NODE_TIMEOUT`](super::NODE_TIMEOUT)); a starting server says hello so the
//! others beat at once rather than up to a heartbeat later.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::wire::NodeEvent;
use super::{ClusterInput, NameClaims};
use crate::hub::HubHandle;

/// How often a server says it is alive (and refreshes its names).
const HEARTBEAT: Duration = Duration::from_secs(2);

/// Hears node events (for this server, and for all), and ticks for the hub's check on servers
/// gone silent. Once subscribed, says [`NodeEvent::Hello`] so the others beat at once; another
/// server's hello wakes this server's heartbeat (`beat_now`).
pub(super) async fn listen(
    client: async_nats::Client,
    node: Arc<str>,
    hub: HubHandle,
    beat_now: Arc<Notify>,
    stop: CancellationToken,
) {
    let subscribe = async {
        let all = client.subscribe("chatpipe.all").await?;
        let mine = client.subscribe(format!("chatpipe.node.{node}")).await?;
        Ok::<_, async_nats::SubscribeError>(futures::stream::select(all, mine))
    };
    let mut messages = match subscribe.await {
        Ok(messages) => messages,
        Err(error) => {
            tracing::error!(%error, "cannot subscribe to the cluster's messages");
            return;
        }
    };
    let hello = NodeEvent::Hello {
        node: node.to_string(),
    };
    if let Ok(payload) = serde_json::to_vec(&hello) {
        let _ = client.publish("chatpipe.all", Bytes::from(payload)).await;
    }
    let mut check = tokio::time::interval(HEARTBEAT);
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => return,
            // The hub looks for servers gone silent.
            _ = check.tick() => {
                if !hub.cluster_input(ClusterInput::Tick).await {
                    return;
                }
                continue;
            }
            message = messages.next() => message,
        };
        let Some(message) = message else { return };
        let Ok(event) = serde_json::from_slice::<NodeEvent>(&message.payload) else {
            continue;
        };
        match &event {
            NodeEvent::Heartbeat { node: from, .. } if **from == *node => continue,
            NodeEvent::Hello { node: from } => {
                if **from != *node {
                    beat_now.notify_one();
                }
                continue;
            }
            _ => {}
        }
        if !hub.cluster_input(ClusterInput::Node(event)).await {
            return;
        }
    }
}

/// Every [`HEARTBEAT`]: tells the others who is here, and refreshes the names held.
pub(super) async fn heartbeat(
    client: async_nats::Client,
    claims: NameClaims,
    hub: HubHandle,
    beat_now: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            // A server just started: it hears this server's members now, not at the next tick.
            _ = beat_now.notified() => {}
            _ = stop.cancelled() => {
                // Shutting down: give the names back now rather than let them expire, so the
                // members can come back at once through another server (or this one, restarted).
                let _ = tokio::time::timeout(Duration::from_secs(2), claims.release_all()).await;
                return;
            }
            _ = ticks.tick() => {}
        }
        let Some(members) = hub.query(|hub| hub.local_members()).await else {
            return;
        };
        let beat = NodeEvent::Heartbeat {
            node: claims.node.to_string(),
            members,
        };
        if let Ok(payload) = serde_json::to_vec(&beat) {
            let _ = client.publish("chatpipe.all", Bytes::from(payload)).await;
        }
        for name in claims.refresh().await {
            if !hub.cluster_input(ClusterInput::NameLost(name)).await {
                return;
            }
        }
    }
}

/// Tells the hub when the link to NATS goes down and comes back.
pub(super) async fn watch_link(
    mut state: watch::Receiver<bool>,
    hub: HubHandle,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = state.changed() => if changed.is_err() { return },
        }
        let up = *state.borrow_and_update();
        if !hub.cluster_input(ClusterInput::Link(up)).await {
            return;
        }
    }
}
