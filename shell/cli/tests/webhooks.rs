//! Webhooks of the real binary, told to a local HTTP receiver: every
//! change arrives as an event, signed, in order per document, through a
//! receiver that fails, then hangs, then comes back, and through a server
//! killed with SIGKILL; a receiver that never answers holds up no other
//! hook; two servers on one PostgreSQL deliver each event once; the
//! README's Python receiver verifies real signatures.

mod common;

use common::http::{call, header, json};
use common::{data_dir, free_port, Server};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec-0123456789abcdef0123456789";

/// What the receiver does with a request.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// Answers 200 and keeps the event.
    Take,
    /// Answers 500.
    Fail,
    /// Reads the request, then holds the connection without answering.
    Hang,
}

/// A request the receiver took.
#[derive(Clone, Debug)]
struct Taken {
    signature: String,
    kind: String,
    delivery: String,
    body: Vec<u8>,
}

/// A local HTTP receiver of webhooks.
#[derive(Clone)]
struct Receiver {
    port: u16,
    mode: Arc<Mutex<Mode>>,
    taken: Arc<Mutex<Vec<Taken>>>,
    attempts: Arc<AtomicUsize>,
}

impl Receiver {
    fn start(mode: Mode) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let r = Receiver {
            port: listener.local_addr().unwrap().port(),
            mode: Arc::new(Mutex::new(mode)),
            taken: Arc::default(),
            attempts: Arc::default(),
        };
        let shared = r.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let r = shared.clone();
                std::thread::spawn(move || r.answer(stream));
            }
        });
        r
    }

    fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/hooks/docs?key=receiver-secret",
            self.port
        )
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn answer(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut headers = BTreeMap::new();
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        assert!(
            line.starts_with("POST /hooks/docs?key=receiver-secret "),
            "{line}"
        );
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let length: usize = headers["content-length"].parse().unwrap();
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let mode = *self.mode.lock().unwrap();
        let mut out = stream;
        // A sender that left before the answer is the sender's business:
        // what was taken is kept either way.
        match mode {
            Mode::Take => {
                self.taken.lock().unwrap().push(Taken {
                    signature: headers["x-docweave-signature"].clone(),
                    kind: headers["x-docweave-event"].clone(),
                    delivery: headers["x-docweave-delivery"].clone(),
                    body,
                });
                let _ = out.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
            Mode::Fail => {
                let _ = out.write_all(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
            Mode::Hang => std::thread::sleep(Duration::from_secs(60)),
        }
    }

    /// The events taken, once each (a repeat has the same delivery id).
    fn events(&self) -> Vec<Value> {
        let mut seen = std::collections::BTreeSet::new();
        self.taken
            .lock()
            .unwrap()
            .iter()
            .filter(|t| seen.insert(t.delivery.clone()))
            .map(|t| json(&t.body))
            .collect()
    }

    /// The events about `doc`, in the order taken.
    fn events_of(&self, doc: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["doc"] == doc)
            .collect()
    }
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "waited {within:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn secret_file(dir: &std::path::Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("webhook-secret");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    path.display().to_string()
}

/// Sets `key` of map `m` in `doc`, through the document API; its version after.
fn patch(port: u16, doc: &str, key: &str, value: u64) -> String {
    let body = serde_json::json!({"edits": [
        {"op": "set", "path": ["m"], "values": {key: value}}]});
    let (status, _, answer) = call(
        port,
        "PATCH",
        &format!("/docs/{doc}"),
        &[],
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    version(port, doc)
}

/// The document's version now (its ETag).
fn version(port: u16, doc: &str) -> String {
    let (status, headers, body) = call(port, "GET", &format!("/docs/{doc}"), &[], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    header(&headers, "etag")
        .unwrap()
        .trim_matches('"')
        .to_string()
}

/// Whether the events about a document tell each of its changes in
/// order, one after the other, ending at `last` (a version; "" once
/// deleted), starting from nothing (or from `first_before`).
fn told_in_order(events: &[Value], first_before: &str, last: &str) -> Result<(), String> {
    let mut before = first_before.to_string();
    for e in events {
        if e["before"] != before.as_str() {
            return Err(format!("{e} does not follow {before:?}: {events:?}"));
        }
        let kind = match (before.is_empty(), e["after"] == "") {
            (_, true) => "document.deleted",
            (true, false) => "document.created",
            (false, false) => "document.changed",
        };
        if e["type"] != kind {
            return Err(format!("{e} should be {kind}"));
        }
        before = e["after"].as_str().unwrap().to_string();
    }
    if before != last {
        return Err(format!("told up to {before:?}, not {last:?}: {events:?}"));
    }
    Ok(())
}

fn wait_told(rx: &Receiver, doc: &str, first_before: &str, last: &str) {
    let within = Duration::from_secs(30);
    let start = Instant::now();
    loop {
        let events = rx.events_of(doc);
        match told_in_order(&events, first_before, last) {
            Ok(()) => return,
            Err(why) if start.elapsed() > within => panic!("{doc}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// hex(HMAC-SHA256(secret, "T." + body)), computed here as a receiver would.
fn hmac_hex(secret: &str, t: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn signed_by(secret: &str, header: &str, body: &[u8]) -> bool {
    let parts: BTreeMap<&str, &str> = header
        .split(',')
        .filter_map(|p| p.split_once('='))
        .collect();
    let expected = hmac_hex(secret, parts["t"], body);
    let t: u64 = parts["t"].parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    expected == parts["v1"] && t.abs_diff(now) < 300
}

/// A sample of the server's `/metrics`.
fn figure(port: u16, name: &str) -> f64 {
    let (_, _, metrics) = call(port, "GET", "/metrics", &[], b"");
    let metrics = String::from_utf8_lossy(&metrics);
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

fn hooked(rx: &Receiver, dir: &std::path::Path) -> Vec<String> {
    [
        "--webhook",
        &rx.url(),
        "--webhook-secret-file",
        &secret_file(dir),
        "--webhook-window-ms",
        "100",
        "--webhook-timeout-ms",
        "500",
        "--webhook-max-backoff-s",
        "1",
        "--admin-token",
        "adm1n",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn every_change_is_told_once_taken_in_order_through_failures_hangs_and_a_kill() {
    let data = data_dir("webhooks");
    let rx = Receiver::start(Mode::Take);
    let (ws, http) = (free_port(), free_port());
    // A document written before the hook exists is where its events
    // start, not news.
    let mut plain = Server::start("hooked", &data, ws, http, &[]);
    let old_before = patch(http, "old", "k", 1);
    plain.kill9();
    let args = hooked(&rx, &data.join("secret"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Server::start("hooked", &data, ws, http, &args);
    let a1 = patch(http, "a", "k", 1);
    let old = patch(http, "old", "k", 2);
    wait_told(&rx, "a", "", &a1);
    wait_told(&rx, "old", &old_before, &old);

    // The receiver fails, then hangs past the timeout, then comes back:
    // everything written meanwhile arrives, in order per document.
    rx.set(Mode::Fail);
    let tried = rx.attempts.load(Ordering::SeqCst);
    patch(http, "a", "k", 2);
    patch(http, "b", "k", 1);
    wait_until("failed attempts", Duration::from_secs(20), || {
        rx.attempts.load(Ordering::SeqCst) >= tried + 4
    });
    rx.set(Mode::Hang);
    let a = patch(http, "a", "k", 3);
    let tried = rx.attempts.load(Ordering::SeqCst);
    wait_until("attempts that time out", Duration::from_secs(20), || {
        rx.attempts.load(Ordering::SeqCst) >= tried + 2
    });
    assert!(figure(http, "docweave_webhook_failures_total{") >= 4.0);
    assert!(figure(http, "docweave_webhook_pending{") >= 1.0);
    rx.set(Mode::Take);
    let b = version(http, "b");
    wait_told(&rx, "a", "", &a);
    wait_told(&rx, "b", "", &b);

    // Killed with events pending: the restarted server delivers them.
    rx.set(Mode::Fail);
    let tried = rx.attempts.load(Ordering::SeqCst);
    let b = patch(http, "b", "k", 2);
    let c = patch(http, "c", "k", 1);
    wait_until(
        "an attempt before the kill",
        Duration::from_secs(20),
        || rx.attempts.load(Ordering::SeqCst) > tried,
    );
    server.kill9();
    server.start_again();
    rx.set(Mode::Take);
    wait_told(&rx, "b", "", &b);
    wait_told(&rx, "c", "", &c);

    // A deletion is told, after everything before it.
    let (status, _, body) = call(
        http,
        "DELETE",
        "/admin/docs/a",
        &[("authorization", "Bearer adm1n")],
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    wait_told(&rx, "a", "", "");

    for t in rx.taken.lock().unwrap().iter() {
        assert!(signed_by(SECRET, &t.signature, &t.body), "{t:?}");
        assert!(!signed_by("another secret", &t.signature, &t.body));
        let e = json(&t.body);
        assert_eq!(e["type"], t.kind.as_str());
        assert_eq!(e["id"], t.delivery.as_str());
    }
    assert!(figure(http, "docweave_webhook_delivered_total{") >= 2.0);
    assert_eq!(figure(http, "docweave_webhook_delivering{"), 1.0);
    let (_, _, page) = call(http, "GET", "/", &[("authorization", "Bearer adm1n")], b"");
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("<table id=webhooks"), "{page}");
    assert!(!page.contains("receiver-secret"), "a hook's query is shown");
}

#[test]
fn a_receiver_that_never_answers_holds_up_no_other_hook() {
    let data = data_dir("webhooks-stuck");
    let stuck = Receiver::start(Mode::Hang);
    let fine = Receiver::start(Mode::Take);
    let config = data.join("hooks.json");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        &config,
        serde_json::json!({"hooks": [
            {"url": stuck.url(), "name": "stuck"},
            {"url": fine.url(), "name": "fine", "docs": ["team/*"], "events": ["created"]}]})
        .to_string(),
    )
    .unwrap();
    let secret = secret_file(&data);
    let http = free_port();
    let _server = Server::start(
        "stuck",
        &data,
        free_port(),
        http,
        &[
            "--webhook-config",
            &config.display().to_string(),
            "--webhook-secret-file",
            &secret,
            "--webhook-window-ms",
            "100",
            // Longer than this test waits for the other hook.
            "--webhook-timeout-ms",
            "60000",
        ],
    );
    patch(http, "team%2Fx", "k", 1);
    patch(http, "team%2Fx", "k", 2);
    patch(http, "other", "k", 1);
    let y = patch(http, "team%2Fy", "k", 1);
    wait_until("the stuck hook's attempts", Duration::from_secs(20), || {
        stuck.attempts.load(Ordering::SeqCst) >= 1
    });
    // The fine hook hears of creations in team/ only, each once, while the
    // stuck one's attempts still wait for an answer.
    wait_told(&fine, "team/y", "", &y);
    let x = fine.events_of("team/x");
    assert_eq!(x.len(), 1, "{x:?}");
    assert_eq!(x[0]["type"], "document.created");
    assert!(fine.events_of("other").is_empty());
    assert!(stuck.taken.lock().unwrap().is_empty());
    // The document API answers meanwhile too.
    assert!(!version(http, "other").is_empty());
    // Nobody else may speak as a hook, even on an open server.
    let (status, _, body) = call(
        http,
        "GET",
        "/docs/other",
        &[("x-docweave-peer", "webhook-0123456789abcdef")],
        b"",
    );
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn two_servers_on_one_postgres_deliver_each_event_once_and_one_takes_over_from_the_other() {
    let db = docweave_tests::postgres::fresh_database("webhooks_pg");
    let rx = Receiver::start(Mode::Take);
    let secret = secret_file(&data_dir("webhooks-pg-secret"));
    let args = [
        "--store",
        &db,
        "--webhook",
        &rx.url(),
        "--webhook-secret-file",
        &secret,
        "--webhook-window-ms",
        "100",
    ];
    let start = |name: &str| Server::start(name, &data_dir(name), free_port(), free_port(), &args);
    let servers = [start("pg-hook-1"), start("pg-hook-2")];
    for i in 0..4 {
        for (s, key) in servers.iter().zip(["k", "j"]) {
            patch(s.http, &format!("d{i}"), key, 1);
        }
    }
    for i in 0..4 {
        let doc = format!("d{i}");
        let mut last = String::new();
        wait_until(
            "both servers to hold both writes",
            Duration::from_secs(20),
            || {
                last = version(servers[0].http, &doc);
                last.matches(':').count() == 2 && last == version(servers[1].http, &doc)
            },
        );
        wait_told(&rx, &doc, "", &last);
    }
    let deliveries: Vec<String> = rx
        .taken
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.delivery.clone())
        .collect();
    let once: std::collections::BTreeSet<&String> = deliveries.iter().collect();
    assert_eq!(once.len(), deliveries.len(), "an event was delivered twice");
    let delivering: Vec<f64> = servers
        .iter()
        .map(|s| figure(s.http, "docweave_webhook_delivering{"))
        .collect();
    assert_eq!(delivering.iter().sum::<f64>(), 1.0, "{delivering:?}");
    // The server delivering is killed: the other takes the hook over and
    // goes on from where the first left it.
    let [first, second] = servers;
    let (mut holder, other) = if delivering[0] == 1.0 {
        (first, second)
    } else {
        (second, first)
    };
    holder.kill9();
    let d0 = patch(other.http, "d0", "k", 2);
    let d9 = patch(other.http, "d9", "k", 1);
    wait_told(&rx, "d0", "", &d0);
    wait_told(&rx, "d9", "", &d9);
    assert_eq!(figure(other.http, "docweave_webhook_delivering{"), 1.0);
}

/// A request to the README's receiver, signed at `t` under `secret`: its status.
fn post_signed(port: u16, secret: &str, t: u64, body: &[u8]) -> u16 {
    let signature = format!("t={t},v1={}", hmac_hex(secret, &t.to_string(), body));
    call(
        port,
        "POST",
        "/",
        &[("x-docweave-signature", &signature)],
        body,
    )
    .0
}

#[test]
fn the_readmes_python_receiver_verifies_real_signatures_and_refuses_forged_or_old_ones() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .unwrap();
    let section = &readme[readme.find("## Webhooks").expect("the README's section")..];
    let start = section.find("```python\n").expect("a Python block") + "```python\n".len();
    let snippet = &section[start..start + section[start..].find("```").unwrap()];
    let data = data_dir("webhooks-python");
    let secret = secret_file(&data);
    let port = free_port();
    let mut python = std::process::Command::new("python3")
        .arg("-u")
        .arg("-c")
        .arg(snippet)
        .env("PORT", port.to_string())
        .env("WEBHOOK_SECRET_FILE", &secret)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = python.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The test stopped listening: nothing is left to tell.
            let _ = lines_tx.send(line);
        }
    });
    wait_until("the receiver to listen", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let http = free_port();
    let _server = Server::start(
        "python-hook",
        &data,
        free_port(),
        http,
        &[
            "--webhook",
            &format!("http://127.0.0.1:{port}/"),
            "--webhook-secret-file",
            &secret,
            "--webhook-window-ms",
            "100",
        ],
    );
    let v = patch(http, "notes", "k", 1);
    let told = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the receiver printed an event it verified");
    assert_eq!(told, format!("document.created notes  -> {v}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = br#"{"type": "document.deleted", "doc": "notes", "before": "", "after": ""}"#;
    assert_eq!(post_signed(port, "a guessed secret", now, body), 401);
    assert_eq!(
        post_signed(port, SECRET, now - 3_600, body),
        401,
        "an old request"
    );
    assert_eq!(post_signed(port, SECRET, now, body), 200);
    assert_eq!(
        call(
            port,
            "POST",
            "/",
            &[("x-docweave-signature", "nonsense")],
            body
        )
        .0,
        401
    );
    // The receiver runs until killed; one that already exited needs nothing.
    let _ = python.kill();
    let _ = python.wait();
}
