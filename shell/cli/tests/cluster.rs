//! Several `docweave serve` processes on one PostgreSQL database, driven
//! through the CLI: they converge, a deletion reaches all, and the clients
//! of a server killed with SIGKILL go on through another, losing nothing
//! that was acknowledged.

mod common;

use common::{cli, data_dir, free_port, Server};
use docweave_tests::postgres::fresh_database;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn start(name: &str, store: &str) -> Server {
    Server::start(
        name,
        &data_dir(name),
        free_port(),
        free_port(),
        &["--store", store],
    )
}

fn ws(s: &Server) -> String {
    format!("ws://127.0.0.1:{}", s.ws)
}

fn put(url: &str, doc: &str, key: &str, value: &str) {
    let (ok, _, err) = cli(&["doc", "put", url, doc, key, value, "--timeout", "20"]);
    assert!(ok, "put {doc}.{key} on {url}: {err}");
}

/// Polls `doc get` on `url` until `check` holds of its output (20 s at most).
fn eventually_get(url: &str, doc: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, out, _) = cli(&["doc", "get", url, doc, "--timeout", "10"]);
        if check(&out) || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_servers_on_one_database_converge_and_a_deletion_reaches_all() {
    let db = fresh_database("cluster_converge");
    let servers = [start("pg-a", &db), start("pg-b", &db), start("pg-c", &db)];
    for (i, s) in servers.iter().enumerate() {
        put(&ws(s), "shared", &format!("from{i}"), &format!("v{i}"));
    }
    for s in &servers {
        let out = eventually_get(&ws(s), "shared", |o| {
            (0..3).all(|i| o.contains(&format!("\"from{i}\":\"v{i}\"")))
        });
        assert!(
            (0..3).all(|i| out.contains(&format!("\"from{i}\":\"v{i}\""))),
            "{} did not converge: {out}",
            s.name
        );
    }
    // Deleted through one server: gone on another, which also refuses it.
    put(&ws(&servers[0]), "doomed", "k", "v");
    eventually_get(&ws(&servers[2]), "doomed", |o| o.contains("\"k\""));
    let (ok, out, err) = cli(&["doc", "delete", &ws(&servers[1]), "doomed"]);
    assert!(ok, "delete: {out} {err}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, list, _) = cli(&["doc", "list", &ws(&servers[2])]);
        if !list.contains("doomed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pg-c still lists the deleted document: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, _, err) = cli(&["doc", "put", &ws(&servers[2]), "doomed", "k", "again"]);
    assert!(
        !ok && err.contains("deleted"),
        "a write to the deleted document on another server must say it was deleted: {err}"
    );
}

#[test]
fn clients_of_a_killed_server_go_on_through_another_and_lose_nothing_acknowledged() {
    let db = fresh_database("cluster_failover");
    let mut a = start("fo-a", &db);
    let b = start("fo-b", &db);
    let c = start("fo-c", &db);
    // A watcher connected to a, ready to fail over to b.
    let mut watch = Command::new(common::BIN)
        .args(["doc", "watch", &ws(&a), "notes", "--server", &ws(&b)])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = {
        let out = watch.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };
    // Acknowledged by a (each put waits for a's acknowledgement).
    for i in 0..10 {
        put(&ws(&a), "notes", &format!("k{i}"), "acked-by-a");
    }
    a.kill9();
    // A new command fails over at once; an old client, on its next reconnect.
    let (ok, _, err) = cli(&[
        "doc",
        "put",
        &ws(&a),
        "notes",
        "k10",
        "after-the-kill",
        "--server",
        &ws(&b),
        "--timeout",
        "20",
    ]);
    assert!(ok, "put with a dead first server: {err}");
    put(&ws(&c), "notes", "k11", "on-c");
    let all = |o: &str| (0..12).all(|i| o.contains(&format!("\"k{i}\"")));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while !all(&last) && Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            last = line;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        all(&last),
        "the watcher did not follow through b; it last printed {last}"
    );
    let on_c = eventually_get(&ws(&c), "notes", all);
    assert!(all(&on_c), "c lost an acknowledged change: {on_c}");
}

fn ws_dialer(port: u16) -> docweave_shell::Dialer {
    docweave_tests::endpoints::ws_dialer(&format!("ws://127.0.0.1:{port}/"))
}

#[test]
fn presence_set_through_one_server_reaches_a_client_of_another() {
    let db = fresh_database("cluster_presence");
    let a = start("pr-a", &db);
    let b = start("pr-b", &db);
    smol::block_on(async {
        let alice = docweave_shell::Repo::builder("alice").build().unwrap();
        alice.connect_with("server", None, ws_dialer(a.ws)).unwrap();
        let bob = docweave_shell::Repo::builder("bob").build().unwrap();
        bob.connect_with("server", None, ws_dialer(b.ws)).unwrap();
        let events = bob.events().await.unwrap();
        // Both follow the document, each through its own server.
        alice.open("room").await.unwrap();
        bob.open("room").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = None;
        while seen.is_none() && Instant::now() < deadline {
            // Set again until it arrives: bob may subscribe after the first.
            alice.set_presence("room", "cursor", b"line 7").unwrap();
            let until = Instant::now() + Duration::from_millis(300);
            while Instant::now() < until {
                let next = futures_lite::future::or(async { events.recv().await.ok() }, async {
                    smol::Timer::after(Duration::from_millis(50)).await;
                    None
                })
                .await;
                if let Some(docweave_core::Event::Presence {
                    peer,
                    data: Some(data),
                    ..
                }) = next
                {
                    if peer.as_str() == "alice" {
                        seen = Some(data);
                        break;
                    }
                }
            }
        }
        assert_eq!(
            seen.map(|d| d.as_bytes().to_vec()),
            Some(b"line 7".to_vec()),
            "bob, on pr-b, never saw alice's presence set through pr-a"
        );
        alice.close().await;
        bob.close().await;
    });
}

/// A client speaking raw protocol messages to one server.
struct RawClient {
    link: docweave_adapters::Link,
}

impl RawClient {
    async fn connect(port: u16, peer: &str) -> RawClient {
        let link = docweave_adapters::transport::ws_connect(
            &format!("ws://127.0.0.1:{port}/"),
            docweave_adapters::transport::WsOptions::default(),
        )
        .await
        .unwrap();
        let c = RawClient { link };
        c.say(docweave_core::Message::Hello(docweave_core::Hello {
            peer: docweave_core::PeerId::new(peer),
            name: peer.into(),
            kind: docweave_core::PeerKind::User,
            protocol: docweave_core::PROTOCOL_VERSION,
            token: None,
            clock: docweave_core::Clock(0),
        }));
        c
    }

    fn say(&self, m: docweave_core::Message) {
        assert!(self.link.send(docweave_core::encode(&[m]).unwrap()));
    }

    /// The first message `pick` accepts, within 20 s.
    async fn wait<T>(&self, mut pick: impl FnMut(docweave_core::Message) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let frame = futures_lite::future::or(async { self.link.rx.recv().await.ok() }, async {
                smol::Timer::after(Duration::from_millis(200)).await;
                None
            })
            .await;
            let Some(frame) = frame else { continue };
            let limits = docweave_core::Limits::default();
            for m in docweave_core::decode(&frame, &limits).unwrap_or_default() {
                if let Some(t) = pick(m) {
                    return t;
                }
            }
        }
        panic!("the awaited message did not come within 20 s")
    }
}

#[test]
fn a_listener_registered_on_one_server_is_pulled_and_acknowledged_on_another() {
    use docweave_core::{Message, Revision, RevisionStatus};
    let db = fresh_database("cluster_listeners");
    let a = start("li-a", &db);
    let b = start("li-b", &db);
    put(&ws(&a), "report", "k", "v");
    smol::block_on(async {
        let on_a = RawClient::connect(a.ws, "reader").await;
        on_a.say(Message::ListenerRegister {
            filter: docweave_core::Filter::all(),
            id: None,
        });
        let id = on_a
            .wait(|m| match m {
                Message::ListenerRegistered { id } => Some(id),
                _ => None,
            })
            .await;
        on_a.link.close("moving to another server");
        // The registration is answered before its record is durable (a
        // server that dies first makes the client register again): wait
        // until the record is in the database.
        let mut pg = postgres::Client::connect(&db, postgres::NoTls).unwrap();
        let key = format!("listener/{}", id.0);
        let deadline = Instant::now() + Duration::from_secs(20);
        while pg
            .query_opt("SELECT 1 FROM docweave_records WHERE key = $1", &[&key])
            .unwrap()
            .is_none()
        {
            assert!(Instant::now() < deadline, "a never saved the listener");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The same reader, now on b, pulls and acknowledges with a's id.
        let on_b = RawClient::connect(b.ws, "reader").await;
        on_b.say(Message::ListenerPull { id, limit: 10 });
        let strands = on_b
            .wait(|m| match m {
                Message::Strands { strands, .. } => Some(strands),
                Message::Error { message, .. } => panic!("b refused the pull: {message}"),
                _ => None,
            })
            .await;
        let report = strands
            .iter()
            .find(|s| s.doc.as_str() == "report")
            .expect("the strand of the document written on a");
        on_b.say(Message::ListenerAck {
            id,
            revisions: vec![Revision {
                doc: report.doc.clone(),
                version: report.version.clone(),
                clock: report.clock,
                status: RevisionStatus::Ok,
            }],
        });
        on_b.wait(|m| match m {
            Message::ListenerAcked { .. } => Some(()),
            Message::Error { message, .. } => panic!("b refused the acknowledgement: {message}"),
            _ => None,
        })
        .await;
        // Acknowledged on b: a pull through b brings it no more.
        on_b.say(Message::ListenerPull { id, limit: 10 });
        let again = on_b
            .wait(|m| match m {
                Message::Strands { strands, .. } => Some(strands),
                _ => None,
            })
            .await;
        assert!(
            again.iter().all(|s| s.doc.as_str() != "report"),
            "an acknowledged strand came back"
        );
    });
}

/// The status line and body of `GET path` on the HTTP port.
fn get(port: u16, path: &str) -> String {
    common::raw::http_raw(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        Duration::from_secs(5),
    )
}

/// Polls `GET path` until its answer contains `want` (`within` at most).
fn eventually_answers(port: u16, path: &str, want: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let answer = get(port, path);
        if answer.contains(want) || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn readyz_fails_while_the_store_cannot_be_reached_and_healthz_does_not() {
    let db = fresh_database("readyz");
    let data = data_dir("pg-ready");
    let server = Server::start_env(
        "pg-ready",
        &data,
        free_port(),
        free_port(),
        &["--store", &db],
        None,
        &[("DOCWEAVE_TEST_LOG", "1")],
    );
    let ready = eventually_answers(server.http, "/readyz", "200 OK", Duration::from_secs(10));
    assert!(ready.contains("200 OK"), "{ready}");
    // The database refuses every connection, and the server's are cut.
    let (base, name) = db.rsplit_once('/').unwrap();
    let mut admin =
        postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
        ))
        .unwrap();
    let down = eventually_answers(server.http, "/readyz", "503", Duration::from_secs(20));
    assert!(
        down.contains("503"),
        "not ready while the store is down: {down}"
    );
    assert!(down.contains("store"), "says why: {down}");
    let alive = get(server.http, "/healthz");
    assert!(alive.contains("200 OK"), "alive all the same: {alive}");
    // Down for a while: the server reads its feed, every 200 ms at first
    // and less often while the reads keep failing.
    std::thread::sleep(Duration::from_secs(4));
    let log = std::fs::read_to_string(data.join("serve.log")).unwrap_or_default();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    eprintln!(
        "{} warnings while the store was down:\n{}",
        warnings.len(),
        warnings.join("\n")
    );
    // Once each (the feed read fails again and again): before, 29 lines in
    // these 4 s, when the feed was read five times a second.
    assert!(
        warnings.len() <= 6,
        "a store that stays down is said once, not at every try: {warnings:#?}"
    );
    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .unwrap();
    let back = eventually_answers(server.http, "/readyz", "200 OK", Duration::from_secs(30));
    assert!(
        back.contains("200 OK"),
        "ready again once the store answers: {back}"
    );
    put(&ws(&server), "after", "k", "v");
    let log = std::fs::read_to_string(data.join("serve.log")).unwrap_or_default();
    assert!(
        log.contains("the store answers again"),
        "the recovery is said too"
    );
}
