//! End to end: `docweave serve` as a child process on free ports, clients
//! over WebSocket and HTTP, a SIGKILL and a restart, a bad token, and two
//! servers joined with `--peer`.

use docweave_adapters::transport::{http_link, ws_connect, HttpOptions, WsOptions};
use docweave_shell::{Dialer, Repo};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
const BIN: &str = env!("CARGO_BIN_EXE_docweave");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn data_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

struct Server {
    child: Child,
    ws: u16,
    http: u16,
    data: PathBuf,
    name: String,
    extra: Vec<String>,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Server {
    fn start(name: &str, data: &Path, ws: u16, http: u16, extra: &[&str]) -> Server {
        let mut args: Vec<String> = [
            "serve",
            "--name",
            name,
            "--listen",
            &format!("127.0.0.1:{ws}"),
            "--http",
            &format!("127.0.0.1:{http}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("--data".into());
        args.push(data.display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(BIN)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        // Wait for "docweave serving ..." on stdout.
        let out = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        assert!(
            line.contains("docweave serving"),
            "the server did not start: {line:?}"
        );
        let extra = extra.iter().map(|s| s.to_string()).collect();
        Server {
            child,
            ws,
            http,
            data: data.to_path_buf(),
            name: name.to_string(),
            extra,
            _stdout: reader,
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill9();
        let extra: Vec<String> = self.extra.clone();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        *self = Server::start(
            &self.name.clone(),
            &self.data.clone(),
            self.ws,
            self.http,
            &extra,
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ws_dialer(port: u16) -> Dialer {
    Arc::new(move |_| {
        Box::pin(async move {
            ws_connect(&format!("ws://127.0.0.1:{port}/"), WsOptions::default()).await
        })
    })
}

fn http_dialer(port: u16) -> Dialer {
    Arc::new(move |_| {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let session = format!(
            "e2e-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        Box::pin(async move {
            Ok(http_link(
                &format!("127.0.0.1:{port}"),
                &session,
                HttpOptions::default(),
            ))
        })
    })
}

fn client(name: &str, dialer: Dialer, token: Option<&str>) -> Repo {
    let r = Repo::builder(name)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    r.connect_with("server", token, dialer)
        .unwrap_or_else(|e| panic!("{e}"));
    r
}

fn text(d: &loro::LoroDoc) -> String {
    d.get_text("t").to_string()
}

async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if f() {
            return true;
        }
        smol::Timer::after(Duration::from_millis(25)).await;
    }
    f()
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn websocket_and_http_clients_converge_and_survive_a_sigkill_of_the_server() {
    let data = data_dir("kill");
    let (ws, http) = (free_port(), free_port());
    let mut server = Server::start("server", &data, ws, http, &["--token", "t0k"]);
    smol::block_on(async {
        let alice = client("alice", ws_dialer(ws), Some("t0k"));
        let bob = client("bob", ws_dialer(ws), Some("t0k"));
        let carol = client("carol", http_dialer(http), Some("t0k"));
        let mut docs = Vec::new();
        for r in [&alice, &bob, &carol] {
            docs.push(r.open("shared").await.unwrap_or_else(|e| panic!("{e}")));
        }
        for (i, d) in docs.iter().enumerate() {
            d.get_text("t").insert(0, &format!("<{i}>")).ok();
            d.commit();
        }
        let converged = eventually(|| {
            docs.iter()
                .all(|d| text(d).len() == 9 && text(d) == text(&docs[0]))
        })
        .await;
        assert!(converged, "{:?}", docs.iter().map(text).collect::<Vec<_>>());
        for (r, name) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
            assert!(
                r.wait_for_sync("shared", "server", WAIT)
                    .await
                    .unwrap_or(false),
                "{name} not acknowledged"
            );
        }
        let acknowledged = text(&docs[0]);

        // kill -9, restart on the same data directory.
        server.restart();
        // The clients reconnect by themselves and keep editing.
        docs[1].get_text("t").insert(0, "[after]").ok();
        docs[1].commit();
        assert!(
            bob.wait_for_sync("shared", "server", WAIT)
                .await
                .unwrap_or(false),
            "bob did not resume"
        );
        assert!(
            eventually(
                || text(&docs[0]).starts_with("[after]") && text(&docs[2]).starts_with("[after]")
            )
            .await
        );

        // A fresh reader sees everything that had been acknowledged, and more.
        let (ok, out, err) = cli(&[
            "doc",
            "get",
            &format!("ws://127.0.0.1:{ws}"),
            "shared",
            "--token",
            "t0k",
        ]);
        assert!(ok, "{err}");
        assert!(
            out.contains(&acknowledged),
            "lost acknowledged data: {out} (had {acknowledged})"
        );
        for r in [alice, bob, carol] {
            r.close().await;
        }
    });
}

#[test]
fn a_client_with_a_bad_token_is_refused_with_a_clear_message() {
    let data = data_dir("token");
    let (ws, http) = (free_port(), free_port());
    let _server = Server::start("server", &data, ws, http, &["--token", "right"]);
    let (ok, _, err) = cli(&[
        "doc",
        "get",
        &format!("ws://127.0.0.1:{ws}"),
        "notes",
        "--token",
        "wrong",
    ]);
    assert!(!ok, "a bad token was let in");
    assert!(
        err.contains("token was not accepted"),
        "unclear refusal: {err}"
    );
    let (ok, _, err) = cli(&["doc", "get", &format!("ws://127.0.0.1:{ws}"), "notes"]);
    assert!(!ok && err.contains("requires a token"), "{err}");
}

#[test]
fn two_servers_joined_with_peer_converge_also_after_a_restart() {
    let (a_data, b_data) = (data_dir("peer-a"), data_dir("peer-b"));
    let (a_ws, a_http, b_ws, b_http) = (free_port(), free_port(), free_port(), free_port());
    let _a = Server::start("server-a", &a_data, a_ws, a_http, &[]);
    let peer = format!("ws://127.0.0.1:{a_ws}");
    let mut b = Server::start("server-b", &b_data, b_ws, b_http, &["--peer", &peer]);
    let at = |port: u16| format!("ws://127.0.0.1:{port}");
    let eventually_has = |port: u16, needle: &str| {
        let start = Instant::now();
        loop {
            let (_, out, _) = cli(&["doc", "get", &at(port), "wiki"]);
            if out.contains(needle) {
                return true;
            }
            if start.elapsed() > WAIT {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let put = |port: u16, key: &str, value: &str| {
        let (ok, _, err) = cli(&["doc", "put", &at(port), "wiki", key, value]);
        assert!(ok, "put {key} on {port}: {err}");
    };
    put(a_ws, "from_a", "1");
    assert!(eventually_has(b_ws, "from_a"), "a's edit did not reach b");
    put(b_ws, "from_b", "2");
    assert!(eventually_has(a_ws, "from_b"), "b's edit did not reach a");
    b.restart();
    put(a_ws, "while_b_restarted", "3");
    assert!(
        eventually_has(b_ws, "while_b_restarted"),
        "b did not resume from its cursor"
    );
    let (ok, out, _) = cli(&["inspect", &b_data.display().to_string()]);
    assert!(ok && out.contains("wiki"), "{out}");
}

#[test]
fn compaction_keeps_content_and_replay_reports_differences() {
    let data = data_dir("compact");
    let dir = data.display().to_string();
    std::fs::create_dir_all(&data).ok();
    for i in 0..5 {
        let (ok, _, err) = cli(&["doc", "put", &dir, "log", &format!("k{i}"), "v"]);
        assert!(ok, "{err}");
    }
    let (_, before, _) = cli(&["doc", "get", &dir, "log"]);
    let (ok, out, err) = cli(&["compact", &dir]);
    assert!(ok && out.contains("compacted"), "{out}{err}");
    let (_, after, _) = cli(&["doc", "get", &dir, "log"]);
    assert_eq!(before, after);
    assert!(after.contains("k4"));
    // The committed fixture replays; a truncated step does not.
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/loro-hub-two-clients.jsonl");
    let (ok, out, _) = cli(&["replay", &fixture.display().to_string()]);
    assert!(ok && out.contains("identical"), "{out}");
    // A recorded command that update() does not produce.
    let text = std::fs::read_to_string(&fixture).unwrap_or_default();
    let tampered = text.replacen(
        "\"output\":[]",
        "\"output\":[{\"Purge\":{\"doc\":\"tampered\"}}]",
        1,
    );
    let broken = data.join("broken.jsonl");
    std::fs::write(&broken, tampered).ok();
    let (ok, _, err) = cli(&["replay", &broken.display().to_string()]);
    assert!(!ok && err.contains("differs"), "{err}");
}

#[test]
fn after_thirty_quiet_seconds_a_new_client_puts_and_reads_a_value() {
    // The bug this guards: the first input after a quiet spell was judged
    // by a stale clock, so the next client's handshake "timed out" at once.
    let data = data_dir("quiet");
    let (ws, http) = (free_port(), free_port());
    let _server = Server::start("server", &data, ws, http, &[]);
    std::thread::sleep(Duration::from_secs(30));
    let (ok, out, err) = cli(&[
        "doc",
        "put",
        &format!("ws://127.0.0.1:{ws}"),
        "quiet",
        "k",
        "v",
    ]);
    assert!(ok, "put after a quiet spell failed: {out}{err}");
    let (ok, out, err) = cli(&["doc", "get", &format!("http://127.0.0.1:{http}"), "quiet"]);
    assert!(ok && out.contains("\"k\""), "{out}{err}");
}
