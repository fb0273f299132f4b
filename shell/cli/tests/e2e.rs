//! End to end: `docweave serve` as a child process on free ports, clients
//! over WebSocket and HTTP, a SIGKILL and a restart, a bad token, and two
//! servers joined with `--peer`.

mod common;

use common::{cli, data_dir, free_port, Server};
use docweave_adapters::transport::{http_link, HttpOptions};
use docweave_shell::{Dialer, Repo};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn ws_dialer(port: u16) -> Dialer {
    docweave_tests::endpoints::ws_dialer(&format!("ws://127.0.0.1:{port}/"))
}

fn http_dialer(port: u16, token: Option<&'static str>) -> Dialer {
    Arc::new(move |_| {
        Box::pin(async move {
            Ok(http_link(
                &format!("127.0.0.1:{port}"),
                token,
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

#[test]
fn websocket_and_http_clients_converge_and_survive_a_sigkill_of_the_server() {
    let data = data_dir("kill");
    let (ws, http) = (free_port(), free_port());
    let mut server = Server::start("server", &data, ws, http, &["--token", "t0k"]);
    smol::block_on(async {
        let alice = client("alice", ws_dialer(ws), Some("t0k"));
        let bob = client("bob", ws_dialer(ws), Some("t0k"));
        let carol = client("carol", http_dialer(http, Some("t0k")), Some("t0k"));
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
                    .is_ok_and(|o| o.is_synced()),
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
                .is_ok_and(|o| o.is_synced()),
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

#[test]
fn delete_list_and_put_on_a_deleted_document_say_what_happened() {
    let data = data_dir("delete-list");
    let (ws, http) = (free_port(), free_port());
    let _server = Server::start("server", &data, ws, http, &[]);
    let ws_url = format!("ws://127.0.0.1:{ws}");
    let http_url = format!("http://127.0.0.1:{http}");
    for doc in ["keep", "drop"] {
        let (ok, _, err) = cli(&["doc", "put", &ws_url, doc, "k", "v"]);
        assert!(ok, "{err}");
    }
    let (ok, out, err) = cli(&["doc", "list", &ws_url]);
    assert!(
        ok && out.contains("keep") && out.contains("drop"),
        "{out}{err}"
    );
    let (ok, out, err) = cli(&["doc", "delete", &http_url, "drop"]);
    assert!(ok && out.contains("deleted drop"), "{out}{err}");
    let (ok, out, _) = cli(&["doc", "list", &ws_url]);
    assert!(ok && out.contains("keep") && !out.contains("drop"), "{out}");
    // Writing to a deleted document fails, and says why.
    let (ok, out, err) = cli(&["doc", "put", &ws_url, "drop", "k", "again"]);
    assert!(!ok, "put on a deleted document succeeded: {out}");
    assert!(err.contains("was deleted"), "{err}");
}

#[test]
fn compaction_folds_only_what_imports_and_says_what_it_left() {
    use docweave_adapters::{Append, SqliteStore, Store};
    let data = data_dir("compact-bad");
    let dir = data.display().to_string();
    std::fs::create_dir_all(&data).ok();
    for i in 0..3 {
        let (ok, _, err) = cli(&["doc", "put", &dir, "good", &format!("k{i}"), "v"]);
        assert!(ok, "{err}");
        let (ok, _, err) = cli(&["doc", "put", &dir, "bad", &format!("k{i}"), "v"]);
        assert!(ok, "{err}");
    }
    // A change that does not import, as a broken writer might leave.
    let mut store = SqliteStore::open(data.join("docweave.db")).unwrap_or_else(|e| panic!("{e}"));
    let garbage = Append {
        doc: docweave_core::DocId::new("bad"),
        meta: Default::default(),
        data: b"not a loro update".to_vec(),
        version: docweave_core::VersionVector::from_entries([(424242, 1)]),
        authors: Vec::new(),
    };
    store.append(&[garbage]).unwrap_or_else(|e| panic!("{e}"));
    let rows_before = store
        .load(&docweave_core::DocId::new("bad"))
        .ok()
        .flatten()
        .map(|l| l.changes.len())
        .unwrap_or(0);
    drop(store);
    let (ok, _, err) = cli(&["compact", &dir]);
    assert!(
        !ok && err.contains("bad") && err.contains("uncompacted"),
        "{err}"
    );
    let mut store = SqliteStore::open(data.join("docweave.db")).unwrap_or_else(|e| panic!("{e}"));
    let bad = store
        .load(&docweave_core::DocId::new("bad"))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("bad is gone"));
    assert_eq!(bad.changes.len(), rows_before, "changes were dropped");
    let good = store
        .load(&docweave_core::DocId::new("good"))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("good is gone"));
    assert!(
        good.snapshot.is_some() && good.changes.is_empty(),
        "good was not compacted"
    );
}

#[test]
fn a_reader_that_stops_early_ends_doc_get_quietly() {
    use std::process::{Command, Stdio};
    let data = data_dir("broken-pipe");
    let (ws, http) = (free_port(), free_port());
    let _server = Server::start("server", &data, ws, http, &[]);
    let ws_url = format!("ws://127.0.0.1:{ws}");
    let (ok, _, err) = cli(&["doc", "put", &ws_url, "notes", "k", "v"]);
    assert!(ok, "{err}");
    // `docweave doc get ... | head -c 0`: the pipe is closed before the answer.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_docweave"))
        .args(["doc", "get", &ws_url, "notes"])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn doc_get_of_a_missing_document_says_so_and_exits_3_on_every_transport() {
    let tcp = free_port();
    let data = data_dir("missing-doc");
    let server = Server::start(
        "server",
        &data,
        free_port(),
        free_port(),
        &["--tcp", &format!("127.0.0.1:{tcp}")],
    );
    let urls = [
        format!("ws://127.0.0.1:{}", server.ws),
        format!("http://127.0.0.1:{}", server.http),
        format!("tcp://127.0.0.1:{tcp}"),
    ];
    let (ok, _, err) = cli(&["doc", "put", &urls[0], "present", "k", "v"]);
    assert!(ok, "{err}");
    for url in &urls {
        let (code, out, err) = common::cli_status(&["doc", "get", url, "nosuch"]);
        assert_eq!(code, Some(3), "{url}: {out}{err}");
        assert!(out.is_empty(), "{url} printed {out}");
        assert!(err.contains("has no document nosuch"), "{url}: {err}");
        let (code, out, err) = common::cli_status(&["doc", "get", url, "present"]);
        assert_eq!(code, Some(0), "{url}: {err}");
        assert!(out.contains("\"k\":\"v\""), "{url}: {out}");
    }
    // A data directory, too (the server stopped first: one writer at a time).
    drop(server);
    let dir = data.display().to_string();
    let (code, _, err) = common::cli_status(&["doc", "get", &dir, "nosuch"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("holds no document nosuch"), "{err}");
    let (code, out, _) = common::cli_status(&["doc", "get", &dir, "present"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("\"k\":\"v\""), "{out}");
}

#[test]
fn one_shot_commands_are_quiet_unless_asked_and_say_more_with_v() {
    let data = data_dir("quiet");
    let server = Server::start("quiet", &data, free_port(), free_port(), &[]);
    let url = format!("ws://127.0.0.1:{}/", server.ws);
    // The tests' own log level (DOCWEAVE_LOG) must not decide this.
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_docweave"))
            .env_remove("DOCWEAVE_LOG")
            .env("DOCWEAVE_CONFIG_DIR", data.join("config"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let quiet = run(&["doc", "put", &url, "notes", "k", "v"]);
    assert_eq!(quiet, "", "a put that went well says nothing on stderr");
    let quiet = run(&["doc", "get", &url, "notes"]);
    assert_eq!(quiet, "");
    let chatty = run(&["-v", "doc", "get", &url, "notes"]);
    assert!(
        chatty.contains("INFO"),
        "-v logs the command's work: {chatty:?}"
    );
}

#[test]
fn a_recording_holds_no_token_and_still_replays_identically() {
    let data = data_dir("record-secrets");
    std::fs::create_dir_all(&data).unwrap();
    let log = data.join("recording");
    let (ws, http) = (free_port(), free_port());
    let log_arg = log.display().to_string();
    let mut server = Server::start(
        "server",
        &data,
        ws,
        http,
        &["--token", "s3cret-right", "--record", &log_arg],
    );
    let url = format!("ws://127.0.0.1:{ws}");
    let (ok, _, err) = cli(&[
        "doc",
        "put",
        &url,
        "notes",
        "k",
        "v",
        "--token",
        "s3cret-right",
    ]);
    assert!(ok, "{err}");
    let (ok, _, _) = cli(&["doc", "get", &url, "notes", "--token", "s3cret-wrong"]);
    assert!(!ok, "a wrong token was let in");
    server.kill9();
    // Every byte of every file (strings are written as they are).
    let files = docweave_shell::files_in(&log);
    assert!(!files.is_empty(), "no recording in {log_arg}");
    let bytes: Vec<u8> = files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("s3cret"), "a token is in the recording");
    // Named, each its own name (the right and the wrong token).
    let names: std::collections::BTreeSet<&str> = text
        .match_indices("token-")
        .filter_map(|(i, _)| text.get(i..i + 22))
        .collect();
    assert!(names.len() >= 2, "tokens are named: {names:?}");
    // Readable as a protocol trace.
    let (ok, out, err) = cli(&["trace", &log_arg, "--doc", "notes"]);
    assert!(
        ok && out.contains("doc=notes") && out.contains("-> "),
        "{out}{err}"
    );
    // Named the same way throughout, so the refusal and the acceptance replay.
    let (ok, out, err) = cli(&["replay", &log_arg]);
    assert!(ok && out.contains("identical"), "{out}{err}");
}
