//! The model: everything the core knows. Metadata only, never document bytes.
//!
//! Made of `imbl` persistent maps, so an older model stays valid and cheap to
//! keep, and every iteration that can reach output is in key order.

use crate::ids::{
    BatchId, ChannelId, Clock, DocId, ImportId, ListenerId, Namespace, PeerId, RemoteAddr,
};
use crate::io::{ChannelKind, Cursor, Millis};
use crate::policy::Rules;
use crate::protocol::{DocMeta, Filter, Message, Payload, PeerKind, Revision};
use crate::small_map::{SmallMap, SmallSet};
use crate::version::VersionVector;
use imbl::{OrdMap, OrdSet, Vector};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Timings and sizes the scheduler and handlers use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// Pull interval while a remote is active.
    pub pull_min_ms: Millis,
    /// Longest pull interval while idle.
    pub pull_max_ms: Millis,
    /// First reconnect delay.
    pub backoff_base_ms: Millis,
    /// Longest reconnect delay.
    pub backoff_max_ms: Millis,
    /// Lifetime of presence entries we send.
    pub presence_ttl_ms: u32,
    /// How many times our presence may be relayed.
    pub presence_hops: u8,
    /// Documents per `changes` answer.
    pub changes_page: usize,
    /// Largest strand count per pull, whatever the client asks.
    pub max_pull_limit: u32,
    /// A transmission not acknowledged by then is sent again.
    pub ack_timeout_ms: Millis,
    /// A channel that has not completed its handshake by then is closed.
    pub handshake_timeout_ms: Millis,
    /// A request not answered by then is asked again.
    pub request_timeout_ms: Millis,
    /// How often the primary store's change feed is read for other
    /// processes' writes (0: never; for a store no one else writes).
    pub feed_poll_ms: Millis,
    /// The longest wait between reads of the feed while they find nothing
    /// another process wrote: the wait doubles from `feed_poll_ms` after
    /// each read, up to this, and is `feed_poll_ms` again once a read finds
    /// another process's write or the store announces one. An idle server
    /// that reads its store five times a second keeps two threads waking
    /// for nothing (0, or no more than `feed_poll_ms`: always
    /// `feed_poll_ms`). A JSON-lines log without it (made before it
    /// existed) reads as 0, so it replays as it ran; a binary recording of
    /// that time (format 2) is refused as another version's.
    #[serde(default)]
    pub feed_poll_quiet_ms: Millis,
    /// How long the state of a peer that dialed us (subscriptions, filters,
    /// what it has) is kept after its last connection closed.
    pub peer_linger_ms: Millis,
    /// First delay before a failed store operation is tried again; it
    /// doubles with each failure in a row, up to `backoff_max_ms`.
    pub store_retry_ms: Millis,
    /// Presence of one member relayed within this window is held, and only
    /// its latest sent when the window ends: a member sends each other
    /// member at most two changes per window however fast it changes
    /// (0: every change at once). A recorded configuration without it
    /// (made before the window existed) reads as 0, so it replays as it ran.
    #[serde(default)]
    pub presence_window_ms: Millis,
}

fn default_presence_window_ms() -> Millis {
    50
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            pull_min_ms: 1_000,
            pull_max_ms: 60_000,
            backoff_base_ms: 500,
            backoff_max_ms: 60_000,
            presence_ttl_ms: 30_000,
            presence_hops: 1,
            changes_page: 500,
            max_pull_limit: 1_000,
            ack_timeout_ms: 10_000,
            handshake_timeout_ms: 10_000,
            request_timeout_ms: 10_000,
            feed_poll_ms: 0,
            feed_poll_quiet_ms: 0,
            peer_linger_ms: 60_000,
            store_retry_ms: 500,
            presence_window_ms: default_presence_window_ms(),
        }
    }
}

/// Limits on what one peer may make this node hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    /// Subscription filters per peer.
    pub filters_per_peer: usize,
    /// Entries in all of a peer's filters together.
    pub filter_entries_per_peer: usize,
    /// Documents one peer may follow live.
    pub subscriptions_per_peer: usize,
    /// Listeners one peer may register.
    pub listeners_per_peer: usize,
    /// Presence entries one peer may have relayed here.
    pub presence_per_peer: usize,
    /// Entries of lasting presence namespaces kept after their peers left,
    /// all peers together; past it, a leaving peer's entries go with it.
    #[serde(default = "default_lasting_presence")]
    pub lasting_presence: usize,
    /// Bytes of one presence entry; larger ones are dropped.
    #[serde(default = "default_presence_bytes")]
    pub presence_bytes: usize,
    /// Bytes of all members' presence in one room (a document's namespace)
    /// together; an entry that would pass it is dropped. Each change is
    /// sent to every other member, so this bounds what one window of
    /// changes costs to `members x presence_room_bytes`.
    #[serde(default = "default_presence_room_bytes")]
    pub presence_room_bytes: usize,
    /// Messages refused on a channel before its handshake, before it is closed.
    pub refusals_before_hello: u32,
    /// Documents the node does not hold that one peer may have it look up
    /// in its stores at once; more are refused until those are answered.
    #[serde(default = "default_lookups_per_peer")]
    pub lookups_per_peer: usize,
    /// Listeners this node keeps, of all peers together.
    #[serde(default = "default_listeners")]
    pub listeners: usize,
    /// Documents whose metadata stays in memory while nothing uses them;
    /// past it, the idle ones changed longest ago are forgotten and read
    /// back from the primary store when asked for (a store is needed). 0:
    /// every document's metadata is kept, and read whole at start.
    #[serde(default)]
    pub idle_metadata: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            filters_per_peer: 16,
            filter_entries_per_peer: 1_000,
            subscriptions_per_peer: 100_000,
            listeners_per_peer: 16,
            presence_per_peer: 256,
            lasting_presence: default_lasting_presence(),
            presence_bytes: default_presence_bytes(),
            presence_room_bytes: default_presence_room_bytes(),
            refusals_before_hello: 3,
            lookups_per_peer: default_lookups_per_peer(),
            listeners: default_listeners(),
            idle_metadata: 0,
        }
    }
}

fn default_lookups_per_peer() -> usize {
    256
}

fn default_listeners() -> usize {
    10_000
}

fn default_lasting_presence() -> usize {
    1_000
}

fn default_presence_room_bytes() -> usize {
    256 * 1024
}

fn default_presence_bytes() -> usize {
    64 * 1024
}

/// What one client may do, set by the operator (0: no limit). Past a
/// quota the client is answered (its update acknowledged `rate-limited`,
/// with an error saying when to try again on protocol 4) and keeps its
/// connection; nothing already taken is touched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    /// Updates one connection may send per second (a token bucket holding
    /// one second's worth); the requests of one identity through the HTTP
    /// document API share one such bucket.
    #[serde(default)]
    pub updates_per_s: u64,
    /// Bytes of updates one connection may send per second (likewise, and
    /// shared by one identity's requests alike).
    #[serde(default)]
    pub update_bytes_per_s: u64,
    /// Connections one identity may hold at once.
    #[serde(default)]
    pub connections_per_identity: usize,
    /// The largest a client may make a document, in bytes: what the store
    /// held when it was loaded plus every update taken since (compaction
    /// may make it smaller on the next load). An update that would pass
    /// it is acknowledged `too-large`.
    #[serde(default)]
    pub max_doc_bytes: u64,
    /// The largest update a client may send, in bytes (below the frame
    /// limit every connection has). A larger one is acknowledged `too-large`.
    #[serde(default)]
    pub max_update_bytes: u64,
    /// Documents one identity may create per hour (a window that starts
    /// with its first creation). Past it, a write that would create one is
    /// acknowledged `rate-limited`.
    #[serde(default)]
    pub docs_created_per_hour: u64,
}

/// Who this node is and how it behaves. Data, so a log replays identically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// This node's identity.
    pub peer: PeerId,
    /// A display name.
    pub name: String,
    /// What kind of node.
    pub kind: PeerKind,
    /// Tokens accepted from connecting peers, each granting any peer id
    /// (but this node's own); with `grants`, empty means no token needed.
    pub tokens: Vec<String>,
    /// Tokens that grant only some peer ids (a credential binds identity).
    pub grants: Vec<crate::policy::Grant>,
    /// Every hello needs a token: the shell verifies signed tokens
    /// ([`crate::Msg::Authenticated`]), or the static list may be emptied
    /// (`Msg::Tokens`); a hello with neither a good signed token nor a
    /// static one is refused.
    #[serde(default)]
    pub signed_tokens: bool,
    /// What one peer may make this node hold.
    pub bounds: Bounds,
    /// The highest protocol version this node speaks (lower only to test
    /// older peers); each channel uses the highest both sides speak.
    pub protocol: u32,
    /// Permission rules for network peers.
    pub rules: Rules,
    /// Seed of the jitter generator.
    pub seed: u64,
    /// Timings.
    pub timing: Timing,
    /// Presence namespaces whose entries outlive their peer's connection
    /// until their TTL (a Loro `%EPS` room: the server keeps its state for
    /// members who join later); other presence goes when its peer does.
    #[serde(default)]
    pub lasting_presence: Vec<Namespace>,
    /// What one client may do (a recording made before quotas has none).
    #[serde(default)]
    pub quotas: Quotas,
    /// Peer ids starting with this are the server's own links (its
    /// webhooks): a hello speaking as one is let in only with a credential
    /// the shell vouched for, never with a static token or none, and their
    /// listeners do not count toward the node-wide bound (clients filling
    /// it cannot shut them out).
    #[serde(default)]
    pub internal_peers: Option<String>,
    /// Servers that relay others' changes to this one (edge servers that
    /// dial it): what they send is nobody's here, like what a server this
    /// one dialed sends, so it is neither recorded as theirs nor checked
    /// against who owns each writer (the servers the changes were written
    /// on did that), and no quota limits them. Only peers whose
    /// credentials let them in as one of these ids are trusted so.
    #[serde(default)]
    pub relays: Vec<crate::policy::Pattern>,
    /// Each writer (Loro peer) of a document belongs to the first identity
    /// that wrote as it: an update carrying new changes of a writer another
    /// identity owns is refused whole (the shell's node checks, since only
    /// it reads updates). Off by default: a server that crashed after
    /// passing on a change it had not yet written gets that change back
    /// from every client that holds it, and the first to send it would own
    /// its writer, locking its author out.
    #[serde(default)]
    pub bind_writers: bool,
}

impl Config {
    /// Whether `peer` is one of the server's own links ([`Self::internal_peers`]).
    pub fn is_internal_peer(&self, peer: &PeerId) -> bool {
        self.internal_peers
            .as_deref()
            .is_some_and(|prefix| peer.as_str().starts_with(prefix))
    }
}

impl Config {
    /// A node with default rules (allow all), no tokens and default timings.
    pub fn new(peer: &str) -> Self {
        Self {
            peer: PeerId::new(peer),
            name: peer.to_string(),
            kind: PeerKind::User,
            tokens: Vec::new(),
            grants: Vec::new(),
            signed_tokens: false,
            internal_peers: None,
            relays: Vec::new(),
            bind_writers: false,
            bounds: Bounds::default(),
            protocol: crate::protocol::PROTOCOL_VERSION,
            rules: Rules::allow_all(),
            seed: 0x5eed,
            timing: Timing::default(),
            lasting_presence: Vec::new(),
            quotas: Quotas::default(),
        }
    }
}

/// A connection's buckets: what it may still spend, in thousandths (so
/// a refill by the millisecond loses nothing), and when they were filled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Buckets {
    pub(crate) updates: Option<u64>,
    pub(crate) bytes: Option<u64>,
    pub(crate) filled_at: Millis,
}

/// A network request waiting for the stores to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WaitingRequest {
    Sync {
        channel: ChannelId,
        version: VersionVector,
        bidirectional: bool,
    },
    Update {
        channel: ChannelId,
        batch: BatchId,
        data: Payload,
        version: VersionVector,
    },
    Push {
        channel: ChannelId,
        job: u64,
        index: usize,
        data: Payload,
        version: VersionVector,
    },
}

/// Why a document is being loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoadReason {
    /// The application opened it: create it if no store has it.
    Open,
    /// A network peer asked: create only if that peer may create.
    Network,
    /// A remote we pull from has it, and may not create it here: fetched
    /// from it once loaded if a store holds it (memory forgot it), else
    /// dropped (see `on_demand`).
    Pull,
}

/// The life of a document in the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for every store to answer before answering anyone.
    Loading {
        waiting: OrdSet<ChannelId>,
        queued: Vec<WaitingRequest>,
        found: bool,
        reason: LoadReason,
        creator: Option<PeerId>,
    },
    Ready,
}

/// Who is told when a version becomes durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notify {
    /// Acknowledge a network transmission.
    Ack {
        channel: ChannelId,
        peer: PeerId,
        batch: BatchId,
    },
    /// Fill in one revision of a push job.
    Push { job: u64, index: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub version: VersionVector,
    pub notify: Notify,
}

/// A version per store channel. Nodes have one or two stores, and a hub
/// holds this twice per document: a small sorted vector, not a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PerStore(Vec<(ChannelId, VersionVector)>);

impl PerStore {
    pub fn get(&self, store: &ChannelId) -> Option<&VersionVector> {
        self.0.iter().find(|(c, _)| c == store).map(|(_, v)| v)
    }

    pub fn insert(&mut self, store: ChannelId, version: VersionVector) {
        match self.0.binary_search_by_key(&store, |(c, _)| *c) {
            Ok(i) => self.0[i].1 = version,
            Err(i) => self.0.insert(i, (store, version)),
        }
    }

    pub fn remove(&mut self, store: &ChannelId) {
        self.0.retain(|(c, _)| c != store);
    }
}

/// One network connection, as an operator sees it ([`Model::connections`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// Its channel: the id to disconnect it by.
    pub channel: ChannelId,
    /// Who it is, once its handshake is done.
    pub peer: Option<PeerId>,
    /// What the peer said it is.
    pub kind: Option<PeerKind>,
    /// The protocol version negotiated.
    pub protocol: u32,
    /// The server we dialed, if we did.
    pub dialed: Option<RemoteAddr>,
    /// When it opened (the node's clock, ms).
    pub opened_at: Millis,
}

/// One document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Doc {
    pub meta: DocMeta,
    pub version: VersionVector,
    /// Clock of the last durable change, 0 before any.
    pub clock: Clock,
    pub phase: Phase,
    /// Network peers that receive live changes.
    pub subscribers: SmallSet<PeerId>,
    /// What each store was sent (optimistic) or loaded.
    pub stored: PerStore,
    /// What each store acknowledged as durable (or loaded).
    pub durable: PerStore,
    /// Acknowledgements waiting for durability.
    pub waiters: Vec<Waiter>,
    /// Bytes of the document as far as the largest-document quota goes:
    /// what the store held when last read plus the imports that changed
    /// it since (a duplicate or a failed import adds nothing).
    pub bytes: u64,
}

impl Doc {
    pub fn new(meta: DocMeta) -> Self {
        Self {
            meta,
            version: VersionVector::new(),
            clock: Clock(0),
            phase: Phase::Ready,
            subscribers: SmallSet::new(),
            stored: PerStore::default(),
            durable: PerStore::default(),
            waiters: Vec::new(),
            bytes: 0,
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }
}

/// Handshake state of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// Network channel before the handshake.
    Connecting,
    /// Ready: the peer is known.
    Established(PeerId),
}

/// One channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Channel {
    pub kind: ChannelKind,
    pub handshake: Handshake,
    /// Set when we dialed: we pull and push; the other side answers.
    pub remote: Option<RemoteAddr>,
    /// When it was added, for the handshake timeout.
    pub opened_at: Millis,
    /// What the peer said it is in its handshake.
    pub peer_kind: Option<PeerKind>,
    /// Messages refused before the handshake.
    pub refused: u32,
    /// The protocol version negotiated in the handshake.
    pub protocol: u32,
    /// Error replies it may still be sent now (a token bucket, refilled
    /// with time), and when it was last refilled.
    pub error_tokens: u32,
    pub error_refilled: Millis,
    /// Error replies it earned past the bucket, which were dropped.
    pub errors_dropped: u32,
    /// What its updates may still spend now (see `Quotas`).
    pub quota: Buckets,
    /// What let it in, checked again when the static tokens change.
    pub admitted_by: Admission,
}

impl Channel {
    /// Whether it is one request's link (see `common::is_request_channel`).
    pub(crate) fn is_request(&self) -> bool {
        self.peer_kind == Some(PeerKind::Bot)
    }
}

/// What let a connection in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Admission {
    /// No token (the node needed none, or it is not in yet).
    #[default]
    Nothing,
    /// This static token.
    Static(String),
    /// A signed token (or the app's backend): its credential decides.
    Signed,
}

/// What we know of a peer's copy of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PeerDoc {
    /// We asked at this time and wait for the answer.
    Pending(Millis),
    /// They have at least this version.
    Synced(VersionVector),
    /// They said they do not have it.
    Absent,
}

/// One remote node. Kept after its channels close: reconnects resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Peer {
    pub channels: SmallSet<ChannelId>,
    /// Of `channels`, those that are not request channels (see
    /// `handlers::common::is_request_channel`): where its live changes go.
    /// Kept with `channels` (both change only when a handshake is done and
    /// when a channel closes), so finding one reads no channel's entry.
    pub sync_channels: SmallSet<ChannelId>,
    pub docs: SmallMap<DocId, PeerDoc>,
    /// What it confirmed having (an ack, or its own word); `None`: it said it has none.
    /// Unlike `docs`, never optimistic: this is what wait-for-sync trusts.
    pub confirmed: SmallMap<DocId, Option<VersionVector>>,
    /// Filters it subscribed with: new and changed matching documents go to it.
    pub filters: Vector<Filter>,
    pub cursor: Cursor,
    /// Per document, the clock of ours they acknowledged (above `cursor.pushed`).
    pub acked: SmallMap<DocId, Clock>,
    /// Documents requested after a `changes` answer, and the clock it covered.
    pub pulling: SmallSet<DocId>,
    /// Of `pulling`: documents we hold what it listed of, but not yet
    /// durably (a write still out or failed), with the version listed. The
    /// pulled cursor waits for them: a crash before the write would
    /// otherwise lose that data for good, since the cursor said we had it.
    pub pulling_durable: SmallMap<DocId, VersionVector>,
    pub pull_target: Option<Clock>,
    pub pull_started: Option<Millis>,
    /// Scheduler state for periodic pulls from this peer.
    pub pull_interval: Millis,
    /// Set when we dialed it: we keep a pushed cursor and pull from it.
    pub dialed: bool,
    pub last_push_at: Option<Millis>,
    /// Documents whose live changes it receives (mirrors `Doc::subscribers`).
    pub subscribed: SmallSet<DocId>,
    /// Presence entries relayed from it that are alive here.
    pub presence: usize,
    /// Per document, the live update sent to it and not yet acknowledged
    /// (while that batch is still in flight): changes made meanwhile wait
    /// and go as one update when it is acknowledged.
    pub sending: SmallMap<DocId, BatchId>,
    /// Per document, how many of our updates it refused in a row for its
    /// rate quota (each retry waits twice as long as the one before).
    pub rate_refusals: SmallMap<DocId, u32>,
    /// Documents it had the node look up in its stores, not yet answered.
    pub lookups: SmallSet<DocId>,
    /// The credential of its newest hello, when it was a signed token:
    /// its rights replace the node's rules for this peer.
    pub credential: Option<Arc<crate::policy::Credential>>,
    /// What the updates of its bot channels (requests: each call of the
    /// HTTP document API is one) may still spend: shared by all of them,
    /// since a bucket per request would start full every time.
    pub request_quota: Buckets,
}

impl Peer {
    pub fn new() -> Self {
        Self {
            channels: SmallSet::new(),
            sync_channels: SmallSet::new(),
            docs: SmallMap::new(),
            confirmed: SmallMap::new(),
            filters: Vector::new(),
            cursor: Cursor::default(),
            acked: SmallMap::new(),
            pulling: SmallSet::new(),
            pulling_durable: SmallMap::new(),
            pull_target: None,
            pull_started: None,
            pull_interval: 0,
            dialed: false,
            last_push_at: None,
            subscribed: SmallSet::new(),
            presence: 0,
            sending: SmallMap::new(),
            rate_refusals: SmallMap::new(),
            lookups: SmallSet::new(),
            credential: None,
            request_quota: Buckets::default(),
        }
    }
}

/// A data transmission waiting for its ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InFlight {
    pub channel: ChannelId,
    pub doc: DocId,
    pub version: VersionVector,
    /// The version the transmission starts from (`None`: everything).
    pub base: Option<VersionVector>,
    pub clock: Clock,
    /// The newest change clock this node knew when the data went out: a
    /// store write committed later gets a clock above it.
    pub known_clock: Clock,
    pub sent_at: Millis,
    /// Sent as a live update (or to a store), not as a sync-response: a
    /// peer waiting for its answer still waits after it.
    pub as_update: bool,
    /// A sync-request of the peer crossed this live update: it is answered
    /// when the update is acknowledged (or given up on), from this version.
    pub answer_owed: Option<VersionVector>,
    /// A store's write: not in `Model::in_flight_by`, which only answers
    /// what is on its way to a peer.
    pub to_store: bool,
}

/// Where imported bytes came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Peer {
        peer: PeerId,
        channel: ChannelId,
        batch: BatchId,
        version: VersionVector,
        /// Whether it came on a request channel (see
        /// `handlers::common::is_request_channel`), as it was when the data
        /// arrived: the channel may be gone when the import ends.
        request: bool,
    },
    Push {
        peer: PeerId,
        channel: ChannelId,
        job: u64,
        index: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingImport {
    pub doc: DocId,
    pub source: Source,
    /// Bytes imported: they count toward the document's size once they
    /// change it (see `Doc::bytes`).
    pub len: u64,
}

/// A push being answered: one revision per strand, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushJob {
    pub channel: ChannelId,
    pub revisions: Vector<Option<Revision>>,
}

/// A pull-responder listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listener {
    pub owner: PeerId,
    pub filter: Filter,
    pub floor: Clock,
    pub acked: OrdMap<DocId, VersionVector>,
    pub last_pull: Option<Millis>,
}

/// A presence entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Presence {
    pub data: Payload,
    pub expires: Millis,
    /// The peer we heard it from: never sent back there.
    pub via: PeerId,
}

pub(crate) type PresenceKey = (DocId, Namespace, PeerId);

/// A remote we keep dialing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Remote {
    pub token: Option<String>,
    pub filter: Filter,
    pub attempt: u32,
    pub channel: Option<ChannelId>,
    /// The delay the server asked for when it went away: the next dial
    /// waits this long instead of the backoff.
    pub retry_after: Option<Millis>,
}

/// Things that happen at a time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    Reconnect(RemoteAddr),
    Pull(PeerId),
    PresenceExpiry(PresenceKey),
    Heartbeat,
    /// Stores that have not answered for a loading document by then are asked again.
    LoadTimeout(DocId),
    /// Time to read the primary store's change feed.
    FeedPoll,
    /// Time to try failed store writes again.
    StoreRetry,
    /// A peer gone this long is forgotten (its memory, not its stored state).
    ForgetPeer(PeerId),
    /// Looks for timed-out transmissions, handshakes and pulls.
    Sweep,
    /// Presence held back in its window is relayed.
    PresenceFlush,
    /// The credential a channel's hello presented expires.
    CredentialExpiry(ChannelId),
    /// A peer refused our update to a document for its rate quota: ask it
    /// again then, so the change is not left until the next one.
    RetryRateLimited(PeerId, DocId),
}

/// A store read under way, and what its answer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PendingRead {
    /// A peer's changes-since that starts below the floor: the store's
    /// documents up to `read_to`, then memory's.
    Changes {
        channel: ChannelId,
        peer: PeerId,
        clock: Clock,
        filter: Filter,
        read_to: Clock,
        limit: u32,
    },
    /// A peer's list-docs: the store's page merged with memory.
    Listing {
        channel: ChannelId,
        peer: PeerId,
        filter: Filter,
        after: Option<DocId>,
        limit: u32,
    },
    /// A peer's directory request (protocol 1): one page of the store's,
    /// merged with memory.
    Directory {
        channel: ChannelId,
        peer: PeerId,
        filter: Filter,
        limit: u32,
    },
    /// The floor (`up_to` when asked) comes down to `after`.
    Cover {
        after: Clock,
        up_to: Clock,
        limit: u32,
    },
}

impl PendingRead {
    pub(crate) fn channel(&self) -> Option<ChannelId> {
        match self {
            PendingRead::Changes { channel, .. }
            | PendingRead::Listing { channel, .. }
            | PendingRead::Directory { channel, .. } => Some(*channel),
            PendingRead::Cover { .. } => None,
        }
    }
}

/// What waits for the floor to come down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parked {
    /// A message from a channel, handled again as if it arrived then.
    Message(ChannelId, Message),
    /// A dialed remote welcomed us: resume with it (`FollowUp::Welcomed`).
    Welcomed {
        peer: PeerId,
        channel: ChannelId,
        addr: RemoteAddr,
        clock: Clock,
    },
    /// A remote acknowledged our write: its pushed cursor moves
    /// (`FollowUp::RemoteAcked`; one waits per peer).
    RemoteAcked {
        peer: PeerId,
        doc: DocId,
        clock: Clock,
    },
}

/// Everything the core knows. Cheap to clone; an old model stays valid.
#[derive(Debug, Clone)]
pub struct Model {
    pub(crate) config: Arc<Config>,
    pub(crate) now: Millis,
    pub(crate) clock: Clock,
    pub(crate) next_batch: u64,
    pub(crate) next_import: u64,
    pub(crate) next_listener: u64,
    pub(crate) next_job: u64,
    pub(crate) rng: u64,
    pub(crate) docs: OrdMap<DocId, Doc>,
    pub(crate) by_clock: OrdMap<Clock, DocId>,
    /// Every document whose last clock is above this one is in `docs`;
    /// below it, some may be only in the primary store (their metadata was
    /// not read at start, or was forgotten while idle). Walks of the clock
    /// that start below it read the store (`handlers::on_demand`).
    pub(crate) memory_floor: Clock,
    /// Store reads under way for what is below `memory_floor`.
    pub(crate) reads: OrdMap<u64, PendingRead>,
    /// Messages and follow-ups that walk the clock from below
    /// `memory_floor`, each with where its walk starts, waiting for the
    /// floor to come down to it.
    pub(crate) parked: Vec<(Clock, Parked)>,
    /// After a look for idle documents to forget found too few: how many
    /// documents in memory make the next look, and when one is made
    /// anyway ((0, 0): the bound's own threshold).
    pub(crate) idle_look_at: (usize, Millis),
    pub(crate) tombstones: OrdSet<DocId>,
    /// Documents changed but not yet durable on the primary store.
    pub(crate) dirty: OrdSet<DocId>,
    pub(crate) channels: OrdMap<ChannelId, Channel>,
    pub(crate) stores: OrdSet<ChannelId>,
    pub(crate) peers: OrdMap<PeerId, Peer>,
    /// What the operator revoked: no hello presenting it is welcomed.
    pub(crate) revoked: Arc<crate::policy::Revocations>,
    /// Set once the host drains the node: why, and when clients should
    /// come back.
    pub(crate) draining: Option<(String, Millis)>,
    pub(crate) filter_subscribers: OrdSet<PeerId>,
    /// Peers that were waiting for a document to become durable (a pull:
    /// `Peer::pulling_durable`), so a write's acknowledgement reads these,
    /// not every peer (20,000 connected clients made that scan most of the
    /// server's time). May hold peers that no longer wait; they are
    /// dropped when next read.
    pub(crate) durable_pullers: OrdSet<PeerId>,
    pub(crate) in_flight: OrdMap<BatchId, InFlight>,
    /// The batches of `in_flight` by channel and document: a request looks
    /// for an answer already on its way without reading every transmission
    /// (10,000 of them during a cold sync made that the core's hottest loop).
    /// Changed only with `in_flight`, by [`Model::add_in_flight`] and
    /// [`Model::take_in_flight`]. Only what goes to peers: nothing looks
    /// for a store's write by its channel, and indexing them was a write
    /// and a removal of this map in every change's path.
    /// Each entry's batches are few (one live update and the answers on
    /// their way), kept in order, the first without an allocation (see
    /// [`crate::batches::Batches`]).
    pub(crate) in_flight_by: OrdMap<(ChannelId, DocId), crate::batches::Batches>,
    /// Sync-requests we sent and wait an answer for, with when they left.
    pub(crate) requests: OrdMap<(PeerId, DocId), Millis>,
    pub(crate) imports: OrdMap<ImportId, PendingImport>,
    pub(crate) pushes: OrdMap<u64, PushJob>,
    pub(crate) listeners: OrdMap<ListenerId, Listener>,
    /// Changed only by [`Model::put_presence`], [`Model::take_presence`]
    /// and [`Model::hold_presence`], which keep `presence_by_origin` and
    /// `presence_kept` with it.
    pub(crate) presence: OrdMap<PresenceKey, Presence>,
    /// The keys of `presence` by origin first, so a peer that leaves finds
    /// its entries without reading everyone's (20,000 connections leaving
    /// at once read 20,000 entries each).
    pub(crate) presence_by_origin: OrdSet<(PeerId, DocId, Namespace)>,
    /// Entries of lasting namespaces this node holds for peers that left
    /// (their `via` is us): counted, so a peer that leaves learns how many
    /// more may be kept without reading every entry.
    pub(crate) presence_kept: usize,
    pub(crate) own_presence: OrdMap<(DocId, Namespace), Payload>,
    /// Bytes of the entries of each room (`presence` summed), for its bound.
    pub(crate) presence_room_bytes: OrdMap<(DocId, Namespace), usize>,
    /// Per identity that created documents in the last hour: when its
    /// window began and how many it created since (the documents quota).
    pub(crate) created: OrdMap<PeerId, (Millis, u64)>,
    /// The table's size after its last sweep, doubled.
    pub(crate) creators_swept_at: usize,
    /// When each entry was last relayed, while that is within the window.
    pub(crate) presence_relayed: OrdMap<PresenceKey, Millis>,
    /// Changes held until the window ends: the latest of each entry, as it
    /// will be relayed, and the peer it came from.
    pub(crate) presence_held: OrdMap<PresenceKey, (crate::protocol::Ephemeral, PeerId)>,
    pub(crate) remotes: OrdMap<RemoteAddr, Remote>,
    pub(crate) timers: OrdSet<(Millis, Timer)>,
    pub(crate) timer_at: OrdMap<Timer, Millis>,
    pub(crate) wake_at: Option<Millis>,
    /// The primary store's feed, read up to here.
    pub(crate) feed_seen: Clock,
    /// A feed read in progress: the position it reaches once its documents are loaded.
    pub(crate) feed_target: Option<Clock>,
    /// Documents reloaded for a feed read, with the clock the feed gave them.
    pub(crate) feed_loading: OrdMap<DocId, Clock>,
    /// A read of the feed was sent and its answer is not in yet.
    pub(crate) feed_reading: bool,
    /// Another process wrote while a read was under way: read again after it.
    pub(crate) feed_again: bool,
    /// The wait before the read after the next one (0: `feed_poll_ms`),
    /// longer while reads find nothing (`Timing::feed_poll_quiet_ms`).
    pub(crate) feed_wait: Millis,
    /// The primary store is shared with other servers (it announced their
    /// writes): presence from our peers is handed to it for them.
    pub(crate) store_shared: bool,
    /// Listener messages waiting for the shared store to say whether
    /// another server registered that listener.
    pub(crate) listener_loads: OrdMap<ListenerId, Vec<(ChannelId, Message)>>,
    /// Store writes that failed, waiting to be tried again.
    pub(crate) retry: Retry,
    /// Documents whose write to the primary store failed or timed out
    /// without saying whether it committed, each with the newest clock known
    /// when that write went out. If it did commit, its clock is above that
    /// one yet unknown here, so no cursor may move past it (see
    /// `promised_clock`) until the document is written again and listed at
    /// its new clock.
    pub(crate) unsettled_writes: OrdMap<DocId, Clock>,
    /// Deletions waiting for their tombstone to be durable, with the
    /// channels that asked for them (told once it is).
    pub(crate) deleting: OrdMap<DocId, Vec<ChannelId>>,
    /// The version we last asked a peer with for missing dependencies of a
    /// document, until an import advances it (so a delta that stays pending
    /// is not asked for in a loop).
    pub(crate) missing_asked: OrdMap<(PeerId, DocId), VersionVector>,
    /// Whether any peer ever welcomed a dial of ours (see [`Model::is_dialed`]).
    pub(crate) dialed_any: bool,
}

/// Store writes to try again after a failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Retry {
    /// Documents whose changes are to be written again.
    pub docs: OrdSet<DocId>,
    /// Records to save again, by their key.
    pub records: OrdMap<String, crate::io::StateRecord>,
    /// Deleted documents whose data is to be dropped again.
    pub purges: OrdSet<DocId>,
    /// Failures in a row, for the backoff.
    pub failures: u32,
}

impl Model {
    /// Restores a persisted listener.
    pub(crate) fn restore_listener(&mut self, r: crate::io::ListenerRecord) {
        self.next_listener = self.next_listener.max(r.id.0.saturating_add(1));
        if r.id.0 == u64::MAX {
            return;
        }
        self.listeners.insert(
            r.id,
            Listener {
                owner: r.owner,
                filter: r.filter,
                floor: r.floor,
                acked: r.acked.into_iter().collect(),
                last_pull: None,
            },
        );
    }

    /// A fresh node.
    pub fn new(mut config: Config) -> Self {
        // A node speaks at least the oldest protocol: with 0 it would strip
        // every message, its own welcome included. (A higher one than this
        // build knows stays: the simulator plays a newer peer with it.)
        config.protocol = config.protocol.max(crate::protocol::MIN_PROTOCOL_VERSION);
        let rng = config.seed;
        Self {
            config: Arc::new(config),
            now: 0,
            clock: Clock(0),
            next_batch: 1,
            next_import: 1,
            next_listener: 1,
            next_job: 1,
            rng,
            docs: OrdMap::new(),
            by_clock: OrdMap::new(),
            memory_floor: Clock(0),
            reads: OrdMap::new(),
            parked: Vec::new(),
            idle_look_at: (0, 0),
            tombstones: OrdSet::new(),
            dirty: OrdSet::new(),
            channels: OrdMap::new(),
            stores: OrdSet::new(),
            peers: OrdMap::new(),
            revoked: Arc::default(),
            draining: None,
            filter_subscribers: OrdSet::new(),
            in_flight: OrdMap::new(),
            in_flight_by: OrdMap::new(),
            durable_pullers: OrdSet::new(),
            requests: OrdMap::new(),
            imports: OrdMap::new(),
            pushes: OrdMap::new(),
            listeners: OrdMap::new(),
            presence: OrdMap::new(),
            presence_by_origin: OrdSet::new(),
            presence_kept: 0,
            own_presence: OrdMap::new(),
            presence_room_bytes: OrdMap::new(),
            created: OrdMap::new(),
            creators_swept_at: 0,
            presence_relayed: OrdMap::new(),
            presence_held: OrdMap::new(),
            remotes: OrdMap::new(),
            timers: OrdSet::new(),
            timer_at: OrdMap::new(),
            wake_at: None,
            feed_seen: Clock(0),
            feed_target: None,
            feed_loading: OrdMap::new(),
            feed_reading: false,
            feed_again: false,
            feed_wait: 0,
            store_shared: false,
            listener_loads: OrdMap::new(),
            retry: Retry::default(),
            unsettled_writes: OrdMap::new(),
            deleting: OrdMap::new(),
            missing_asked: OrdMap::new(),
            dialed_any: false,
        }
    }

    /// Whether `peer` is a server we dialed: its quota is not ours to keep,
    /// the data it relays is nobody's own, and we keep a pushed cursor
    /// for it. Asked for every update and acknowledgement: a node that
    /// never dialed anyone (a server) answers without reading the peer.
    pub(crate) fn is_dialed(&self, peer: &PeerId) -> bool {
        self.dialed_any && self.peers.get(peer).is_some_and(|p| p.dialed)
    }

    /// This node's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This node's change clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The last time the shell told us.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// Our version of a document, if we hold it (loaded and not deleted).
    pub fn doc_version(&self, doc: &DocId) -> Option<&VersionVector> {
        self.docs
            .get(doc)
            .filter(|d| d.is_ready())
            .map(|d| &d.version)
    }

    /// A document's metadata (type, scope, branch), if it is in memory.
    pub fn doc_meta(&self, doc: &DocId) -> Option<&DocMeta> {
        self.docs.get(doc).map(|d| &d.meta)
    }

    /// The clock of a document's last durable change.
    pub fn doc_clock(&self, doc: &DocId) -> Option<Clock> {
        self.docs.get(doc).map(|d| d.clock)
    }

    /// Documents we hold, in id order.
    pub fn doc_ids(&self) -> impl Iterator<Item = &DocId> + '_ {
        self.docs.keys()
    }

    /// Whether a document was deleted here.
    pub fn is_tombstoned(&self, doc: &DocId) -> bool {
        self.tombstones.contains(doc)
    }

    /// The peer established on a channel.
    pub fn channel_peer(&self, channel: ChannelId) -> Option<&PeerId> {
        match &self.channels.get(&channel)?.handshake {
            Handshake::Established(p) => Some(p),
            Handshake::Connecting => None,
        }
    }

    /// The cursor kept with a peer.
    pub fn cursor(&self, peer: &PeerId) -> Option<&Cursor> {
        self.peers.get(peer).map(|p| &p.cursor)
    }

    /// What a peer confirmed having of a document: acknowledged, or said
    /// itself (`None`: nothing confirmed yet).
    pub fn peer_state(&self, peer: &PeerId, doc: &DocId) -> Option<crate::io::SyncState> {
        match self.peers.get(peer)?.confirmed.get(doc)? {
            Some(v) => Some(crate::io::SyncState::Synced(v.clone())),
            None => Some(crate::io::SyncState::Absent),
        }
    }

    /// Every ready document with its version and last clock, in id order.
    pub fn doc_summaries(&self) -> Vec<(DocId, VersionVector, Clock)> {
        self.docs
            .iter()
            .filter(|(_, d)| d.is_ready())
            .map(|(id, d)| (id.clone(), d.version.clone(), d.clock))
            .collect()
    }

    /// Every peer we know, whether it is connected now, and its cursor.
    pub fn peer_summaries(&self) -> Vec<(PeerId, bool, Cursor)> {
        self.peers
            .iter()
            .map(|(id, p)| (id.clone(), !p.channels.is_empty(), p.cursor.clone()))
            .collect()
    }

    /// Per server this node dials: the changes its feed announced that
    /// were not pulled yet, in peer order.
    pub fn remote_lags(&self) -> Vec<(PeerId, u64)> {
        self.peers
            .iter()
            .filter(|(_, p)| p.dialed)
            .map(|(id, p)| {
                let lag = p
                    .pull_target
                    .map_or(0, |t| t.0.saturating_sub(p.cursor.pulled.0));
                (id.clone(), lag)
            })
            .collect()
    }

    /// The network connections now, in channel order.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.channels
            .iter()
            .filter(|(_, ch)| ch.kind == ChannelKind::Network)
            .map(|(c, ch)| ConnectionInfo {
                channel: *c,
                peer: match &ch.handshake {
                    Handshake::Established(p) => Some(p.clone()),
                    Handshake::Connecting => None,
                },
                kind: ch.peer_kind,
                protocol: ch.protocol,
                dialed: ch.remote.clone(),
                opened_at: ch.opened_at,
            })
            .collect()
    }

    /// Whether a document has changes not yet durable on the primary store.
    pub fn is_dirty(&self, doc: &DocId) -> bool {
        self.dirty.contains(doc)
    }

    /// Peers subscribed to a document, in id order.
    pub fn subscribers(&self, doc: &DocId) -> Vec<PeerId> {
        self.docs
            .get(doc)
            .map(|d| d.subscribers.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Live presence entries: (doc, namespace, peer, data), in key order.
    pub fn presence(&self) -> Vec<(DocId, Namespace, PeerId, Payload)> {
        self.presence
            .iter()
            .map(|((d, n, p), e)| (d.clone(), n.clone(), p.clone(), e.data.clone()))
            .collect()
    }

    /// Registered listener ids.
    pub fn listener_ids(&self) -> Vec<ListenerId> {
        self.listeners.keys().copied().collect()
    }

    /// When the core next wants a tick.
    pub fn wake_at(&self) -> Option<Millis> {
        self.wake_at
    }

    /// How many peers the model keeps state for (connected or recently gone).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Whether the node drains (stops taking clients; see `Msg::Drain`).
    pub fn is_draining(&self) -> bool {
        self.draining.is_some()
    }
    /// Whether the model's indexes agree with what they index (the
    /// transmissions in flight by channel and document; the peers waiting
    /// for durability; presence by origin, and the count of entries held
    /// for peers that left; each peer's channels that are not requests');
    /// for tests.
    pub fn check_indexes(&self) -> Result<(), String> {
        for (id, p) in &self.peers {
            if !p.pulling_durable.is_empty() && !self.durable_pullers.contains(id) {
                return Err(format!(
                    "{id:?} waits for durability and is not among the pullers"
                ));
            }
            let sync: SmallSet<ChannelId> = p
                .channels
                .iter()
                // A request's channel says hello as a bot (the handlers'
                // `is_request_channel`, which the model may not call).
                .filter(|c| {
                    self.channels
                        .get(*c)
                        .is_none_or(|ch| ch.peer_kind != Some(PeerKind::Bot))
                })
                .copied()
                .collect();
            if sync != p.sync_channels {
                return Err(format!(
                    "{id:?}'s channels that are not requests are {:?}, not {:?}",
                    p.sync_channels, sync
                ));
            }
        }
        let by_origin: OrdSet<(PeerId, DocId, Namespace)> = self
            .presence
            .keys()
            .map(|(d, n, p)| (p.clone(), d.clone(), n.clone()))
            .collect();
        if by_origin != self.presence_by_origin {
            return Err(format!(
                "the index of presence by origin is {:?}, not {:?}",
                self.presence_by_origin, by_origin
            ));
        }
        let kept = self
            .presence
            .iter()
            .filter(|(k, p)| self.held_by_us(k, p))
            .count();
        if kept != self.presence_kept {
            return Err(format!(
                "{} presence entries are held for peers that left, not {}",
                kept, self.presence_kept
            ));
        }
        // What is marked a store's write goes to a store, and only that:
        // the mark decides what the index below leaves out.
        let mislabelled = self
            .in_flight
            .iter()
            .find(|(_, f)| f.to_store != self.stores.contains(&f.channel));
        if let Some((b, f)) = mislabelled {
            return Err(format!(
                "{b} on {} is marked as a store's write: {}, but that channel is a store: {}",
                f.channel,
                f.to_store,
                self.stores.contains(&f.channel)
            ));
        }
        let mut expected: OrdMap<(ChannelId, DocId), crate::batches::Batches> = OrdMap::new();
        for (b, f) in self.in_flight.iter().filter(|(_, f)| !f.to_store) {
            index_batch(&mut expected, (f.channel, f.doc.clone()), *b);
        }
        if expected == self.in_flight_by {
            Ok(())
        } else {
            Err(format!(
                "the index of transmissions in flight is {:?}, not {:?}",
                self.in_flight_by, expected
            ))
        }
    }

    /// Whether this node holds `entry` for a peer that left.
    fn held_by_us(&self, key: &PresenceKey, entry: &Presence) -> bool {
        entry.via == self.config.peer && self.config.lasting_presence.contains(&key.1)
    }

    /// Keeps a presence entry (and indexes it by origin); the one it replaces.
    pub(crate) fn put_presence(&mut self, key: PresenceKey, entry: Presence) -> Option<Presence> {
        if self.held_by_us(&key, &entry) {
            self.presence_kept += 1;
        }
        self.presence_by_origin
            .insert((key.2.clone(), key.0.clone(), key.1.clone()));
        let replaced = self.presence.insert(key.clone(), entry);
        if replaced.as_ref().is_some_and(|r| self.held_by_us(&key, r)) {
            self.presence_kept = self.presence_kept.saturating_sub(1);
        }
        replaced
    }

    /// Drops a presence entry (and its index entry).
    pub(crate) fn take_presence(&mut self, key: &PresenceKey) -> Option<Presence> {
        let gone = self.presence.remove(key)?;
        self.presence_by_origin
            .remove(&(key.2.clone(), key.0.clone(), key.1.clone()));
        if self.held_by_us(key, &gone) {
            self.presence_kept = self.presence_kept.saturating_sub(1);
        }
        Some(gone)
    }

    /// This node becomes the holder of an entry whose peer left; the holder
    /// it had (`None`: no such entry).
    pub(crate) fn hold_presence(&mut self, key: &PresenceKey) -> Option<PeerId> {
        let us = self.config.peer.clone();
        let lasting = self.config.lasting_presence.contains(&key.1);
        let entry = self.presence.get_mut(key)?;
        let holder = std::mem::replace(&mut entry.via, us.clone());
        if lasting && holder != us {
            self.presence_kept += 1;
        }
        Some(holder)
    }

    /// The keys of the presence entries `origin` sent, in key order of
    /// (document, namespace).
    pub(crate) fn presence_from(&self, origin: &PeerId) -> Vec<PresenceKey> {
        let start = (origin.clone(), DocId::new(""), Namespace::new(""));
        self.presence_by_origin
            .range(start..)
            .take_while(|(p, _, _)| p == origin)
            .map(|(p, d, n)| (d.clone(), n.clone(), p.clone()))
            .collect()
    }

    /// The presence entries of one document, in key order.
    pub(crate) fn presence_of_doc<'a>(
        &'a self,
        doc: &'a DocId,
    ) -> impl Iterator<Item = (&'a PresenceKey, &'a Presence)> + 'a {
        let start = (doc.clone(), Namespace::new(""), PeerId::new(""));
        self.presence
            .range(start..)
            .take_while(move |((d, _, _), _)| d == doc)
    }

    /// Records a transmission in flight (and indexes it).
    pub(crate) fn add_in_flight(&mut self, batch: BatchId, f: InFlight) {
        if !f.to_store {
            index_batch(&mut self.in_flight_by, (f.channel, f.doc.clone()), batch);
        }
        self.in_flight.insert(batch, f);
    }

    /// Takes a transmission out of flight (and out of the index).
    pub(crate) fn take_in_flight(&mut self, batch: &BatchId) -> Option<InFlight> {
        let f = self.in_flight.remove(batch)?;
        if f.to_store {
            return Some(f);
        }
        let key = (f.channel, f.doc.clone());
        if let Some(batches) = self.in_flight_by.get_mut(&key) {
            if !batches.remove(*batch) {
                self.in_flight_by.remove(&key);
            }
        }
        Some(f)
    }

    /// The transmissions in flight on `channel` about `doc`, oldest batch first.
    pub(crate) fn in_flight_on<'a>(
        &'a self,
        channel: ChannelId,
        doc: &DocId,
    ) -> impl Iterator<Item = (BatchId, &'a InFlight)> + 'a {
        self.in_flight_by
            .get(&(channel, doc.clone()))
            .into_iter()
            .flat_map(|batches| batches.iter())
            .filter_map(|b| self.in_flight.get(&b).map(|f| (b, f)))
    }

    /// Number of in-flight transmissions awaiting an ack.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Figures for an operator's metrics, counted now (a walk over the
    /// model: for a scrape, not for every step).
    pub fn gauges(&self) -> Gauges {
        Gauges {
            documents: self.docs.len(),
            loading: self.docs.values().filter(|d| !d.is_ready()).count(),
            peers_connected: self
                .peers
                .values()
                .filter(|p| !p.channels.is_empty())
                .count(),
            in_flight: self.in_flight.len(),
            presence_entries: self.presence.len(),
            listeners: self.listeners.len(),
            remote_lag: self
                .peers
                .values()
                .filter(|p| p.dialed)
                .filter_map(|p| p.pull_target.map(|t| t.0.saturating_sub(p.cursor.pulled.0)))
                .sum(),
        }
    }

    /// Number of writes to stores awaiting their answer. Changes made while
    /// a document's write is out wait behind it (one write per document and
    /// store at a time): a host that closes should take these answers first.
    pub fn store_writes_in_flight(&self) -> usize {
        self.in_flight
            .values()
            .filter(|f| self.stores.contains(&f.channel))
            .count()
    }
}

/// Adds `batch` to the index of transmissions in flight under `key`.
fn index_batch(
    index: &mut OrdMap<(ChannelId, DocId), crate::batches::Batches>,
    key: (ChannelId, DocId),
    batch: BatchId,
) {
    match index.entry(key) {
        imbl::ordmap::Entry::Occupied(mut e) => e.get_mut().insert(batch),
        imbl::ordmap::Entry::Vacant(e) => {
            e.insert(crate::batches::Batches::one(batch));
        }
    }
}

/// What [`Model::gauges`] counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Documents known (in memory or not).
    pub documents: usize,
    /// Of which being read from a store.
    pub loading: usize,
    /// Peers with a live connection.
    pub peers_connected: usize,
    /// Transmissions awaiting an ack (to peers and stores).
    pub in_flight: usize,
    /// Presence entries, all rooms together.
    pub presence_entries: usize,
    /// Registered listeners.
    pub listeners: usize,
    /// Changes the dialed peers' feeds announced and we have not pulled.
    pub remote_lag: u64,
}
