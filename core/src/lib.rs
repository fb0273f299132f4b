//! The pure, deterministic synchronizer core of docweave.
//!
//! Everything is decided here: `update(model, msg) -> (model, commands)`
//! says who gets which document data, when, and why. The core performs no
//! I/O, reads no clock, draws no randomness except from a seed in the model,
//! and never panics. It holds metadata only: document bytes live in the
//! shell, which executes the [`Cmd`]s and feeds results back as [`Msg`]s.
//! Not here: networking, storage, documents (Loro), async runtimes.
#![warn(missing_docs)]

mod batches;
pub mod budget;
mod effects;
mod follow_ups;
mod frame;
mod handlers;
mod host_reads;
mod ids;
mod io;
mod model;
mod policy;
mod protocol;
mod shared_frame;
mod small_map;
mod tick;
mod update;
mod version;

#[cfg(test)]
mod tests;

pub use frame::{
    chunk_frames, decode, decode_frame, encode, encoded_len, parse_chunk, payload_len, validate,
    Chunk, Decoded, FrameError, Limits, CHUNK_HEADER, FLAG_CHUNK, FRAME_VERSION, HEADER_LEN,
};
pub use host_reads::{DocPage, DocSummary};
pub use ids::{
    BatchId, ChannelId, Clock, DocId, IdError, ImportId, ListenerId, Namespace, PeerId, RemoteAddr,
    RequestId, MAX_ID_LEN,
};
pub use io::{
    metadata_kept_from, Author, ChannelKind, Cmd, Cursor, Event, ImportOutcome, Level,
    ListenerRecord, LoadOutcome, Millis, Msg, Outgoing, ReadRange, StateRecord, StoreFailure,
    StoreRead, StoredDoc, StrandSpec, SyncState,
};
pub use model::{Bounds, Config, ConnectionInfo, Gauges, Model, Quotas, Timing};
pub use policy::{Access, Credential, DocRight, Grant, Pattern, Revocations, Rule, Rules, Verdict};
pub use protocol::{
    AckStatus, ChangedDoc, DeleteOutcome, DocInfo, DocMeta, Ephemeral, ErrorCode, Filter, Hello,
    ListedDoc, Message, Payload, PeerKind, Reply, Revision, RevisionStatus, Strand, WeakPayload,
    Welcome, MESSAGE_KINDS, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, PULL_VERSIONS_ONLY,
};
pub use shared_frame::{worth_sharing, SharedFrame};
pub use update::{update, update_in_place};
pub use version::{VersionOrder, VersionVector};
