//! Transport conformance: every transport keeps order, carries large
//! payloads, ends on close, and refuses bad frames at its edge. Each
//! network transport's tests need its feature.

#[cfg(feature = "http")]
use docweave_adapters::transport::polled_pair;
#[cfg(any(feature = "tcp", feature = "websocket"))]
use docweave_adapters::transport::ConnectionLimit;
use docweave_adapters::transport::{memory_pair, memory_pair_with_faults, Faults};
#[cfg(feature = "tcp")]
use docweave_adapters::transport::{serve_tcp, tcp_connect};
use docweave_adapters::Link;
#[cfg(any(feature = "tcp", feature = "websocket"))]
use docweave_core::{decode, Limits};
use docweave_core::{encode, ErrorCode, Message};
#[cfg(any(feature = "tcp", feature = "websocket"))]
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::time::Duration;

fn frame(i: u32, pad: usize) -> Vec<u8> {
    encode(&[Message::Error {
        code: ErrorCode::TooLarge,
        message: format!("{i}:{}", "x".repeat(pad)),
    }])
    .unwrap_or_default()
}

async fn recv(link: &Link) -> Option<Vec<u8>> {
    futures_lite::future::or(async { link.rx.recv().await.ok() }, async {
        smol::Timer::after(Duration::from_secs(10)).await;
        None
    })
    .await
}

/// The checks every transport must pass, on a connected pair.
async fn conformance(a: Link, b: Link) {
    // Ordering.
    for i in 0..200 {
        assert!(a.send(frame(i, 10)), "send {i}");
    }
    for i in 0..200 {
        assert_eq!(
            recv(&b).await,
            Some(frame(i, 10)),
            "frame {i} out of order or lost"
        );
    }
    // A large payload, both ways.
    let big = frame(7, 3 * 1024 * 1024);
    assert!(b.send(big.clone()));
    assert_eq!(recv(&a).await.map(|f| f.len()), Some(big.len()));
    // Close ends the other side.
    a.close("done");
    let ended = ends_within(&b, Duration::from_secs(10)).await;
    assert!(ended, "close did not reach the other side");
}

/// Whether `link`'s other side ends it within `limit` (what is still
/// coming on it is read and dropped).
async fn ends_within(link: &Link, limit: Duration) -> bool {
    futures_lite::future::or(
        async {
            while link.rx.recv().await.is_ok() {}
            true
        },
        async {
            smol::Timer::after(limit).await;
            false
        },
    )
    .await
}

#[cfg(feature = "tcp")]
async fn tcp_pair(limits: Limits) -> (Link, Link, std::net::SocketAddr) {
    let listener = smol::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (tx, rx) = async_channel::unbounded();
    smol::spawn(serve_tcp(
        listener,
        limits,
        ConnectionLimit::new(4),
        move |link| {
            let _ = tx.try_send(link);
        },
    ))
    .detach();
    let client = tcp_connect(&addr.to_string(), limits)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let server = rx.recv().await.unwrap_or_else(|e| panic!("{e}"));
    (client, server, addr)
}

#[test]
fn memory_conforms() {
    smol::block_on(async {
        let (a, b) = memory_pair();
        conformance(a, b).await;
    });
}

#[cfg(feature = "tcp")]
#[test]
fn tcp_conforms() {
    smol::block_on(async {
        let (a, b, _) = tcp_pair(Limits::default()).await;
        conformance(a, b).await;
    });
}

#[test]
fn memory_faults_are_seeded_and_reproducible() {
    let run = || {
        smol::block_on(async {
            let (a, b) = memory_pair_with_faults(Faults {
                seed: 42,
                drop: 200,
                duplicate: 100,
                reorder: 200,
                ..Faults::default()
            });
            for i in 0..100 {
                a.send(frame(i, 0));
            }
            a.close("done");
            let mut got = Vec::new();
            while let Ok(f) = b.rx.recv().await {
                got.push(f);
            }
            got
        })
    };
    let first = run();
    assert_eq!(first, run(), "same seed, same faults");
    assert!(
        first.len() != 100 || first != (0..100).map(|i| frame(i, 0)).collect::<Vec<_>>(),
        "faults were injected"
    );
    let (_, b) = memory_pair_with_faults(Faults {
        disconnect_after: 3,
        ..Faults::default()
    });
    drop(b);
}

#[cfg(feature = "tcp")]
async fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<Message> {
    let mut s = smol::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let read = futures_lite::future::or(async { s.read_to_end(&mut out).await.ok() }, async {
        smol::Timer::after(Duration::from_secs(10)).await;
        None
    })
    .await;
    assert!(read.is_some(), "the server did not close the connection");
    decode(&out, &Limits::default()).unwrap_or_default()
}

#[cfg(feature = "tcp")]
fn error_code(messages: &[Message]) -> Option<ErrorCode> {
    messages.iter().find_map(|m| match m {
        Message::Error { code, .. } => Some(*code),
        _ => None,
    })
}

#[cfg(feature = "tcp")]
#[test]
fn tcp_refuses_garbage_huge_claims_and_oversized_frames_and_keeps_serving() {
    smol::block_on(async {
        let limits = Limits {
            max_frame: 64 * 1024,
            ..Limits::default()
        };
        let (client, server, addr) = tcp_pair(limits).await;
        // Garbage: wrong version byte.
        assert_eq!(
            error_code(&raw_exchange(addr, b"GET / HTTP/1.1\r\n\r\n").await),
            Some(ErrorCode::MalformedFrame)
        );
        // A frame that claims 4 GiB is refused from its header.
        assert_eq!(
            error_code(
                &raw_exchange(
                    addr,
                    &[docweave_core::FRAME_VERSION, 0, 0xff, 0xff, 0xff, 0xff]
                )
                .await
            ),
            Some(ErrorCode::TooLarge)
        );
        // An honest frame over the limit.
        assert_eq!(
            error_code(&raw_exchange(addr, &frame(1, 100 * 1024)).await),
            Some(ErrorCode::TooLarge)
        );
        // The good connection is untouched.
        assert!(client.send(frame(9, 1)));
        assert_eq!(recv(&server).await, Some(frame(9, 1)));
    });
}

#[cfg(feature = "tcp")]
#[test]
fn tcp_refuses_a_flood_beyond_the_connection_limit() {
    smol::block_on(async {
        let (client, server, addr) = tcp_pair(Limits::default()).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(
                smol::net::TcpStream::connect(addr)
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        // The limit is 4: this one is told why and closed.
        assert_eq!(
            error_code(&raw_exchange(addr, &[]).await),
            Some(ErrorCode::TooLarge)
        );
        assert!(client.send(frame(3, 1)));
        assert_eq!(recv(&server).await, Some(frame(3, 1)));
        drop(held);
    });
}

#[cfg(feature = "websocket")]
use docweave_adapters::transport::{serve_ws, ws_connect, WsOptions};

/// A WebSocket server on a free port, and the links it accepts.
#[cfg(feature = "websocket")]
async fn ws_server(o: WsOptions) -> (async_channel::Receiver<Link>, std::net::SocketAddr) {
    let listener = smol::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (tx, rx) = async_channel::unbounded();
    smol::spawn(serve_ws(
        listener,
        o,
        ConnectionLimit::new(16),
        move |link| {
            // Unbounded: refused only once the test dropped the receiver and
            // wants no more links.
            let _ = tx.try_send(link);
        },
    ))
    .detach();
    (rx, addr)
}

/// A plain WebSocket client (not a docweave link) of the server at `addr`.
#[cfg(feature = "websocket")]
async fn raw_ws_client(
    addr: std::net::SocketAddr,
) -> async_tungstenite::WebSocketStream<smol::net::TcpStream> {
    let stream = smol::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (ws, _) = async_tungstenite::client_async(format!("ws://{addr}/"), stream)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    ws
}

#[cfg(feature = "websocket")]
async fn ws_pair(o: WsOptions) -> (Link, Link, std::net::SocketAddr) {
    let (rx, addr) = ws_server(o.clone()).await;
    let client = ws_connect(&format!("ws://{addr}/"), o)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let server = rx.recv().await.unwrap_or_else(|e| panic!("{e}"));
    (client, server, addr)
}

#[cfg(feature = "websocket")]
#[test]
fn websocket_conforms_with_fragmentation() {
    smol::block_on(async {
        // 3 MiB payloads cross as 256 KiB pieces.
        let (a, b, _) = ws_pair(WsOptions::default()).await;
        conformance(a, b).await;
    });
}

#[cfg(feature = "websocket")]
#[test]
fn websocket_keepalive_holds_an_idle_connection_open() {
    smol::block_on(async {
        let o = WsOptions {
            keepalive: Duration::from_millis(50),
            idle_timeout: Duration::from_millis(300),
            ..WsOptions::default()
        };
        let (a, b, _) = ws_pair(o).await;
        smol::Timer::after(Duration::from_millis(900)).await;
        assert!(a.send(frame(1, 1)), "closed while idle");
        assert_eq!(recv(&b).await, Some(frame(1, 1)));
    });
}

/// Options with a 100 ms keepalive (125 ms on the server's side) and
/// the idle timeout given.
#[cfg(feature = "websocket")]
fn pinging_every_100_ms(idle_timeout: Duration) -> WsOptions {
    WsOptions {
        keepalive: Duration::from_millis(100),
        idle_timeout,
        ..WsOptions::default()
    }
}

/// Pings a raw WebSocket client receives from a server with a 100 ms
/// keepalive over `ms`, while it pings the server every `every` (`None`: never).
#[cfg(feature = "websocket")]
async fn pings_from_server(ms: u64, every: Option<Duration>) -> usize {
    use async_tungstenite::tungstenite::Message as Ws;
    let o = pinging_every_100_ms(Duration::from_secs(5));
    let (pings, _) = pings_while(o, |server, mut sink| async move {
        let end = std::time::Instant::now() + Duration::from_millis(ms);
        while std::time::Instant::now() < end {
            match every {
                Some(every) => {
                    sink.send(Ws::Ping(Vec::new().into()))
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    smol::Timer::after(every).await;
                }
                None => {
                    smol::Timer::at(end).await;
                }
            }
        }
        server
    })
    .await;
    pings
}

#[cfg(feature = "websocket")]
#[test]
fn a_websocket_server_pings_a_silent_client_and_not_one_that_pings_it() {
    smol::block_on(async {
        // Silent: pinged about every 100 ms.
        let silent = pings_from_server(800, None).await;
        assert!(silent >= 4, "a silent client was pinged {silent} times");
        // Pinging every 30 ms itself: the server answers and does not ping.
        let heard = pings_from_server(800, Some(Duration::from_millis(30))).await;
        assert_eq!(heard, 0, "a client that pings was pinged anyway");
    });
}

#[cfg(feature = "websocket")]
#[test]
fn a_websocket_server_still_pings_a_client_that_floods_it_with_pongs() {
    // Unsolicited pongs are heard and never answered: the server sends
    // nothing back, so only its own pings tell the client it is there,
    // however fast the client's messages come (a long upload, likewise).
    use async_tungstenite::tungstenite::Message as Ws;
    use futures_util::SinkExt;
    smol::block_on(async {
        // Read slower than it sends: the server always has another waiting.
        let o = WsOptions {
            inbound_rate: docweave_adapters::transport::InboundRate {
                bytes_per_s: 20_000,
                burst: 1_000,
            },
            ..pinging_every_100_ms(Duration::from_secs(5))
        };
        let (pings, _) = pings_while(o, |server, mut sink| async move {
            let flood = async { while sink.feed(Ws::Pong(vec![0; 100].into())).await.is_ok() {} };
            let for_a_while = async {
                smol::Timer::after(Duration::from_millis(800)).await;
            };
            futures_lite::future::or(flood, for_a_while).await;
            server
        })
        .await;
        assert!(
            pings >= 4,
            "a client that never paused was pinged {pings} times"
        );
    });
}

/// Pings a raw client of a server with options `o` receives while
/// `meanwhile` runs (given the server's link and the client's sending
/// half), and whether the server's link was still open at the end.
#[cfg(feature = "websocket")]
async fn pings_while<F, Fut>(o: WsOptions, meanwhile: F) -> (usize, bool)
where
    F: FnOnce(Link, async_tungstenite::WebSocketSender<smol::net::TcpStream>) -> Fut,
    Fut: std::future::Future<Output = Link>,
{
    use async_tungstenite::tungstenite::Message as Ws;
    use futures_util::StreamExt;
    let (links, addr) = ws_server(o).await;
    let (sink, mut stream) = raw_ws_client(addr).await.split();
    let server = links.recv().await.unwrap_or_else(|e| panic!("{e}"));
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = counted.clone();
    // Reading answers the server's pings with pongs (tungstenite's own).
    let reader = smol::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Ws::Ping(_)) {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let server = meanwhile(server, sink).await;
    let open = !server.tx.finished() && !server.rx.is_closed();
    drop(reader);
    (counted.load(std::sync::atomic::Ordering::SeqCst), open)
}

#[cfg(feature = "websocket")]
#[test]
fn a_websocket_server_whose_node_takes_no_frames_still_pings() {
    // The node stops taking frames (its store is away, say): the link's
    // reader waits with a frame in hand and reads nothing, and the client
    // must still hear from the server, or it closes the link as idle.
    use async_tungstenite::tungstenite::Message as Ws;
    smol::block_on(async {
        let (pings, open) = pings_while(
            pinging_every_100_ms(Duration::from_millis(300)),
            |server, mut sink| async move {
                for n in 0..10 {
                    // A whole frame as one piece: `[0][frame]`.
                    let whole: Vec<u8> = std::iter::once(0).chain(frame(n, 1)).collect();
                    sink.send(Ws::Binary(whole.into()))
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                }
                // `server.rx` is never read: the reader waits on the fifth.
                smol::Timer::after(Duration::from_millis(800)).await;
                server
            },
        )
        .await;
        assert!(
            pings >= 4,
            "a client was pinged {pings} times while the node took nothing"
        );
        assert!(open, "the link closed while the node took nothing");
    });
}

#[cfg(feature = "websocket")]
#[test]
fn a_websocket_server_pings_a_client_that_only_receives_and_keeps_it() {
    // The server sends all the time and the client never sends a frame:
    // the server pings it anyway, so the client's pongs show it is there,
    // and its idle timeout (300 ms) does not close it.
    smol::block_on(async {
        let (pings, open) = pings_while(
            pinging_every_100_ms(Duration::from_millis(300)),
            |server, sink| async move {
                for n in 0..45 {
                    assert!(server.send(frame(n, 1)), "the server closed its link");
                    smol::Timer::after(Duration::from_millis(20)).await;
                }
                drop(sink);
                server
            },
        )
        .await;
        assert!(
            pings >= 4,
            "a client that only received was pinged {pings} times"
        );
        assert!(open, "a client that answered every ping was closed as idle");
    });
}

#[cfg(feature = "websocket")]
#[test]
fn a_websocket_server_closes_a_client_that_never_answers_its_pings() {
    smol::block_on(async {
        let o = pinging_every_100_ms(Duration::from_millis(300));
        let (rx, addr) = ws_server(o).await;
        // Upgraded, then never read: its pings go unanswered.
        let _client = raw_ws_client(addr).await;
        let server = rx.recv().await.unwrap_or_else(|e| panic!("{e}"));
        let started = std::time::Instant::now();
        let closed = ends_within(&server, Duration::from_secs(5)).await;
        assert!(closed, "a client silent for 5 s was kept open");
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "closed after {:?}, before its idle timeout",
            started.elapsed()
        );
    });
}

#[cfg(feature = "websocket")]
#[test]
fn a_websocket_server_closes_a_client_that_pings_but_never_reads() {
    // Its pings keep the reader's idle timer satisfied; what it does not
    // read fills the socket until the writer gives up. The connection must
    // end then, not live on for as long as the client pings.
    use async_tungstenite::tungstenite::Message as Ws;
    smol::block_on(async {
        let o = WsOptions {
            write_timeout: Duration::from_millis(300),
            ..pinging_every_100_ms(Duration::from_secs(1))
        };
        let (rx, addr) = ws_server(o).await;
        let mut client = raw_ws_client(addr).await;
        let server = rx.recv().await.unwrap_or_else(|e| panic!("{e}"));
        // More than the sockets between them hold: the writer waits, then gives up.
        while server.send(frame(1, 1024 * 1024)) {}
        let pinging = smol::spawn(async move {
            // Pings every 50 ms, for 6 s at most; never a read.
            for _ in 0..120 {
                if client.send(Ws::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
                smol::Timer::after(Duration::from_millis(50)).await;
            }
        });
        let closed = ends_within(&server, Duration::from_secs(5)).await;
        drop(pinging);
        assert!(closed, "a client that pinged and never read was kept open");
        assert!(server.tx.finished(), "its writer is still running");
    });
}

#[cfg(feature = "websocket")]
#[test]
fn a_websocket_client_that_hears_plenty_but_sends_nothing_still_pings() {
    // A peer that only receives must still be heard from, or the other
    // side closes it as idle in the middle of a long download.
    use async_tungstenite::tungstenite::Message as Ws;
    use futures_util::StreamExt;
    smol::block_on(async {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let server = smol::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
            let ws = async_tungstenite::accept_async(stream)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let (mut sink, mut stream) = ws.split();
            let pings = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let seen = pings.clone();
            let reader = smol::spawn(async move {
                while let Some(Ok(m)) = stream.next().await {
                    if matches!(m, Ws::Ping(_)) {
                        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
            // Something every 20 ms (unsolicited pongs: heard, never answered).
            for _ in 0..45 {
                if sink.send(Ws::Pong(Vec::new().into())).await.is_err() {
                    break;
                }
                smol::Timer::after(Duration::from_millis(20)).await;
            }
            drop(reader);
            pings.load(std::sync::atomic::Ordering::SeqCst)
        });
        let o = WsOptions {
            keepalive: Duration::from_millis(50),
            idle_timeout: Duration::from_millis(300),
            ..WsOptions::default()
        };
        let _client = ws_connect(&format!("ws://{addr}/"), o)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let pings = server.await;
        assert!(
            pings >= 5,
            "a client that only received pinged {pings} times in 900 ms"
        );
    });
}

#[cfg(feature = "websocket")]
#[test]
fn websocket_drops_a_client_that_never_finishes_its_upgrade_and_serves_others() {
    smol::block_on(async {
        let o = WsOptions {
            handshake_timeout: Duration::from_millis(200),
            ..WsOptions::default()
        };
        let (a, b, addr) = ws_pair(o).await;
        let mut stalled = smol::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = stalled.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await; // never finished
        let mut rest = Vec::new();
        let closed = futures_lite::future::or(
            async { stalled.read_to_end(&mut rest).await.is_ok() },
            async {
                smol::Timer::after(Duration::from_secs(5)).await;
                false
            },
        )
        .await;
        assert!(closed, "the stalled client was not dropped");
        assert!(a.send(frame(2, 1)));
        assert_eq!(recv(&b).await, Some(frame(2, 1)));
        // A client speaking text instead of frames is refused and closed.
        let (c, _d, _) = ws_pair(WsOptions::default()).await;
        drop(c);
    });
}

#[cfg(feature = "http")]
use docweave_adapters::transport::{http_link, serve_http, Connector, HttpOptions};

#[cfg(feature = "http")]
#[test]
fn http_polling_conforms() {
    smol::block_on(async {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let (tx, rx) = async_channel::unbounded();
        let connect: Connector = std::sync::Arc::new(move || {
            let (mine, theirs) = polled_pair();
            let _ = tx.try_send(theirs);
            mine
        });
        smol::spawn(serve_http(listener, HttpOptions::default(), connect, None)).detach();
        let client = http_link(&addr, None, HttpOptions::default());
        // The session exists once the first poll arrives.
        assert!(client.send(frame(0, 1)));
        let server = rx.recv().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(recv(&server).await, Some(frame(0, 1)));
        conformance(client, server).await;
    });
}

#[cfg(feature = "websocket")]
#[test]
fn websocket_refuses_text_and_malformed_pieces_with_an_error_then_closes() {
    use async_tungstenite::tungstenite::Message as Ws;
    use futures_util::StreamExt;
    smol::block_on(async {
        let (a, b, addr) = ws_pair(WsOptions::default()).await;
        for bad in [Ws::Text("hello".into()), Ws::Binary(vec![9u8, 9, 9].into())] {
            let (mut ws, _) = async_tungstenite::smol::connect_async(format!("ws://{addr}/"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let _ = ws.send(bad).await;
            let mut refused = None;
            while let Some(Ok(m)) = ws.next().await {
                if let Ws::Binary(piece) = m {
                    // A whole frame: [0][frame].
                    let msgs = decode(&piece[1..], &Limits::default()).unwrap_or_default();
                    refused = refused.or(msgs.into_iter().find_map(|m| match m {
                        Message::Error { code, .. } => Some(code),
                        _ => None,
                    }));
                }
            }
            assert!(refused.is_some(), "no error frame before the close");
        }
        // The good link is untouched.
        assert!(a.send(frame(5, 1)));
        assert_eq!(recv(&b).await, Some(frame(5, 1)));
    });
}
