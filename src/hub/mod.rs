//! The hub: the single owner of rooms, members and names, and the fan-out to clients.
//!
//! The hub is an actor. It consumes the pipeline's output stream and a small channel of
//! registration requests; nothing else touches room state, so no lock guards it. Its narrow
//! interface ([`HubHandle::register`] plus the event stream it consumes) is what a distributed
//! backend would have to provide to replace it.

mod delivery;
mod outbox;
mod room_hub;
mod write_schedule;

pub use delivery::{Delivery, DoorId, HeldView, MAX_DOORS, Recipient, Render, ReportView, Scope};
pub use outbox::{Batch, HARD_LIMIT_FACTOR, Outbox, OutboxFull, Queued};
pub(crate) use room_hub::describe_duration;
pub use room_hub::{
    Doors, HubFailure, HubHandle, HubSettings, MemberSummary, RegisterError, RoomHub, RoomSummary,
};
