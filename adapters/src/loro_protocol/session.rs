//! One Loro-protocol connection's whole logic, without I/O: the [`Bridge`],
//! the gathering of updates for the client ([`Coalescer`]), the node's chunk
//! frames put back together, large frames for the node split, the reading
//! pace and the idle check. Time arrives with every input, so the WebSocket
//! link ([`super::loro_link`]) and the simulator (under virtual time) run the
//! same code.

use super::bridge::{Bridge, BridgeOptions, Effect};
use super::coalesce::Coalescer;
use super::codec::{decode, LoroMessage, MAX_MESSAGE};
use crate::transport::{InboundRate, Pacer};
use docweave_core::{
    chunk_frames, decode_frame, encode as encode_frame, parse_chunk, AckStatus, Limits, Message,
};
use std::time::{Duration, Instant};

/// Frames to the node larger than this go as chunk frames.
const NODE_CHUNK: usize = 1024 * 1024;

/// At most one update message per this long to a client (the first after
/// a quiet spell goes at once): a reader's cost is per message, whatever its
/// size, so a busy room must not cost 50 readers one import per edit.
pub const GATHER: Duration = Duration::from_millis(16);

/// A Loro client that sends nothing (its pings included) this long is gone.
pub const IDLE: Duration = Duration::from_secs(90);

/// A session runs [`Session::tick`] at least this often: its rights are
/// checked again, and its timeouts (a join not answered, a batch not
/// acknowledged, fragments not completed) found.
pub const TICK: Duration = Duration::from_secs(1);

/// What the session wants done, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this to the client.
    ToClient(LoroMessage),
    /// Answer the client's text `ping`.
    Pong,
    /// Hand this frame to the node.
    ToNode(Vec<u8>),
    /// Close the client's connection with this reason; the session is over.
    Close(String),
}

/// Gathers the node's chunk frames back into whole frames.
#[derive(Default)]
struct Unchunk {
    id: u32,
    next: u32,
    bytes: Vec<u8>,
}

impl Unchunk {
    /// A whole frame, once there is one.
    fn take(&mut self, frame: Vec<u8>) -> Option<Vec<u8>> {
        let Some(c) = parse_chunk(&frame) else {
            return Some(frame);
        };
        if c.index == 0 {
            self.id = c.id;
            self.next = 0;
            self.bytes = Vec::with_capacity(usize::try_from(c.total).unwrap_or(0));
        }
        if c.id != self.id || c.index != self.next {
            return None;
        }
        self.bytes.extend_from_slice(c.bytes);
        self.next += 1;
        (self.next == c.count).then(|| std::mem::take(&mut self.bytes))
    }
}

/// One Loro client's connection, between its messages and the node's frames.
pub struct Session {
    bridge: Bridge,
    unchunk: Unchunk,
    chunk_id: u32,
    heard: Instant,
    gather: Coalescer,
    /// Frames of the node are decoded whole, however large.
    limits: Limits,
    pacer: Pacer,
    closed: bool,
}

impl Session {
    /// A session opened at `now`, reading the client at most at `rate`.
    pub fn new(b: BridgeOptions, limits: Limits, rate: InboundRate, now: Instant) -> Self {
        Self {
            bridge: Bridge::new(b),
            unchunk: Unchunk::default(),
            chunk_id: 0,
            heard: now,
            gather: Coalescer::new(GATHER, MAX_MESSAGE - 4096),
            limits: Limits {
                max_frame: usize::MAX / 2,
                ..limits
            },
            pacer: Pacer::new(rate, now),
            closed: false,
        }
    }

    /// The bridge (for its peer, in logs).
    pub fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    /// Whether the session is over (it asked for a close).
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// When [`Session::tick`] must run next, at the latest.
    pub fn deadline(&self, now: Instant) -> Instant {
        let second = now + TICK;
        self.gather.deadline().map_or(second, |d| d.min(second))
    }

    /// A binary message from the client. Also returns how long to wait
    /// before reading the client again (its bytes are paced).
    pub fn client_binary(&mut self, bytes: &[u8], now: Instant) -> (Vec<Action>, Duration) {
        self.heard = now;
        let wait = self.pacer.charge(bytes.len(), now);
        let effects = match decode(bytes) {
            Ok(m) => {
                tracing::debug!(
                    "loro {:?}: client says {} in {}{}",
                    self.bridge.peer(),
                    body_name(&m.body),
                    m.crdt,
                    m.room
                );
                self.bridge.from_client(m, now)
            }
            Err(e) => {
                // As the JS client does: an undecodable message is skipped.
                tracing::warn!("loro: {e}");
                Vec::new()
            }
        };
        (self.carry(effects, now), wait)
    }

    /// A text message from the client (`ping` is answered).
    pub fn client_text(&mut self, text: &str, now: Instant) -> Vec<Action> {
        self.heard = now;
        let mut out = self.carry(Vec::new(), now);
        if text == "ping" {
            out.insert(0, Action::Pong);
        }
        out
    }

    /// Anything else from the client (pings and pongs of the WebSocket).
    pub fn client_other(&mut self, now: Instant) -> Vec<Action> {
        self.heard = now;
        self.carry(Vec::new(), now)
    }

    /// A frame (perhaps a chunk) from the node.
    pub fn node_frame(&mut self, frame: Vec<u8>, now: Instant) -> Vec<Action> {
        let effects = match self.unchunk.take(frame) {
            Some(whole) => match decode_frame(&whole, &self.limits) {
                Ok(d) => d
                    .messages
                    .into_iter()
                    .flat_map(|m| {
                        tracing::debug!("loro {:?}: node says {m:?}", self.bridge.peer());
                        self.bridge.from_node(m)
                    })
                    .collect(),
                Err(e) => {
                    tracing::warn!("loro: a frame from the node: {e}");
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        self.carry(effects, now)
    }

    /// The node closed the link: what was gathered goes, then the close.
    pub fn node_closed(&mut self, reason: &str, now: Instant) -> Vec<Action> {
        let mut out: Vec<Action> = self
            .gather
            .flush(now)
            .map(Action::ToClient)
            .into_iter()
            .collect();
        out.push(Action::Close(reason.to_string()));
        self.closed = true;
        out
    }

    /// Time passed: a silent client is closed; fragments expire; gathered
    /// updates whose window passed go.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        if now.saturating_duration_since(self.heard) > IDLE {
            tracing::info!("loro: silent for {IDLE:?}; closing");
            self.closed = true;
            return vec![Action::Close("idle".into())];
        }
        let effects = self.bridge.tick(now);
        self.carry(effects, now)
    }

    /// Carries out the bridge's effects, after whatever gathered updates are
    /// due (checked whatever woke the session: a client that keeps sending
    /// must not hold back what waits for it), and then acknowledges the
    /// node's updates whose messages have gone, in one frame.
    fn carry(&mut self, effects: Vec<Effect>, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(m) = self.gather.due(now) {
            out.push(Action::ToClient(m));
        }
        for effect in effects {
            match effect {
                Effect::ToClient(m) => {
                    out.extend(self.gather.push(m, now).into_iter().map(Action::ToClient))
                }
                Effect::ToNode(m) => {
                    let Ok(frame) = encode_frame(std::slice::from_ref(&m)) else {
                        tracing::warn!("loro: {} for the node does not encode", m.name());
                        continue;
                    };
                    if frame.len() > NODE_CHUNK {
                        self.chunk_id = self.chunk_id.wrapping_add(1);
                        out.extend(
                            chunk_frames(&frame, NODE_CHUNK, self.chunk_id)
                                .into_iter()
                                .map(Action::ToNode),
                        );
                    } else {
                        out.push(Action::ToNode(frame));
                    }
                }
                Effect::Relayed(batch) => self.gather.relayed(batch, now),
                Effect::Close(reason) => {
                    out.extend(self.gather.flush(now).map(Action::ToClient));
                    out.push(Action::Close(reason));
                    self.closed = true;
                }
            }
        }
        let acks: Vec<Message> = self
            .gather
            .released()
            .into_iter()
            .map(|batch| Message::Ack {
                batch,
                status: AckStatus::Ok,
                clock: None,
            })
            .collect();
        if !acks.is_empty() {
            match encode_frame(&acks) {
                Ok(frame) => out.push(Action::ToNode(frame)),
                Err(e) => tracing::warn!("loro: acknowledgements do not encode: {e}"),
            }
        }
        out
    }
}

fn body_name(b: &super::codec::Body) -> &'static str {
    use super::codec::Body::*;
    match b {
        JoinRequest { .. } => "JoinRequest",
        JoinResponseOk { .. } => "JoinResponseOk",
        JoinError { .. } => "JoinError",
        DocUpdate { .. } => "DocUpdate",
        FragmentHeader { .. } => "DocUpdateFragmentHeader",
        Fragment { .. } => "DocUpdateFragment",
        RoomError { .. } => "RoomError",
        Leave => "Leave",
        Ack { .. } => "Ack",
    }
}
