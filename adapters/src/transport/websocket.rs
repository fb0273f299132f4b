//! WebSocket (async-tungstenite on smol): each binary message is a whole
//! frame or a piece of one (see `fragments`). Pings keep the connection
//! alive; a connection silent for too long is closed. The server speaks only
//! after the upgrade, and a client that never finishes it is dropped.

use super::fragments::{split, Reassembler, ReassemblyLimits};
use super::{error_frame, ConnectionLimit, Link, Outbound};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::Message as Ws;
use async_tungstenite::WebSocketStream;
use docweave_core::{payload_len, ErrorCode, Limits, HEADER_LEN};
use futures_lite::{AsyncRead, AsyncWrite};
use futures_util::StreamExt;
use smol::net::TcpListener;
use std::time::{Duration, Instant};

/// WebSocket settings.
#[derive(Debug, Clone, Copy)]
pub struct WsOptions {
    /// Frame limits.
    pub limits: Limits,
    /// Largest piece sent in one WebSocket message.
    pub fragment: usize,
    /// A ping is sent this often.
    pub keepalive: Duration,
    /// A connection that sends nothing (not even a pong) this long is closed.
    pub idle_timeout: Duration,
    /// A client must finish its upgrade within this time.
    pub handshake_timeout: Duration,
    /// Bounds on reassembling fragmented frames.
    pub pending_fragments: usize,
}

impl Default for WsOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            fragment: 256 * 1024,
            keepalive: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            handshake_timeout: Duration::from_secs(10),
            pending_fragments: 8,
        }
    }
}

fn config(o: &WsOptions) -> WebSocketConfig {
    let piece = o.fragment + 64;
    WebSocketConfig::default()
        .max_message_size(Some(piece))
        .max_frame_size(Some(piece))
}

/// Runs an upgraded WebSocket as a link.
pub fn ws_link<S>(ws: WebSocketStream<S>, o: WsOptions) -> Link
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (out_tx, out_rx) = async_channel::unbounded::<Outbound>();
    let (in_tx, in_rx) = async_channel::unbounded::<Vec<u8>>();
    let (mut sink, mut stream) = ws.split();
    let writer_tx = out_tx.clone();
    smol::spawn(async move {
        let mut id: u32 = 0;
        loop {
            let next = futures_lite::future::or(async { out_rx.recv().await.ok() }, async {
                smol::Timer::after(o.keepalive).await;
                Some(Outbound::Frame(Vec::new()))
            })
            .await;
            let result = match next {
                // An empty frame is the keepalive tick.
                Some(Outbound::Frame(f)) if f.is_empty() => {
                    sink.send(Ws::Ping(Vec::new().into())).await
                }
                Some(Outbound::Frame(f)) => {
                    id = id.wrapping_add(1);
                    let mut r = Ok(());
                    for piece in split(&f, o.fragment, id) {
                        r = sink.send(Ws::Binary(piece.into())).await;
                        if r.is_err() {
                            break;
                        }
                    }
                    r
                }
                Some(Outbound::Close(reason)) => {
                    let frame = CloseFrame {
                        code: CloseCode::Normal,
                        reason: reason.chars().take(100).collect::<String>().into(),
                    };
                    let _ = sink.send(Ws::Close(Some(frame))).await;
                    break;
                }
                None => {
                    let _ = sink.close(None).await;
                    break;
                }
            };
            if result.is_err() {
                break;
            }
        }
        out_rx.close();
    })
    .detach();
    smol::spawn(async move {
        let mut pieces = Reassembler::new(ReassemblyLimits {
            max_frame: o.limits.max_frame + HEADER_LEN,
            max_pending: o.pending_fragments,
            timeout: o.idle_timeout,
        });
        loop {
            let next = futures_lite::future::or(async { Some(stream.next().await) }, async {
                smol::Timer::after(o.idle_timeout).await;
                None
            })
            .await;
            let message = match next {
                None => {
                    tracing::info!("websocket: silent for {:?}; closing", o.idle_timeout);
                    let _ = writer_tx.try_send(Outbound::Close("idle".into()));
                    break;
                }
                Some(None) | Some(Some(Err(_))) => break,
                Some(Some(Ok(m))) => m,
            };
            let refuse = |code: ErrorCode, why: String| {
                tracing::warn!("websocket: {why}");
                let _ = writer_tx.try_send(Outbound::Frame(error_frame(code, why.clone())));
                let _ = writer_tx.try_send(Outbound::Close(why));
            };
            match message {
                Ws::Binary(bytes) => match pieces.take(&bytes, Instant::now()) {
                    Ok(Some(frame)) => {
                        if let Err(e) = payload_len(&frame, &o.limits) {
                            refuse(ErrorCode::MalformedFrame, e.to_string());
                            break;
                        }
                        if in_tx.send(frame).await.is_err() {
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
    })
    .detach();
    Link {
        tx: out_tx,
        rx: in_rx,
    }
}

/// Dials a `ws://host:port/...` URL.
pub async fn ws_connect(url: &str, o: WsOptions) -> Result<Link, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("{url:?} is not a ws:// URL"))?;
    let host = rest.split('/').next().unwrap_or(rest);
    let stream = smol::net::TcpStream::connect(host)
        .await
        .map_err(|e| format!("cannot reach {host}: {e}"))?;
    // Small frames must not wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let (ws, _) = async_tungstenite::client_async_with_config(url, stream, Some(config(&o)))
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws_link(ws, o))
}

/// Accepts WebSocket connections and hands each to `accept` as a link.
/// Each upgrade runs in its own task with a deadline, so a client that never
/// finishes it holds nobody up.
pub async fn serve_ws(
    listener: TcpListener,
    o: WsOptions,
    limit: ConnectionLimit,
    accept: impl Fn(Link) + Send + Sync + 'static,
) {
    let accept = std::sync::Arc::new(accept);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let Some(guard) = limit.enter() else {
            drop(stream);
            continue;
        };
        let accept = accept.clone();
        smol::spawn(async move {
            let upgrade = futures_lite::future::or(
                async {
                    async_tungstenite::accept_async_with_config(stream, Some(config(&o)))
                        .await
                        .ok()
                },
                async {
                    smol::Timer::after(o.handshake_timeout).await;
                    None
                },
            )
            .await;
            let Some(ws) = upgrade else {
                tracing::info!("websocket: a client did not finish its upgrade in time");
                return;
            };
            let link = ws_link(ws, o);
            accept(guard.wrap(link));
        })
        .detach();
    }
}
