//! The Loro Syncing Protocol (v1, as `loro-websocket` 0.6 clients speak it),
//! served on the WebSocket port at paths starting with `/loro`.
//!
//! Here: the wire codec, the bridge that presents a Loro client to the node
//! as a native peer, the session around it (gathering, pacing, chunking,
//! all without I/O) and the WebSocket link that runs it. Not here: any
//! decision about documents (the core makes those, for Loro clients as for
//! native ones).
//!
//! Built with the `loro-endpoint` feature (which turns on `websocket`).

mod bridge;
mod client_reads;
mod coalesce;
mod codec;
mod link;
mod owed;
mod presence;
mod session;

pub use bridge::{
    sent_version, version_from_loro, version_to_loro, AccessCheck, Bridge, BridgeOptions, Effect,
    Identity, LoroFigures, TokenCheck, GOING_AWAY, PERSISTED_PRESENCE_NAMESPACE,
    PRESENCE_NAMESPACE,
};
pub use codec::{
    decode, encode, Body, Crdt, DecodeError, JoinErrorCode, LoroBatchId, LoroMessage,
    RoomErrorCode, UpdateStatus, MAX_MESSAGE, MAX_ROOM_ID,
};
pub use link::loro_link;
pub use presence::MemberPresence;
pub use session::{Action, Session, GATHER, IDLE, TICK};
