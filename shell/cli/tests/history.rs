//! A document's past against the real binary: authors the server vouches
//! for (a native WebSocket client and a Loro client, each with its own
//! token), a Loro peer id another identity wrote as refused whole on both
//! protocols, the state at an old version, the difference between two,
//! a restore that reaches a connected Loro client as an ordinary update,
//! bad input refused with nothing changed, and two servers on one
//! PostgreSQL answering the same history.

mod common;

use common::http::{call, json};
use common::raw::*;
use common::{cli, cli_status, data_dir, free_port, Server};
use docweave_adapters::loro_protocol::{Body, Crdt, LoroMessage, UpdateStatus};
use serde_json::Value;
use std::time::Duration;

const ALL: &str = r#"{"read":true,"write":true,"create":true,"delete":true}"#;
const READ: &str = r#"{"read":true,"write":false,"create":false,"delete":false}"#;

/// A server where alice, bob and carol each have a token; carol may only read.
fn start(dir: &std::path::Path, extra: &[&str]) -> Server {
    start_as("server", dir, extra)
}

fn start_as(name: &str, dir: &std::path::Path, extra: &[&str]) -> Server {
    std::fs::create_dir_all(dir).unwrap();
    let rules = dir.join("rules.json");
    std::fs::write(
        &rules,
        format!(
            r#"{{"rules":[{{"peer":{{"Exact":"carol"}},"doc":"Any","access":{READ}}}],"default":{ALL}}}"#
        ),
    )
    .unwrap();
    let mut args = vec![
        "--bind-writers",
        "--token",
        "alice=a-secret",
        "--token",
        "bob=b-secret",
        "--token",
        "carol=c-secret",
        "--rules",
        rules.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::start(name, &dir.join("data"), free_port(), free_port(), &args)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn get(server: &Server, path: &str, token: &str) -> (u16, Value) {
    let auth = bearer(token);
    let (status, _, body) = call(server.http, "GET", path, &[("authorization", &auth)], &[]);
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, v)
}

fn snapshot(server: &Server, doc: &str, token: &str) -> loro::LoroDoc {
    let auth = bearer(token);
    let path = format!("/docs/{doc}?format=snapshot");
    let (status, _, body) = call(server.http, "GET", &path, &[("authorization", &auth)], &[]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let d = loro::LoroDoc::new();
    d.import(&body).unwrap();
    d
}

fn text(server: &Server, doc: &str) -> String {
    let (status, v) = get(server, &format!("/docs/{doc}"), "a-secret");
    assert_eq!(status, 200, "{v}");
    v["text"].as_str().unwrap_or_default().to_string()
}

fn history(server: &Server, doc: &str) -> Vec<Value> {
    let (status, v) = get(server, &format!("/docs/{doc}/history"), "a-secret");
    assert_eq!(status, 200, "{v}");
    v["entries"].as_array().cloned().unwrap()
}

/// The history once it has `n` entries: a `doc put` returns once the
/// server said it holds the change, which may come a moment before the
/// change (and its entry) is durable.
fn history_of(server: &Server, doc: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let entries = history(server, doc);
        if entries.len() >= n || std::time::Instant::now() > deadline {
            return entries;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An update to `base` writing `more` at its text's end as Loro peer `peer`.
fn appended(base: &loro::LoroDoc, peer: u64, more: &str) -> Vec<u8> {
    let d = loro::LoroDoc::new();
    d.import(&base.export(loro::ExportMode::Snapshot).unwrap())
        .unwrap();
    d.set_peer_id(peer).unwrap();
    let before = d.oplog_vv();
    let t = d.get_text("text");
    t.insert(t.len_unicode(), more).unwrap();
    d.commit();
    d.export(loro::ExportMode::updates(&before)).unwrap()
}

/// A Loro client joined to `room` with `token`.
async fn loro_client(port: u16, room: &str, token: &str) -> Socket {
    let mut s = raw_ws_at(port, "/loro").await;
    let join = Body::JoinRequest {
        auth: token.as_bytes().to_vec(),
        version: Vec::new(),
    };
    s.send(loro(Crdt::Loro, room, join)).await.unwrap();
    let (got, _, _) = loro_until(&mut s, Duration::from_secs(10), |m| {
        matches!(m.body, Body::JoinResponseOk { .. })
    })
    .await;
    assert!(
        matches!(
            got.last().map(|m| &m.body),
            Some(Body::JoinResponseOk { .. })
        ),
        "{got:?}"
    );
    s
}

/// Sends one update on a Loro connection; the status it was acknowledged with.
async fn loro_send(s: &mut Socket, room: &str, update: Vec<u8>, batch: u8) -> Option<UpdateStatus> {
    let body = Body::DocUpdate {
        updates: vec![update],
        batch: [batch; 8],
    };
    s.send(loro(Crdt::Loro, room, body)).await.unwrap();
    let acked = |m: &LoroMessage| matches!(m.body, Body::Ack { batch: b, .. } if b == [batch; 8]);
    let (got, _, _) = loro_until(s, Duration::from_secs(10), acked).await;
    got.iter().find_map(|m| match m.body {
        Body::Ack { batch: b, status } if b == [batch; 8] => Some(status),
        _ => None,
    })
}

#[test]
fn history_names_who_wrote_what_and_the_past_can_be_read_compared_and_restored() {
    let dir = data_dir("history");
    let server = start(&dir, &[]);
    let ws = format!("ws://127.0.0.1:{}", server.ws);
    let http = format!("http://127.0.0.1:{}", server.http);

    // Alice, a native WebSocket client.
    let (ok, _, err) = cli(&[
        "doc", "put", &ws, "notes", "--text", "Hello", "--token", "a-secret", "--as", "alice",
    ]);
    assert!(ok, "{err}");
    let after_alice = history_of(&server, "notes", 1);
    assert_eq!(after_alice.len(), 1, "{after_alice:?}");
    assert_eq!(after_alice[0]["author"], "alice");
    let alice_version = after_alice[0]["version"].as_str().unwrap().to_string();

    smol::block_on(async {
        // Bob, a Loro client writing as Loro peer 777.
        let mut bob = loro_client(server.ws, "notes", "b-secret").await;
        let base = snapshot(&server, "notes", "b-secret");
        let update = appended(&base, 777, " world");
        assert_eq!(
            loro_send(&mut bob, "notes", update, 1).await,
            Some(UpdateStatus::Ok)
        );
        assert_eq!(text(&server, "notes"), "Hello world");
        let entries = history(&server, "notes");
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert_eq!(entries[0]["author"], "bob", "newest first: {entries:?}");
        assert_eq!(entries[0]["peer"], "777");
        assert_eq!(entries[0]["operations"], 6, "{entries:?}");
        assert_eq!(entries[1]["author"], "alice");
        assert!(entries[0]["at"].as_u64() >= entries[1]["at"].as_u64());
        // The server's wall clock, not the time since it started.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let at = entries[0]["at"].as_u64().unwrap();
        assert!(now.abs_diff(at) < 60_000, "at {at}, now {now}");
        let bob_version = entries[0]["version"].as_str().unwrap().to_string();

        // Alice writing as Loro peer 777, natively and over Loro: refused,
        // nothing of it stored.
        let base = snapshot(&server, "notes", "a-secret");
        let stolen = appended(&base, 777, " (not bob)");
        let auth = bearer("a-secret");
        let (status, _, body) = call(
            server.http,
            "POST",
            "/docs/notes/updates",
            &[("authorization", &auth)],
            &stolen,
        );
        let refusal = json(&body);
        assert_eq!(status, 403, "{refusal}");
        assert!(
            refusal["message"].as_str().unwrap().contains("writer 777"),
            "{refusal}"
        );
        let mut alice_loro = loro_client(server.ws, "notes", "a-secret").await;
        assert_eq!(
            loro_send(&mut alice_loro, "notes", stolen.clone(), 2).await,
            Some(UpdateStatus::InvalidUpdate)
        );
        // Twice in one frame of a native client, imported together:
        // refused twice.
        let mut native = raw_ws(server.ws).await;
        let update = |batch: u64| docweave_core::Message::Update {
            doc: docweave_core::DocId::new("notes"),
            batch: docweave_core::BatchId(batch),
            data: docweave_core::Payload::new(stolen.clone()),
            version: docweave_core::VersionVector::new(),
        };
        send(
            &mut native,
            &[hello("alice", Some("a-secret")), update(1), update(2)],
        )
        .await;
        let (got, _) = receive_until(&mut native, Duration::from_secs(10), |ms| {
            ms.iter()
                .filter(|m| matches!(m, docweave_core::Message::Ack { .. }))
                .count()
                == 2
        })
        .await;
        let statuses: Vec<_> = got
            .iter()
            .filter_map(|m| match m {
                docweave_core::Message::Ack { status, .. } => Some(*status),
                _ => None,
            })
            .collect();
        assert_eq!(statuses, [docweave_core::AckStatus::Invalid; 2], "{got:?}");
        assert!(has_error(&got, docweave_core::ErrorCode::PermissionDenied));
        assert_eq!(text(&server, "notes"), "Hello world");
        assert_eq!(history(&server, "notes").len(), 2);

        // The past: alice's version, and what changed since.
        let (ok, out, err) = cli(&[
            "doc",
            "get",
            &http,
            "notes",
            "--at",
            &alice_version,
            "--token",
            "a-secret",
        ]);
        assert!(ok, "{err}");
        assert_eq!(json(out.trim().as_bytes())["text"], "Hello", "{out}");
        let (ok, out, err) = cli(&[
            "doc",
            "diff",
            &http,
            "notes",
            &alice_version,
            &bob_version,
            "--token",
            "a-secret",
        ]);
        assert!(ok, "{err}");
        let diff = json(out.trim().as_bytes());
        let change = &diff["containers"][0];
        assert_eq!(change["kind"], "text", "{diff}");
        assert_eq!(
            change["change"],
            serde_json::json!([{"retain": 5}, {"insert": " world"}])
        );
        let (ok, out, _) = cli(&["doc", "history", &http, "notes", "--token", "a-secret"]);
        assert!(ok);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(
            lines[0].contains(" bob ") && lines[0].contains("peer 777"),
            "{out}"
        );
        assert!(lines[1].contains(" alice "), "{out}");

        // Alice brings it back; bob's Loro client hears it as an update.
        let (ok, _, err) = cli(&[
            "doc",
            "restore",
            &http,
            "notes",
            &alice_version,
            "--token",
            "a-secret",
        ]);
        assert!(ok, "{err}");
        assert_eq!(text(&server, "notes"), "Hello");
        let bobs = loro::LoroDoc::new();
        bobs.import(&base.export(loro::ExportMode::Snapshot).unwrap())
            .unwrap();
        let (got, _, _) = loro_until(&mut bob, Duration::from_secs(10), |m| {
            matches!(m.body, Body::DocUpdate { .. })
        })
        .await;
        for m in &got {
            if let Body::DocUpdate { updates, .. } = &m.body {
                for u in updates {
                    bobs.import(u).unwrap();
                }
            }
        }
        assert_eq!(bobs.get_text("text").to_string(), "Hello", "{got:?}");
        let entries = history(&server, "notes");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0]["author"], "alice");
        assert_eq!(
            entries[0]["message"],
            format!("restore to {alice_version}").as_str()
        );
        // The test is over: a close that fails changes nothing it checked.
        let _ = bob.close(None).await;
    });
}

#[test]
fn bad_versions_restores_without_write_access_and_deleted_documents_get_clear_errors() {
    let dir = data_dir("history-bad");
    let server = start(&dir, &[]);
    let ws = format!("ws://127.0.0.1:{}", server.ws);
    let http = format!("http://127.0.0.1:{}", server.http);
    for (doc, words) in [("notes", "Hello"), ("other", "Elsewhere")] {
        let (ok, _, err) = cli(&[
            "doc", "put", &ws, doc, "--text", words, "--token", "a-secret", "--as", "alice",
        ]);
        assert!(ok, "{err}");
    }
    let (ok, _, err) = cli(&[
        "doc", "put", &ws, "notes", "--text", " again", "--token", "a-secret", "--as", "alice",
    ]);
    assert!(ok, "{err}");
    let first = history_of(&server, "notes", 2)[1]["version"]
        .as_str()
        .unwrap()
        .to_string();
    let others = history_of(&server, "other", 1)[0]["version"]
        .as_str()
        .unwrap()
        .to_string();
    let before = (text(&server, "notes"), history(&server, "notes"));
    // Alice's two writes, grouped: one entry, the newer version, both counted.
    let (s, grouped) = get(&server, "/docs/notes/history?group_ms=600000", "a-secret");
    assert_eq!(s, 200, "{grouped}");
    let grouped = grouped["entries"].as_array().cloned().unwrap();
    assert_eq!(grouped.len(), 1, "{grouped:?}");
    assert_eq!(grouped[0]["entries"], 2);
    assert_eq!(grouped[0]["version"], before.1[0]["version"]);
    assert_eq!(grouped[0]["first_at"], before.1[1]["at"]);
    assert_eq!(grouped[0]["operations"], 11, "\"Hello\" and \" again\"");

    let code = |status: u16, v: &Value| (status, v["code"].as_str().unwrap_or("").to_string());
    let at = |version: &str| {
        let (s, v) = get(
            &server,
            &format!(
                "/docs/notes?at={}",
                version.replace('@', "%40").replace(',', "%2C")
            ),
            "a-secret",
        );
        code(s, &v)
    };
    assert_eq!(at("999@424242"), (404, "UnknownVersion".into()), "unknown");
    assert_eq!(
        at(&others),
        (404, "UnknownVersion".into()),
        "another document's"
    );
    for malformed in ["garbage", "1@", "@5", "-3@5", "1@2@3"] {
        assert_eq!(at(malformed), (400, "BadVersion".into()), "{malformed}");
    }
    let (s, v) = get(&server, "/docs/notes/diff?from=zzz", "a-secret");
    assert_eq!(code(s, &v), (400, "BadVersion".into()));
    let (s, v) = get(&server, "/docs/notes/history?limit=0", "a-secret");
    assert_eq!(code(s, &v), (400, "BadRequest".into()));

    // Carol may read: history yes, restore no.
    let (s, v) = get(&server, "/docs/notes/history", "c-secret");
    assert_eq!(s, 200, "{v}");
    let (status, _, err) = cli_status(&[
        "doc", "restore", &http, "notes", &first, "--token", "c-secret",
    ]);
    assert_eq!(status, Some(1));
    assert!(err.contains("403"), "{err}");
    let auth = bearer("a-secret");
    let (s, _, body) = call(
        server.http,
        "POST",
        "/docs/notes/restore",
        &[("authorization", &auth)],
        b"{\"version\": 7}",
    );
    assert_eq!(code(s, &json(&body)), (400, "BadRequest".into()));
    assert_eq!((text(&server, "notes"), history(&server, "notes")), before);

    // A deleted document has no past left to show.
    let (ok, _, err) = cli(&[
        "doc", "delete", &ws, "other", "--token", "a-secret", "--as", "alice",
    ]);
    assert!(ok, "{err}");
    let (s, v) = get(&server, "/docs/other/history", "a-secret");
    assert_eq!(code(s, &v), (404, "NotFound".into()));
    let (status, _, _) = cli_status(&[
        "doc", "get", &http, "other", "--at", &others, "--token", "a-secret",
    ]);
    assert_eq!(status, Some(3), "doc get --at of a deleted document");
}

#[test]
fn two_servers_on_one_postgres_answer_the_same_history_and_share_who_owns_a_peer() {
    let db = docweave_tests::postgres::fresh_database("history_pg");
    let a = start(&data_dir("history-pg-a"), &["--store", &db]);
    let b = start_as("server-b", &data_dir("history-pg-b"), &["--store", &db]);
    let ws_a = format!("ws://127.0.0.1:{}", a.ws);
    let (ok, _, err) = cli(&[
        "doc", "put", &ws_a, "shared", "--text", "one", "--token", "a-secret", "--as", "alice",
    ]);
    assert!(ok, "{err}");
    smol::block_on(async {
        // Bob writes through the other server, as Loro peer 4242.
        let mut bob = loro_client(b.ws, "shared", "b-secret").await;
        let base = snapshot(&b, "shared", "b-secret");
        assert_eq!(base.get_text("text").to_string(), "one");
        let update = appended(&base, 4242, " two");
        assert_eq!(
            loro_send(&mut bob, "shared", update, 1).await,
            Some(UpdateStatus::Ok)
        );
        let through_b = history_of(&b, "shared", 2);
        assert_eq!(through_b.len(), 2, "{through_b:?}");
        assert_eq!(history(&a, "shared"), through_b);
        assert_eq!(through_b[0]["author"], "bob");
        assert_eq!(through_b[1]["author"], "alice");
        // Once the first server has bob's change, it refuses alice
        // writing as bob's peer too: the owner is in the store.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while text(&a, "shared") != "one two" {
            assert!(
                std::time::Instant::now() < deadline,
                "a never saw bob's change"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let stolen = appended(&snapshot(&a, "shared", "a-secret"), 4242, " three");
        let auth = bearer("a-secret");
        let (status, _, body) = call(
            a.http,
            "POST",
            "/docs/shared/updates",
            &[("authorization", &auth)],
            &stolen,
        );
        assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
        assert_eq!(history(&a, "shared").len(), 2);
        // The test is over: a close that fails changes nothing it checked.
        let _ = bob.close(None).await;
    });
}

#[test]
fn compacting_history_before_a_date_trims_older_versions_and_keeps_the_state_and_the_owners() {
    let dir = data_dir("history-compact");
    let mut server = start(&dir, &[]);
    let ws = format!("ws://127.0.0.1:{}", server.ws);
    for words in ["one", " two", " three"] {
        let (ok, _, err) = cli(&[
            "doc", "put", &ws, "log", "--text", words, "--token", "a-secret", "--as", "alice",
        ]);
        assert!(ok, "{err}");
        // Entries a few milliseconds apart: the cut falls between them.
        std::thread::sleep(Duration::from_millis(20));
    }
    let entries = history_of(&server, "log", 3);
    assert_eq!(entries.len(), 3, "{entries:?}");
    let version = |i: usize| entries[i]["version"].as_str().unwrap().to_string();
    let (oldest, middle) = (version(2), version(1));
    let cut = entries[0]["at"].as_u64().unwrap().to_string();
    let alices_peer: u64 = entries[0]["peer"].as_str().unwrap().parse().unwrap();

    server.terminate();
    let data = server.data.display().to_string();
    let (ok, out, err) = cli(&["compact", &data, "--history-before", &cut]);
    assert!(ok, "{err}");
    assert!(out.contains("trimmed from 1 document"), "{out}");
    server.start_again();

    assert_eq!(text(&server, "log"), "one two three");
    let left = history(&server, "log");
    assert_eq!(
        left,
        entries[..2].to_vec(),
        "the newest before the cut stays"
    );
    let at = |v: &str| {
        let path = format!("/docs/log?at={}", v.replace('@', "%40").replace(',', "%2C"));
        get(&server, &path, "a-secret")
    };
    let (status, state) = at(&middle);
    assert_eq!((status, state["text"].as_str()), (200, Some("one two")));
    let (status, refused) = at(&oldest);
    assert_eq!(status, 404, "{refused}");
    // Who owns alice's writer number survives the trim.
    let stolen = appended(&snapshot(&server, "log", "b-secret"), alices_peer, "!");
    let auth = bearer("b-secret");
    let (status, _, body) = call(
        server.http,
        "POST",
        "/docs/log/updates",
        &[("authorization", &auth)],
        &stolen,
    );
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
}
