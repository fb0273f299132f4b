//! What one client can make `docweave serve` hold, tried against the real
//! binary: a message built to amplify memory, chunk reservations before the
//! handshake, a client that floods and never reads, a hundred thousand
//! lookups of documents that do not exist, and a panic in document import
//! or in the node's loop. Each states its bound; the memory figures are the
//! server's resident set (VmRSS / VmHWM) as `/proc` reports it.

mod common;

use async_tungstenite::tungstenite::Message as Ws;
use common::raw::*;
use common::{cli, data_dir, free_port, Server, BIN};
use docweave_adapters::transport::fragments::split;
use docweave_core::{
    encode, DocId, ErrorCode, Filter, Message, CHUNK_HEADER, FLAG_CHUNK, FRAME_VERSION,
};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;

fn start(name: &str, extra: &[&str]) -> Server {
    Server::start("server", &data_dir(name), free_port(), free_port(), extra)
}

fn ws_url(s: &Server) -> String {
    format!("ws://127.0.0.1:{}", s.ws)
}

/// A frame sent as WebSocket pieces of 200 KiB (the endpoint takes no
/// message larger than its piece size).
async fn send_split(ws: &mut Socket, frame: &[u8], id: u32) {
    for piece in split(frame, 200 * 1024, id) {
        if ws.send(Ws::Binary(piece.into())).await.is_err() {
            return;
        }
    }
}

/// Bytes a message of `ids` empty document ids encodes to, and the frame.
fn empty_ids_frame(ids: usize) -> Vec<u8> {
    let m = Message::Subscribe {
        filter: Filter::docs(vec![DocId::new(""); ids]),
    };
    encode(&[m]).unwrap()
}

#[test]
fn a_message_built_to_amplify_memory_is_refused_within_its_bound() {
    // 15 million empty ids: 15 MB on the wire, about a gigabyte decoded
    // without a bound. The bound: 16 times its bytes, 64 MiB at most.
    let mut server = start("amplify", &[]);
    let before = server.rss();
    let frame = empty_ids_frame(15_000_000);
    smol::block_on(async {
        let mut ws = raw_ws(server.ws).await;
        // Before any hello: the frame is refused, whatever it holds.
        send_split(&mut ws, &frame, 1).await;
        let (got, closed) = receive(&mut ws, Duration::from_secs(20)).await;
        assert!(
            closed || has_error(&got, ErrorCode::MalformedFrame),
            "{got:?}"
        );
    });
    let peak = server.peak_rss();
    eprintln!(
        "amplify: RSS {} MiB before, peak {} MiB",
        before / MIB,
        peak / MIB
    );
    assert!(
        peak < before + 256 * MIB,
        "a 15 MB message took the server from {} to {} MiB",
        before / MIB,
        peak / MIB
    );
    assert!(server.alive());
    assert!(well_behaved(&server, "after-amplify", None));
}

/// A chunk frame `index` of a message announced as `total` bytes.
fn chunk(id: u32, index: u32, count: u32, total: u64, bytes: &[u8]) -> Vec<u8> {
    let payload = CHUNK_HEADER + bytes.len();
    let mut out = vec![FRAME_VERSION, FLAG_CHUNK];
    out.extend_from_slice(&(payload as u32).to_le_bytes());
    for n in [id, index, count] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

#[test]
fn chunks_before_hello_hold_nothing_and_another_clients_large_update_goes_through() {
    let server = start("chunk-reservations", &[]);
    smol::block_on(async {
        let mut squatters = Vec::new();
        for _ in 0..2 {
            let mut ws = raw_ws(server.ws).await;
            // The first chunk of a 512 MiB message, twice over: once this
            // reserved the node's whole reassembly budget.
            for i in 0..3 {
                let c = chunk(7, i, 512, 512 * MIB, &[0u8; 1024 * 1024]);
                send_split(&mut ws, &c, i + 1).await;
            }
            let (got, closed) = receive(&mut ws, Duration::from_secs(5)).await;
            assert!(has_error(&got, ErrorCode::NotEstablished), "{got:?}");
            assert!(
                closed,
                "a connection that sent only chunks before hello stayed open"
            );
            squatters.push(ws);
        }
    });
    // A third client's 2 MB update crosses as chunks and is taken.
    let text = "x".repeat(2 * 1024 * 1024);
    let path = data_dir("chunk-reservations-text").with_extension("txt");
    std::fs::write(&path, &text).unwrap();
    let (ok, _, err) = cli(&[
        "doc",
        "put",
        &ws_url(&server),
        "big",
        "--text-file",
        &path.display().to_string(),
    ]);
    assert!(ok, "{err}");
    let (ok, out, _) = cli(&["doc", "get", &ws_url(&server), "big"]);
    assert!(ok && out.len() > 2 * 1024 * 1024);
}

#[test]
fn clients_that_flood_and_never_read_cost_bounded_memory_and_a_writer_goes_on() {
    let server = start("flood", &[]);
    // A document of about 1 MB that every flooder asks for again and again.
    let text = "y".repeat(1000 * 1000);
    let path = data_dir("flood-text").with_extension("txt");
    std::fs::write(&path, &text).unwrap();
    let url = ws_url(&server);
    let (ok, _, err) = cli(&[
        "doc",
        "put",
        &url,
        "big",
        "--text-file",
        &path.display().to_string(),
    ]);
    assert!(ok, "{err}");
    let before = server.rss();
    let port = server.ws;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooders: Vec<_> = (0..2)
        .map(|f| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                smol::block_on(async {
                    // Each flooder keeps one connection at a time, writing as
                    // fast as the server takes it and never reading; when the
                    // server cuts it off, it comes back a moment later.
                    let asks: Vec<Message> = (0..200).map(|_| sync_request("big")).collect();
                    let mut piece = vec![0u8];
                    piece.extend(encode(&asks).unwrap());
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let mut ws = raw_ws(port).await;
                        send(&mut ws, &[hello(&format!("flooder-{f}"), None)]).await;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            let sent = futures_lite::future::or(
                                async { ws.send(Ws::Binary(piece.clone().into())).await.is_ok() },
                                async {
                                    smol::Timer::after(Duration::from_millis(500)).await;
                                    true
                                },
                            )
                            .await;
                            if !sent {
                                break;
                            }
                        }
                        smol::Timer::after(Duration::from_millis(200)).await;
                    }
                })
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    // A writer meanwhile: each put is acknowledged, none takes long.
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let t = Instant::now();
        let (ok, _, err) = cli(&[
            "doc",
            "put",
            &url,
            "notes",
            "k",
            &format!("v{i}"),
            "--timeout",
            "30",
        ]);
        assert!(ok, "the writer failed during the flood: {err}");
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flooders {
        f.join().unwrap();
    }
    let peak = server.peak_rss();
    eprintln!(
        "flood: RSS {} MiB before, peak {} MiB; slowest put {slowest:?}",
        before / MIB,
        peak / MIB
    );
    // Each flooder is held to its 32 MiB backlog, frames from all links to
    // the 64 MiB inbound gate, and to two frames a link in the node's queue.
    assert!(
        peak < before + 512 * MIB,
        "two flooders took the server from {} to {} MiB",
        before / MIB,
        peak / MIB
    );
    assert!(slowest < Duration::from_secs(10), "a put took {slowest:?}");
    assert!(well_behaved(&server, "after-flood", None));
}

#[test]
fn a_hundred_thousand_lookups_of_unknown_documents_are_bounded_and_create_nothing() {
    let server = start("lookups", &[]);
    let before = server.rss();
    smol::block_on(async {
        let mut ws = raw_ws(server.ws).await;
        send(&mut ws, &[hello("curious", None)]).await;
        let (mut answered, mut refused, mut closed) = (0usize, 0usize, false);
        let tally = |got: Vec<Message>, answered: &mut usize, refused: &mut usize| {
            for m in got {
                match m {
                    Message::SyncResponse { .. } => *answered += 1,
                    Message::Error {
                        code: ErrorCode::TooLarge,
                        ..
                    } => *refused += 1,
                    _ => {}
                }
            }
        };
        for chunk in 0..25 {
            let asks: Vec<Message> = (0..4000)
                .map(|i| sync_request(&format!("nothing-{chunk}-{i}")))
                .collect();
            send(&mut ws, &asks).await;
            let (got, c) = receive(&mut ws, Duration::from_millis(50)).await;
            tally(got, &mut answered, &mut refused);
            closed |= c;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !closed && Instant::now() < deadline {
            let (got, c) = receive(&mut ws, Duration::from_millis(200)).await;
            let quiet = got.is_empty();
            tally(got, &mut answered, &mut refused);
            closed |= c;
            if quiet && answered >= 256 {
                break;
            }
        }
        eprintln!(
            "lookups: {answered} answered unavailable, {refused} refusals sent, closed {closed}"
        );
        // At most 256 lookups at a time (their answers may come after the
        // cut-off); past them refusals, themselves rate-limited; a client
        // that keeps at it is cut off.
        assert!(answered <= 256 * 25, "{answered} answered");
        assert!(refused <= 1_000, "{refused} refusals were sent");
        assert!(closed, "a client earning 100,000 refusals stayed connected");
    });
    let peak = server.peak_rss();
    eprintln!(
        "lookups: RSS {} MiB before, peak {} MiB",
        before / MIB,
        peak / MIB
    );
    assert!(peak < before + 128 * MIB, "{} MiB", peak / MIB);
    let page = http_raw(
        server.http,
        "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(
        page.contains(" 0 documents"),
        "lookups created documents: {page}"
    );
    assert!(well_behaved(&server, "after-lookups", None));
}

#[test]
fn a_panic_in_import_fails_that_update_alone_and_the_server_serves_others() {
    let server = Server::start_env(
        "server",
        &data_dir("import-panic"),
        free_port(),
        free_port(),
        &[],
        None,
        &[("DOCWEAVE_FAULT", "import-panic:BOOM-IN-THE-LIBRARY")],
    );
    let url = ws_url(&server);
    let (ok, _, err) = cli(&["doc", "put", &url, "target", "k", "before"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&[
        "doc",
        "put",
        &url,
        "target",
        "k",
        "BOOM-IN-THE-LIBRARY",
        "--timeout",
        "10",
    ]);
    assert!(!ok, "a write the library panicked on was acknowledged");
    eprintln!("the poisoned put said: {err}");
    let (ok, out, _) = cli(&["doc", "get", &url, "target"]);
    assert!(ok && out.contains("\"before\""), "{out}");
    let mut server = server;
    assert!(server.alive());
    assert!(well_behaved(&server, "after-import-panic", None));
}

#[test]
fn a_panic_in_the_loop_stops_the_process_with_a_reason() {
    let (ws, http) = (free_port(), free_port());
    let data = data_dir("loop-panic");
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{ws}"),
            "--http",
            &format!("127.0.0.1:{http}"),
        ])
        .arg("--data")
        .arg(&data)
        .env("DOCWEAVE_FAULT", "loop-panic:BOOM-IN-THE-LOOP")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("docweave serving"), "{line}");
    let url = format!("ws://127.0.0.1:{ws}");
    let (ok, _, err) = cli(&["doc", "put", &url, "target", "k", "fine"]);
    assert!(ok, "{err}");
    // The node dies on this one; the process must not stay half alive.
    let _ = cli(&[
        "doc",
        "put",
        &url,
        "target",
        "k",
        "BOOM-IN-THE-LOOP",
        "--timeout",
        "5",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the server stayed up with a dead node"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "it exited 0");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("the node stopped"), "{stderr}");
}

#[test]
fn plain_tcp_partial_frames_hold_what_came_and_a_silent_connection_is_closed() {
    use std::io::{Read, Write};
    let tcp = free_port();
    let server = start("tcp-partial", &["--tcp", &format!("127.0.0.1:{tcp}")]);
    let before = server.rss();
    // 40 connections, each announcing a 15 MiB frame and sending 1 KiB of it.
    let mut held = Vec::new();
    for i in 0..40 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", tcp)).unwrap();
        s.write_all(&encode(&[hello(&format!("partial-{i}"), None)]).unwrap())
            .unwrap();
        let mut header = vec![FRAME_VERSION, 0];
        header.extend_from_slice(&(15u32 * 1024 * 1024).to_le_bytes());
        s.write_all(&header).unwrap();
        s.write_all(&[0u8; 1024]).unwrap();
        held.push(s);
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss = server.rss();
    eprintln!(
        "tcp partial: RSS {} MiB before, {} MiB with 40 partial frames",
        before / MIB,
        rss / MIB
    );
    assert!(
        rss < before + 64 * MIB,
        "{} MiB held for 40 KiB sent",
        (rss - before) / MIB
    );
    // A connection that never says hello is closed after the handshake time.
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 64];
    let n = silent.read(&mut buf).unwrap_or(0);
    assert_eq!(
        n, 0,
        "the server wrote to a silent connection instead of closing it"
    );
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "closed after {:?}",
        t.elapsed()
    );
    assert!(well_behaved(&server, "after-tcp-partial", None));
}

#[test]
fn one_address_cannot_take_every_http_session() {
    let server = start("http-sessions", &[]);
    // 200 sessions opened from 127.0.0.2 (a loopback address of its own).
    let script = format!(
        r#"
import socket
codes = {{}}
# All at once: a session not polled for a few seconds gives way to a new
# one of its address, so requests spread over time would each get one.
sockets = []
for _ in range(200):
    s = socket.create_connection(("127.0.0.1", {port}), source_address=("127.0.0.2", 0))
    s.sendall(b"POST /sync HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
    sockets.append(s)
for s in sockets:
    answer = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        answer += chunk
    code = answer.split(b" ")[1].decode()
    codes[code] = codes.get(code, 0) + 1
    s.close()
print(" ".join(f"{{k}}={{v}}" for k, v in sorted(codes.items())))
"#,
        port = server.http
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let counts = String::from_utf8_lossy(&out.stdout).trim().to_string();
    eprintln!("http sessions from one address: {counts}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        counts.contains("200=32") && counts.contains("429=168"),
        "{counts}"
    );
    // Another client, at another address, goes on over HTTP.
    let http = format!("http://127.0.0.1:{}", server.http);
    let (ok, _, err) = cli(&["doc", "put", &http, "notes", "k", "v"]);
    assert!(ok, "{err}");
    let (ok, out, _) = cli(&["doc", "get", &http, "notes"]);
    assert!(ok && out.contains("\"k\":\"v\""), "{out}");
    // Sessions nobody polls any more (quiet past the longest poll pause)
    // give way to a new one of the same address instead of locking it out
    // until they idle out a minute later.
    std::thread::sleep(Duration::from_millis(3_500));
    let request =
        "POST /sync HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
    let answer = {
        use std::io::{Read, Write};
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 2], 0)).into())
            .unwrap();
        socket
            .connect(&std::net::SocketAddr::from(([127, 0, 0, 1], server.http)).into())
            .unwrap();
        let mut s: std::net::TcpStream = socket.into();
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    };
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_script_reading_over_http_again_and_again_is_never_locked_out() {
    let server = start("http-many-gets", &[]);
    let http = format!("http://127.0.0.1:{}", server.http);
    let (ok, _, err) = cli(&["doc", "put", &http, "notes", "k", "v"]);
    assert!(ok, "{err}");
    // More runs than one address may hold sessions: each closes its own.
    for run in 0..40 {
        let started = std::time::Instant::now();
        let (ok, out, err) = cli(&["doc", "get", &http, "notes", "--timeout", "20"]);
        assert!(ok && out.contains("\"k\":\"v\""), "run {run}: {out}{err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "run {run} took {:?}",
            started.elapsed()
        );
    }
}

/// Updates of about 190 KB each (a text from a writer of its own).
fn large_updates(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let doc = loro::LoroDoc::new();
            doc.set_peer_id(500 + i).unwrap();
            let text: String = (0..190_000)
                .map(|j| (b'a' + ((j * 31 + i as usize) % 26) as u8) as char)
                .collect();
            doc.get_text("t").insert(0, &text).unwrap();
            doc.commit();
            doc.export(loro::ExportMode::all_updates()).unwrap()
        })
        .collect()
}

#[test]
fn a_client_that_sends_faster_than_its_rate_is_read_at_its_rate_while_others_are_served() {
    // 1 MiB/s after a burst of 2 MiB.
    let server = start("read-rate", &["--max-read-mib-per-s", "1"]);
    let updates = large_updates(30);
    let sent: usize = updates.iter().map(Vec::len).sum();
    let started = Instant::now();
    let good = {
        let server_ws = server.ws;
        let server_http = server.http;
        std::thread::spawn(move || {
            // Started once the sender is well past its burst.
            std::thread::sleep(Duration::from_millis(2_500));
            let t = Instant::now();
            let ws = format!("ws://127.0.0.1:{server_ws}");
            let http = format!("http://127.0.0.1:{server_http}");
            let (ok, _, err) = cli(&["doc", "put", &ws, "other", "k", "v"]);
            assert!(ok, "{err}");
            let (ok, out, err) = cli(&["doc", "get", &http, "other"]);
            assert!(ok && out.contains("\"k\""), "{out}{err}");
            t.elapsed()
        })
    };
    smol::block_on(async {
        let mut ws = raw_ws(server.ws).await;
        send(&mut ws, &[hello("fast", None)]).await;
        for (i, u) in updates.iter().enumerate() {
            let m = Message::Update {
                doc: DocId::new("fast"),
                batch: docweave_core::BatchId(i as u64 + 1),
                data: docweave_core::Payload::new(u.clone()),
                version: docweave_core::VersionVector::new(),
            };
            let frame = docweave_core::encode(&[m]).unwrap();
            send_split(&mut ws, &frame, i as u32 + 1).await;
        }
        let mut acked = 0;
        while acked < updates.len() {
            let (got, closed) = receive_until(&mut ws, Duration::from_secs(60), |ms| {
                ms.iter().any(|m| matches!(m, Message::Ack { .. }))
            })
            .await;
            assert!(!closed && !got.is_empty(), "acks stopped at {acked}");
            acked += got
                .iter()
                .filter(|m| {
                    matches!(
                        m,
                        Message::Ack {
                            status: docweave_core::AckStatus::Ok,
                            ..
                        }
                    )
                })
                .count();
        }
    });
    let took = started.elapsed();
    let good_took = good.join().unwrap();
    eprintln!(
        "{sent} bytes sent as fast as possible at 1 MiB/s (burst 2 MiB): all acknowledged after \
         {took:?}; a good client's put and get meanwhile took {good_took:?}"
    );
    // 5.7 MB at 1 MiB/s after 2 MiB: at least 3.4 s however fast it was sent.
    let least = (sent as f64 - 2.0 * 1_048_576.0) / 1_048_576.0;
    assert!(
        took.as_secs_f64() >= least * 0.9,
        "{sent} bytes read in {took:?}: the rate did not hold"
    );
    assert!(good_took < Duration::from_secs(30), "{good_took:?}");
}

/// One `POST /sync` (on `session`, or opening one); the status, the
/// session it names, and how long the answer took.
fn post_sync(port: u16, session: Option<&str>, body: &[u8]) -> (u16, Option<String>, Duration) {
    let started = Instant::now();
    let path = session.map_or("/sync".to_string(), |s| format!("/sync?session={s}"));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let answer = post_on(&mut s, &path, body);
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("x-docweave-session: "))
        .map(|v| v.trim().to_string());
    (status, id, started.elapsed())
}

#[test]
fn an_http_session_that_sends_faster_than_its_rate_is_answered_at_its_rate() {
    let server = start("http-read-rate", &["--max-read-mib-per-s", "1"]);
    let hello = docweave_core::encode(&[hello("poster", None)]).unwrap();
    let (status, session, _) = post_sync(server.http, None, &hello);
    assert_eq!(status, 200);
    let session = session.expect("a session id");
    let started = Instant::now();
    let mut sent = 0;
    for (i, u) in large_updates(40).into_iter().enumerate() {
        let m = Message::Update {
            doc: DocId::new("posted"),
            batch: docweave_core::BatchId(i as u64 + 1),
            data: docweave_core::Payload::new(u),
            version: docweave_core::VersionVector::new(),
        };
        let frame = docweave_core::encode(&[m]).unwrap();
        sent += frame.len();
        let (status, _, _) = post_sync(server.http, Some(&session), &frame);
        assert_eq!(status, 200);
    }
    let took = started.elapsed();
    eprintln!("{sent} bytes posted on one session at 1 MiB/s (burst 2 MiB) in {took:?}");
    let least = (sent as f64 - 2.0 * 1_048_576.0) / 1_048_576.0;
    assert!(
        took.as_secs_f64() >= least * 0.9,
        "{sent} bytes taken in {took:?}: the rate did not hold"
    );
    assert!(well_behaved(&server, "other", None));
}
