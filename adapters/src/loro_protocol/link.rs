//! A Loro-protocol WebSocket as a native [`Link`]: one task reads the
//! client, the node's frames and the clock and runs the [`Bridge`]; one
//! writes to the client, with a bounded queue and a write timeout.

use super::bridge::{Bridge, BridgeOptions, Effect};
use super::coalesce::Coalescer;
use super::codec::{decode, encode};
use crate::transport::{outbound, Link, LinkOut, Outbound, WsOptions};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::Message as Ws;
use async_tungstenite::WebSocketStream;
use docweave_core::{
    chunk_frames, decode_frame, encode as encode_frame, parse_chunk, AckStatus, Limits, Message,
};
use futures_lite::{AsyncRead, AsyncWrite};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};

/// Messages queued for one client before the bridge waits for it (a
/// client that does not read is closed by the write timeout).
const CLIENT_QUEUE: usize = 256;

/// Most messages, and bytes, written to a client before one flush.
const WRITE_BATCH: usize = 64;
const WRITE_BATCH_BYTES: usize = 1024 * 1024;

/// Frames to the node larger than this go as chunk frames.
const NODE_CHUNK: usize = 1024 * 1024;

/// At most one update message per this long to a client (the first after
/// a quiet spell goes at once): a reader's cost is per message, whatever its
/// size, so a busy room must not cost 50 readers one import per edit.
const GATHER: Duration = Duration::from_millis(16);

/// A Loro client that sends nothing (its pings included) this long is gone.
const IDLE: Duration = Duration::from_secs(90);

enum Next {
    Client(Option<Result<Ws, async_tungstenite::tungstenite::Error>>),
    Node(Option<Outbound>),
    Tick,
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

/// Runs an upgraded WebSocket that speaks the Loro Syncing Protocol as a
/// native link: the node sees one peer, whose id comes from the token of
/// its first join.
pub fn loro_link<S>(ws: WebSocketStream<S>, o: WsOptions, b: BridgeOptions) -> Link
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (node_tx, node_out) = outbound(o.backlog);
    let (in_tx, in_rx) = async_channel::bounded::<Vec<u8>>(crate::transport::INBOUND_FRAMES);
    let (client_tx, client_rx) = async_channel::bounded::<Ws>(CLIENT_QUEUE);
    let (mut sink, mut stream) = ws.split();
    let write_timeout = o.write_timeout;
    let writer_rx = client_rx.clone();
    smol::spawn(async move {
        while let Ok(first) = writer_rx.recv().await {
            // What is queued goes in one write (a burst of acknowledgements
            // costs the client one read, not one per message), up to a
            // bound, so the write timeout is per bounded write.
            let mut closing = false;
            let write = async {
                let (mut count, mut bytes) = (0usize, 0usize);
                let mut next = Some(first);
                while let Some(m) = next.take() {
                    closing = matches!(m, Ws::Close(_));
                    count += 1;
                    bytes += m.len();
                    if sink.feed(m).await.is_err() {
                        return false;
                    }
                    if !closing && count < WRITE_BATCH && bytes < WRITE_BATCH_BYTES {
                        next = writer_rx.try_recv().ok();
                    }
                }
                sink.flush().await.is_ok()
            };
            let sent = futures_lite::future::or(write, async {
                smol::Timer::after(write_timeout).await;
                tracing::info!("loro: the client did not take a write in {write_timeout:?}");
                false
            })
            .await;
            if !sent || closing {
                break;
            }
        }
        writer_rx.close();
    })
    .detach();
    let node_link_tx = node_tx.clone();
    smol::spawn(async move {
        let mut bridge = Bridge::new(b);
        let mut unchunk = Unchunk::default();
        let mut chunk_id: u32 = 0;
        let mut heard = Instant::now();
        let mut gather = Coalescer::new(GATHER, super::codec::MAX_MESSAGE - 4096);
        // Frames of the node are decoded whole, however large.
        let limits = Limits {
            max_frame: usize::MAX / 2,
            ..o.limits
        };
        // The client is not read again before this (its bytes are paced).
        let mut pacer = crate::transport::Pacer::new(o.inbound_rate, Instant::now());
        let mut read_after: Option<Instant> = None;
        loop {
            let resume = read_after;
            let next = futures_lite::future::or(
                async {
                    if let Some(at) = resume {
                        smol::Timer::at(at).await;
                    }
                    Next::Client(stream.next().await)
                },
                futures_lite::future::or(async { Next::Node(recv(&node_out).await) }, async {
                    let second = Instant::now() + Duration::from_secs(1);
                    let at = gather.deadline().map_or(second, |d| d.min(second));
                    smol::Timer::at(at).await;
                    Next::Tick
                }),
            )
            .await;
            let now = Instant::now();
            let effects = match next {
                Next::Client(Some(Ok(Ws::Binary(bytes)))) => {
                    heard = now;
                    let wait = pacer.charge(bytes.len(), now);
                    read_after = (!wait.is_zero()).then(|| now + wait);
                    match decode(&bytes) {
                        Ok(m) => {
                            tracing::debug!(
                                "loro {:?}: client says {} in {}{}",
                                bridge.peer(),
                                body_name(&m.body),
                                m.crdt,
                                m.room
                            );
                            bridge.from_client(m, now)
                        }
                        Err(e) => {
                            // As the JS client does: an undecodable message is skipped.
                            tracing::warn!("loro: {e}");
                            Vec::new()
                        }
                    }
                }
                Next::Client(Some(Ok(Ws::Text(t)))) => {
                    heard = now;
                    if t.as_str() == "ping"
                        && client_tx.send(Ws::Text("pong".into())).await.is_err()
                    {
                        break;
                    }
                    Vec::new()
                }
                Next::Client(Some(Ok(Ws::Close(_)))) | Next::Client(None) => break,
                Next::Client(Some(Ok(_))) => {
                    heard = now;
                    Vec::new()
                }
                Next::Client(Some(Err(e))) => {
                    tracing::info!("loro: {e}");
                    break;
                }
                Next::Node(Some(Outbound::Frame(frame))) => {
                    node_out.written(&frame);
                    match unchunk.take(frame) {
                        Some(whole) => match decode_frame(&whole, &limits) {
                            Ok(d) => d
                                .messages
                                .into_iter()
                                .flat_map(|m| {
                                    tracing::debug!("loro {:?}: node says {m:?}", bridge.peer());
                                    bridge.from_node(m)
                                })
                                .collect(),
                            Err(e) => {
                                tracing::warn!("loro: a frame from the node: {e}");
                                Vec::new()
                            }
                        },
                        None => Vec::new(),
                    }
                }
                Next::Node(Some(Outbound::Close(reason))) => {
                    if let Some(m) = gather.flush(now) {
                        let _ = client_tx.send(to_ws(&m)).await;
                    }
                    let _ = client_tx.send(close(&reason)).await;
                    break;
                }
                Next::Node(None) => break,
                Next::Tick => {
                    if now.saturating_duration_since(heard) > IDLE {
                        tracing::info!("loro: silent for {IDLE:?}; closing");
                        let _ = client_tx.send(close("idle")).await;
                        break;
                    }
                    bridge.tick(now)
                }
            };
            let mut stop = false;
            // Checked whatever woke us: a client that keeps sending must not
            // hold back what waits for it (the timer would not get a turn).
            if let Some(m) = gather.due(now) {
                if client_tx.send(to_ws(&m)).await.is_err() {
                    stop = true;
                }
            }
            for effect in effects {
                match effect {
                    Effect::ToClient(m) => {
                        for m in gather.push(m, now) {
                            if client_tx.send(to_ws(&m)).await.is_err() {
                                stop = true;
                            }
                        }
                    }
                    Effect::ToNode(m) => {
                        let Ok(frame) = encode_frame(std::slice::from_ref(&m)) else {
                            continue;
                        };
                        let frames = if frame.len() > NODE_CHUNK {
                            chunk_id = chunk_id.wrapping_add(1);
                            chunk_frames(&frame, NODE_CHUNK, chunk_id)
                        } else {
                            vec![frame]
                        };
                        for f in frames {
                            if in_tx.send(f).await.is_err() {
                                stop = true;
                            }
                        }
                    }
                    Effect::Relayed(batch) => gather.relayed(batch, now),
                    Effect::Close(reason) => {
                        if let Some(m) = gather.flush(now) {
                            let _ = client_tx.send(to_ws(&m)).await;
                        }
                        let _ = client_tx.send(close(&reason)).await;
                        stop = true;
                    }
                }
            }
            // The node's updates whose messages have gone: one frame of acks.
            let acks: Vec<Message> = gather
                .released()
                .into_iter()
                .map(|batch| Message::Ack {
                    batch,
                    status: AckStatus::Ok,
                    clock: None,
                })
                .collect();
            if !acks.is_empty() {
                if let Ok(frame) = encode_frame(&acks) {
                    if in_tx.send(frame).await.is_err() {
                        stop = true;
                    }
                }
            }
            if stop {
                break;
            }
        }
        node_out.close();
        in_tx.close();
        client_tx.close();
    })
    .detach();
    Link {
        tx: node_link_tx,
        rx: in_rx,
    }
}

async fn recv(out: &LinkOut) -> Option<Outbound> {
    out.recv().await
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

fn to_ws(m: &super::codec::LoroMessage) -> Ws {
    Ws::Binary(encode(m).into())
}

fn close(reason: &str) -> Ws {
    Ws::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: reason.chars().take(100).collect::<String>().into(),
    }))
}
