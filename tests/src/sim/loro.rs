//! Loro-protocol clients in the simulator, through the code `/loro` runs.
//!
//! A member is a Loro client (a `LoroDoc` per room, speaking the Loro
//! Syncing Protocol as `loro-websocket` does: join with its version, send
//! what the server lacks, one `DocUpdate` per edit, imports what comes) and
//! the server's side of its connection: the real
//! [`docweave_adapters::loro_protocol::Session`] (bridge, gathering window,
//! read pacing, chunking, idle check) under virtual time. The session sits
//! in its hub's process: its link to the hub is reliable and in order, and
//! ends when the hub crashes. The WebSocket between client and session
//! takes a millisecond each way. A closed connection is opened again a
//! little later, and the client joins its rooms again with its version.

use super::{Due, Sim, SimEngine};
use crate::sim::End;
use docweave_adapters::loro_protocol::{
    Action, Body, BridgeOptions, Crdt, LoroMessage, RoomErrorCode, Session, UpdateStatus,
};
use docweave_adapters::transport::InboundRate;
use docweave_core::{ChannelId, DocId, Limits, PeerId, Rules};
use loro::{ExportMode, LoroDoc, VersionVector as LoroVersion};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a member whose connection closed waits before it opens another.
const RECONNECT_MS: u64 = 200;

/// How often a client sends its keepalive `ping` (loro-websocket: 30 s).
const PING_MS: u64 = 30_000;

/// An edit a member's application made.
#[derive(Debug, Clone)]
pub struct LoroEdit {
    /// The document (room).
    pub doc: DocId,
    /// The value appended.
    pub value: String,
    /// The client's version right after the edit.
    version: LoroVersion,
    /// The server acknowledged a batch holding it.
    pub acked: bool,
}

/// One Loro client and the server's session for it.
pub struct LoroMember {
    hub: String,
    /// The server's side of the connection; `None` while closed.
    session: Option<Session>,
    /// Bumped by every new connection: work for an older one is dropped.
    generation: u64,
    /// The session reads the client again only from this virtual time on.
    read_after: u64,
    /// The client's messages the session has not read yet (paced).
    unread: std::collections::VecDeque<Vec<u8>>,
    /// A tick of the session is due at this virtual time.
    tick_at: Option<u64>,
    /// The client's replicas, by room.
    docs: BTreeMap<String, LoroDoc>,
    /// Rooms joined on this connection.
    joined: BTreeSet<String>,
    /// Rooms whose join is on the way.
    joining: BTreeSet<String>,
    /// Per room, what the server is known to hold (what was sent or came).
    server_has: BTreeMap<String, LoroVersion>,
    /// Batches on the way: room and the client's version when sent.
    in_flight: BTreeMap<[u8; 8], (String, LoroVersion)>,
    next_batch: u64,
    peer: u64,
    /// Every edit made here.
    pub edits: Vec<LoroEdit>,
    /// Rooms the server closed for good (the document was deleted).
    pub gone: BTreeSet<String>,
}

impl LoroMember {
    /// The values in the client's copy of a room (`None`: never opened).
    pub fn values(&self, room: &str) -> Option<Vec<String>> {
        let doc = self.docs.get(room)?;
        let list = doc.get_list("items");
        Some(
            (0..list.len())
                .filter_map(|i| list.get(i))
                .filter_map(|v| v.into_value().ok())
                .filter_map(|v| v.into_string().ok())
                .map(|s| s.to_string())
                .collect(),
        )
    }

    /// Bumped by every new connection.
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// The rooms the client holds.
    pub fn rooms(&self) -> Vec<String> {
        self.docs.keys().cloned().collect()
    }
}

fn message(room: &str, body: Body) -> LoroMessage {
    LoroMessage {
        crdt: Crdt::Loro,
        room: room.to_string(),
        body,
    }
}

impl<E: SimEngine> Sim<E> {
    fn instant(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// Adds a Loro client `name` that connects to `hub` and joins `rooms`.
    pub fn add_loro_member(&mut self, name: &str, hub: &str, rooms: &[String]) {
        let peer = 900_000 + self.loro.len() as u64;
        let mut m = LoroMember {
            hub: hub.to_string(),
            session: None,
            generation: 0,
            read_after: 0,
            unread: Default::default(),
            tick_at: None,
            docs: BTreeMap::new(),
            joined: BTreeSet::new(),
            joining: BTreeSet::new(),
            server_has: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            next_batch: 0,
            peer,
            edits: Vec::new(),
            gone: BTreeSet::new(),
        };
        for room in rooms {
            m.docs.insert(room.clone(), new_doc(peer));
        }
        self.loro.insert(name.to_string(), m);
        self.loro_connect(name);
    }

    /// The Loro members.
    pub fn loro_members(&self) -> &BTreeMap<String, LoroMember> {
        &self.loro
    }

    /// Opens a connection to the member's hub and joins its rooms.
    fn loro_connect(&mut self, name: &str) {
        let now = self.now;
        let at = self.instant(now);
        let Some(hub) = self.loro.get(name).map(|m| m.hub.clone()) else {
            return;
        };
        let Some(ch) = self
            .nodes
            .get_mut(&hub)
            .and_then(|n| n.node.as_mut())
            .map(|n| n.channel_opened(now, None))
        else {
            // The hub is down: try again later.
            self.at(
                now + RECONNECT_MS,
                Due::LoroReconnect {
                    name: name.to_string(),
                },
            );
            return;
        };
        let identity = Arc::new(|t: Option<&str>| PeerId::new(t.unwrap_or("anon")));
        let options = BridgeOptions::new(identity, Rules::allow_all());
        let Some(m) = self.loro.get_mut(name) else {
            return;
        };
        m.session = Some(Session::new(
            options,
            Limits::default(),
            InboundRate::default(),
            at,
        ));
        m.generation += 1;
        m.read_after = now;
        m.unread.clear();
        m.tick_at = None;
        m.joined.clear();
        m.joining.clear();
        m.server_has.clear();
        m.in_flight.clear();
        let rooms = m.rooms();
        let generation = m.generation;
        self.at(
            now + PING_MS,
            Due::LoroPing {
                name: name.to_string(),
                generation,
            },
        );
        self.net.link(
            End {
                node: name.to_string(),
                channel: ChannelId(0),
            },
            End {
                node: hub.clone(),
                channel: ch,
            },
        );
        self.log(format!("{name}: connected to {hub} (Loro protocol)"));
        self.pump(&hub);
        for room in rooms {
            self.loro_join(name, &room);
        }
    }

    fn loro_join(&mut self, name: &str, room: &str) {
        let Some(m) = self.loro.get_mut(name) else {
            return;
        };
        if m.session.is_none() || m.gone.contains(room) || !m.joining.insert(room.to_string()) {
            return;
        }
        let version = m.docs.get(room).map(|d| d.oplog_vv().encode());
        let body = Body::JoinRequest {
            auth: name.as_bytes().to_vec(),
            version: version.unwrap_or_default(),
        };
        self.loro_client_says(name, message(room, body));
    }

    /// The member's application appends `value` to `room` and the client
    /// sends it (once the room is joined).
    pub fn loro_edit(&mut self, name: &str, room: &str, value: &str) {
        let Some(m) = self.loro.get_mut(name) else {
            return;
        };
        if m.gone.contains(room) {
            return;
        }
        let peer = m.peer;
        let doc = m
            .docs
            .entry(room.to_string())
            .or_insert_with(|| new_doc(peer));
        // An edit that fails is the simulator's bug: the run shows it as a
        // value that never arrives.
        if doc.get_list("items").push(value).is_ok() {
            doc.commit();
        }
        m.edits.push(LoroEdit {
            doc: DocId::new(room),
            value: value.to_string(),
            version: doc.oplog_vv(),
            acked: false,
        });
        if m.joined.contains(room) {
            self.loro_send_missing(name, room);
        } else {
            self.loro_join(name, room);
        }
    }

    /// The member's connection drops (its network, not the hub).
    pub fn loro_drop(&mut self, name: &str) {
        self.log(format!("{name}: connection drops"));
        if let Some((_, other)) = self.net.ends_at(name).into_iter().next() {
            self.net.unlink(name, ChannelId(0));
            let t = self.now + 1;
            let due = self.closed_due(other.node, other.channel);
            self.at(t, due);
        }
        self.loro_closed(name);
    }

    /// Sends the server what the client has and the server lacks in `room`.
    fn loro_send_missing(&mut self, name: &str, room: &str) {
        let Some(m) = self.loro.get_mut(name) else {
            return;
        };
        let Some(doc) = m.docs.get(room) else {
            return;
        };
        let has = m.server_has.get(room).cloned().unwrap_or_default();
        let now = doc.oplog_vv();
        if has.includes_vv(&now) {
            return;
        }
        let Ok(bytes) = doc.export(ExportMode::updates(&has)) else {
            return;
        };
        m.next_batch += 1;
        let batch = (m.peer << 24 | m.next_batch).to_be_bytes();
        m.in_flight.insert(batch, (room.to_string(), now.clone()));
        m.server_has.insert(room.to_string(), now);
        let body = Body::DocUpdate {
            updates: vec![bytes],
            batch,
        };
        self.loro_client_says(name, message(room, body));
    }

    /// The client writes a message on its WebSocket.
    fn loro_client_says(&mut self, name: &str, m: LoroMessage) {
        let Some(generation) = self.loro.get(name).map(|x| x.generation) else {
            return;
        };
        self.log(format!("{name} => {name}.session  {}", describe(&m)));
        self.count_loro("client", &m);
        let bytes = docweave_adapters::loro_protocol::encode(&m);
        let t = self.now + 1;
        self.at(
            t,
            Due::LoroToSession {
                name: name.to_string(),
                generation,
                bytes,
            },
        );
    }

    /// The session reads the client's next message (if its pace allows).
    pub(super) fn loro_session_reads(&mut self, name: &str, generation: u64, bytes: Vec<u8>) {
        let now = self.now;
        let Some(m) = self.loro.get_mut(name) else {
            return;
        };
        if m.generation != generation || m.session.is_none() {
            return;
        }
        m.unread.push_back(bytes);
        if m.read_after <= now {
            self.loro_read_paced(name);
        }
    }

    pub(super) fn loro_resume(&mut self, name: &str, generation: u64) {
        if self
            .loro
            .get(name)
            .is_some_and(|m| m.generation == generation)
        {
            self.loro_read_paced(name);
        }
    }

    /// The client's keepalive: a text `ping`, answered `pong`.
    pub(super) fn loro_ping(&mut self, name: &str, generation: u64) {
        let now = self.now;
        let at = self.instant(now);
        let Some(m) = self.loro.get_mut(name) else {
            return;
        };
        if m.generation != generation {
            return;
        }
        let Some(session) = m.session.as_mut() else {
            return;
        };
        let actions = session.client_text("ping", at);
        self.at(
            now + PING_MS,
            Due::LoroPing {
                name: name.to_string(),
                generation,
            },
        );
        self.loro_carry(name, actions);
    }

    pub(super) fn loro_reconnect(&mut self, name: &str) {
        if self.loro.get(name).is_some_and(|m| m.session.is_none()) {
            self.loro_connect(name);
        }
    }

    /// Reads what the client sent, as far as the pace allows now; the rest
    /// is read when the pause is over.
    pub(super) fn loro_read_paced(&mut self, name: &str) {
        let now = self.now;
        let at = self.instant(now);
        loop {
            let Some(m) = self.loro.get_mut(name) else {
                return;
            };
            if m.read_after > now {
                let (t, generation) = (m.read_after, m.generation);
                self.at(
                    t,
                    Due::LoroResume {
                        name: name.to_string(),
                        generation,
                    },
                );
                return;
            }
            let (Some(session), Some(bytes)) = (m.session.as_mut(), m.unread.pop_front()) else {
                return;
            };
            let (actions, wait) = session.client_binary(&bytes, at);
            m.read_after = now + u64::try_from(wait.as_millis()).unwrap_or(u64::MAX / 4);
            self.loro_carry(name, actions);
        }
    }

    /// A frame from the hub reaches the member's session.
    pub(super) fn loro_node_frame(&mut self, name: &str, bytes: Vec<u8>) {
        let at = self.instant(self.now);
        let Some(session) = self.loro.get_mut(name).and_then(|m| m.session.as_mut()) else {
            return;
        };
        let actions = session.node_frame(bytes, at);
        self.loro_carry(name, actions);
    }

    /// The session's clock: its gathering window or idle check is due.
    pub(super) fn loro_tick(&mut self, name: &str, generation: u64) {
        let now = self.now;
        let at = self.instant(now);
        let Some(m) = self.loro.get_mut(name) else {
            return;
        };
        if m.generation != generation || m.tick_at.is_some_and(|t| t > now) {
            return;
        }
        m.tick_at = None;
        let Some(session) = m.session.as_mut() else {
            return;
        };
        let actions = session.tick(at);
        self.loro_carry(name, actions);
    }

    /// The hub closed the member's link (or crashed).
    pub(super) fn loro_link_closed(&mut self, name: &str) {
        let at = self.instant(self.now);
        let actions = match self.loro.get_mut(name).and_then(|m| m.session.as_mut()) {
            Some(s) => s.node_closed("the server closed the connection", at),
            None => return,
        };
        self.loro_carry(name, actions);
        self.loro_closed(name);
    }

    /// The connection is over: the client opens another a little later.
    fn loro_closed(&mut self, name: &str) {
        let Some(m) = self.loro.get_mut(name) else {
            return;
        };
        if m.session.take().is_none() {
            return;
        }
        m.generation += 1;
        self.net.unlink(name, ChannelId(0));
        let t = self.now + RECONNECT_MS;
        self.at(
            t,
            Due::LoroReconnect {
                name: name.to_string(),
            },
        );
    }

    /// Carries out what the session asked for, and arms its next tick.
    fn loro_carry(&mut self, name: &str, actions: Vec<Action>) {
        let Some(m) = self.loro.get(name) else {
            return;
        };
        let generation = m.generation;
        for action in actions {
            match action {
                Action::ToClient(msg) => {
                    self.log(format!("{name}.session => {name}  {}", describe(&msg)));
                    let t = self.now + 1;
                    self.at(
                        t,
                        Due::LoroToClient {
                            name: name.to_string(),
                            generation,
                            message: msg,
                        },
                    );
                }
                Action::Pong => {}
                Action::ToNode(frame) => self.loro_to_hub(name, frame),
                Action::Close(reason) => {
                    self.log(format!("{name}.session: closes ({reason})"));
                    if let Some(other) = self.net.unlink(name, ChannelId(0)) {
                        let t = self.now + 1;
                        let due = self.closed_due(other.node, other.channel);
                        self.at(t, due);
                    }
                    self.loro_closed(name);
                    return;
                }
            }
        }
        let now = self.now;
        let epoch = self.epoch;
        let Some(m) = self.loro.get_mut(name) else {
            return;
        };
        let Some(session) = m.session.as_ref() else {
            return;
        };
        let deadline = session.deadline(epoch + Duration::from_millis(now));
        let t = u64::try_from(deadline.saturating_duration_since(epoch).as_millis())
            .unwrap_or(u64::MAX / 4);
        if m.tick_at.is_none_or(|at| t < at) {
            m.tick_at = Some(t);
            self.at(
                t,
                Due::LoroTick {
                    name: name.to_string(),
                    generation,
                },
            );
        }
    }

    /// The session hands a frame to its hub (same process: reliable, in order).
    fn loro_to_hub(&mut self, name: &str, frame: Vec<u8>) {
        let Some(to) = self.net.peer_of(name, ChannelId(0)).cloned() else {
            return;
        };
        let messages = self.observe((name.to_string(), to.node.clone(), 0, true), &frame);
        for m in &messages {
            self.log(format!(
                "{name} -> {}  {}",
                to.node,
                crate::trace::message(m)
            ));
        }
        let t = self.now + 1;
        let incarnation = self.incarnation(&to.node);
        self.at(
            t,
            Due::Frame {
                from: name.to_string(),
                to: to.node,
                channel: to.channel,
                bytes: frame,
                incarnation,
            },
        );
    }

    /// The client reads a message the session wrote.
    pub(super) fn loro_client_reads(&mut self, name: &str, generation: u64, msg: LoroMessage) {
        let Some(m) = self.loro.get_mut(name) else {
            return;
        };
        if m.generation != generation {
            return;
        }
        self.count_loro("server", &msg);
        let Some(m) = self.loro.get_mut(name) else {
            return;
        };
        let room = msg.room.clone();
        match msg.body {
            Body::JoinResponseOk { version, .. } => {
                m.joining.remove(&room);
                m.joined.insert(room.clone());
                let has = LoroVersion::decode(&version).unwrap_or_default();
                m.server_has.insert(room.clone(), has);
                self.loro_send_missing(name, &room);
            }
            Body::JoinError { .. } => {
                m.joining.remove(&room);
                m.gone.insert(room);
            }
            Body::RoomError { code, .. } => {
                m.joined.remove(&room);
                m.joining.remove(&room);
                // As loro-websocket does: a suggested rejoin joins again
                // (sending the version, then what the server lacks); any
                // other room error ends the membership.
                if code == RoomErrorCode::RejoinSuggested {
                    self.loro_join(name, &room);
                } else {
                    m.gone.insert(room);
                }
            }
            Body::DocUpdate { updates, .. } => {
                let peer = m.peer;
                let doc = m.docs.entry(room.clone()).or_insert_with(|| new_doc(peer));
                let mut pending = false;
                for u in &updates {
                    // An update that does not import is what the client,
                    // too, would leave out; the run then fails to converge.
                    if let Ok(status) = doc.import(u) {
                        pending |= status.pending.is_some();
                    }
                }
                // Everything the client sent was sent; what came, the server has.
                let now = doc.oplog_vv();
                let has = m.server_has.entry(room.clone()).or_default();
                has.merge(&now);
                if pending {
                    self.log(format!("{name}: an update left changes pending in {room}"));
                }
            }
            Body::Ack { batch, status } => {
                let Some((room, version)) = m.in_flight.remove(&batch) else {
                    return;
                };
                if status == UpdateStatus::Ok {
                    for e in m.edits.iter_mut() {
                        if e.doc.as_str() == room && version.includes_vv(&e.version) {
                            e.acked = true;
                        }
                    }
                } else {
                    // The server did not take it: send everything again.
                    m.server_has.remove(&room);
                }
            }
            _ => {}
        }
    }
}

impl<E: SimEngine> Sim<E> {
    fn count_loro(&self, side: &str, m: &LoroMessage) {
        let kind = describe(m);
        let kind = kind.split(" room=").next().unwrap_or_default();
        // Sizes vary; the kind is what the table counts.
        let kind = kind.split(" (").next().unwrap_or_default();
        if let Ok(mut c) = self.coverage.lock() {
            *c.loro.entry(format!("{side}: {kind}")).or_default() += 1;
        }
    }
}

fn new_doc(peer: u64) -> LoroDoc {
    let doc = LoroDoc::new();
    // A fresh document takes any peer id; a clash would only make the
    // simulator's client share a peer with another, which the run shows.
    let _ = doc.set_peer_id(peer);
    doc
}

fn describe(m: &LoroMessage) -> String {
    let what = match &m.body {
        Body::JoinRequest { .. } => "join".to_string(),
        Body::JoinResponseOk { .. } => "joined".to_string(),
        Body::JoinError { code, .. } => format!("join-error {code:?}"),
        Body::DocUpdate { updates, .. } => format!(
            "doc-update ({} bytes)",
            updates.iter().map(Vec::len).sum::<usize>()
        ),
        Body::FragmentHeader { .. } | Body::Fragment { .. } => "fragment".to_string(),
        Body::RoomError { code, .. } => format!("room-error {code:?}"),
        Body::Leave => "leave".to_string(),
        Body::Ack { status, .. } => format!("ack {status:?}"),
    };
    format!("{what} room={}", m.room)
}
