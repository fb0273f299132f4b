//! Hostile clients against the real `docweave serve`: each class of attack
//! found before (health checks and abandoned upgrades that killed the
//! WebSocket port, accept errors, slow and lying HTTP clients, clients that
//! never read, reads that created documents, borrowed identities, counters
//! that wrapped, state that never went away, chatter before the handshake)
//! is tried; the server answers clearly, stays up, a well-behaved client
//! keeps syncing, and memory stays within stated bounds.

mod common;

use async_tungstenite::tungstenite::Message as Ws;
use common::raw::*;
use common::{cli, data_dir, free_port, Server};
use docweave_adapters::loro_protocol;
use docweave_core::{
    encode, DocId, Ephemeral, ErrorCode, Filter, Message, Namespace, Payload, PeerId,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn start(name: &str, extra: &[&str]) -> Server {
    let (ws, http) = (free_port(), free_port());
    Server::start("server", &data_dir(name), ws, http, extra)
}

#[test]
fn health_checks_and_abandoned_upgrades_never_use_up_the_websocket_port() {
    let mut server = start("hostile-ws-slots", &["--max-connections", "32"]);
    // What a load balancer's health check sends, far more often than the limit.
    for _ in 0..200 {
        let answer = http_raw(
            server.ws,
            "GET / HTTP/1.1\r\nhost: x\r\n\r\n",
            Duration::from_secs(5),
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    }
    // Sockets that start an upgrade and never finish it.
    let mut hanging = Vec::new();
    for _ in 0..20 {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", server.ws)) {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nupgrade: websocket\r\n");
            hanging.push(s);
        }
    }
    // The upgrade deadline (10 s) frees their slots.
    std::thread::sleep(Duration::from_secs(11));
    assert!(well_behaved(&server, "after-health-checks", None));
    assert!(server.alive());
    drop(hanging);
}

#[test]
fn an_accept_error_does_not_stop_the_listeners() {
    let (ws, http) = (free_port(), free_port());
    let mut server = Server::start_with(
        "server",
        &data_dir("hostile-accept"),
        ws,
        http,
        &["--max-connections", "10000"],
        Some(96),
    );
    // More idle sockets than the process has descriptors: accept fails.
    let idle: Vec<TcpStream> = (0..150)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", http)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    drop(idle);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(server.alive());
    assert!(
        well_behaved(&server, "after-accept-errors", None),
        "a listener stopped after accept failed"
    );
}

#[test]
fn http_connections_are_capped_and_slow_or_lying_requests_are_cut_off() {
    let server = start("hostile-http", &["--max-connections", "16"]);
    let held: Vec<TcpStream> = (0..16)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", server.http)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Past the cap: an answer, not silence.
    let refused = http_raw(
        server.http,
        "GET / HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused:?}");
    drop(held);
    // Headers dripped one byte at a time, and a body shorter than announced.
    let mut drip = TcpStream::connect(("127.0.0.1", server.http)).unwrap_or_else(|e| panic!("{e}"));
    let _ = drip.write_all(b"POST /sync HT");
    let mut liar = TcpStream::connect(("127.0.0.1", server.http)).unwrap_or_else(|e| panic!("{e}"));
    let _ = liar.write_all(b"POST /sync HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\nshort");
    let started = Instant::now();
    for s in [&mut drip, &mut liar] {
        let _ = s.set_read_timeout(Some(Duration::from_secs(40)));
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    }
    assert!(
        started.elapsed() < Duration::from_secs(38),
        "slow or lying requests held their connections for {:?}",
        started.elapsed()
    );
    assert!(well_behaved(&server, "after-slow-http", None));
}

#[test]
fn a_client_that_never_reads_costs_bounded_memory_and_is_disconnected() {
    let mut server = start("hostile-slow-reader", &[]);
    // A 1 MB document.
    let text = "x".repeat(100 * 1024);
    let ws_url = format!("ws://127.0.0.1:{}", server.ws);
    for _ in 0..10 {
        let (ok, _, err) = cli(&["doc", "put", &ws_url, "big", "--text", &text]);
        assert!(ok, "{err}");
    }
    let before = server.rss();
    let peak = smol::block_on(async {
        let mut ws = raw_ws(server.ws).await;
        send(&mut ws, &[hello("sloth", None)]).await;
        let mut peak = 0;
        // Many requests for the big document, and never a read.
        for i in 0..300 {
            send(&mut ws, &[sync_request("big")]).await;
            if i % 50 == 0 {
                smol::Timer::after(Duration::from_millis(50)).await;
                peak = peak.max(server.rss());
            }
        }
        // Fragmented messages started and never finished, on two more connections.
        let mut holders = Vec::new();
        for c in 0..2u32 {
            let mut h = raw_ws(server.ws).await;
            for id in 0..8u32 {
                let mut piece = vec![1u8];
                piece.extend((c * 100 + id).to_le_bytes());
                piece.extend(0u16.to_le_bytes());
                piece.extend(64u16.to_le_bytes());
                piece.extend(vec![7u8; 250 * 1024]);
                let _ = h.send(Ws::Binary(piece.into())).await;
            }
            holders.push(h);
        }
        for _ in 0..20 {
            smol::Timer::after(Duration::from_millis(100)).await;
            peak = peak.max(server.rss());
        }
        drop(holders);
        drop(ws);
        peak
    });
    let grew = peak.saturating_sub(before);
    println!(
        "slow reader: rss {} MB before, peak {} MB (+{} MB)",
        before >> 20,
        peak >> 20,
        grew >> 20
    );
    assert!(
        grew < 96 << 20,
        "a reader that never reads grew the server by {} MB",
        grew >> 20
    );
    assert!(server.alive());
    assert!(well_behaved(&server, "after-slow-reader", None));
}

#[test]
fn asking_for_unknown_documents_creates_nothing() {
    let server = start("hostile-reads", &[]);
    smol::block_on(async {
        let mut ws = raw_ws(server.ws).await;
        send(&mut ws, &[hello("curious", None)]).await;
        for chunk in 0..20 {
            let asks: Vec<Message> = (0..100)
                .map(|i| sync_request(&format!("nothing-{chunk}-{i}")))
                .collect();
            send(&mut ws, &asks).await;
        }
        // Requests are answered unavailable while the node looks up as
        // many unknown documents for it as it may (256 at a time); past
        // that they are refused, and refusals past 100 a second go unsent.
        let (mut unavailable, mut refused) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(20);
        while unavailable + refused < 2_000 && Instant::now() < deadline {
            let (got, closed) = receive(&mut ws, Duration::from_millis(200)).await;
            assert!(!closed, "the connection was closed");
            if got.is_empty() && unavailable >= 256 {
                break;
            }
            for m in got {
                match m {
                    Message::SyncResponse {
                        reply: docweave_core::Reply::Unavailable,
                        ..
                    } => unavailable += 1,
                    Message::Error {
                        code: ErrorCode::TooLarge,
                        ..
                    } => refused += 1,
                    _ => {}
                }
            }
        }
        assert!(unavailable + refused <= 2_000);
        assert!(
            unavailable >= 256,
            "only {unavailable} looked up ({refused} refused)"
        );
    });
    let page = http_raw(
        server.http,
        "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(
        page.contains(" 0 documents"),
        "reading created documents: {page}"
    );
}

#[test]
fn a_token_grants_only_its_peer_ids() {
    let server = start(
        "hostile-identity",
        &["--token", "alice=A", "--token", "bob=B"],
    );
    smol::block_on(async {
        let mut ws = raw_ws(server.ws).await;
        send(&mut ws, &[hello("alice", Some("B"))]).await;
        let (got, closed) = receive(&mut ws, Duration::from_secs(3)).await;
        assert!(has_error(&got, ErrorCode::BadToken) && closed, "{got:?}");
        let mut ws = raw_ws(server.ws).await;
        send(&mut ws, &[hello("server", Some("A"))]).await;
        let (got, closed) = receive(&mut ws, Duration::from_secs(3)).await;
        assert!(closed && !got.iter().any(|m| matches!(m, Message::Welcome(_))));
    });
    assert!(well_behaved_as(
        &server,
        "alice-doc",
        Some("A"),
        Some("alice")
    ));
}

#[test]
fn a_second_connection_of_a_peer_replaces_the_first() {
    let server = start("hostile-twins", &[]);
    assert!(well_behaved(&server, "shared", None));
    smol::block_on(async {
        let mut first = raw_ws(server.ws).await;
        send(&mut first, &[hello("alice", None), sync_request("shared")]).await;
        let _ = receive(&mut first, Duration::from_millis(500)).await;
        let mut second = raw_ws(server.ws).await;
        send(&mut second, &[hello("alice", None), sync_request("shared")]).await;
        let (got, closed) = receive(&mut first, Duration::from_secs(3)).await;
        assert!(
            closed && has_error(&got, ErrorCode::AlreadyEstablished),
            "the first connection was not told it was replaced: {got:?}"
        );
        let _ = receive(&mut second, Duration::from_millis(300)).await;
        assert!(well_behaved(&server, "shared", None));
        let (got, _) = receive(&mut second, Duration::from_secs(3)).await;
        assert!(
            got.iter().any(|m| matches!(m, Message::Update { .. })),
            "the newest connection did not get alice's updates: {got:?}"
        );
    });
}

#[test]
fn http_sessions_are_random_and_bound_to_their_credentials() {
    let server = start("hostile-sessions", &["--token", "T"]);
    let frame = encode(&[hello("carol", Some("T"))]).unwrap_or_default();
    let post = |path: &str, auth: Option<&str>, body: &[u8]| -> String {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        if let Some(a) = auth {
            req.push_str(&format!("authorization: Bearer {a}\r\n"));
        }
        req.push_str("\r\n");
        let mut s =
            TcpStream::connect(("127.0.0.1", server.http)).unwrap_or_else(|e| panic!("{e}"));
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(req.as_bytes());
        let _ = s.write_all(body);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let opened = post("/sync", Some("T"), &frame);
    let id = opened
        .lines()
        .find_map(|l| l.strip_prefix("x-docweave-session: "))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    assert_eq!(id.len(), 32, "{opened}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    let path = format!("/sync?session={id}");
    assert!(post(&path, None, b"").starts_with("HTTP/1.1 404"));
    assert!(post(&path, Some("wrong"), b"").starts_with("HTTP/1.1 404"));
    assert!(post(&path, Some("T"), b"").starts_with("HTTP/1.1 200"));
    assert!(post("/sync?session=s1234-5678", Some("T"), b"").starts_with("HTTP/1.1 404"));
}

#[test]
fn presence_carries_its_senders_id_and_a_capped_ttl() {
    let server = start("hostile-presence", &[]);
    assert!(well_behaved(&server, "room", None));
    smol::block_on(async {
        let mut bob = raw_ws(server.ws).await;
        send(&mut bob, &[hello("bob", None), sync_request("room")]).await;
        let mut mallory = raw_ws(server.ws).await;
        send(
            &mut mallory,
            &[hello("mallory", None), sync_request("room")],
        )
        .await;
        let _ = receive(&mut bob, Duration::from_millis(500)).await;
        send(
            &mut mallory,
            &[Message::Ephemeral(Ephemeral {
                doc: DocId::new("room"),
                namespace: Namespace::new("cursor"),
                origin: PeerId::new("bob"),
                hops: 1,
                ttl_ms: u32::MAX,
                data: Payload::new(vec![1]),
            })],
        )
        .await;
        let (got, _) = receive(&mut bob, Duration::from_secs(2)).await;
        let relayed: Vec<&Ephemeral> = got
            .iter()
            .filter_map(|m| match m {
                Message::Ephemeral(e) if e.origin.as_str() != "server" => Some(e),
                _ => None,
            })
            .collect();
        assert!(!relayed.is_empty(), "{got:?}");
        for e in relayed {
            assert_eq!(e.origin.as_str(), "mallory", "a forged origin was relayed");
            assert!(e.ttl_ms <= 300_000, "ttl {} relayed", e.ttl_ms);
        }
    });
}

#[test]
fn listener_ids_never_wrap_and_filters_are_bounded() {
    let server = start("hostile-counters", &[]);
    let register = |peer: &str, body: &str| -> String {
        let req = format!(
            "POST /listeners HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-docweave-peer: {peer}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        http_raw(server.http, &req, Duration::from_secs(5))
    };
    let a = register("alice", "{\"id\": 18446744073709551615}");
    assert!(a.contains("\"id\":1"), "{a}");
    let b = register("bob", "{}");
    assert!(b.contains("\"id\":2"), "{b}");
    smol::block_on(async {
        let mut ws = raw_ws(server.ws).await;
        let many = Filter::docs((0..10_000).map(|i| DocId::new(&format!("d{i}"))));
        send(
            &mut ws,
            &[hello("filterer", None), Message::Subscribe { filter: many }],
        )
        .await;
        let (got, _) = receive(&mut ws, Duration::from_secs(3)).await;
        assert!(has_error(&got, ErrorCode::TooLarge), "{got:?}");
    });
}

#[test]
fn departed_peers_and_idle_connections_cost_bounded_memory() {
    let mut server = start("hostile-memory", &["--peer-linger-ms", "500"]);
    assert!(well_behaved(&server, "visited", None));
    let before = server.rss();
    // 5,000 short visits: hello, follow a document, leave.
    let port = server.ws;
    smol::block_on(async {
        for batch in 0..250 {
            let mut visits = Vec::new();
            for i in 0..20 {
                visits.push(smol::spawn(async move {
                    let mut ws = raw_ws(port).await;
                    send(
                        &mut ws,
                        &[
                            hello(&format!("visitor-{batch}-{i}"), None),
                            sync_request("visited"),
                        ],
                    )
                    .await;
                    let _ = receive(&mut ws, Duration::from_millis(50)).await;
                }));
            }
            for v in visits {
                v.await;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let after_visits = server.rss();
    let page = http_raw(
        server.http,
        "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    let rows = page.matches("visitor-").count();
    println!(
        "5,000 departed peers: rss {} MB before, {} MB after; {rows} still listed",
        before >> 20,
        after_visits >> 20
    );
    assert_eq!(rows, 0, "departed peers are still held");
    assert!(
        after_visits < before + (32 << 20),
        "5,000 visits grew the server by {} MB",
        (after_visits - before) >> 20
    );
    // 1,000 idle connections, each past its handshake.
    let base = server.rss();
    let idle = smol::block_on(async {
        let mut idle = Vec::new();
        for i in 0..1_000 {
            let mut ws = raw_ws(server.ws).await;
            send(&mut ws, &[hello(&format!("idle-{i}"), None)]).await;
            idle.push(ws);
        }
        smol::Timer::after(Duration::from_secs(1)).await;
        idle
    });
    let per = server.rss().saturating_sub(base) / 1_000;
    println!("idle connections: {per} bytes each");
    assert!(per <= 32 * 1024, "an idle connection costs {per} bytes");
    drop(idle);
    assert!(server.alive());
}

#[test]
fn chatter_before_the_handshake_is_cut_off_and_oversized_messages_get_an_error() {
    let server = start("hostile-chatter", &[]);
    smol::block_on(async {
        let mut ws = raw_ws(server.ws).await;
        for _ in 0..3 {
            send(&mut ws, &[sync_request("anything")]).await;
        }
        let (got, closed) = receive(&mut ws, Duration::from_secs(3)).await;
        assert!(
            closed && has_error(&got, ErrorCode::NotEstablished),
            "{got:?}"
        );
        let mut ws = raw_ws(server.ws).await;
        send(&mut ws, &[hello("big-mouth", None)]).await;
        let _ = ws.send(Ws::Binary(vec![0u8; 300 * 1024].into())).await;
        let (got, closed) = receive(&mut ws, Duration::from_secs(3)).await;
        assert!(
            closed && has_error(&got, ErrorCode::TooLarge),
            "an oversized message was dropped without a word: {got:?}"
        );
    });
    assert!(well_behaved(&server, "after-chatter", None));
}

#[test]
fn a_hostile_loro_client_gets_clear_answers_and_everyone_else_goes_on() {
    use loro_protocol::{Body, Crdt, UpdateStatus};
    let server = start("hostile-loro", &[]);
    let wait = Duration::from_secs(5);
    let ack = |batch: [u8; 8]| move |m: &loro_protocol::LoroMessage| matches!(&m.body, Body::Ack { batch: b, .. } if *b == batch);
    let status = |got: &[loro_protocol::LoroMessage]| match got.last().map(|m| &m.body) {
        Some(Body::Ack { status, .. }) => Some(*status),
        _ => None,
    };
    smol::block_on(async {
        let mut ws = raw_ws_at(server.ws, "/loro").await;
        // Bytes that are no message, and a text that is not a ping: skipped.
        let _ = ws.send(Ws::Binary(vec![0xff; 100].into())).await;
        let _ = ws.send(Ws::Text("hello?".into())).await;
        let _ = ws.send(Ws::Text("ping".into())).await;
        let (_, texts, closed) = loro_until(&mut ws, wait, |_| false).await;
        assert!(!closed && texts == vec!["pong".to_string()], "{texts:?}");
        // A room of a CRDT docweave does not serve: a join error, and it goes on.
        let join = || Body::JoinRequest {
            auth: Vec::new(),
            version: Vec::new(),
        };
        let _ = ws.send(loro(Crdt::Other(*b"%YJS"), "y", join())).await;
        let (got, _, _) =
            loro_until(&mut ws, wait, |m| matches!(m.body, Body::JoinError { .. })).await;
        assert!(
            matches!(got.last().map(|m| &m.body), Some(Body::JoinError { message, .. }) if message.contains("not supported")),
            "{got:?}"
        );
        let _ = ws.send(loro(Crdt::Loro, "h1", join())).await;
        let (got, _, _) = loro_until(&mut ws, wait, |m| {
            matches!(m.body, Body::JoinResponseOk { .. })
        })
        .await;
        assert!(
            matches!(got.last().map(|m| &m.body), Some(Body::JoinResponseOk { permission, .. }) if permission == "write"),
            "{got:?}"
        );
        // An update that is no Loro data.
        let bad = Body::DocUpdate {
            updates: vec![vec![1, 2, 3]],
            batch: [1; 8],
        };
        let _ = ws.send(loro(Crdt::Loro, "h1", bad)).await;
        let (got, _, _) = loro_until(&mut ws, wait, ack([1; 8])).await;
        assert_eq!(status(&got), Some(UpdateStatus::InvalidUpdate), "{got:?}");
        // Fragments announcing 4 GiB.
        let huge = Body::FragmentHeader {
            batch: [2; 8],
            count: 16,
            total: u32::MAX,
        };
        let _ = ws.send(loro(Crdt::Loro, "h1", huge)).await;
        let (got, _, _) = loro_until(&mut ws, wait, ack([2; 8])).await;
        assert_eq!(status(&got), Some(UpdateStatus::PayloadTooLarge), "{got:?}");
        // An update to a room it never joined.
        let stray = Body::DocUpdate {
            updates: vec![vec![1]],
            batch: [3; 8],
        };
        let _ = ws.send(loro(Crdt::Loro, "h2", stray)).await;
        let (got, _, _) = loro_until(&mut ws, wait, ack([3; 8])).await;
        assert!(
            matches!(status(&got), Some(s) if s != UpdateStatus::Ok),
            "{got:?}"
        );
        // A message past the protocol's 256 KiB: dropped, or the
        // connection closed; either way nothing else is touched.
        let _ = ws.send(Ws::Binary(vec![7u8; 1024 * 1024].into())).await;
        let _ = ws.send(Ws::Text("ping".into())).await;
        let _ = loro_until(&mut ws, wait, |_| false).await;
        // Another Loro client and a native client are served as ever.
        let mut other = raw_ws_at(server.ws, "/loro").await;
        let _ = other.send(loro(Crdt::Loro, "h1", join())).await;
        let (got, _, closed) = loro_until(&mut other, wait, |m| {
            matches!(m.body, Body::JoinResponseOk { .. })
        })
        .await;
        assert!(!closed && !got.is_empty(), "{got:?}");
    });
    assert!(well_behaved(&server, "after-loro", None));
}

#[test]
fn the_status_page_is_shown_to_token_holders_with_only_what_they_may_read() {
    let dir = data_dir("status-credentials-rules");
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.json");
    let none = r#"{"read":false,"write":false,"create":false,"delete":false}"#;
    let all = r#"{"read":true,"write":true,"create":true,"delete":true}"#;
    std::fs::write(
        &rules,
        format!(
            r#"{{"rules":[{{"peer":{{"Exact":"alice"}},"doc":{{"Prefix":"secret/"}},"access":{none}}}],"default":{all}}}"#
        ),
    )
    .unwrap();
    let rules = rules.display().to_string();
    let server = start(
        "status-credentials",
        &[
            "--token",
            "alice=ALICE",
            "--token",
            "OPERATOR",
            "--rules",
            &rules,
        ],
    );
    let ws = format!("ws://127.0.0.1:{}", server.ws);
    for doc in ["public/notes", "secret/plans"] {
        let (ok, _, err) = cli(&["doc", "put", &ws, doc, "k", "v", "--token", "OPERATOR"]);
        assert!(ok, "{err}");
    }
    let page = |token: Option<&str>| {
        let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        http_raw(
            server.http,
            &format!("GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{auth}\r\n"),
            Duration::from_secs(5),
        )
    };
    let anonymous = page(None);
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    assert!(!anonymous.contains("public/notes"));
    assert!(page(Some("wrong")).starts_with("HTTP/1.1 401"));
    let alice = page(Some("ALICE"));
    assert!(alice.starts_with("HTTP/1.1 200"), "{alice}");
    assert!(
        alice.contains("public/notes") && !alice.contains("secret/plans"),
        "{alice}"
    );
    assert!(!alice.contains("<h2>Peers</h2>"), "peers shown to a client");
    let operator = page(Some("OPERATOR"));
    assert!(operator.contains("public/notes") && operator.contains("secret/plans"));
    assert!(operator.contains("<h2>Peers</h2>"));
}

#[test]
fn a_loro_join_with_a_wrong_token_fails_alone_and_the_connection_goes_on() {
    use loro_protocol::{Body, Crdt, JoinErrorCode};
    let server = start("loro-wrong-token", &["--token", "right"]);
    let wait = Duration::from_secs(5);
    let join = |token: &str| Body::JoinRequest {
        auth: token.as_bytes().to_vec(),
        version: Vec::new(),
    };
    smol::block_on(async {
        let mut ws = raw_ws_at(server.ws, "/loro").await;
        // A send that fails shows as no answer (and a closed socket) below.
        let _ = ws.send(loro(Crdt::Loro, "a", join("wrong"))).await;
        let (got, _, closed) =
            loro_until(&mut ws, wait, |m| matches!(m.body, Body::JoinError { .. })).await;
        assert!(!closed, "the connection was closed: {got:?}");
        assert!(
            matches!(got.last().map(|m| &m.body), Some(Body::JoinError { code: JoinErrorCode::AuthFailed, message, .. }) if message.contains("not accepted")),
            "{got:?}"
        );
        // The same connection joins another room with the right token.
        // As above: a failed send fails the check that follows.
        let _ = ws.send(loro(Crdt::Loro, "b", join("right"))).await;
        let (got, _, closed) = loro_until(&mut ws, wait, |m| {
            matches!(m.body, Body::JoinResponseOk { .. })
        })
        .await;
        assert!(
            !closed
                && matches!(
                    got.last().map(|m| &m.body),
                    Some(Body::JoinResponseOk { .. })
                ),
            "{got:?}"
        );
    });
}
