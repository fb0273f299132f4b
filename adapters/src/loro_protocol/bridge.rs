//! One Loro-protocol connection, seen by the node as a native peer.
//!
//! The bridge decides nothing about documents: it translates. A join
//! becomes a native `hello` (once, with the join's auth as the token) and a
//! `sync-request`; the answer becomes `JoinResponseOk` and the data the
//! client lacks; a client's update becomes a native `update`, and its
//! native `ack` (sent by the node once the change is durable) the Loro
//! `Ack`. The node's permission checks, storage and relaying apply to Loro
//! clients exactly as to native ones. No I/O and no clock of its own: time
//! arrives with the inputs, so the bridge is tested without sockets.

use super::codec::{
    Body, Crdt, JoinErrorCode, LoroBatchId, LoroMessage, RoomErrorCode, UpdateStatus, MAX_ROOM_ID,
};
use super::owed::{AfterJoin, OwedAcks};
use super::presence::MemberPresence;
use crate::reassembly::{Reassembly, ReassemblyLimits, Refused, SharedBudget};
use docweave_core::{
    Access, AckStatus, BatchId, Clock, DocId, Ephemeral, Filter, Hello, Message, Namespace,
    Payload, PeerId, PeerKind, Reply, Rules, VersionVector, PROTOCOL_VERSION,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Chooses the peer id of a connection from the token its first join
/// presented (identity comes from credentials, not from the client).
pub type Identity = Arc<dyn Fn(Option<&str>) -> PeerId + Send + Sync>;

/// Whether the server takes a token (`None`: no token given), or why not
/// (said to the client, so no secret in it).
pub type TokenCheck = Arc<dyn Fn(Option<&str>) -> Result<(), String> + Send + Sync>;

/// What the peer a token names may do with a document (the node's rules,
/// or the rights a signed token carries).
pub type AccessCheck = Arc<dyn Fn(&PeerId, Option<&str>, &DocId) -> Access + Send + Sync>;

/// What a bridge allows and how it speaks.
#[derive(Clone)]
pub struct BridgeOptions {
    /// The peer id for a token.
    pub identity: Identity,
    /// Whether the node will take a join's token. A join whose token it
    /// would refuse gets `JoinError auth_failed` and the connection stays
    /// (its other joins go on); the node would close the whole connection.
    pub accepts: TokenCheck,
    /// What a joining peer may do with the room's document (for the
    /// `read`/`write` answer to a join; the node still checks every
    /// message itself).
    pub access: AccessCheck,
    /// Largest update accepted from a client (reassembled), in bytes.
    pub max_update: usize,
    /// Largest fragment sent to a client.
    pub fragment: usize,
    /// A fragmented update not complete this long after its header is
    /// dropped (and answered `fragment_timeout`), however its fragments come.
    pub fragment_timeout: Duration,
    /// Bytes of fragments held for all connections of a server together.
    pub fragment_budget: SharedBudget,
    /// Rooms one connection may be in at once.
    pub max_rooms: usize,
    /// Client batches waiting for their acknowledgement at once.
    pub max_in_flight: usize,
    /// A join the node has not answered this long is asked again.
    pub request_timeout: Duration,
    /// A client batch the node has not acknowledged this long is given up
    /// on: the client is asked to rejoin, which sends what the node lacks
    /// (a Loro client never sends a batch twice by itself).
    pub ack_timeout: Duration,
    /// Lifetime of presence a client sends, in milliseconds.
    pub presence_ttl_ms: u32,
    /// Lifetime of persisted presence (`%EPS`) a client sends, in
    /// milliseconds: the server keeps it this long after its last change,
    /// after the client left too when the node keeps the namespace
    /// ([`PERSISTED_PRESENCE_NAMESPACE`] in `Config::lasting_presence`).
    pub persisted_presence_ttl_ms: u32,
    /// Figures of all connections sharing these options, for metrics.
    pub figures: Arc<LoroFigures>,
}

/// What every Loro connection of a server did, together (for metrics).
#[derive(Debug, Default)]
pub struct LoroFigures {
    /// Rooms joined now (or being joined).
    pub rooms: AtomicUsize,
    /// Joins answered `JoinResponseOk`.
    pub joined: AtomicU64,
    /// Joins answered `JoinError`.
    pub refused: AtomicU64,
}

impl BridgeOptions {
    /// Defaults around an identity and rules.
    pub fn new(identity: Identity, rules: Rules) -> Self {
        Self {
            identity,
            accepts: Arc::new(|_| Ok(())),
            access: Arc::new(move |peer: &PeerId, _: Option<&str>, doc: &DocId| {
                rules.access(peer, doc)
            }),
            max_update: 512 * 1024 * 1024,
            fragment: 240 * 1024,
            fragment_timeout: Duration::from_secs(10),
            fragment_budget: SharedBudget::new(512 * 1024 * 1024),
            max_rooms: 10_000,
            max_in_flight: 4_096,
            request_timeout: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(30),
            presence_ttl_ms: 30_000,
            persisted_presence_ttl_ms: 300_000,
            figures: Arc::default(),
        }
    }
}

/// What the bridge wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send this to the Loro client.
    ToClient(LoroMessage),
    /// Send this to the node.
    ToNode(Message),
    /// Close the connection, saying why.
    Close(String),
    /// The node's live update `batch` was relayed: acknowledge it to the
    /// node once the message carrying it has left for the client. The node
    /// holds the room's next changes until then and sends them as one
    /// update, so a busy room costs a reader one import per message.
    Relayed(BatchId),
}

/// Where the connection's identity stands.
enum Identified {
    /// No join yet.
    Nobody,
    /// `hello` sent; messages for the node wait for `welcome`.
    Asked {
        token: Option<String>,
        waiting: Vec<Message>,
    },
    /// The node accepted it.
    Welcomed { token: Option<String> },
}

#[derive(Debug, Default)]
struct Room {
    /// A join waits for the node's answer.
    joining: bool,
    /// The client may write.
    write: bool,
    /// The node had no such document when the client joined: its data is
    /// asked for once the node announces it.
    absent: bool,
    /// While joining: when the node was asked, and from what version. A
    /// request the node never answers (its answer's data could not be read
    /// back from the store, say) is asked again, as a native peer does.
    asked: Option<(u64, VersionVector)>,
}

/// A client batch split into native updates, acknowledged once all are.
struct Batch {
    crdt: Crdt,
    room: String,
    id: LoroBatchId,
    remaining: usize,
    worst: UpdateStatus,
    /// The node kept part of it, pending changes it does not have.
    behind: bool,
    /// When it went to the node (bridge milliseconds).
    sent_at: u64,
}

/// A fragmented update's key: its room and the client's batch id.
type FragmentKey = (Crdt, String, LoroBatchId);

/// Fragmented updates one connection gathers at once.
const MAX_GATHERING: usize = 8;

/// A presence room one connection joined.
struct PresenceRoom {
    write: bool,
    member: MemberPresence,
}

/// The largest presence state of one member in one room.
const PRESENCE_STATE_MAX: usize = 64 * 1024;
/// The presence state one connection may have the node hold, all rooms together.
const PRESENCE_CONNECTION_MAX: usize = 1024 * 1024;

/// The namespace native presence from Loro clients travels under.
pub const PRESENCE_NAMESPACE: &str = "loro-eph";
/// The namespace of persisted presence (`%EPS`).
pub const PERSISTED_PRESENCE_NAMESPACE: &str = "loro-eps";

/// The Loro answer to a refused fragment.
fn fragment_refusal(e: &Refused) -> UpdateStatus {
    match e {
        Refused::TooLarge { .. } | Refused::TooMuchHeld { .. } => UpdateStatus::PayloadTooLarge,
        Refused::Busy | Refused::TooMany(_) => UpdateStatus::RateLimited,
        Refused::Malformed(_) => UpdateStatus::InvalidUpdate,
    }
}

/// One connection's translation state.
pub struct Bridge {
    o: BridgeOptions,
    who: Identified,
    peer: Option<PeerId>,
    rooms: BTreeMap<String, Room>,
    /// Presence rooms joined: whether the member may write, and its state.
    presence: BTreeMap<(Crdt, String), PresenceRoom>,
    /// Bytes of the members' states in `presence`, all rooms together.
    presence_held: usize,
    next_native: u64,
    native: BTreeMap<u64, u64>,
    batches: BTreeMap<u64, Batch>,
    next_out: u64,
    gathering: Reassembly<FragmentKey>,
    /// Time zero of the bridge's milliseconds (for its fragments' deadlines).
    epoch: Instant,
    /// Documents followed by a subscription filter: presence rooms (the
    /// node relays presence to a document's followers) and rooms whose
    /// document did not exist yet (the node sends it once written).
    watched: BTreeSet<DocId>,
    /// Batches answered only once a rejoin made their changes durable.
    owed: OwedAcks,
    /// The time of the last input (bridge milliseconds).
    now_ms: u64,
}

impl Drop for Bridge {
    /// The connection's rooms are left with it.
    fn drop(&mut self) {
        self.o
            .figures
            .rooms
            .fetch_sub(self.rooms.len(), Ordering::Relaxed);
    }
}

/// How a close for a server going away begins: the WebSocket close frame
/// then carries code 1001 ("going away") instead of 1000.
pub const GOING_AWAY: &str = crate::transport::GOING_AWAY;

/// Most documents in the connection's subscription filter (the node's
/// bound on filter entries per peer).
const MAX_WATCHED: usize = 1_000;

fn message(crdt: Crdt, room: &str, body: Body) -> LoroMessage {
    LoroMessage {
        crdt,
        room: room.to_string(),
        body,
    }
}

fn ack_status(s: AckStatus) -> UpdateStatus {
    match s {
        AckStatus::Ok | AckStatus::MissingDependencies => UpdateStatus::Ok,
        AckStatus::PermissionDenied | AckStatus::Deleted => UpdateStatus::PermissionDenied,
        AckStatus::Invalid => UpdateStatus::InvalidUpdate,
        AckStatus::TooLarge => UpdateStatus::PayloadTooLarge,
        AckStatus::RateLimited => UpdateStatus::RateLimited,
    }
}

/// What a client holds for sure after sending `update`: the changes in
/// it. Its whole version is not known here, but this much keeps the node
/// from sending the client its own changes back. Empty when the blob does
/// not decode (the node then refuses it anyway) or is large: reading its
/// metadata decodes its changes, which here would hold up the connection's
/// task, and a large update is rare enough to be sent back once.
/// The bytes are the client's: a panic in Loro's decoder counts as "does
/// not decode".
pub fn sent_version(update: &[u8]) -> VersionVector {
    const LARGEST: usize = 64 * 1024;
    if update.len() > LARGEST {
        return VersionVector::new();
    }
    let meta = crate::contained("an update's metadata", || {
        loro::LoroDoc::decode_import_blob_meta(update, false)
    });
    match meta {
        Ok(Ok(meta)) => VersionVector::from_entries(
            meta.partial_end_vv
                .iter()
                .filter_map(|(peer, counter)| Some((*peer, u64::try_from(*counter).ok()?))),
        ),
        _ => VersionVector::new(),
    }
}

/// A Loro version vector (`VersionVector.encode()`) as the node's; `None`
/// when the (client's) bytes are not one, also when Loro panics on them.
pub fn version_from_loro(bytes: &[u8]) -> Option<VersionVector> {
    if bytes.is_empty() {
        return Some(VersionVector::new());
    }
    let vv = crate::contained("a version vector", || loro::VersionVector::decode(bytes))
        .ok()?
        .ok()?;
    let mut entries = Vec::new();
    for (peer, counter) in vv.iter() {
        entries.push((*peer, u64::try_from(*counter).ok()?));
    }
    Some(VersionVector::from_entries(entries))
}

/// The node's version vector as Loro encodes one.
pub fn version_to_loro(v: &VersionVector) -> Vec<u8> {
    let mut vv = loro::VersionVector::new();
    for (actor, next) in v.iter() {
        vv.insert(actor, i32::try_from(next).unwrap_or(i32::MAX));
    }
    vv.encode()
}

impl Bridge {
    /// The token this connection's joins presented, once one was taken.
    fn token(&self) -> Option<&str> {
        match &self.who {
            Identified::Nobody => None,
            Identified::Asked { token, .. } | Identified::Welcomed { token } => token.as_deref(),
        }
    }

    /// A bridge for a new connection.
    pub fn new(o: BridgeOptions) -> Self {
        let gathering = Reassembly::new(ReassemblyLimits {
            max_message: o.max_update,
            max_pending: MAX_GATHERING,
            max_held: o.max_update,
            deadline_ms: o.fragment_timeout.as_millis() as u64,
        })
        .with_budget(o.fragment_budget.clone());
        Self {
            o,
            who: Identified::Nobody,
            peer: None,
            rooms: BTreeMap::new(),
            presence: BTreeMap::new(),
            presence_held: 0,
            next_native: 1,
            native: BTreeMap::new(),
            batches: BTreeMap::new(),
            next_out: 1,
            gathering,
            epoch: Instant::now(),
            watched: BTreeSet::new(),
            owed: OwedAcks::default(),
            now_ms: 0,
        }
    }

    /// Follows (or stops following) `doc` through the subscription filter.
    fn watch(&mut self, out: &mut Vec<Effect>, doc: &DocId, on: bool) {
        let room = doc.as_str().to_string();
        let used = self.rooms.get(&room).is_some_and(|r| r.absent)
            || self.presence.keys().any(|(_, r)| *r == room);
        let on = on || used;
        if on == self.watched.contains(doc) || (on && self.watched.len() >= MAX_WATCHED) {
            return;
        }
        self.rewatch(out, doc, on);
    }

    /// Changes the filter (or renews it: the node answers a new filter with
    /// the live presence of its documents, which a new presence member needs).
    fn rewatch(&mut self, out: &mut Vec<Effect>, doc: &DocId, on: bool) {
        let old = Filter::docs(self.watched.iter().cloned());
        if on {
            self.watched.insert(doc.clone());
        } else {
            self.watched.remove(doc);
        }
        if !old.docs.is_empty() {
            self.for_node(out, Message::Unsubscribe { filter: old });
        }
        if !self.watched.is_empty() {
            let filter = Filter::docs(self.watched.iter().cloned());
            self.for_node(out, Message::Subscribe { filter });
        }
    }

    /// The peer id the connection speaks as, once it joined.
    pub fn peer(&self) -> Option<&PeerId> {
        self.peer.as_ref()
    }

    fn for_node(&mut self, out: &mut Vec<Effect>, m: Message) {
        match &mut self.who {
            Identified::Asked { waiting, .. } => waiting.push(m),
            _ => out.push(Effect::ToNode(m)),
        }
    }

    /// A message from the client.
    pub fn from_client(&mut self, m: LoroMessage, now: Instant) -> Vec<Effect> {
        let rooms = self.rooms.len();
        let out = self.handle_client(m, now);
        self.count(rooms, &out);
        out
    }

    fn handle_client(&mut self, m: LoroMessage, now: Instant) -> Vec<Effect> {
        self.now_ms = self.ms(now);
        let mut out = Vec::new();
        let LoroMessage { crdt, room, body } = m;
        match body {
            Body::JoinRequest { auth, version } => self.join(&mut out, crdt, room, auth, version),
            Body::DocUpdate { updates, batch } => {
                self.updates(&mut out, crdt, &room, updates, batch)
            }
            Body::FragmentHeader {
                batch,
                count,
                total,
            } => self.fragment_header(&mut out, (crdt, room, batch), count, total, now),
            Body::Fragment {
                batch,
                index,
                bytes,
            } => self.fragment(&mut out, (crdt, room, batch), index, bytes, now),
            Body::Leave => self.leave(&mut out, crdt, &room),
            Body::Ack { batch, status } => {
                if status != UpdateStatus::Ok {
                    tracing::warn!(
                        "loro: the client could not take batch {batch:02x?} of {crdt}{room}: {status:?}"
                    );
                }
            }
            Body::JoinResponseOk { .. } | Body::JoinError { .. } | Body::RoomError { .. } => {
                tracing::debug!("loro: ignored a server message sent by a client");
            }
        }
        out
    }

    fn join_error(out: &mut Vec<Effect>, crdt: Crdt, room: &str, code: JoinErrorCode, why: String) {
        let app_code = (code == JoinErrorCode::AppError).then(|| "refused".to_string());
        out.push(Effect::ToClient(message(
            crdt,
            room,
            Body::JoinError {
                code,
                message: why,
                app_code,
            },
        )));
    }

    /// A client's join: checked, its peer identified, then answered at once
    /// (a presence room) or asked of the node (a document room).
    fn join(
        &mut self,
        out: &mut Vec<Effect>,
        crdt: Crdt,
        room: String,
        auth: Vec<u8>,
        version: Vec<u8>,
    ) {
        let Some((doc, token)) = Self::join_target(out, crdt, &room, auth) else {
            return;
        };
        let Some(peer) = self.join_identity(out, crdt, &room, token) else {
            return;
        };
        let access = (self.o.access)(&peer, self.token(), &doc);
        if !access.read {
            let why = format!("{peer} may not read {doc}");
            return Self::join_error(out, crdt, &room, JoinErrorCode::AppError, why);
        }
        let known =
            self.rooms.contains_key(&room) || self.presence.contains_key(&(crdt, room.clone()));
        if !known && self.rooms.len() + self.presence.len() >= self.o.max_rooms {
            let why = format!("at most {} rooms per connection", self.o.max_rooms);
            return Self::join_error(out, crdt, &room, JoinErrorCode::AppError, why);
        }
        if crdt != Crdt::Loro {
            return self.join_presence(out, crdt, room, doc, access.write);
        }
        self.join_document(out, room, doc, access.write, version);
    }

    /// What a join names: its room's document and its token (`None` when
    /// empty); `None` when the join is refused (the client is told why).
    fn join_target(
        out: &mut Vec<Effect>,
        crdt: Crdt,
        room: &str,
        auth: Vec<u8>,
    ) -> Option<(DocId, Option<String>)> {
        if let Crdt::Other(_) = crdt {
            let why = format!(
                "docweave serves Loro documents (%LOR) and Loro presence (%EPH, %EPS); {crdt} rooms are not supported"
            );
            Self::join_error(out, crdt, room, JoinErrorCode::Unknown, why);
            return None;
        }
        if room.len() > MAX_ROOM_ID {
            let why = format!(
                "the room id is {} bytes; the Loro protocol allows at most {MAX_ROOM_ID}",
                room.len()
            );
            Self::join_error(out, crdt, room, JoinErrorCode::AppError, why);
            return None;
        }
        let doc = match DocId::parse(room) {
            Ok(d) => d,
            Err(e) => {
                let why = format!("{room:?} is not a document id: {e}");
                Self::join_error(out, crdt, room, JoinErrorCode::AppError, why);
                return None;
            }
        };
        let Ok(token) = String::from_utf8(auth) else {
            let why = "the auth payload must be a UTF-8 token".to_string();
            Self::join_error(out, crdt, room, JoinErrorCode::AuthFailed, why);
            return None;
        };
        let token = (!token.is_empty()).then_some(token);
        Some((doc, token))
    }

    /// The peer a join speaks as: the first join's token names it (and the
    /// node gets `hello`), another token of the same identity later is a
    /// refresh; `None` when the join is refused (the client is told why).
    fn join_identity(
        &mut self,
        out: &mut Vec<Effect>,
        crdt: Crdt,
        room: &str,
        token: Option<String>,
    ) -> Option<PeerId> {
        let mut refresh = None;
        let peer = match (&self.who, &self.peer) {
            (Identified::Nobody, _) | (_, None) => {
                if let Err(why) = (self.o.accepts)(token.as_deref()) {
                    Self::join_error(out, crdt, room, JoinErrorCode::AuthFailed, why);
                    return None;
                }
                let peer = (self.o.identity)(token.as_deref());
                self.peer = Some(peer.clone());
                self.who = Identified::Asked {
                    token: token.clone(),
                    waiting: Vec::new(),
                };
                out.push(Effect::ToNode(Message::Hello(Hello {
                    peer: peer.clone(),
                    name: "loro-websocket client".into(),
                    kind: PeerKind::User,
                    protocol: PROTOCOL_VERSION,
                    token,
                    clock: Clock(0),
                })));
                peer
            }
            (Identified::Asked { token: t, .. } | Identified::Welcomed { token: t }, Some(p)) => {
                if *t != token {
                    // Another token of the same identity is a refresh (a
                    // re-join with a new `auth`): the node is given it, and
                    // its rights are the connection's from now on. Another
                    // identity's is refused for this room only.
                    if let Err(why) = (self.o.accepts)(token.as_deref()) {
                        Self::join_error(out, crdt, room, JoinErrorCode::AuthFailed, why);
                        return None;
                    }
                    let named = (self.o.identity)(token.as_deref());
                    if named != *p {
                        let why = format!(
                            "this connection speaks as {p}; a token for another identity ({named}) needs a connection of its own"
                        );
                        Self::join_error(out, crdt, room, JoinErrorCode::AuthFailed, why);
                        return None;
                    }
                    let Some(new) = token.clone() else {
                        let why = "a join without a token on a connection that has one".to_string();
                        Self::join_error(out, crdt, room, JoinErrorCode::AuthFailed, why);
                        return None;
                    };
                    refresh = Some(new);
                }
                p.clone()
            }
        };
        if let Some(new) = refresh {
            if let Identified::Asked { token, .. } | Identified::Welcomed { token } = &mut self.who
            {
                *token = Some(new.clone());
            }
            self.for_node(out, Message::Reauth { token: new });
        }
        Some(peer)
    }

    /// Joins a presence room (the member's state kept from an earlier
    /// join), follows its document for the room's presence, and answers.
    fn join_presence(
        &mut self,
        out: &mut Vec<Effect>,
        crdt: Crdt,
        room: String,
        doc: DocId,
        write: bool,
    ) {
        let permission = if write { "write" } else { "read" }.to_string();
        let ttl = self.presence_ttl(crdt);
        let kept = self.presence.remove(&(crdt, room.clone()));
        let member = kept.map_or_else(|| MemberPresence::new(ttl), |p| p.member);
        self.presence
            .insert((crdt, room.clone()), PresenceRoom { write, member });
        if self.watched.contains(&doc) {
            self.rewatch(out, &doc, true);
        } else {
            self.watch(out, &doc, true);
        }
        out.push(Effect::ToClient(message(
            crdt,
            &room,
            Body::JoinResponseOk {
                permission,
                version: Vec::new(),
                extra: Vec::new(),
            },
        )));
    }

    /// Joins a document room: the node is asked for what the client's
    /// version lacks (the client is answered with the node's answer).
    fn join_document(
        &mut self,
        out: &mut Vec<Effect>,
        room: String,
        doc: DocId,
        write: bool,
        version: Vec<u8>,
    ) {
        let crdt = Crdt::Loro;
        let Some(version) = version_from_loro(&version) else {
            let why = "the version is not a Loro version vector".to_string();
            return Self::join_error(out, crdt, &room, JoinErrorCode::VersionUnknown, why);
        };
        self.owed.joining(&room, &version);
        self.rooms.insert(
            room,
            Room {
                joining: true,
                write,
                absent: false,
                asked: Some((self.now_ms, version.clone())),
            },
        );
        self.for_node(
            out,
            Message::SyncRequest {
                doc,
                version,
                bidirectional: false,
            },
        );
    }

    fn refuse_batch(
        out: &mut Vec<Effect>,
        crdt: Crdt,
        room: &str,
        batch: LoroBatchId,
        s: UpdateStatus,
    ) {
        out.push(Effect::ToClient(message(
            crdt,
            room,
            Body::Ack { batch, status: s },
        )));
    }

    /// A client's batch of updates: to a presence room, the member's last
    /// state goes to the node (and the batch is answered at once); to a
    /// document room, each update goes as a native one.
    fn updates(
        &mut self,
        out: &mut Vec<Effect>,
        crdt: Crdt,
        room: &str,
        updates: Vec<Vec<u8>>,
        batch: LoroBatchId,
    ) {
        let Some(peer) = self.peer.clone() else {
            return Self::refuse_batch(out, crdt, room, batch, UpdateStatus::Unknown);
        };
        let Ok(doc) = DocId::parse(room) else {
            return Self::refuse_batch(out, crdt, room, batch, UpdateStatus::Unknown);
        };
        let size: usize = updates.iter().map(Vec::len).sum();
        if size > self.o.max_update {
            return Self::refuse_batch(out, crdt, room, batch, UpdateStatus::PayloadTooLarge);
        }
        if crdt != Crdt::Loro {
            let ttl_ms = self.presence_ttl(crdt);
            let namespace = if crdt == Crdt::Ephemeral {
                PRESENCE_NAMESPACE
            } else {
                PERSISTED_PRESENCE_NAMESPACE
            };
            let last = match self.presence_state(crdt, room, &updates) {
                Ok(last) => last,
                Err(status) => return Self::refuse_batch(out, crdt, room, batch, status),
            };
            if let Some(state) = last {
                let e = Ephemeral {
                    doc: doc.clone(),
                    namespace: Namespace::new(namespace),
                    origin: peer.clone(),
                    hops: 1,
                    ttl_ms,
                    data: Payload::new(state),
                };
                self.for_node(out, Message::Ephemeral(e));
            }
            return Self::refuse_batch(out, crdt, room, batch, UpdateStatus::Ok);
        }
        self.document_updates(out, room, doc, updates, batch);
    }

    /// Applies a client's presence updates to its member in a presence
    /// room, within the presence bounds: the last state (`None`: none), or
    /// the status the batch is refused with.
    fn presence_state(
        &mut self,
        crdt: Crdt,
        room: &str,
        updates: &[Vec<u8>],
    ) -> Result<Option<Vec<u8>>, UpdateStatus> {
        let held = self.presence_held;
        let Some(p) = self.presence.get_mut(&(crdt, room.to_string())) else {
            return Err(UpdateStatus::Unknown);
        };
        if !p.write {
            return Err(UpdateStatus::PermissionDenied);
        }
        // This room's share of the connection's budget, its own state included.
        let before = p.member.size();
        let most = PRESENCE_STATE_MAX.min(PRESENCE_CONNECTION_MAX.saturating_sub(held) + before);
        // Only the last state matters: each holds everything before it.
        let mut last = None;
        let mut refused = None;
        for data in updates.iter().filter(|u| !u.is_empty()) {
            match p.member.apply(data, most) {
                Ok(state) => last = Some(state),
                Err(status) => {
                    refused = Some(status);
                    break;
                }
            }
        }
        self.presence_held = held.saturating_sub(before) + p.member.size();
        match refused {
            Some(status) => Err(status),
            None => Ok(last),
        }
    }

    /// A client's updates to a document room, each to the node as a native
    /// update; the batch is answered once the node acknowledged them all.
    fn document_updates(
        &mut self,
        out: &mut Vec<Effect>,
        room: &str,
        doc: DocId,
        updates: Vec<Vec<u8>>,
        batch: LoroBatchId,
    ) {
        let crdt = Crdt::Loro;
        let Some(r) = self.rooms.get(room) else {
            return Self::refuse_batch(out, crdt, room, batch, UpdateStatus::Unknown);
        };
        if !r.write {
            return Self::refuse_batch(out, crdt, room, batch, UpdateStatus::PermissionDenied);
        }
        let updates: Vec<Vec<u8>> = updates.into_iter().filter(|u| !u.is_empty()).collect();
        if updates.is_empty() {
            return Self::refuse_batch(out, crdt, room, batch, UpdateStatus::Ok);
        }
        if self.native.len() + updates.len() > self.o.max_in_flight {
            return Self::refuse_batch(out, crdt, room, batch, UpdateStatus::RateLimited);
        }
        let group = self.next_native;
        self.batches.insert(
            group,
            Batch {
                crdt,
                room: room.to_string(),
                id: batch,
                remaining: updates.len(),
                worst: UpdateStatus::Ok,
                behind: false,
                sent_at: self.now_ms,
            },
        );
        self.owed.sent(room, group);
        for data in updates {
            let n = self.next_native;
            self.next_native += 1;
            self.native.insert(n, group);
            let version = sent_version(&data);
            self.for_node(
                out,
                Message::Update {
                    doc: doc.clone(),
                    batch: BatchId(n),
                    data: Payload::new(data),
                    version,
                },
            );
        }
    }

    fn fragment_header(
        &mut self,
        out: &mut Vec<Effect>,
        key: FragmentKey,
        count: u32,
        total: u32,
        now: Instant,
    ) {
        let now = self.ms(now);
        let (crdt, room, batch) = key.clone();
        if let Err(e) = self
            .gathering
            .begin(key, count, Some(u64::from(total)), now)
        {
            Self::refuse_batch(out, crdt, &room, batch, fragment_refusal(&e));
        }
    }

    fn fragment(
        &mut self,
        out: &mut Vec<Effect>,
        key: FragmentKey,
        index: u32,
        bytes: Vec<u8>,
        now: Instant,
    ) {
        let now = self.ms(now);
        // A fragment of a batch refused or timed out: the client was told.
        if !self.gathering.contains(&key) {
            return;
        }
        let (crdt, room, batch) = key.clone();
        match self.gathering.piece(key, index, &bytes, now) {
            Ok(Some(whole)) => self.updates(out, crdt, &room, vec![whole], batch),
            Ok(None) => {}
            Err(e) => Self::refuse_batch(out, crdt, &room, batch, fragment_refusal(&e)),
        }
    }

    /// Milliseconds since the bridge began.
    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Time passed: fragmented updates that did not complete in time are
    /// dropped and answered `fragment_timeout` (the client sends again).
    pub fn tick(&mut self, now: Instant) -> Vec<Effect> {
        let rooms = self.rooms.len();
        let out = self.handle_tick(now);
        self.count(rooms, &out);
        out
    }

    fn handle_tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut out = Vec::new();
        let now = self.ms(now);
        self.now_ms = now;
        for (crdt, room, batch) in self.gathering.expire(now) {
            Self::refuse_batch(&mut out, crdt, &room, batch, UpdateStatus::FragmentTimeout);
        }
        // Joins the node never answered are asked again.
        let request_timeout = u64::try_from(self.o.request_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut again = Vec::new();
        for (room, r) in self.rooms.iter_mut() {
            if let (true, Some((at, version))) = (r.joining, r.asked.as_mut()) {
                if now.saturating_sub(*at) >= request_timeout {
                    *at = now;
                    again.push((room.clone(), version.clone()));
                }
            }
        }
        for (room, version) in again {
            let Ok(doc) = DocId::parse(&room) else {
                continue;
            };
            tracing::info!("loro: the join of {room} was not answered in time; asking again");
            self.for_node(
                &mut out,
                Message::SyncRequest {
                    doc,
                    version,
                    bidirectional: false,
                },
            );
        }
        // Batches the node never acknowledged (it could not take them now,
        // and waits for the sender to offer them again): a rejoin does.
        let limit = u64::try_from(self.o.ack_timeout.as_millis()).unwrap_or(u64::MAX);
        let late: Vec<u64> = self
            .batches
            .iter()
            .filter(|(_, b)| now.saturating_sub(b.sent_at) >= limit)
            .map(|(g, _)| *g)
            .collect();
        for group in late {
            let Some(b) = self.batches.remove(&group) else {
                continue;
            };
            self.native.retain(|_, g| *g != group);
            tracing::info!(
                "loro: batch {:02x?} of {} was not acknowledged in {:?}; the client is asked to rejoin",
                b.id,
                b.room,
                self.o.ack_timeout
            );
            // What it would have released waits for the rejoin too (a
            // batch answered as kept only pending releases nothing).
            self.owed.answered(group, UpdateStatus::Ok, true);
            self.owe(&mut out, &b.room, b.id);
            self.suggest_rejoin(
                &mut out,
                &b.room,
                "the server could not take an update in time; join again",
            );
        }
        self.recheck_rights(&mut out);
        out
    }

    /// The client is out of a room (it left, or lost the right to read it).
    fn leave(&mut self, out: &mut Vec<Effect>, crdt: Crdt, room: &str) {
        if crdt == Crdt::Loro {
            self.rooms.remove(room);
            for batch in self.owed.left(room) {
                Self::refuse_batch(out, crdt, room, batch, UpdateStatus::Unknown);
            }
        } else if let Some(mut p) = self.presence.remove(&(crdt, room.to_string())) {
            self.presence_held = self.presence_held.saturating_sub(p.member.size());
            if crdt == Crdt::Ephemeral {
                self.presence_left(out, room, &mut p.member);
            }
        }
        if let Ok(doc) = DocId::parse(room) {
            self.watch(out, &doc, false);
        }
        self.gathering
            .forget_where(|(c, r, _)| *c == crdt && *r == room);
    }

    /// Rights change while rooms are joined (new rules, a refreshed or
    /// revoked token): checked again each tick (at least every second). A
    /// room the client may no longer read ends with `RoomError evicted`,
    /// which a client does not answer by joining again in a loop; its
    /// other rooms go on. A room it may no longer write stays, read-only.
    fn recheck_rights(&mut self, out: &mut Vec<Effect>) {
        let Some(peer) = self.peer.clone() else {
            return;
        };
        let token = self.token().map(str::to_string);
        let joined = self
            .rooms
            .iter()
            .filter(|(_, r)| !r.joining)
            .map(|(room, _)| (Crdt::Loro, room.clone()))
            .chain(self.presence.keys().cloned());
        let mut lost = Vec::new();
        let mut read_only = Vec::new();
        for (crdt, room) in joined.collect::<Vec<_>>() {
            let Ok(doc) = DocId::parse(&room) else {
                continue;
            };
            let access = (self.o.access)(&peer, token.as_deref(), &doc);
            if !access.read {
                lost.push((crdt, room));
            } else if !access.write {
                read_only.push((crdt, room));
            }
        }
        for (crdt, room) in read_only {
            match crdt {
                Crdt::Loro => {
                    if let Some(r) = self.rooms.get_mut(&room) {
                        r.write = false;
                    }
                }
                _ => {
                    if let Some(p) = self.presence.get_mut(&(crdt, room.clone())) {
                        p.write = false;
                    }
                }
            }
        }
        for (crdt, room) in lost {
            tracing::info!("loro: {peer} may no longer read {room}; its membership ends");
            self.leave(out, crdt, &room);
            out.push(Effect::ToClient(message(
                crdt,
                &room,
                Body::RoomError {
                    code: RoomErrorCode::Evicted,
                    message: format!("{peer} may no longer read {room}: its rights changed"),
                },
            )));
        }
    }

    /// Owes the client its answer for `batch` (see [`OwedAcks`]).
    fn owe(&mut self, out: &mut Vec<Effect>, room: &str, batch: LoroBatchId) {
        if let Some((room, oldest)) = self.owed.owe(room, batch, self.o.max_in_flight) {
            Self::refuse_batch(out, Crdt::Loro, &room, oldest, UpdateStatus::Unknown);
        }
    }

    /// Asks the client to join `room` again (it then sends its version and
    /// all the node lacks). A room still joining is asked once answered.
    fn suggest_rejoin(&mut self, out: &mut Vec<Effect>, room: &str, why: &str) {
        if self.rooms.get(room).is_some_and(|r| !r.joining) {
            self.rooms.remove(room);
            out.push(Effect::ToClient(message(
                Crdt::Loro,
                room,
                Body::RoomError {
                    code: RoomErrorCode::RejoinSuggested,
                    message: why.into(),
                },
            )));
        }
    }

    fn next_batch(&mut self) -> LoroBatchId {
        let id = self.next_out.to_be_bytes();
        self.next_out += 1;
        id
    }

    /// Sends document bytes to the client, in fragments when large.
    /// How long a member's presence in a `crdt` room lives after its last change.
    /// A member left a `%EPH` room (keeping its connection): its presence
    /// goes as if it had disconnected. The members still there get its
    /// keys deleted; the node drops its entry, so later members never see it.
    /// (`%EPS` presence outlives its member by design.)
    fn presence_left(&mut self, out: &mut Vec<Effect>, room: &str, member: &mut MemberPresence) {
        let (Some(peer), Ok(doc)) = (self.peer.clone(), DocId::parse(room)) else {
            return;
        };
        let ttl_ms = self.presence_ttl(Crdt::Ephemeral);
        let say = |data: Vec<u8>| {
            Message::Ephemeral(Ephemeral {
                doc: doc.clone(),
                namespace: Namespace::new(PRESENCE_NAMESPACE),
                origin: peer.clone(),
                hops: 1,
                ttl_ms,
                data: Payload::new(data),
            })
        };
        if let Some(deleted) = member.departure() {
            let m = say(deleted);
            self.for_node(out, m);
        }
        let m = say(Vec::new());
        self.for_node(out, m);
    }

    fn presence_ttl(&self, crdt: Crdt) -> u32 {
        if crdt == Crdt::Ephemeral {
            self.o.presence_ttl_ms
        } else {
            self.o.persisted_presence_ttl_ms
        }
    }

    fn send_data(&mut self, out: &mut Vec<Effect>, crdt: Crdt, room: &str, data: &[u8]) {
        let batch = self.next_batch();
        if data.len() <= self.o.fragment {
            return out.push(Effect::ToClient(message(
                crdt,
                room,
                Body::DocUpdate {
                    updates: vec![data.to_vec()],
                    batch,
                },
            )));
        }
        let pieces: Vec<&[u8]> = data.chunks(self.o.fragment.max(1)).collect();
        out.push(Effect::ToClient(message(
            crdt,
            room,
            Body::FragmentHeader {
                batch,
                count: pieces.len() as u32,
                total: data.len() as u32,
            },
        )));
        for (index, piece) in pieces.into_iter().enumerate() {
            out.push(Effect::ToClient(message(
                crdt,
                room,
                Body::Fragment {
                    batch,
                    index: index as u32,
                    bytes: piece.to_vec(),
                },
            )));
        }
    }

    /// A message from the node.
    pub fn from_node(&mut self, m: Message) -> Vec<Effect> {
        let rooms = self.rooms.len();
        let out = self.handle_node(m);
        self.count(rooms, &out);
        out
    }

    /// Brings the server's figures up to date after a call that found
    /// `rooms` rooms and did `out`.
    fn count(&self, rooms: usize, out: &[Effect]) {
        let f = &self.o.figures;
        let now = self.rooms.len();
        if now > rooms {
            f.rooms.fetch_add(now - rooms, Ordering::Relaxed);
        } else {
            f.rooms.fetch_sub(rooms - now, Ordering::Relaxed);
        }
        for e in out {
            if let Effect::ToClient(m) = e {
                match m.body {
                    Body::JoinResponseOk { .. } => f.joined.fetch_add(1, Ordering::Relaxed),
                    Body::JoinError { .. } => f.refused.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
            }
        }
    }

    fn handle_node(&mut self, m: Message) -> Vec<Effect> {
        let mut out = Vec::new();
        match m {
            Message::Welcome(_) => {
                if let Identified::Asked { token, waiting } =
                    std::mem::replace(&mut self.who, Identified::Nobody)
                {
                    out.extend(waiting.into_iter().map(Effect::ToNode));
                    self.who = Identified::Welcomed { token };
                }
            }
            Message::Error { code, message: why } => self.node_error(&mut out, code, why),
            Message::SyncResponse {
                doc,
                batch,
                reply,
                version,
            } => self.sync_response(&mut out, doc, batch, reply, version),
            Message::Update {
                doc, batch, data, ..
            } => {
                // While joining too: the client keeps what arrives before its answer.
                if self.rooms.contains_key(doc.as_str()) {
                    self.send_data(&mut out, Crdt::Loro, doc.as_str(), data.as_bytes());
                }
                out.push(Effect::Relayed(batch));
            }
            Message::Ack { batch, status, .. } => self.node_ack(&mut out, batch, status),
            Message::NewDocs { docs } => self.new_docs(&mut out, docs),
            Message::Delete { doc } if self.rooms.remove(doc.as_str()).is_some() => {
                out.push(Effect::ToClient(message(
                    Crdt::Loro,
                    doc.as_str(),
                    Body::RoomError {
                        code: RoomErrorCode::Evicted,
                        message: format!("{doc} was deleted"),
                    },
                )));
            }
            Message::Ephemeral(e) => self.node_presence(&mut out, e),
            Message::SyncRequest { doc, .. } => {
                // A client's data reaches the node as its updates; it keeps no copy to offer.
                out.push(Effect::ToNode(Message::SyncResponse {
                    doc,
                    batch: BatchId(0),
                    reply: Reply::Unavailable,
                    version: VersionVector::new(),
                }));
            }
            // The server drains: the Loro client is closed with 1001
            // ("going away") and reconnects on its own, to whichever
            // server its app points it at.
            Message::GoingAway { reason, .. } => {
                out.push(Effect::Close(format!("{GOING_AWAY}{reason}")));
            }
            _ => {}
        }
        out
    }

    /// The node's `error`: before its `welcome`, a refusal of the
    /// credentials, which fails every join and closes the connection;
    /// after, only logged.
    fn node_error(&self, out: &mut Vec<Effect>, code: docweave_core::ErrorCode, why: String) {
        if matches!(self.who, Identified::Asked { .. }) {
            // The node refused the credentials: every join waiting fails.
            let rooms: Vec<String> = self.rooms.keys().cloned().collect();
            for room in rooms {
                let why = format!("{code:?}: {why}");
                Self::join_error(out, Crdt::Loro, &room, JoinErrorCode::AuthFailed, why);
            }
            let presence: Vec<(Crdt, String)> = self.presence.keys().cloned().collect();
            for (crdt, room) in presence {
                let why = format!("{code:?}: {why}");
                Self::join_error(out, crdt, &room, JoinErrorCode::AuthFailed, why);
            }
            out.push(Effect::Close(format!("refused: {why}")));
        } else if code == docweave_core::ErrorCode::RateLimited {
            // The update's ack says it (`rate_limited`) to the client.
            tracing::debug!("loro: the node says {code:?}: {why}");
        } else {
            tracing::warn!("loro: the node says {code:?}: {why}");
        }
    }

    /// The node's `ack` of one native update: once all of its client
    /// batch's are in, the client is answered (or owed the answer).
    fn node_ack(&mut self, out: &mut Vec<Effect>, batch: BatchId, status: AckStatus) {
        let Some(group) = self.native.remove(&batch.0) else {
            return;
        };
        let done = match self.batches.get_mut(&group) {
            Some(b) => {
                b.remaining = b.remaining.saturating_sub(1);
                if b.worst == UpdateStatus::Ok {
                    b.worst = ack_status(status);
                }
                b.behind |= status == AckStatus::MissingDependencies;
                b.remaining == 0
            }
            None => false,
        };
        if done {
            if let Some(b) = self.batches.remove(&group) {
                let (room, released) = self.owed.answered(group, b.worst, b.behind);
                for (id, status) in released {
                    Self::refuse_batch(out, Crdt::Loro, &room, id, status);
                }
                if b.behind && b.worst == UpdateStatus::Ok {
                    // Kept, but only pending changes the node never
                    // got: not durable yet, so not acknowledged yet.
                    self.owe(out, &b.room, b.id);
                    self.suggest_rejoin(
                        out,
                        &b.room,
                        "the update depends on changes the server lacks; join again",
                    );
                } else {
                    Self::refuse_batch(out, b.crdt, &b.room, b.id, b.worst);
                }
            }
        }
    }

    /// Documents the node announced: a room joined while its document was
    /// absent asks for the document's data now.
    fn new_docs(&mut self, out: &mut Vec<Effect>, docs: Vec<docweave_core::DocInfo>) {
        for info in docs {
            let Some(r) = self.rooms.get_mut(info.doc.as_str()) else {
                continue;
            };
            if r.absent {
                r.absent = false;
                out.push(Effect::ToNode(Message::SyncRequest {
                    doc: info.doc,
                    version: VersionVector::new(),
                    bidirectional: false,
                }));
            }
        }
    }

    /// Presence the node relays: to the client when it is a member of the
    /// room, unless the presence is empty or the client's own.
    fn node_presence(&mut self, out: &mut Vec<Effect>, e: Ephemeral) {
        let crdt = match e.namespace.as_str() {
            PRESENCE_NAMESPACE => Crdt::Ephemeral,
            PERSISTED_PRESENCE_NAMESPACE => Crdt::EphemeralPersisted,
            _ => return,
        };
        let member = self
            .presence
            .contains_key(&(crdt, e.doc.as_str().to_string()));
        if member && !e.data.as_bytes().is_empty() && Some(&e.origin) != self.peer.as_ref() {
            self.send_data(out, crdt, e.doc.as_str(), e.data.as_bytes());
        }
    }

    fn sync_response(
        &mut self,
        out: &mut Vec<Effect>,
        doc: DocId,
        batch: BatchId,
        reply: Reply,
        version: VersionVector,
    ) {
        let data = match &reply {
            Reply::Snapshot(d) | Reply::Delta(d) => Some(d.clone()),
            _ => None,
        };
        if data.is_some() {
            out.push(Effect::ToNode(Message::Ack {
                batch,
                status: AckStatus::Ok,
                clock: None,
            }));
        }
        let Some(r) = self.rooms.get_mut(doc.as_str()) else {
            return;
        };
        let absent = matches!(reply, Reply::Unavailable);
        let was_absent = r.absent;
        r.absent = absent;
        if absent != was_absent {
            self.watch(out, &doc, absent);
        }
        if absent && !was_absent {
            // Written between the answer and the filter: ask once more, after it.
            self.for_node(
                out,
                Message::SyncRequest {
                    doc: doc.clone(),
                    version: VersionVector::new(),
                    bidirectional: false,
                },
            );
        }
        let Some(r) = self.rooms.get_mut(doc.as_str()) else {
            return;
        };
        if r.joining {
            r.joining = false;
            r.asked = None;
            let permission = if r.write { "write" } else { "read" }.to_string();
            // Always a version, the empty one for an absent document: with
            // it the client both sends what it has and knows it caught up
            // (loro-adaptors never resolves `waitForReachingServerVersion`
            // after an empty answer).
            let loro_version = version_to_loro(&version);
            out.push(Effect::ToClient(message(
                Crdt::Loro,
                doc.as_str(),
                Body::JoinResponseOk {
                    permission,
                    version: loro_version,
                    extra: Vec::new(),
                },
            )));
            match self.owed.joined(doc.as_str(), &version) {
                AfterJoin::Release(batches) => {
                    for id in batches {
                        Self::refuse_batch(out, Crdt::Loro, doc.as_str(), id, UpdateStatus::Ok);
                    }
                }
                AfterJoin::RejoinAgain => self.suggest_rejoin(
                    out,
                    doc.as_str(),
                    "join again to send what the server lacks",
                ),
                AfterJoin::Nothing | AfterJoin::AwaitData => {}
            }
        }
        if let Some(d) = data {
            self.send_data(out, Crdt::Loro, doc.as_str(), d.as_bytes());
        }
    }
}
