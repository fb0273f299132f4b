//! A Loro-protocol WebSocket as a native [`Link`]: one task reads the
//! client, the node's frames and the clock and runs the [`Session`] (the
//! bridge and all of its logic, without I/O); one writes to the client, with
//! a bounded queue and a write timeout.

use super::bridge::BridgeOptions;
use super::client_reads::{ClientMessage, ClientReads};
use super::codec::encode;
use super::session::{Action, Session, TICK};
use crate::timer_thread::{round_down, ThreadTimer};
use crate::transport::{outbound, Link, LinkOut, Outbound, WsOptions};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::Message as Ws;
use async_tungstenite::{WebSocketReceiver, WebSocketSender, WebSocketStream};
use futures_lite::{AsyncRead, AsyncWrite};
use futures_util::SinkExt;
use std::time::{Duration, Instant};

/// Messages queued for one client before the bridge waits for it (a
/// client that does not read is closed by the write timeout).
const CLIENT_QUEUE: usize = 256;

/// Most messages, and bytes, written to a client before one flush.
const WRITE_BATCH: usize = 64;
const WRITE_BATCH_BYTES: usize = 1024 * 1024;

enum Next {
    Client(ClientMessage),
    Node(Option<Outbound>),
    Tick,
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
    let (sink, stream) = ws.split();
    let write_timeout = o.write_timeout;
    let writer_rx = client_rx.clone();
    smol::spawn(write_client(sink, writer_rx, write_timeout)).detach();
    let node_link_tx = node_tx.clone();
    smol::spawn(run_session(stream, node_out, in_tx, client_tx, o, b)).detach();
    Link {
        tx: node_link_tx,
        rx: in_rx,
    }
}

/// The writer task: writes what is queued for the client, in bounded
/// batches, each within the write timeout, until a close is written, a
/// write fails or times out, or the queue ends.
async fn write_client<S>(
    mut sink: WebSocketSender<S>,
    writer_rx: async_channel::Receiver<Ws>,
    write_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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
                    // Empty or closed alike: nothing more to batch now.
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
}

/// The session task: reads the client, the node's frames and the clock,
/// runs the session on each and carries out what it decides, until the
/// session or either side ends; then closes all three queues.
async fn run_session<S>(
    stream: WebSocketReceiver<S>,
    node_out: LinkOut,
    in_tx: async_channel::Sender<Vec<u8>>,
    client_tx: async_channel::Sender<Ws>,
    o: WsOptions,
    b: BridgeOptions,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut session = Session::new(b, o.limits, o.inbound_rate, Instant::now());
    // Set by a paced message: the client is not read again before it.
    let mut read_after: Option<Instant> = None;
    // One timer for the session's life, moved only when its deadline moves.
    let mut timer = ThreadTimer::at(Instant::now() + TICK);
    // Read only when the socket may have something (see `ClientReads`).
    let mut client = ClientReads::new(stream);
    loop {
        let now = Instant::now();
        let deadline = session.deadline(now);
        // The once-a-tick deadline (the session's `now + TICK`) goes down to
        // the process's grid of ticks: it is still within a tick, and every
        // session's tick then falls on the same instants. With thousands of
        // idle clients the timer thread and the executor wake once a tick
        // for all of them, and a busy session's timer stays where it is
        // instead of moving with every message. Earlier deadlines (gathered
        // updates) are kept as they are.
        let tick = now + TICK;
        let deadline = if deadline >= tick {
            round_down(tick, TICK).max(now)
        } else {
            deadline
        };
        timer.set_at(deadline);
        let next = next_input(&mut client, &node_out, &mut timer).await;
        let now = Instant::now();
        let Some(actions) = react(&mut session, next, &node_out, &mut read_after, now) else {
            break;
        };
        if let Some(at) = read_after.take() {
            client.resume_at(at);
        }
        let stop = act(actions, &client_tx, &in_tx).await;
        if stop || session.closed() {
            break;
        }
    }
    node_out.close();
    in_tx.close();
    client_tx.close();
}

/// Waits for what comes first: the session's `deadline`, the client's next
/// message, or the node's next frame. A deadline that has come is looked
/// at first: a client that always has another message waiting (a ping
/// answered and sent again at once, thousands a second) must not keep its
/// session from ticking, and so from the check of its rights.
async fn next_input<S>(
    client: &mut ClientReads<S>,
    node_out: &LinkOut,
    deadline: &mut ThreadTimer,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    futures_lite::future::or(
        async {
            deadline.await;
            Next::Tick
        },
        futures_lite::future::or(async { Next::Client(client.next().await) }, async {
            Next::Node(recv(node_out).await)
        }),
    )
    .await
}

/// Runs the session on one input: what it wants done, or `None` when the
/// connection is over (the client or the node is gone, or the client
/// closed). A paced client's next read waits until `read_after`.
fn react(
    session: &mut Session,
    next: Next,
    node_out: &LinkOut,
    read_after: &mut Option<Instant>,
    now: Instant,
) -> Option<Vec<Action>> {
    let actions = match next {
        Next::Client(Some(Ok(Ws::Binary(bytes)))) => {
            let (actions, wait) = session.client_binary(&bytes, now);
            *read_after = (!wait.is_zero()).then(|| now + wait);
            actions
        }
        Next::Client(Some(Ok(Ws::Text(t)))) => session.client_text(t.as_str(), now),
        Next::Client(Some(Ok(Ws::Close(_)))) | Next::Client(None) => return None,
        Next::Client(Some(Ok(_))) => session.client_other(now),
        Next::Client(Some(Err(e))) => {
            tracing::info!("loro: {e}");
            return None;
        }
        Next::Node(Some(Outbound::Frame(frame))) => {
            node_out.written(&frame);
            session.node_frame(frame, now)
        }
        Next::Node(Some(Outbound::Close(reason))) => session.node_closed(&reason, now),
        Next::Node(None) => return None,
        Next::Tick => session.tick(now),
    };
    Some(actions)
}

/// Carries out the session's actions in order: whether the connection is
/// to end (a close, or a queue whose other side is gone).
async fn act(
    actions: Vec<Action>,
    client_tx: &async_channel::Sender<Ws>,
    in_tx: &async_channel::Sender<Vec<u8>>,
) -> bool {
    let mut stop = false;
    for action in actions {
        let sent = match action {
            Action::ToClient(m) => client_tx.send(to_ws(&m)).await.is_ok(),
            Action::Pong => client_tx.send(Ws::Text("pong".into())).await.is_ok(),
            Action::ToNode(frame) => in_tx.send(frame).await.is_ok(),
            Action::Close(reason) => {
                // The session is over whether or not the close is
                // written: the writer gives up on a client that
                // does not read.
                if client_tx.send(close(&reason)).await.is_err() {
                    tracing::debug!("loro: the client is gone before its close");
                }
                stop = true;
                true
            }
        };
        stop |= !sent;
    }
    stop
}

async fn recv(out: &LinkOut) -> Option<Outbound> {
    out.recv().await
}

fn to_ws(m: &super::codec::LoroMessage) -> Ws {
    Ws::Binary(encode(m).into())
}

fn close(reason: &str) -> Ws {
    let code = if reason.starts_with(super::bridge::GOING_AWAY)
        || reason == crate::transport::SERVER_STOPPING
    {
        CloseCode::Away
    } else {
        CloseCode::Normal
    };
    Ws::Close(Some(CloseFrame {
        code,
        reason: reason.chars().take(100).collect::<String>().into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loro_protocol::bridge::Identity;
    use async_tungstenite::tungstenite::protocol::Role;
    use docweave_core::{PeerId, Rules};
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};

    /// A socket that counts the reads asked of it.
    struct CountingReads {
        inner: smol::net::TcpStream,
        reads: Arc<AtomicUsize>,
    }

    impl AsyncRead for CountingReads {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for CountingReads {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_close(cx)
        }
    }

    #[test]
    fn an_idle_session_does_not_read_its_socket_at_each_tick() {
        smol::block_on(async {
            let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let client = smol::net::TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let reads = Arc::new(AtomicUsize::new(0));
            let socket = CountingReads {
                inner: server,
                reads: reads.clone(),
            };
            let ws = WebSocketStream::from_raw_socket(socket, Role::Server, None).await;
            let identity: Identity = Arc::new(|_| PeerId::new("p"));
            let options = BridgeOptions::new(identity, Rules::allow_all());
            let link = loro_link(ws, WsOptions::default(), options);
            // The client connects and says nothing.
            let _client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
            smol::Timer::after(Duration::from_millis(300)).await;
            let before = reads.load(Ordering::Relaxed);
            assert!(before >= 1, "the session reads its client from the start");
            // Three ticks at least (one a second).
            smol::Timer::after(TICK * 3 + Duration::from_millis(500)).await;
            let during = reads.load(Ordering::Relaxed) - before;
            assert_eq!(
                during, 0,
                "the socket was read {during} times with nothing to read"
            );
            drop(link);
        });
    }
}
