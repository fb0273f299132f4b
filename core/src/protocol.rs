//! The native protocol: what nodes (and stores) say to each other.
//!
//! Encoded with postcard, which is not self-describing, so the protocol
//! evolves by these rules (see ARCHITECTURE.md, "How the protocol evolves"):
//! a new message is a new trailing variant of [`Message`], sent only on
//! channels whose negotiated version has it; a message is never changed
//! (a changed one is a new variant); the handshake negotiates the highest
//! version both sides speak; each message in a frame is length-prefixed, so
//! a message kind a node does not know is answered `unsupported` and the
//! connection goes on.

use crate::ids::{BatchId, Clock, DocId, ListenerId, Namespace, PeerId};
use crate::version::VersionVector;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// The highest protocol version this build speaks.
///
/// - 1: the first protocol.
/// - 2: adds `list-docs` / `doc-list` and the `Unsupported` error code.
/// - 3: adds `reauth` (a new token on a live connection).
/// - 4: adds `going-away` (a server that stops asks its clients to move on).
pub const PROTOCOL_VERSION: u32 = 4;

/// Set in a `listener-pull`'s `limit`: its strands carry each document's
/// versions and no data (a client that only needs to know what changed, a
/// webhook). A node that predates it reads a huge limit and sends data.
pub const PULL_VERSIONS_ONLY: u32 = 1 << 31;

/// The lowest protocol version this build still speaks.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// Opaque document bytes (a snapshot or a delta), cheap to clone.
///
/// Serialized as one byte string: postcard would spend up to two bytes per
/// byte on a plain `Vec<u8>`. Held as an `Arc<Vec<u8>>` so that wrapping an
/// export of hundreds of megabytes does not copy it.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Payload(Arc<Vec<u8>>);

impl Payload {
    /// Wraps bytes (a `Vec` is taken as it is, without a copy).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Arc::new(bytes.into()))
    }
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// A handle that finds these bytes again while anyone still holds
    /// them, and does not keep them alive itself.
    pub fn downgrade(&self) -> WeakPayload {
        WeakPayload(Arc::downgrade(&self.0))
    }
}

/// Bytes of a [`Payload`] that may already be gone (see
/// [`Payload::downgrade`]).
#[derive(Clone, Debug)]
pub struct WeakPayload(std::sync::Weak<Vec<u8>>);

impl WeakPayload {
    /// The bytes, if someone still holds them.
    pub fn upgrade(&self) -> Option<Payload> {
        self.0.upgrade().map(Payload)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}B", self.0.len())
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Payload;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload::new(v))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload::new(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Payload, A::Error> {
                // Self-describing formats (JSON traces) write bytes as a list.
                let mut out = Vec::new();
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Payload::new(out))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// What kind of node is on the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PeerKind {
    /// An application used by a person.
    User,
    /// An automated client.
    Bot,
    /// A server or hub.
    Service,
}

/// First message on a network channel, from the side that connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Who is speaking.
    pub peer: PeerId,
    /// A display name.
    pub name: String,
    /// What kind of node.
    pub kind: PeerKind,
    /// The protocol version spoken; must equal ours.
    pub protocol: u32,
    /// A shared secret, when the other side asks for one.
    pub token: Option<String>,
    /// The speaker's change clock now.
    pub clock: Clock,
}

/// The answer to a [`Hello`] that was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Who is answering.
    pub peer: PeerId,
    /// A display name.
    pub name: String,
    /// What kind of node.
    pub kind: PeerKind,
    /// The protocol version spoken.
    pub protocol: u32,
    /// The answerer's change clock now.
    pub clock: Clock,
}

/// The body of a sync-response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The requester already has everything we have (or more).
    UpToDate,
    /// The whole document.
    Snapshot(Payload),
    /// The changes the requester lacks.
    Delta(Payload),
    /// We do not have the document (and no store does).
    Unavailable,
}

/// How a receiver took a data transmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AckStatus {
    /// Applied and durable (or applied, on a node without a store).
    Ok,
    /// The sender may not write this document.
    PermissionDenied,
    /// The bytes could not be imported.
    Invalid,
    /// The transmission was larger than the receiver accepts.
    TooLarge,
    /// The sender sends too fast; try later.
    RateLimited,
    /// Applied in part: it depends on changes the receiver does not have yet.
    MissingDependencies,
    /// The document was deleted; its tombstone refuses new data.
    Deleted,
}

/// Error codes carried by [`Message::Error`]. New codes come with new
/// protocol versions: match with a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The peer speaks another protocol version.
    VersionMismatch,
    /// The token was missing or wrong.
    BadToken,
    /// A message that needs a handshake arrived before it.
    NotEstablished,
    /// A frame could not be decoded.
    MalformedFrame,
    /// A message was too large or held too many elements.
    TooLarge,
    /// A document id was refused (empty, too long, path-like).
    BadDocId,
    /// The listener id is not registered here.
    UnknownListener,
    /// The peer may not do what it asked.
    PermissionDenied,
    /// A second hello on an established channel.
    AlreadyEstablished,
    /// A message kind this node does not know (protocol 2).
    Unsupported,
    /// A quota of the operator's refused it (protocol 4); the message says
    /// when to try again ("retry after N ms").
    RateLimited,
}

/// Descriptive metadata of a document (seed 000's sync unit).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DocMeta {
    /// Application document type ("text", "todo", ...); empty if none.
    pub doc_type: String,
    /// Scope ("global", "local"); empty if none.
    pub scope: String,
    /// Branch ("main"); empty if none.
    pub branch: String,
}

/// Chooses documents. An empty list, or one holding `*`, matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Filter {
    /// Document ids.
    #[serde(deserialize_with = "crate::budget::vec")]
    pub docs: Vec<DocId>,
    /// Document types.
    #[serde(deserialize_with = "crate::budget::vec")]
    pub types: Vec<String>,
    /// Scopes.
    #[serde(deserialize_with = "crate::budget::vec")]
    pub scopes: Vec<String>,
    /// Branches.
    #[serde(deserialize_with = "crate::budget::vec")]
    pub branches: Vec<String>,
}

impl Filter {
    /// A filter that matches every document.
    pub fn all() -> Self {
        Self::default()
    }

    /// A filter for a list of document ids.
    pub fn docs(docs: impl IntoIterator<Item = DocId>) -> Self {
        Self {
            docs: docs.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Whether a document passes the filter.
    pub fn matches(&self, doc: &DocId, meta: &DocMeta) -> bool {
        fn any<T: PartialEq>(list: &[T], v: &T, is_star: impl Fn(&T) -> bool) -> bool {
            list.is_empty() || list.iter().any(|x| is_star(x) || x == v)
        }
        any(&self.docs, doc, |d| d.as_str() == "*")
            && any(&self.types, &meta.doc_type, |s| s == "*")
            && any(&self.scopes, &meta.scope, |s| s == "*")
            && any(&self.branches, &meta.branch, |s| s == "*")
    }

    /// Total number of entries, for bounds checks.
    pub fn len(&self) -> usize {
        self.docs.len() + self.types.len() + self.scopes.len() + self.branches.len()
    }

    /// Whether the filter has no entries (matches all).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A document named in a directory listing or announcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocInfo {
    /// The document.
    pub doc: DocId,
    /// Its metadata.
    pub meta: DocMeta,
}

/// A document changed since a clock, as answered to `changes-since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedDoc {
    /// The document.
    pub doc: DocId,
    /// The answerer's version of it.
    pub version: VersionVector,
    /// The answerer's clock of its last change.
    pub clock: Clock,
}

/// Presence data from one peer on one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ephemeral {
    /// The document the presence is about.
    pub doc: DocId,
    /// The namespace ("cursor", ...).
    pub namespace: Namespace,
    /// The peer the data belongs to.
    pub origin: PeerId,
    /// How many more times it may be relayed.
    pub hops: u8,
    /// Lifetime in milliseconds after arrival.
    pub ttl_ms: u32,
    /// Application bytes; empty means "cleared".
    pub data: Payload,
}

/// Per-document deltas since a listener's acknowledged version (seed 000).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Strand {
    /// The document.
    pub doc: DocId,
    /// Its metadata.
    pub meta: DocMeta,
    /// The version the delta starts from.
    pub since: VersionVector,
    /// The delta (or snapshot when `since` is empty).
    pub data: Payload,
    /// The version after applying the delta. Empty (which no document's
    /// strand can be, as a strand is sent only for a version past the
    /// acknowledged one): the document was deleted, and `data` is empty;
    /// acknowledging it (status `Ok`) makes the listener forget it.
    pub version: VersionVector,
    /// The sender's clock of the document's last change.
    pub clock: Clock,
}

/// How one pushed strand was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RevisionStatus {
    /// Applied (and durable where a store exists).
    Ok,
    /// Applied in part; the rest waits for missing changes.
    MissingDependencies,
    /// The pusher may not write (or create) the document.
    Denied,
    /// The data could not be imported.
    Invalid,
}

/// A revision reached for a document, or acknowledged by a listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// The document.
    pub doc: DocId,
    /// The version reached (for push) or applied (for acknowledge).
    pub version: VersionVector,
    /// The clock of that version, where known.
    pub clock: Clock,
    /// How it went.
    pub status: RevisionStatus,
}

/// A document in a listing, with its size in operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedDoc {
    /// The document.
    pub doc: DocId,
    /// Its metadata.
    pub meta: DocMeta,
    /// The lister's version of it (its size: `version.total()` operations).
    pub version: VersionVector,
    /// The lister's clock of its last change.
    pub clock: Clock,
}

/// Whether a delete was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeleteOutcome {
    /// The document is gone and tombstoned.
    Deleted,
    /// The request was refused (not permitted, or unknown document).
    Ignored,
}

/// One protocol message. A frame carries one or more, never nested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Opens a network channel.
    Hello(Hello),
    /// Accepts a hello.
    Welcome(Welcome),
    /// "This is what I have of `doc`; send me what I lack." Subscribes the sender.
    SyncRequest {
        /// The document.
        doc: DocId,
        /// What the requester has.
        version: VersionVector,
        /// Whether the answerer should ask back once (never bidirectionally).
        bidirectional: bool,
    },
    /// The answer to a sync-request.
    SyncResponse {
        /// The document.
        doc: DocId,
        /// Names the transmission for the receiver's ack (data replies only).
        batch: BatchId,
        /// What is sent.
        reply: Reply,
        /// The answerer's version.
        version: VersionVector,
    },
    /// A live change to a subscribed document.
    Update {
        /// The document.
        doc: DocId,
        /// Names the transmission for the receiver's ack.
        batch: BatchId,
        /// The delta (or a snapshot when the receiver had nothing).
        data: Payload,
        /// The sender's version after the change.
        version: VersionVector,
    },
    /// Acknowledges a data transmission once it is durable.
    Ack {
        /// The transmission.
        batch: BatchId,
        /// How it was taken.
        status: AckStatus,
        /// The receiver's clock for it, when stored.
        clock: Option<Clock>,
    },
    /// Asks to be told of new documents matching a filter.
    Subscribe {
        /// Which documents.
        filter: Filter,
    },
    /// Withdraws a subscription filter.
    Unsubscribe {
        /// The filter given before.
        filter: Filter,
    },
    /// "What changed after `clock` in your feed?"
    ChangesSince {
        /// The last clock of the answerer's feed the asker has pulled.
        clock: Clock,
        /// Which documents the asker cares about.
        filter: Filter,
    },
    /// The answer to changes-since.
    Changes {
        /// Changed documents in clock order.
        #[serde(deserialize_with = "crate::budget::vec")]
        docs: Vec<ChangedDoc>,
        /// The feed position this answer covers up to.
        up_to: Clock,
        /// Whether more changes follow (ask again from `up_to`).
        more: bool,
    },
    /// "Which documents do you have?"
    DirectoryRequest {
        /// Which documents.
        filter: Filter,
    },
    /// The visible documents matching a directory request.
    DirectoryResponse {
        /// The documents.
        #[serde(deserialize_with = "crate::budget::vec")]
        docs: Vec<DocInfo>,
    },
    /// An unsolicited announcement of documents.
    NewDocs {
        /// The documents.
        #[serde(deserialize_with = "crate::budget::vec")]
        docs: Vec<DocInfo>,
    },
    /// Asks to delete a document everywhere.
    Delete {
        /// The document.
        doc: DocId,
    },
    /// The answer to a delete.
    DeleteResult {
        /// The document.
        doc: DocId,
        /// Whether it was deleted.
        outcome: DeleteOutcome,
    },
    /// Presence data.
    Ephemeral(Ephemeral),
    /// Something went wrong; the channel may be closed after it.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// A sentence for a person.
        message: String,
    },
    /// Registers (or re-registers, resetting it) a pull-responder listener.
    ListenerRegister {
        /// Which documents the listener wants.
        filter: Filter,
        /// Re-register under this id; a new id is made when absent.
        id: Option<ListenerId>,
    },
    /// The id of a registered listener.
    ListenerRegistered {
        /// The listener.
        id: ListenerId,
    },
    /// Pulls strands for a listener.
    ListenerPull {
        /// The listener.
        id: ListenerId,
        /// At most this many strands; with [`PULL_VERSIONS_ONLY`] set,
        /// strands without data.
        limit: u32,
    },
    /// The answer to a pull.
    Strands {
        /// The listener.
        id: ListenerId,
        /// The strands.
        #[serde(deserialize_with = "crate::budget::vec")]
        strands: Vec<Strand>,
        /// Whether more strands are waiting.
        more: bool,
    },
    /// Moves a listener's cursor for what was applied.
    ListenerAck {
        /// The listener.
        id: ListenerId,
        /// What was applied (statuses other than Ok are not acknowledged).
        #[serde(deserialize_with = "crate::budget::vec")]
        revisions: Vec<Revision>,
    },
    /// The answer to a listener acknowledge.
    ListenerAcked {
        /// The listener.
        id: ListenerId,
        /// How many revisions moved the cursor.
        accepted: u32,
    },
    /// Pushes strands (seed 000's pushUpdates).
    Push {
        /// The strands.
        #[serde(deserialize_with = "crate::budget::vec")]
        strands: Vec<Strand>,
    },
    /// One revision per pushed strand, in order.
    PushResult {
        /// The revisions.
        #[serde(deserialize_with = "crate::budget::vec")]
        revisions: Vec<Revision>,
    },
    /// "Which documents may I read here, and how large are they?" (protocol 2)
    ListDocs {
        /// Which documents.
        filter: Filter,
        /// Start after this document id (paging); `None` from the start.
        after: Option<DocId>,
    },
    /// The answer to list-docs, in id order (protocol 2).
    DocList {
        /// The documents.
        #[serde(deserialize_with = "crate::budget::vec")]
        docs: Vec<ListedDoc>,
        /// Whether more follow (ask again after the last one).
        more: bool,
    },
    /// "From now on, judge me by this token" (protocol 3): a client
    /// refreshes its credential on a live connection. New rights apply at
    /// once; a refused token is answered `bad-token` and the connection
    /// keeps the credential it had (until that expires).
    Reauth {
        /// The new token.
        token: String,
    },
    /// "I am stopping: go elsewhere" (protocol 4). A server that drains
    /// (a rolling restart) sends it to every client; a client closes the
    /// connection and dials again after `retry_after_ms` (0: at once),
    /// landing on another server when it was given several. What it sent
    /// and was not acknowledged is offered again there, as after any
    /// reconnect.
    GoingAway {
        /// Why, for the logs.
        reason: String,
        /// When to dial again, in milliseconds.
        retry_after_ms: u64,
    },
}

/// How many kinds of [`Message`] this build knows (its variant count).
pub const MESSAGE_KINDS: u32 = 29;

impl Message {
    /// The protocol version that added this message (see [`PROTOCOL_VERSION`]).
    pub fn since_protocol(&self) -> u32 {
        match self {
            Message::ListDocs { .. } | Message::DocList { .. } => 2,
            Message::Reauth { .. } => 3,
            Message::GoingAway { .. } => 4,
            Message::Error {
                code: ErrorCode::RateLimited,
                ..
            } => 4,
            Message::Error {
                code: ErrorCode::Unsupported,
                ..
            } => 2,
            _ => 1,
        }
    }

    /// The message's name, as traces print it.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Welcome(_) => "welcome",
            Message::SyncRequest { .. } => "sync-request",
            Message::SyncResponse { .. } => "sync-response",
            Message::Update { .. } => "update",
            Message::Ack { .. } => "ack",
            Message::Subscribe { .. } => "subscribe",
            Message::Unsubscribe { .. } => "unsubscribe",
            Message::ChangesSince { .. } => "changes-since",
            Message::Changes { .. } => "changes",
            Message::DirectoryRequest { .. } => "directory-request",
            Message::DirectoryResponse { .. } => "directory-response",
            Message::NewDocs { .. } => "new-docs",
            Message::Delete { .. } => "delete",
            Message::DeleteResult { .. } => "delete-result",
            Message::Ephemeral(_) => "ephemeral",
            Message::Error { .. } => "error",
            Message::ListenerRegister { .. } => "listener-register",
            Message::ListenerRegistered { .. } => "listener-registered",
            Message::ListenerPull { .. } => "listener-pull",
            Message::Strands { .. } => "strands",
            Message::ListenerAck { .. } => "listener-ack",
            Message::ListenerAcked { .. } => "listener-acked",
            Message::Push { .. } => "push",
            Message::PushResult { .. } => "push-result",
            Message::ListDocs { .. } => "list-docs",
            Message::DocList { .. } => "doc-list",
            Message::Reauth { .. } => "reauth",
            Message::GoingAway { .. } => "going-away",
        }
    }

    /// The protocol version that introduced this message.
    pub fn since_version(&self) -> u32 {
        match self {
            Message::ListDocs { .. } | Message::DocList { .. } => 2,
            Message::Reauth { .. } => 3,
            Message::GoingAway { .. } => 4,
            _ => 1,
        }
    }

    /// Whether the message may arrive before the handshake.
    pub fn allowed_before_handshake(&self) -> bool {
        matches!(
            self,
            Message::Hello(_) | Message::Welcome(_) | Message::Error { .. }
        )
    }
}
