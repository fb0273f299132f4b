//! WebSocket (async-tungstenite on smol): each binary message is a whole
//! frame or a piece of one (see `fragments`). Pings keep the connection
//! alive; a connection silent for too long is closed. The server speaks only
//! after the upgrade, and a client that never finishes it is dropped.

use super::fragments::{split, Reassembler, ReassemblyLimits, SharedBudget};
use super::slots::accept as accept_next;
use super::{
    error_frame, outbound, ConnectionLimit, InboundRate, Link, Outbound, Pacer, DEFAULT_BACKLOG,
};
#[cfg(feature = "loro-endpoint")]
use crate::loro_protocol::{loro_link, BridgeOptions};
use crate::timer_thread::{later, round_up_in_phase, ThreadTimer};
use async_tungstenite::tungstenite::handshake::server::{Request, Response};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::Message as Ws;
use async_tungstenite::{WebSocketReceiver, WebSocketSender, WebSocketStream};
use docweave_core::{payload_len, ErrorCode, Limits, HEADER_LEN};
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use futures_util::task::AtomicWaker;
use futures_util::StreamExt;
use smol::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// WebSocket settings.
#[derive(Debug, Clone)]
pub struct WsOptions {
    /// Frame limits.
    pub limits: Limits,
    /// Largest piece sent in one WebSocket message.
    pub fragment: usize,
    /// A ping is sent when the link went this long without a send, or
    /// without hearing from the peer (a server waits a quarter longer, so
    /// that a client pinging on the same period is the one that pings).
    pub keepalive: Duration,
    /// A connection that sends nothing (not even a pong) this long is closed.
    pub idle_timeout: Duration,
    /// A client must finish its upgrade within this time.
    pub handshake_timeout: Duration,
    /// A write to a peer that does not read is given up after this.
    pub write_timeout: Duration,
    /// Most bytes queued for one peer before its connection is closed.
    pub backlog: usize,
    /// Fragmented messages being reassembled at once, per connection.
    pub pending_fragments: usize,
    /// Bytes being reassembled on all connections of a server together.
    pub reassembly_budget: SharedBudget,
    /// How fast one connection is read.
    pub inbound_rate: InboundRate,
    /// A server with this speaks only TLS (`wss://`).
    pub tls: Option<super::TlsServer>,
    /// What a client dialing `wss://` trusts (default: the web's roots).
    pub trust: Option<super::TlsClient>,
    /// How far the links made with these options move the process's grid
    /// of timer instants, on which their keepalive pings and idle checks
    /// fall (instants a second apart, or an eighth of the keepalive when
    /// that is shorter; the phase is taken modulo that). Zero (the default)
    /// puts every link of the process on the same instants, so a thousand
    /// pings cost one wake-up; on a server's options it moves every
    /// accepted link together. A load generator standing in for many
    /// separate clients gives each link its own phase, as separate
    /// processes' grids would be, so that their pings do not reach the
    /// server in one burst.
    pub timer_phase: Duration,
}

impl Default for WsOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            fragment: 256 * 1024,
            // As loro-websocket's clients; a proxy's idle limit (nginx: 60 s)
            // is longer. Each ping costs the server a wake-up per connection.
            keepalive: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            backlog: DEFAULT_BACKLOG,
            pending_fragments: 2,
            reassembly_budget: SharedBudget::new(256 * 1024 * 1024),
            inbound_rate: InboundRate::default(),
            tls: None,
            trust: None,
            timer_phase: Duration::ZERO,
        }
    }
}

/// What one read of a server's connection takes at most. tungstenite keeps
/// a buffer this large for each connection for its whole life, so a server
/// holding 20,000 idle connections keeps 20 MB for it at 1 KB (80 MB at
/// the 4 KB it was); a large message takes more reads (a 256 KB piece, 256).
const SERVER_READ: usize = 1024;

/// What one read of a client's connection takes at most: a client holds
/// few connections and reads whole documents.
const CLIENT_READ: usize = 64 * 1024;

fn config(o: &WsOptions, read: usize) -> WebSocketConfig {
    let piece = o.fragment + 64;
    WebSocketConfig::default()
        .read_buffer_size(read)
        .write_buffer_size(0)
        .max_write_buffer_size(piece + 1024)
        .max_message_size(Some(piece))
        .max_frame_size(Some(piece))
}

/// Runs an upgraded WebSocket as a link.
pub fn ws_link<S>(ws: WebSocketStream<S>, o: WsOptions) -> Link
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    ws_link_holding(ws, o, None)
}

/// [`ws_link`], holding a server's connection slot until the connection
/// ends (in the reader task: no relay task and queue of its own).
fn ws_link_holding<S>(ws: WebSocketStream<S>, o: WsOptions, slot: Option<super::Slot>) -> Link
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (out_tx, out_rx) = outbound(o.backlog);
    let (in_tx, in_rx) = async_channel::bounded::<Vec<u8>>(crate::transport::INBOUND_FRAMES);
    let (sink, stream) = ws.split();
    let writer_tx = out_tx.clone();
    let activity = Arc::new(Activity::new());
    let (write_timeout, fragment) = (o.write_timeout, o.fragment);
    let writer = write_frames(sink, out_rx, activity.clone(), write_timeout, fragment);
    smol::spawn(writer).detach();
    smol::spawn(async move {
        let _slot = slot;
        read_frames(stream, writer_tx, in_tx, activity, o).await
    })
    .detach();
    Link {
        tx: out_tx,
        rx: in_rx,
    }
}

/// When a link last heard from its peer and last sent to it, shared by
/// its reader and writer, and the reader's request for a ping.
///
/// The link has one timer, the reader's: it closes a peer not heard from
/// for the idle timeout, and asks the writer for a ping when nothing went
/// to the peer for a keepalive period (a frame, a ping, or the pong
/// tungstenite answers a ping with), which is what keeps the peer's idle
/// timer and any proxy between satisfied. With a client that pings on its
/// own period, the server answers and never pings: one ping and one pong
/// per idle period, not one from each side; and the reader moves its timer
/// past the next ping at each one, so in that steady state the timer never
/// fires (moving it is an entry of the timer thread's map; a fire was a
/// wake-up and a poll of a task, twice per period when the writer had a
/// timer of its own, to find nothing to do). Data does not move the timer
/// (it fires at most once per period then, and looks again).
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    /// Milliseconds after `epoch`.
    heard: AtomicU64,
    /// Milliseconds after `epoch`.
    sent: AtomicU64,
    /// Milliseconds after `epoch`: when the reader last asked for a ping.
    pinged: AtomicU64,
    /// Set by the reader when the writer is to send a ping.
    ping_wanted: AtomicBool,
    /// The writer, waiting for a frame or a ping to send.
    writer: AtomicWaker,
}

impl Activity {
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            heard: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            pinged: AtomicU64::new(0),
            ping_wanted: AtomicBool::new(false),
            writer: AtomicWaker::new(),
        }
    }

    /// Milliseconds after `epoch`, now.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn stamp(&self, at: &AtomicU64) {
        at.store(self.now_ms(), Ordering::Relaxed);
    }

    fn read(&self, at: &AtomicU64) -> Instant {
        later(
            self.epoch,
            Duration::from_millis(at.load(Ordering::Relaxed)),
        )
    }

    /// The peer was heard from now.
    fn heard_now(&self) {
        self.stamp(&self.heard);
    }

    /// Something went to the peer now.
    fn sent_now(&self) {
        self.stamp(&self.sent);
    }

    /// The peer pinged now, and the pong went: both stamps, one clock read.
    fn pinged_now(&self) {
        let ms = self.now_ms();
        self.heard.store(ms, Ordering::Relaxed);
        self.sent.store(ms, Ordering::Relaxed);
    }

    /// When the peer was last heard from (the link's start, before anything).
    fn last_heard(&self) -> Instant {
        self.read(&self.heard)
    }

    /// When something last went to the peer (the link's start, before anything).
    fn last_sent(&self) -> Instant {
        self.read(&self.sent)
    }

    /// Asks the writer for a ping.
    fn want_ping(&self) {
        self.stamp(&self.pinged);
        self.stamp(&self.sent);
        self.ping_wanted.store(true, Ordering::SeqCst);
        self.writer.wake();
    }

    /// When a ping is due: a keepalive period after the quieter direction
    /// was last used (a peer that only receives is pinged too, so that its
    /// pongs show it is there), and not sooner than a period after the
    /// last ping asked for (so a peer that does not answer is pinged once
    /// a period until its idle timeout, not at every look).
    fn ping_due(&self, o: &WsOptions) -> Instant {
        let quieter = self.last_sent().min(self.last_heard());
        later(quieter.max(self.read(&self.pinged)), o.keepalive)
    }

    /// Asks for a ping if one is due at `now` (less an eighth of the
    /// period, so a send just after the last look does not put the ping
    /// off by a few milliseconds).
    fn ping_if_due(&self, o: &WsOptions, now: Instant) {
        if later(now, o.keepalive / 8) >= self.ping_due(o) {
            self.want_ping();
        }
    }

    /// Ready (once) when the reader asked for a ping.
    fn poll_ping_wanted(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        // Registered before the flag is read: a request made in between
        // wakes this waker.
        self.writer.register(cx.waker());
        match self.ping_wanted.swap(false, Ordering::SeqCst) {
            true => std::task::Poll::Ready(()),
            false => std::task::Poll::Pending,
        }
    }

    /// When the link's timer must next look: the idle close or the
    /// keepalive ping, whichever comes first.
    fn next_look(&self, o: &WsOptions) -> Instant {
        later(self.last_heard(), o.idle_timeout).min(self.ping_due(o))
    }
}

/// The instants a link's timer is set to: a grid of a second, or of an
/// eighth of the keepalive when that is shorter (tests use milliseconds),
/// in the link's phase.
#[derive(Debug, Clone, Copy)]
struct Grid {
    tick: Duration,
    phase: Duration,
}

impl Grid {
    fn of(o: &WsOptions) -> Self {
        Self {
            tick: (o.keepalive / 8).min(Duration::from_secs(1)),
            phase: o.timer_phase,
        }
    }

    /// `t`, rounded up to the grid.
    fn coarse(self, t: Instant) -> Instant {
        round_up_in_phase(t, self.tick, self.phase)
    }
}

/// What the writer does next.
enum Next {
    /// Something the node queued (`None`: every sender went).
    Out(Option<Outbound>),
    /// The reader asked for a ping (see `Activity`).
    Ping,
}

/// The writer task: writes the node's frames to the peer, in pieces of at
/// most `fragment` bytes, and a ping when the reader asks for one, until a
/// close, a failed write, or a write the peer does not take within
/// `write_timeout`.
async fn write_frames<S>(
    mut sink: WebSocketSender<S>,
    out_rx: super::LinkOut,
    activity: Arc<Activity>,
    write_timeout: Duration,
    fragment: usize,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut id: u32 = 0;
    loop {
        let next = futures_lite::future::or(async { Next::Out(out_rx.recv().await) }, async {
            futures_lite::future::poll_fn(|cx| activity.poll_ping_wanted(cx)).await;
            Next::Ping
        })
        .await;
        let write = async {
            match next {
                Next::Ping => {
                    activity.sent_now();
                    sink.send(Ws::Ping(Vec::new().into())).await.is_ok()
                }
                Next::Out(Some(Outbound::Frame(f))) => {
                    id = id.wrapping_add(1);
                    let mut ok = true;
                    for piece in split(&f, fragment, id) {
                        if sink.send(Ws::Binary(piece.into())).await.is_err() {
                            ok = false;
                            break;
                        }
                    }
                    out_rx.written(&f);
                    activity.sent_now();
                    ok
                }
                Next::Out(Some(Outbound::Close(reason))) => {
                    // A server that stops says so with 1001.
                    let away =
                        reason.starts_with(super::GOING_AWAY) || reason == super::SERVER_STOPPING;
                    let frame = CloseFrame {
                        code: if away {
                            CloseCode::Away
                        } else {
                            CloseCode::Normal
                        },
                        reason: reason.chars().take(100).collect::<String>().into(),
                    };
                    // The link ends either way: a peer that cannot take
                    // the close frame is gone, and nothing is left to tell it.
                    let _ = sink.send(Ws::Close(Some(frame))).await;
                    false
                }
                Next::Out(None) => {
                    // Every sender went: the link ends, and a close that
                    // fails leaves nothing to close.
                    let _ = sink.close(None).await;
                    false
                }
            }
        };
        // The timeout's timer is registered only if the write has to wait
        // (`or` polls the write first).
        let go_on = futures_lite::future::or(write, async {
            smol::Timer::after(write_timeout).await;
            tracing::info!(
                "websocket: the peer did not take a write in {write_timeout:?}; closing"
            );
            false
        })
        .await;
        if !go_on {
            break;
        }
    }
    out_rx.close();
}

/// The reader task: reads the peer (paced, and closed when silent for
/// `o.idle_timeout`), gathers its pieces into frames and hands them to the
/// node, and keeps the link's timer, asking the writer for the keepalive
/// pings (see `Activity`); bad input gets an `error` frame and the
/// connection closed.
async fn read_frames<S>(
    mut stream: WebSocketReceiver<S>,
    writer_tx: super::LinkTx,
    in_tx: async_channel::Sender<Vec<u8>>,
    activity: Arc<Activity>,
    o: WsOptions,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let mut pieces = Reassembler::new(ReassemblyLimits {
        max_message: o.limits.max_frame + HEADER_LEN,
        max_pending: o.pending_fragments,
        max_held: o.limits.max_frame + HEADER_LEN,
        deadline_ms: o.idle_timeout.as_millis() as u64,
    })
    .with_budget(o.reassembly_budget.clone());
    let mut pacer = Pacer::new(o.inbound_rate, Instant::now());
    // The link's one timer: the idle close and the keepalive ping (see
    // `Activity`).
    let grid = Grid::of(&o);
    let mut timer = ThreadTimer::at(grid.coarse(activity.next_look(&o)));
    loop {
        // The timer first: a peer that always has another message waiting
        // (a long upload) must not keep the ping it may need from going
        // (looking costs a clock read).
        let next = futures_lite::future::or(
            async {
                (&mut timer).await;
                None
            },
            async { Some(stream.next().await) },
        )
        .await;
        // The writer ended (a close, a failed write, or a write the peer
        // would not take in time): nothing reaches the peer any more, and
        // a peer that reads nothing but still pings would otherwise keep
        // this reader, its connection and the kernel's full send buffer
        // for as long as it pings.
        if writer_tx.finished() {
            break;
        }
        match &next {
            None => {
                let now = Instant::now();
                if now < later(activity.last_heard(), o.idle_timeout) {
                    activity.ping_if_due(&o, now);
                    timer.set_at(grid.coarse(activity.next_look(&o)));
                    continue;
                }
            }
            // tungstenite answers a ping with a pong: that went out too.
            Some(Some(Ok(Ws::Ping(_)))) => {
                activity.pinged_now();
                // The peer keeps the link alive: the timer moves past
                // its next ping instead of firing to find that out.
                timer.set_at(grid.coarse(activity.next_look(&o)));
            }
            Some(_) => activity.heard_now(),
        }
        let refuse = |code: ErrorCode, why: String| {
            tracing::warn!("websocket: {why}");
            let _ = writer_tx.send(error_frame(code, why.clone()));
            writer_tx.close(&why);
        };
        let message = match next {
            None => {
                tracing::info!("websocket: silent for {:?}; closing", o.idle_timeout);
                writer_tx.close("idle");
                break;
            }
            Some(None) => break,
            Some(Some(Err(async_tungstenite::tungstenite::Error::Capacity(e)))) => {
                refuse(
                    ErrorCode::TooLarge,
                    format!(
                        "a WebSocket message was too large: {e}; send pieces of at most {} bytes",
                        o.fragment
                    ),
                );
                break;
            }
            Some(Some(Err(_))) => break,
            Some(Some(Ok(m))) => m,
        };
        // Not read again until this message's bytes are paid for.
        let paced = pacer.pace(message.len());
        keeping_alive(paced, &mut timer, &activity, &o, grid).await;
        match message {
            Ws::Binary(bytes) => match pieces.take(&bytes, started.elapsed().as_millis() as u64) {
                Ok(Some(frame)) => {
                    if let Err(e) = payload_len(&frame, &o.limits) {
                        refuse(ErrorCode::MalformedFrame, e.to_string());
                        break;
                    }
                    let taken = in_tx.send(frame);
                    if keeping_alive(taken, &mut timer, &activity, &o, grid)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    refuse(ErrorCode::TooLarge, e.to_string());
                    break;
                }
            },
            Ws::Text(_) => {
                refuse(
                    ErrorCode::MalformedFrame,
                    "docweave speaks binary frames, not text".into(),
                );
                break;
            }
            Ws::Close(_) => break,
            _ => {}
        }
    }
    in_tx.close();
}

/// Waits for `work` (the pacer, or the node taking a frame), the link
/// kept alive meanwhile: the timer still asks for pings when they are due,
/// so a peer waiting on us (a node that stopped taking frames while its
/// store is away, say) keeps hearing from us. It does not close the link
/// as idle: while the reader waits it reads nothing, and the silence is
/// ours, so the peer's idle time counts again from when reading resumes.
async fn keeping_alive<T>(
    work: impl std::future::Future<Output = T>,
    timer: &mut ThreadTimer,
    activity: &Activity,
    o: &WsOptions,
    grid: Grid,
) -> T {
    let mut work = std::pin::pin!(work);
    let mut waited = false;
    let out = loop {
        let next = futures_lite::future::or(async { Some(work.as_mut().await) }, async {
            (&mut *timer).await;
            None
        })
        .await;
        match next {
            Some(out) => break out,
            None => {
                waited = true;
                activity.ping_if_due(o, Instant::now());
                timer.set_at(grid.coarse(activity.ping_due(o)));
            }
        }
    };
    if waited {
        activity.heard_now();
        timer.set_at(grid.coarse(activity.next_look(o)));
    }
    out
}

/// Dials a `ws://host:port/...` or `wss://host:port/...` URL (TLS, checked
/// against `o.trust`, or the web's roots).
pub async fn ws_connect(url: &str, o: WsOptions) -> Result<Link, String> {
    let (secure, rest) = match (url.strip_prefix("wss://"), url.strip_prefix("ws://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return Err(format!("{url:?} is not a ws:// or wss:// URL")),
    };
    let host = rest.split('/').next().unwrap_or(rest);
    let stream = smol::net::TcpStream::connect(host)
        .await
        .map_err(|e| format!("cannot reach {host}: {e}"))?;
    // Small frames must not wait for Nagle's algorithm.
    // (A socket without it is slower, never wrong.)
    let _ = stream.set_nodelay(true);
    // The server we chose to dial paces its own clients; what it sends us
    // (a large document) is read as fast as it comes.
    let mut o = WsOptions {
        inbound_rate: InboundRate {
            bytes_per_s: 0,
            burst: 0,
        },
        ..o
    };
    if !secure {
        let (ws, _) =
            async_tungstenite::client_async_with_config(url, stream, Some(config(&o, CLIENT_READ)))
                .await
                .map_err(|e| e.to_string())?;
        return Ok(ws_link(ws, o));
    }
    let trust = match o.trust.take() {
        Some(t) => t,
        None => super::TlsClient::new(None)?,
    };
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let tls = trust.connect(name, stream).await?;
    let (ws, _) =
        async_tungstenite::client_async_with_config(url, tls, Some(config(&o, CLIENT_READ)))
            .await
            .map_err(|e| e.to_string())?;
    Ok(ws_link(ws, o))
}

/// A plain HTTP answer on the WebSocket port, for what is not an upgrade.
fn http_answer(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What a server does with connections to paths starting with `/loro`:
/// with the Loro endpoint's options it speaks the Loro Syncing Protocol
/// there; with `None` (always, in a build without the endpoint) it serves
/// them as native links.
#[cfg(feature = "loro-endpoint")]
type LoroEndpoint = Option<BridgeOptions>;
#[cfg(not(feature = "loro-endpoint"))]
type LoroEndpoint = Option<std::convert::Infallible>;

/// Accepts WebSocket connections and hands each to `accept` as a link.
/// Each upgrade runs in its own task with a deadline; its connection slot
/// is given back on every path (a failed or abandoned upgrade included).
/// A request that is no upgrade (a health check) gets a plain HTTP answer;
/// a connection past the limit gets `503`. Accept errors are retried.
pub async fn serve_ws(
    listener: TcpListener,
    o: WsOptions,
    limit: ConnectionLimit,
    accept: impl Fn(Link) + Send + Sync + 'static,
) {
    serve(listener, o, limit, accept, None).await
}

/// [`serve_ws`], and with `loro` set, connections to paths starting with
/// `/loro` speak the Loro Syncing Protocol (see [`crate::loro_protocol`]);
/// each is handed to `accept` as a native link all the same.
#[cfg(feature = "loro-endpoint")]
pub async fn serve_ws_with_loro(
    listener: TcpListener,
    o: WsOptions,
    limit: ConnectionLimit,
    accept: impl Fn(Link) + Send + Sync + 'static,
    loro: Option<BridgeOptions>,
) {
    serve(listener, o, limit, accept, loro).await
}

/// [`serve_ws`], with what `/loro` paths get.
async fn serve(
    listener: TcpListener,
    o: WsOptions,
    limit: ConnectionLimit,
    accept: impl Fn(Link) + Send + Sync + 'static,
    loro: LoroEndpoint,
) {
    let accept = std::sync::Arc::new(accept);
    // The accepting side waits a quarter longer before it pings: with a
    // client that pings on the same period (ours, loro-websocket's), only
    // the client does, and the server answers. On equal periods both sides
    // pinged at once whenever their timers fell within a round trip (under
    // load, most of them: twice the pings, and each a wake-up per
    // connection). Never past half the idle timeout, so a peer that only
    // answers pings is pinged in time.
    let o = WsOptions {
        keepalive: o
            .keepalive
            .saturating_add(o.keepalive / 4)
            .min(o.idle_timeout / 2),
        ..o
    };
    let mut pause = Duration::from_millis(5);
    loop {
        let stream = accept_next(&listener, &mut pause).await;
        let Some(slot) = limit.enter() else {
            let mut s = stream;
            let max = limit.max();
            let stopping = limit.is_closed();
            smol::spawn(async move {
                let body = match stopping {
                    true => "docweave: this server is stopping; use another\n".to_string(),
                    false => format!(
                        "docweave: this server holds at most {max} connections; try again later\n"
                    ),
                };
                // Best effort: a client that cannot be told is gone anyway.
                let _ = s
                    .write_all(&http_answer("503 Service Unavailable", &body))
                    .await;
                let _ = s.close().await;
            })
            .detach();
            continue;
        };
        let accept = accept.clone();
        let o = o.clone();
        // A copy when the Loro endpoint is compiled out (an Option<Infallible>).
        #[allow(clippy::clone_on_copy)]
        let loro = loro.clone();
        smol::spawn(async move {
            let Some(tls) = o.tls.clone() else {
                let raw = stream.clone();
                return upgrade(stream, Some(raw), o, slot, accept, loro).await;
            };
            let handshake =
                futures_lite::future::or(async { Some(tls.accept(stream).await) }, async {
                    smol::Timer::after(o.handshake_timeout).await;
                    None
                })
                .await;
            match handshake {
                Some(Ok(stream)) => upgrade(stream, None, o, slot, accept, loro).await,
                Some(Err(e)) => tracing::debug!("websocket: TLS handshake failed: {e}"),
                None => {
                    tracing::info!("websocket: a client did not finish its TLS handshake in time")
                }
            }
        })
        .detach();
    }
}

/// The WebSocket upgrade of one accepted connection (plain, or inside TLS),
/// then its link. `raw`, for a plain connection, answers what is not an
/// upgrade (a health check) in plain HTTP.
async fn upgrade<S>(
    stream: S,
    raw: Option<smol::net::TcpStream>,
    o: WsOptions,
    slot: super::Slot,
    accept: Arc<impl Fn(Link) + Send + Sync + 'static>,
    loro: LoroEndpoint,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let path = Arc::new(std::sync::OnceLock::<String>::new());
    let seen = path.clone();
    // The callback's error type is tungstenite's; it never fails here.
    #[allow(clippy::result_large_err)]
    let note_path = move |req: &Request, res: Response| {
        // Set once per connection: a second set cannot happen.
        let _ = seen.set(req.uri().path().to_string());
        Ok(res)
    };
    let upgrade = futures_lite::future::or(
        async {
            Some(
                async_tungstenite::accept_hdr_async_with_config(
                    stream,
                    note_path,
                    Some(config(&o, SERVER_READ)),
                )
                .await,
            )
        },
        async {
            smol::Timer::after(o.handshake_timeout).await;
            None
        },
    )
    .await;
    match upgrade {
        Some(Ok(ws)) => {
            let to_loro = path.get().is_some_and(|p| p.starts_with("/loro"));
            accept(link_for(ws, o, slot, loro, to_loro))
        }
        Some(Err(async_tungstenite::tungstenite::Error::Protocol(e))) => {
            // Not a WebSocket client (a health check, a browser): say what this is.
            tracing::debug!("websocket: not an upgrade: {e}");
            if let Some(mut raw) = raw {
                let body = "docweave: this port speaks WebSocket (ws://); the HTTP endpoint and status page are on the HTTP port\n";
                // The client may be gone already; nothing is owed to it.
                let _ = raw.write_all(&http_answer("200 OK", body)).await;
                let _ = raw.close().await;
            }
        }
        Some(Err(e)) => tracing::debug!("websocket: upgrade failed: {e}"),
        None => tracing::info!("websocket: a client did not finish its upgrade in time"),
    }
}

/// The link of an upgraded connection: the Loro endpoint's when the server
/// has one and the path asks for it (`to_loro`), the native one otherwise.
#[cfg(feature = "loro-endpoint")]
fn link_for<S>(
    ws: WebSocketStream<S>,
    o: WsOptions,
    slot: super::Slot,
    loro: LoroEndpoint,
    to_loro: bool,
) -> Link
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match loro {
        Some(b) if to_loro => slot.wrap(loro_link(ws, o, b)),
        _ => ws_link_holding(ws, o, Some(slot)),
    }
}

/// The link of an upgraded connection: without the Loro endpoint, every
/// path gets the native one.
#[cfg(not(feature = "loro-endpoint"))]
fn link_for<S>(
    ws: WebSocketStream<S>,
    o: WsOptions,
    slot: super::Slot,
    loro: LoroEndpoint,
    to_loro: bool,
) -> Link
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _ = (loro, to_loro);
    ws_link_holding(ws, o, Some(slot))
}
