//! What goes into `update` ([`Msg`]) and what comes out ([`Cmd`]).

use crate::ids::{
    BatchId, ChannelId, Clock, DocId, ImportId, ListenerId, Namespace, PeerId, RemoteAddr,
};
use crate::protocol::{DocMeta, Filter, Message, Payload};
use crate::version::VersionVector;
use serde::{Deserialize, Serialize};

pub use crate::ids::Millis;

/// Whether a channel leads to another node or to a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ChannelKind {
    /// Another node; speaks only after a handshake.
    Network,
    /// A store: trusted, established at once, never sent presence.
    Storage,
}

/// How an import the core asked for went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportOutcome {
    /// Applied; the document is now at `version`.
    Applied {
        /// The whole document's version after the import.
        version: VersionVector,
    },
    /// Applied in part: some changes wait for dependencies not present yet.
    Pending {
        /// The document's version after the applied part.
        version: VersionVector,
    },
    /// The bytes were refused.
    Failed {
        /// Why.
        reason: String,
    },
    /// The bytes were refused for who sent them: they carry changes of a
    /// writer (a Loro peer) that belongs to another identity on this
    /// document. Nothing of them was imported; the sender is told why.
    Refused {
        /// Why, for the sender.
        reason: String,
    },
    /// Nothing was applied because the replica could not be reached (its
    /// store failed): the bytes may be fine, and are asked for again later.
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// Who sent an import, as the node knows it: the identity its
/// connection's credentials let in, and when the node received it (the
/// node's clock, never the sender's).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Author {
    /// The sender's identity (its peer id, which its credential vouches for).
    pub identity: PeerId,
    /// When the node received the bytes.
    pub at: Millis,
}

/// A persisted cursor with one remote (seed 002).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Their feed, pulled up to here.
    pub pulled: Clock,
    /// Our feed, acknowledged by them up to here.
    pub pushed: Clock,
}

/// A persisted pull-responder listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerRecord {
    /// Its id.
    pub id: ListenerId,
    /// The peer that registered it.
    pub owner: PeerId,
    /// What it wants.
    pub filter: Filter,
    /// Every document below this clock is acknowledged (or not wanted).
    pub floor: Clock,
    /// Acknowledged version per document.
    pub acked: Vec<(DocId, VersionVector)>,
}

/// A document as the store's metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDoc {
    /// The document.
    pub doc: DocId,
    /// Its metadata.
    pub meta: DocMeta,
    /// Its stored version.
    pub version: VersionVector,
    /// The clock of its last stored change.
    pub clock: Clock,
}

/// Node state that the core asks the shell to persist, and gets back at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateRecord {
    /// The cursor with a remote peer.
    Cursor {
        /// The remote.
        peer: PeerId,
        /// The cursor.
        cursor: Cursor,
    },
    /// A listener's state.
    Listener(ListenerRecord),
    /// A listener was removed.
    ListenerRemoved(ListenerId),
    /// A document was deleted: never resurrect it.
    Tombstone(DocId),
}

impl StateRecord {
    /// The key a store keeps the record under: saving one with the same key replaces it.
    pub fn key(&self) -> String {
        match self {
            StateRecord::Cursor { peer, .. } => format!("cursor/{peer}"),
            StateRecord::Listener(l) => format!("listener/{}", l.id.0),
            StateRecord::ListenerRemoved(id) => format!("listener/{}", id.0),
            StateRecord::Tombstone(doc) => format!("tombstone/{doc}"),
        }
    }
}

/// Inputs to `update`. Each arrives with the current time, a parameter of
/// `update`, so the first input after a quiet spell is judged by the clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// A timer is due: the time asked for with [`Cmd::WakeAt`] has come.
    Tick,
    /// What the primary store remembered, fed once at start, after its channel was added.
    Restored {
        /// The primary store's channel.
        store: ChannelId,
        /// The highest clock the store assigned.
        clock: Clock,
        /// Every document whose last clock is above this one is in `docs`;
        /// those at or below it stay in the store and are read when needed
        /// (0: `docs` holds every document). See [`metadata_kept_from`].
        #[serde(default)]
        floor: Clock,
        /// The documents it holds above `floor`, with their version and last clock.
        docs: Vec<StoredDoc>,
        /// Persisted node state.
        records: Vec<StateRecord>,
    },
    /// A channel opened. `remote` is set when we dialed it.
    ChannelAdded {
        /// The shell's id for it.
        channel: ChannelId,
        /// Network or storage.
        kind: ChannelKind,
        /// The address we dialed, if we did.
        remote: Option<RemoteAddr>,
    },
    /// A channel closed.
    ChannelRemoved {
        /// Which one.
        channel: ChannelId,
    },
    /// A protocol message arrived.
    Received {
        /// On which channel.
        channel: ChannelId,
        /// The message.
        message: Message,
    },
    /// A frame held a message of a kind this node does not know (a newer
    /// peer's): it is answered `unsupported` and the channel goes on.
    Unsupported {
        /// On which channel.
        channel: ChannelId,
        /// The message kind (its variant number).
        kind: u32,
    },
    /// A message arriving on a channel was larger than this node accepts
    /// (its chunks were dropped): the sender is told, the channel goes on.
    TooLarge {
        /// On which channel.
        channel: ChannelId,
        /// The message's size in bytes.
        size: u64,
        /// The largest this node accepts.
        limit: u64,
    },
    /// A chunk of a split message arrived on a channel before its
    /// handshake: the shell dropped it; it counts as talk before `hello`.
    ChunkBeforeHello {
        /// On which channel.
        channel: ChannelId,
    },
    /// The application asks a connected peer which documents it may read
    /// there, and how large they are ([`Event::DocList`] answers).
    ListRemote {
        /// The peer.
        peer: PeerId,
        /// Continue after this document (paging).
        after: Option<DocId>,
    },
    /// The shell could not decode a frame from a channel.
    FrameRejected {
        /// On which channel.
        channel: ChannelId,
        /// The decoder's error.
        reason: String,
    },
    /// An import finished.
    Imported {
        /// The import.
        id: ImportId,
        /// How it went.
        outcome: ImportOutcome,
    },
    /// The application committed a change to a document.
    LocalChange {
        /// The document.
        doc: DocId,
        /// Its version after the change.
        version: VersionVector,
    },
    /// The application wants a document (loads it, or creates it).
    OpenDoc {
        /// The document.
        doc: DocId,
        /// Its metadata, used when it is created.
        meta: DocMeta,
    },
    /// The application deletes a document.
    DeleteDoc {
        /// The document.
        doc: DocId,
    },
    /// The application sets (or clears, with empty data) its presence.
    SetPresence {
        /// The document.
        doc: DocId,
        /// The namespace.
        namespace: Namespace,
        /// Application bytes.
        data: Payload,
    },
    /// The application wants to know what a connected peer keeps of a
    /// document (for `wait_for_sync`): ask it, its answer confirms.
    AskPeer {
        /// The document.
        doc: DocId,
        /// The peer.
        peer: PeerId,
    },
    /// The application wants to stay connected to a remote.
    Connect {
        /// Where.
        remote: RemoteAddr,
        /// The token to present, if any.
        token: Option<String>,
        /// Which documents to follow there.
        filter: Filter,
    },
    /// Dialing a remote failed.
    ConnectFailed {
        /// Where.
        remote: RemoteAddr,
    },
    /// A store answered a load (a `sync-request` on its channel). The shell
    /// has already imported what the store held into its replica.
    StoreLoaded {
        /// The store's channel.
        store: ChannelId,
        /// The document.
        doc: DocId,
        /// What the store held.
        outcome: LoadOutcome,
    },
    /// A store saved a record ([`Cmd::Save`]) durably.
    StoreSaved {
        /// The store's channel.
        store: ChannelId,
        /// The record.
        record: StateRecord,
    },
    /// A store operation failed: nothing it was asked to do is durable.
    StoreFailed {
        /// The store's channel.
        store: ChannelId,
        /// Which operation, and why.
        failure: StoreFailure,
    },
    /// A store shared with other processes says one of them wrote (or that
    /// it may have missed such writes): read its change feed now.
    StoreAnnounced {
        /// The store's channel.
        store: ChannelId,
    },
    /// A page of the primary store's change feed (what the node asked with
    /// `changes-since` on the store's channel), with each document's
    /// metadata: a document another process created is known by it here.
    StoreChanged {
        /// The store's channel.
        store: ChannelId,
        /// Documents changed, in clock order.
        docs: Vec<StoredDoc>,
        /// The feed position this page covers up to.
        up_to: Clock,
        /// Whether more pages follow.
        more: bool,
    },
    /// What the primary store answered to a [`StoreRead`].
    StoreRead {
        /// The store's channel.
        store: ChannelId,
        /// The read's job, from the [`StoreRead`].
        job: u64,
        /// The documents read, in the order asked for.
        docs: Vec<StoredDoc>,
    },
    /// The shared store's record of a listener this node was asked about
    /// and did not know (another server may have registered it).
    ListenerLoaded {
        /// The store's channel.
        store: ChannelId,
        /// The listener asked about.
        id: ListenerId,
        /// Its record, if the store has one.
        record: Option<ListenerRecord>,
        /// The store could not be read: nobody knows whether it has one,
        /// and the messages that waited are told to try again.
        #[serde(default)]
        failed: bool,
    },
    /// A `hello` or `reauth` whose token the shell verified (a signed
    /// token): the core judges it with the verdict instead of its static
    /// tokens (any other message goes as if [`Msg::Received`]).
    Authenticated {
        /// On which channel.
        channel: ChannelId,
        /// The message as it arrived.
        message: crate::protocol::Message,
        /// What the token says, or why it was refused.
        verdict: crate::policy::Verdict,
    },
    /// The operator's revocations now (the whole list, replacing the last):
    /// connections holding a revoked token or identity are closed at once,
    /// and no hello presenting one is welcomed.
    Revoked(crate::policy::Revocations),
    /// The host is stopping this node (a rolling restart): every client is
    /// told `going-away` (those on protocol 4; older ones learn it when
    /// their connection closes) and asked to come back after
    /// `retry_after_ms`; from now on a hello is refused the same way.
    /// What is already received is still answered and written.
    Drain {
        /// Why, for the clients' logs.
        reason: String,
        /// When clients should dial again, in milliseconds.
        retry_after_ms: Millis,
    },
    /// The operator cuts connections off: those of `peer` (every one of
    /// that identity), or the one on `channel`. Each is told why and
    /// closed; a client may connect again (revoke its token to keep it out).
    Disconnect {
        /// Every connection of this identity.
        peer: Option<PeerId>,
        /// This connection.
        channel: Option<ChannelId>,
        /// Why, for the client.
        reason: String,
    },
    /// The operator's permission rules now (replacing the configured
    /// ones): every decision from this input on follows them, so data a
    /// peer may no longer read stops with the next change.
    Rules(crate::policy::Rules),
    /// The application has a new token for a remote (a refresh before the
    /// old one expires): used from the next hello on, and presented at once
    /// on a live connection that speaks protocol 3 (`reauth`).
    SetToken {
        /// Where.
        remote: RemoteAddr,
        /// The new token.
        token: String,
    },
    /// The static tokens now (the whole list, replacing the configured
    /// `tokens` and `grants`, re-read from a file say): a connection let in
    /// by a token the new list no longer takes for its peer is told and
    /// closed at once; every later hello is checked against the new list.
    Tokens {
        /// Tokens that grant any peer id.
        tokens: Vec<String>,
        /// Tokens that grant some peer ids.
        grants: Vec<crate::policy::Grant>,
    },
    /// On a store shared with other processes, another may have moved this
    /// listener on (its client went there): what memory holds of it is
    /// dropped, and the next message about it reads its record from the
    /// store. On a store this node owns, memory is the record: nothing
    /// happens.
    ForgetListener(ListenerId),
}

impl Msg {
    /// The input's name, for traces and coverage counts.
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Tick => "tick",
            Msg::Restored { .. } => "restored",
            Msg::ChannelAdded { .. } => "channel-added",
            Msg::ChannelRemoved { .. } => "channel-removed",
            Msg::Received { .. } => "received",
            Msg::FrameRejected { .. } => "frame-rejected",
            Msg::Unsupported { .. } => "unsupported",
            Msg::TooLarge { .. } => "too-large",
            Msg::ChunkBeforeHello { .. } => "chunk-before-hello",
            Msg::ListRemote { .. } => "list-remote",
            Msg::Imported { .. } => "imported",
            Msg::LocalChange { .. } => "local-change",
            Msg::OpenDoc { .. } => "open-doc",
            Msg::DeleteDoc { .. } => "delete-doc",
            Msg::SetPresence { .. } => "set-presence",
            Msg::Connect { .. } => "connect",
            Msg::AskPeer { .. } => "ask-peer",
            Msg::ConnectFailed { .. } => "connect-failed",
            Msg::StoreLoaded { .. } => "store-loaded",
            Msg::StoreFailed { .. } => "store-failed",
            Msg::StoreSaved { .. } => "store-saved",
            Msg::StoreAnnounced { .. } => "store-announced",
            Msg::ListenerLoaded { .. } => "listener-loaded",
            Msg::StoreChanged { .. } => "store-changed",
            Msg::StoreRead { .. } => "store-read",
            Msg::Authenticated { .. } => "authenticated",
            Msg::Revoked(_) => "revoked",
            Msg::Tokens { .. } => "tokens",
            Msg::Drain { .. } => "drain",
            Msg::Disconnect { .. } => "disconnect",
            Msg::Rules(_) => "rules",
            Msg::SetToken { .. } => "set-token",
            Msg::ForgetListener(_) => "forget-listener",
        }
    }
}

/// What a store held of a document, once the shell imported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoadOutcome {
    /// The store holds the document.
    Found {
        /// The replica's version after importing what the store held.
        version: VersionVector,
        /// The part of it the store holds (what imported of the stored data).
        stored: VersionVector,
        /// Stored changes that could not be imported (reported, not counted as held).
        unreadable: u32,
        /// The store's clock of the document's last change.
        clock: Clock,
        /// Bytes the store held of it (for the largest-document quota; a
        /// recording made before it has none).
        #[serde(default)]
        bytes: u64,
        /// Its metadata as the store keeps it (from its first write): a
        /// document whose metadata was not in memory gets it back.
        #[serde(default)]
        meta: Option<DocMeta>,
    },
    /// The store has no such document.
    Missing,
}

/// A store operation that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreFailure {
    /// Loading a document failed: retried, never taken as "no such document".
    Load {
        /// The document.
        doc: DocId,
        /// Why.
        reason: String,
    },
    /// Appending a transmission failed: it is not durable and is written again later.
    Append {
        /// The transmission.
        batch: BatchId,
        /// Why.
        reason: String,
    },
    /// Reading the change feed failed: the feed position stays where it was.
    Feed {
        /// Why.
        reason: String,
    },
    /// A [`StoreRead`] failed: what waited for it is refused or asked again.
    Read {
        /// The read's job.
        job: u64,
        /// Why.
        reason: String,
    },
    /// Saving node state failed: saved again later.
    Save {
        /// The record.
        record: StateRecord,
        /// Why.
        reason: String,
    },
    /// Dropping a deleted document's data failed: dropped again later.
    Purge {
        /// The document.
        doc: DocId,
        /// Why.
        reason: String,
    },
}

/// One item to send on a channel. Data items are turned into bytes by the
/// shell, which owns the documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outgoing {
    /// A ready message.
    Message(Message),
    /// Export `doc` and send it as a sync-response (`as_update` false) or an update.
    Data {
        /// The document.
        doc: DocId,
        /// The transmission's id.
        batch: BatchId,
        /// Export changes after this version; `None` sends a snapshot.
        since: Option<VersionVector>,
        /// Send as a live update rather than a sync-response.
        as_update: bool,
    },
    /// Read the store's index of documents (store channels only).
    Read(StoreRead),
    /// Export one strand per item and send a `strands` answer.
    Strands {
        /// The listener.
        id: ListenerId,
        /// The strands to build.
        items: Vec<StrandSpec>,
        /// Whether more are waiting.
        more: bool,
    },
}

/// A read of the primary store's index of documents, for what is not in
/// memory (see [`Msg::Restored`]'s `floor`), answered with
/// [`Msg::StoreRead`]. Sent on the store's channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRead {
    /// Repeated in the answer.
    pub job: u64,
    /// Which documents.
    pub range: ReadRange,
    /// At most this many (after `filter`).
    pub limit: u32,
    /// Only documents this filter matches.
    pub filter: Filter,
}

/// Which documents a [`StoreRead`] asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadRange {
    /// Those whose last clock is above `after` and at most `up_to`.
    Clocks {
        /// Exclusive.
        after: Clock,
        /// Inclusive.
        up_to: Clock,
        /// Newest first (else oldest first).
        newest_first: bool,
    },
    /// Those whose id comes after `after` (all, if `None`), in id order.
    Ids {
        /// Exclusive.
        after: Option<DocId>,
    },
}

/// The clock above which a node keeps every document's metadata in memory
/// from the start, when idle metadata is read on demand
/// ([`crate::Bounds::idle_metadata`]): its dialed remotes and its listeners
/// walk the change clock from their cursors, so what lies above the lowest
/// cursor is read at start; a node that has neither reads no document.
pub fn metadata_kept_from(clock: Clock, records: &[StateRecord]) -> Clock {
    records
        .iter()
        .filter_map(|r| match r {
            StateRecord::Cursor { cursor, .. } => Some(cursor.pushed),
            StateRecord::Listener(l) => Some(l.floor),
            _ => None,
        })
        .fold(clock, Clock::min)
}

/// What the shell needs to build one strand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrandSpec {
    /// The document.
    pub doc: DocId,
    /// Its metadata.
    pub meta: DocMeta,
    /// The listener's acknowledged version (empty: send a snapshot).
    pub since: VersionVector,
    /// The document's clock.
    pub clock: Clock,
    /// The document was deleted since the listener acknowledged it: sent
    /// as a strand with no data and an empty version (see [`crate::Strand`]).
    #[serde(default)]
    pub deleted: bool,
    /// The pull asked for versions only ([`crate::PULL_VERSIONS_ONLY`]):
    /// sent with this version (the document's now) and no data.
    #[serde(default)]
    pub versions_only: Option<VersionVector>,
}

/// Log severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    /// Expected but noteworthy.
    Info,
    /// Something refused or lost.
    Warn,
}

/// A peer's standing for one document, as an app would show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncState {
    /// The peer has the document at this version (or more).
    Synced(VersionVector),
    /// The peer does not have the document.
    Absent,
}

/// Something the application may want to know. New kinds of event come
/// with new versions: match with a `_` arm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// An opened document is loaded and ready.
    DocReady {
        /// The document.
        doc: DocId,
        /// Its version.
        version: VersionVector,
    },
    /// An opened document does not exist and may not be created.
    DocUnavailable {
        /// The document.
        doc: DocId,
    },
    /// A document changed through an import.
    DocChanged {
        /// The document.
        doc: DocId,
        /// Its version now.
        version: VersionVector,
        /// The peer the change came from, if not a store.
        from: Option<PeerId>,
    },
    /// A peer answered for a document.
    PeerSynced {
        /// The peer.
        peer: PeerId,
        /// The document.
        doc: DocId,
        /// What it has.
        state: SyncState,
    },
    /// The primary store holds the document up to `version`.
    Durable {
        /// The document.
        doc: DocId,
        /// The durable version.
        version: VersionVector,
        /// The store's clock for it.
        clock: Clock,
    },
    /// A remote peer acknowledged (durably) the document up to `version`.
    AckedByRemote {
        /// The peer.
        peer: PeerId,
        /// The document.
        doc: DocId,
        /// The version acknowledged.
        version: VersionVector,
    },
    /// Presence changed; `data` is `None` when it was removed or expired.
    Presence {
        /// The document.
        doc: DocId,
        /// The namespace.
        namespace: Namespace,
        /// Whose presence.
        peer: PeerId,
        /// The data, or `None`.
        data: Option<Payload>,
    },
    /// A document was deleted.
    DocDeleted {
        /// The document.
        doc: DocId,
    },
    /// A peer completed the handshake.
    PeerConnected {
        /// The peer.
        peer: PeerId,
    },
    /// A peer's last channel closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A peer listed the documents we may read there (see [`Msg::ListRemote`]).
    DocList {
        /// The peer.
        peer: PeerId,
        /// The documents, in id order.
        docs: Vec<crate::protocol::ListedDoc>,
        /// Whether more follow (list again after the last).
        more: bool,
    },
    /// A peer answered a deletion we asked of it.
    DeleteAnswered {
        /// The peer.
        peer: PeerId,
        /// The document.
        doc: DocId,
        /// Whether it deleted it.
        deleted: bool,
    },
    /// Something failed; `doc` names the document when one is concerned.
    Error {
        /// The document, if any.
        doc: Option<DocId>,
        /// What happened, for a person.
        reason: String,
    },
}

/// Outputs of `update`, for the shell to carry out in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cmd {
    /// Send items on a channel, as one frame.
    Send {
        /// The channel.
        channel: ChannelId,
        /// The items, in order.
        items: Vec<Outgoing>,
    },
    /// Import bytes into a document and answer with [`Msg::Imported`].
    Import {
        /// Echo this id in the answer.
        id: ImportId,
        /// The document.
        doc: DocId,
        /// The bytes.
        data: Payload,
        /// Who sent them, as the node vouches for it: the shell records
        /// this identity as the author of the changes new to the document,
        /// and refuses changes of a writer another identity already wrote
        /// as. `None` for data a store or a server we dialed relays.
        #[serde(default)]
        author: Option<Author>,
    },
    /// Close a channel.
    Close {
        /// The channel.
        channel: ChannelId,
        /// Why, for the peer and the log.
        reason: String,
    },
    /// Dial a remote and report with [`Msg::ChannelAdded`] or [`Msg::ConnectFailed`].
    Dial {
        /// Where.
        remote: RemoteAddr,
    },
    /// Persist node state on every store.
    Save(StateRecord),
    /// Drop a deleted document's data from memory and every store.
    Purge {
        /// The document.
        doc: DocId,
    },
    /// Feed [`Msg::Tick`] at (or after) this time.
    WakeAt(Millis),
    /// Tell the application.
    Emit(Event),
    /// A log line.
    Log {
        /// Severity.
        level: Level,
        /// The line.
        text: String,
    },
}
