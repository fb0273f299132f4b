//! Raw clients for the end-to-end tests: a WebSocket that reads only when
//! asked, native frames and Loro protocol messages written by hand, plain
//! HTTP requests, and a well-behaved client that must keep working while
//! the others misbehave.

use super::{cli, Server};
use async_tungstenite::tungstenite::Message as Ws;
use docweave_adapters::loro_protocol;
use docweave_adapters::transport::fragments::{split, Reassembler, ReassemblyLimits};
use docweave_core::{
    decode, encode, Clock, DocId, ErrorCode, Hello, Limits, Message, PeerId, PeerKind,
    VersionVector, PROTOCOL_VERSION,
};
use futures_util::StreamExt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub type Socket = async_tungstenite::WebSocketStream<smol::net::TcpStream>;

/// A raw WebSocket to the server: no reading unless asked.
pub async fn raw_ws(port: u16) -> Socket {
    raw_ws_at(port, "/").await
}

/// A raw WebSocket to `path` on the server.
pub async fn raw_ws_at(port: u16, path: &str) -> Socket {
    let stream = smol::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let (ws, _) = async_tungstenite::client_async(format!("ws://127.0.0.1:{port}{path}"), stream)
        .await
        .unwrap_or_else(|e| panic!("upgrade: {e}"));
    ws
}

pub fn hello(peer: &str, token: Option<&str>) -> Message {
    Message::Hello(Hello {
        peer: PeerId::new(peer),
        name: peer.into(),
        kind: PeerKind::User,
        protocol: PROTOCOL_VERSION,
        token: token.map(str::to_string),
        clock: Clock(0),
    })
}

pub fn sync_request(doc: &str) -> Message {
    Message::SyncRequest {
        doc: DocId::new(doc),
        version: VersionVector::new(),
        bidirectional: false,
    }
}

/// One docweave frame as one whole WebSocket piece.
pub async fn send(ws: &mut Socket, messages: &[Message]) {
    let mut piece = vec![0u8];
    piece.extend(encode(messages).unwrap_or_default());
    let _ = ws.send(Ws::Binary(piece.into())).await;
}

/// One docweave frame in WebSocket pieces of 256 KiB (what the server
/// takes in one), numbered `id`.
pub async fn send_in_pieces(ws: &mut Socket, messages: &[Message], id: u32) {
    let frame = encode(messages).unwrap_or_default();
    for piece in split(&frame, 256 * 1024, id) {
        // A send that fails shows as the missing answer the test waits for.
        let _ = ws.send(Ws::Binary(piece.into())).await;
    }
}

/// Messages received until `within` passes or the connection ends;
/// `closed` tells whether it ended.
pub async fn receive(ws: &mut Socket, within: Duration) -> (Vec<Message>, bool) {
    receive_until(ws, within, |_| false).await
}

/// Messages received until `done` says the ones so far are enough, `within`
/// passes or the connection ends; `closed` tells whether it ended.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub async fn receive_until(
    ws: &mut Socket,
    within: Duration,
    mut done: impl FnMut(&[Message]) -> bool,
) -> (Vec<Message>, bool) {
    // Frames larger than one WebSocket message come as pieces, perhaps
    // across calls: gathered per connection (by its local port).
    static PIECES: std::sync::Mutex<std::collections::BTreeMap<u16, Reassembler>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    let port = ws.get_ref().local_addr().map(|a| a.port()).unwrap_or(0);
    let mut got = Vec::new();
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (got, false);
        }
        let next = futures_lite::future::or(async { Some(ws.next().await) }, async {
            smol::Timer::after(left).await;
            None
        })
        .await;
        match next {
            None => return (got, false),
            Some(Some(Ok(Ws::Binary(b)))) => {
                let mut all = PIECES.lock().unwrap();
                let r = all.entry(port).or_insert_with(|| {
                    Reassembler::new(ReassemblyLimits {
                        max_message: 64 << 20,
                        max_pending: 16,
                        max_held: 64 << 20,
                        deadline_ms: 60_000,
                    })
                });
                if let Ok(Some(frame)) = r.take(&b, 0) {
                    got.extend(decode(&frame, &Limits::default()).unwrap_or_default());
                    if done(&got) {
                        return (got, false);
                    }
                }
            }
            Some(Some(Ok(Ws::Close(_)))) | Some(None) | Some(Some(Err(_))) => return (got, true),
            Some(Some(Ok(_))) => {}
        }
    }
}

pub fn has_error(ms: &[Message], code: ErrorCode) -> bool {
    ms.iter()
        .any(|m| matches!(m, Message::Error { code: c, .. } if *c == code))
}

/// A well-behaved client puts a value and reads it back, over WebSocket
/// and over HTTP.
pub fn well_behaved(server: &Server, doc: &str, token: Option<&str>) -> bool {
    well_behaved_as(server, doc, token, None)
}

pub fn well_behaved_as(
    server: &Server,
    doc: &str,
    token: Option<&str>,
    peer: Option<&str>,
) -> bool {
    let ws = format!("ws://127.0.0.1:{}", server.ws);
    let http = format!("http://127.0.0.1:{}", server.http);
    // A fresh value each time: writing the same value again changes nothing.
    let value = format!(
        "v{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let mut put = vec!["doc", "put", &ws, doc, "k", &value];
    let mut get = vec!["doc", "get", &http, doc];
    if let Some(t) = token {
        put.extend(["--token", t]);
        get.extend(["--token", t]);
    }
    if let Some(p) = peer {
        put.extend(["--as", p]);
        get.extend(["--as", p]);
    }
    let (ok, _, err) = cli(&put);
    if !ok {
        eprintln!("put failed: {err}");
        return false;
    }
    let (ok, out, err) = cli(&get);
    if !ok || !out.contains("\"k\"") {
        eprintln!("get failed: {out}{err}");
        return false;
    }
    true
}

/// A plain HTTP request on a port; the whole answer (empty if none came).
pub fn http_raw(port: u16, request: &str, within: Duration) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(within));
    let _ = s.write_all(request.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

pub fn loro(crdt: loro_protocol::Crdt, room: &str, body: loro_protocol::Body) -> Ws {
    let m = loro_protocol::LoroMessage {
        crdt,
        room: room.into(),
        body,
    };
    Ws::Binary(loro_protocol::encode(&m).into())
}

/// A Loro client on a server's `/loro` that joined `room` without a
/// token (asserted: the join was answered ok).
#[allow(dead_code)] // not every test binary that includes this module uses it
pub async fn loro_join(port: u16, room: &str) -> Socket {
    let mut s = raw_ws_at(port, "/loro").await;
    let join = loro_protocol::Body::JoinRequest {
        auth: Vec::new(),
        version: Vec::new(),
    };
    // A send that fails shows as the join answer that never comes (asserted).
    let _ = s.send(loro(loro_protocol::Crdt::Loro, room, join)).await;
    let (got, _, _) = loro_until(&mut s, Duration::from_secs(10), |m| {
        matches!(m.body, loro_protocol::Body::JoinResponseOk { .. })
    })
    .await;
    assert!(
        matches!(
            got.last().map(|m| &m.body),
            Some(loro_protocol::Body::JoinResponseOk { .. })
        ),
        "the Loro join of {room} on {port} was not answered: {got:?}"
    );
    s
}

/// Loro messages (and text frames) received until one matches `wanted`,
/// `within` passes, or the connection ends (`closed`).
pub async fn loro_until(
    ws: &mut Socket,
    within: Duration,
    wanted: impl Fn(&loro_protocol::LoroMessage) -> bool,
) -> (Vec<loro_protocol::LoroMessage>, Vec<String>, bool) {
    let (mut got, mut texts) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (got, texts, false);
        }
        let next = futures_lite::future::or(async { Some(ws.next().await) }, async {
            smol::Timer::after(left).await;
            None
        })
        .await;
        match next {
            None => return (got, texts, false),
            Some(Some(Ok(Ws::Binary(b)))) => {
                if let Ok(m) = loro_protocol::decode(&b) {
                    let done = wanted(&m);
                    got.push(m);
                    if done {
                        return (got, texts, false);
                    }
                }
            }
            Some(Some(Ok(Ws::Text(t)))) => {
                texts.push(t.as_str().to_string());
                if t.as_str() == "pong" {
                    return (got, texts, false);
                }
            }
            Some(Some(Ok(Ws::Close(_)))) | Some(None) | Some(Some(Err(_))) => {
                return (got, texts, true)
            }
            Some(Some(Ok(_))) => {}
        }
    }
}

/// A good client working while others misbehave: it puts a fresh value
/// into `doc` over WebSocket and reads it back over HTTP, round after
/// round, until told to stop (at least one round).
pub struct GoodClient {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(Duration, u32)>,
}

impl GoodClient {
    /// Starts working on `doc`.
    pub fn start(server: &Server, doc: &str) -> GoodClient {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ws, http) = (server.ws, server.http);
        let (doc, flag) = (doc.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            let (mut slowest, mut rounds) = (Duration::ZERO, 0u32);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) || rounds == 0 {
                let started = Instant::now();
                let value = format!("v{rounds}");
                let ws = format!("ws://127.0.0.1:{ws}");
                let (ok, _, err) = cli(&["doc", "put", &ws, &doc, "k", &value]);
                assert!(ok, "{err}");
                let http = format!("http://127.0.0.1:{http}");
                let (ok, out, err) = cli(&["doc", "get", &http, &doc]);
                assert!(ok && out.contains(&value), "{out}{err}");
                slowest = slowest.max(started.elapsed());
                rounds += 1;
            }
            (slowest, rounds)
        });
        GoodClient { stop, thread }
    }

    /// Stops it: its slowest round and how many rounds it made.
    pub fn stop(self) -> (Duration, u32) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Sends `POST {path}` with `body` on a connection to the HTTP port and
/// reads the whole answer (head and body; a read error, such as a timeout
/// the caller set, ends it with what came).
pub fn post_on(s: &mut TcpStream, path: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut answer = Vec::new();
    // The answer's end or an error both end the request: callers look at
    // what came (a missing answer fails their checks).
    let _ = s.read_to_end(&mut answer);
    answer
}
