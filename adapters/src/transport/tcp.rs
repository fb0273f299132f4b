//! TCP: docweave frames are already length-prefixed, so a stream of frames
//! is the wire format. The header is checked against the limits before the
//! payload is read: a frame claiming 4 GiB is refused from its 6 bytes.

use super::slots::accept as accept_next;
use super::{error_frame, outbound, ConnectionLimit, Link, Outbound, DEFAULT_BACKLOG};
use docweave_core::{payload_len, ErrorCode, FrameError, Limits, HEADER_LEN};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A write that takes longer than this means the peer is not reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The first frame (the handshake) must arrive within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that sends nothing this long is closed (the WebSocket
/// endpoint, with its pings, uses 45 s; a TCP peer sends no pings).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Flushing and closing a connection that ends takes at most this.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// A frame must arrive whole within this after its header.
const FRAME_TIMEOUT: Duration = Duration::from_secs(60);
/// The payload is read in pieces of this size: memory follows the bytes
/// that came, not the size a header claims.
const READ_PIECE: usize = 64 * 1024;

/// Runs a TCP connection a client opened to us as a link, reading it at
/// most at [`InboundRate::default`](super::InboundRate).
pub fn tcp_link(stream: TcpStream, limits: Limits) -> Link {
    paced_link(stream, limits, super::InboundRate::default())
}

fn paced_link(stream: TcpStream, limits: Limits, rate: super::InboundRate) -> Link {
    io_link(stream.clone(), stream.clone(), stream, limits, rate)
}

/// A link over a stream read through `reader` and written through
/// `writer` (the two halves of a TLS stream, or clones of a TCP stream);
/// `raw` is the TCP connection under them, shut down when the link ends so
/// the reader stops too.
fn io_link<R, W>(
    reader: R,
    writer: W,
    raw: TcpStream,
    limits: Limits,
    rate: super::InboundRate,
) -> Link
where
    R: futures_lite::AsyncRead + Unpin + Send + 'static,
    W: futures_lite::AsyncWrite + Unpin + Send + 'static,
{
    let (out_tx, out_rx) = outbound(DEFAULT_BACKLOG);
    let (in_tx, in_rx) = async_channel::bounded::<Vec<u8>>(crate::transport::INBOUND_FRAMES);
    let writer_stream = writer;
    let writer_tx = out_tx.clone();
    smol::spawn(async move {
        let mut s = writer_stream;
        while let Some(item) = out_rx.recv().await {
            match item {
                Outbound::Frame(f) => {
                    let written =
                        futures_lite::future::or(async { s.write_all(&f).await.is_ok() }, async {
                            smol::Timer::after(WRITE_TIMEOUT).await;
                            false
                        })
                        .await;
                    out_rx.written(&f);
                    if !written {
                        tracing::info!("tcp: a write did not finish; closing");
                        break;
                    }
                }
                Outbound::Close(reason) => {
                    tracing::debug!("tcp: closing: {reason}");
                    break;
                }
            }
        }
        // The connection ends either way: what did not flush is lost with
        // it, and a close that fails leaves nothing to close. A peer that
        // reads nothing cannot hold the ending up (TLS's close writes).
        let ending = async {
            let _ = s.flush().await;
            let _ = s.close().await;
        };
        let late = async {
            smol::Timer::after(CLOSE_TIMEOUT).await;
        };
        futures_lite::future::or(ending, late).await;
        let _ = raw.shutdown(std::net::Shutdown::Both);
        out_rx.close();
    })
    .detach();
    smol::spawn(async move {
        let mut s = reader;
        let mut first = true;
        let mut pacer = super::Pacer::new(rate, std::time::Instant::now());
        loop {
            let wait = if first {
                HANDSHAKE_TIMEOUT
            } else {
                IDLE_TIMEOUT
            };
            first = false;
            match read_frame(&mut s, &limits, wait).await {
                Ok(Some(frame)) => {
                    // Not read again until this frame's bytes are paid for.
                    pacer.pace(frame.len()).await;
                    if in_tx.send(frame).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("tcp: refused a frame: {e}");
                    let code = match e {
                        FrameError::TooLarge { .. } => ErrorCode::TooLarge,
                        _ => ErrorCode::MalformedFrame,
                    };
                    let _ = writer_tx.send(error_frame(code, e.to_string()));
                    writer_tx.close(&e.to_string());
                    break;
                }
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

/// Reads one frame; `None` at a clean end of stream, or when nothing came
/// within `wait` (then the connection is closed for idleness). A frame's
/// payload must follow its header within [`FRAME_TIMEOUT`].
async fn read_frame(
    s: &mut (impl futures_lite::AsyncRead + Unpin),
    limits: &Limits,
    wait: Duration,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let within = if got == 0 { wait } else { FRAME_TIMEOUT };
        let read =
            futures_lite::future::or(async { Some(s.read(&mut header[got..]).await) }, async {
                smol::Timer::after(within).await;
                None
            })
            .await;
        match read {
            None if got == 0 => {
                tracing::info!("tcp: nothing came in {wait:?}; closing");
                return Ok(None);
            }
            None => return Err(FrameError::Truncated(got)),
            Some(Ok(0)) if got == 0 => return Ok(None),
            Some(Ok(0)) => return Err(FrameError::Truncated(got)),
            Some(Ok(n)) => got += n,
            Some(Err(_)) => return Ok(None),
        }
    }
    let len = payload_len(&header, limits)?;
    let mut frame = Vec::with_capacity(HEADER_LEN + len.min(READ_PIECE));
    frame.extend_from_slice(&header);
    let whole = HEADER_LEN + len;
    let body = async {
        let mut piece = vec![0u8; READ_PIECE.min(len.max(1))];
        while frame.len() < whole {
            let want = (whole - frame.len()).min(piece.len());
            match s.read(&mut piece[..want]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => frame.extend_from_slice(&piece[..n]),
            }
        }
        true
    };
    let complete = futures_lite::future::or(body, async {
        smol::Timer::after(FRAME_TIMEOUT).await;
        false
    })
    .await;
    if !complete {
        return Err(FrameError::Truncated(HEADER_LEN));
    }
    Ok(Some(frame))
}

/// Dials a TCP address.
pub async fn tcp_connect(addr: &str, limits: Limits) -> std::io::Result<Link> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    // The server we chose to dial paces its own clients; what it sends us
    // is read as fast as it comes.
    let unpaced = super::InboundRate {
        bytes_per_s: 0,
        burst: 0,
    };
    Ok(paced_link(stream, limits, unpaced))
}

/// Accepts connections and hands each to `accept` as a link, refusing
/// (with an error frame) those beyond the limit. Runs for ever: accept
/// errors are retried.
pub async fn serve_tcp(
    listener: TcpListener,
    limits: Limits,
    limit: ConnectionLimit,
    accept: impl Fn(Link) + Send + 'static,
) {
    let mut pause = Duration::from_millis(5);
    loop {
        let stream = accept_next(&listener, &mut pause).await;
        let Some(slot) = limit.enter() else {
            let mut s = stream;
            let why = match limit.is_closed() {
                true => "this server is stopping; use another".to_string(),
                false => format!(
                    "this server holds at most {} connections; try later",
                    limit.max()
                ),
            };
            let frame = error_frame(ErrorCode::TooLarge, why);
            smol::spawn(async move {
                let _ = s.write_all(&frame).await;
                let _ = s.shutdown(std::net::Shutdown::Both);
            })
            .detach();
            continue;
        };
        accept(slot.wrap(tcp_link(stream, limits)));
    }
}

/// [`serve_tcp`], speaking TLS when given a certificate: each connection's
/// handshake runs aside (within the handshake timeout), so a slow one holds
/// up nobody.
pub async fn serve_tcp_tls(
    listener: TcpListener,
    limits: Limits,
    limit: ConnectionLimit,
    tls: Option<super::TlsServer>,
    accept: impl Fn(Link) + Send + Sync + 'static,
) {
    let Some(tls) = tls else {
        return serve_tcp(listener, limits, limit, accept).await;
    };
    let accept = std::sync::Arc::new(accept);
    let mut pause = Duration::from_millis(5);
    loop {
        let stream = accept_next(&listener, &mut pause).await;
        // Over the limit: closed before the handshake (no error frame can
        // be read without one).
        let Some(slot) = limit.enter() else {
            tracing::info!("tcp: a TLS connection over the limit was closed");
            continue;
        };
        let (tls, accept) = (tls.clone(), accept.clone());
        smol::spawn(async move {
            let raw = stream.clone();
            let handshake = async { tls.accept(stream).await.map_err(|e| e.to_string()) };
            let timeout = async {
                smol::Timer::after(HANDSHAKE_TIMEOUT).await;
                Err("no TLS handshake in time".to_string())
            };
            match futures_lite::future::or(handshake, timeout).await {
                Ok(secured) => {
                    let (reader, writer) = futures_lite::io::split(secured);
                    let rate = super::InboundRate::default();
                    accept(slot.wrap(io_link(reader, writer, raw, limits, rate)));
                }
                Err(e) => {
                    tracing::info!("tcp: {e}; closing");
                    // Closing a connection that failed its handshake: if the
                    // shutdown fails, dropping the socket closes it anyway.
                    let _ = raw.shutdown(std::net::Shutdown::Both);
                }
            }
        })
        .detach();
    }
}
