//! The admin API of the real binary (`serve --admin-token`): documents with
//! their sizes, paged; one document; a snapshot out and one in; compaction;
//! deletion; connections, and cutting one identity off. Without the token
//! nothing is answered, and without the flag there is no admin API.

mod common;

use common::raw::*;
use common::{cli, data_dir, free_port, Server};
use docweave_core::{ErrorCode, Message};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One request; the status and the body.
fn call(port: u16, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&out[9..12]).parse().unwrap();
    (status, out[split + 4..].to_vec())
}

fn json(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let (status, body) = call(port, method, path, token, b"");
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}: {}", String::from_utf8_lossy(&body)));
    (status, v)
}

const TOKEN: Option<&str> = Some("sesame");

#[test]
fn an_operator_lists_inspects_exports_imports_compacts_deletes_and_disconnects() {
    let server = Server::start(
        "server",
        &data_dir("admin"),
        free_port(),
        free_port(),
        &["--admin-token", "sesame"],
    );
    let url = format!("ws://127.0.0.1:{}", server.ws);
    for (doc, value) in [("notes/a", "one"), ("b", "two")] {
        let (ok, _, err) = cli(&["doc", "put", &url, doc, "k", value]);
        assert!(ok, "{err}");
    }
    let http = server.http;
    // The token is asked for, and a wrong one refused.
    assert_eq!(json(http, "GET", "/admin/docs", None).0, 401);
    let (status, v) = json(http, "GET", "/admin/docs", Some("guess"));
    assert_eq!((status, v["code"].as_str()), (401, Some("BadToken")));
    // Documents in id order, with sizes, a page at a time.
    let (status, v) = json(http, "GET", "/admin/docs?limit=1", TOKEN);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["docs"][0]["id"], "b", "{v}");
    assert!(v["docs"][0]["stored_bytes"].as_u64().unwrap() > 0, "{v}");
    assert!(v["docs"][0]["operations"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["next"], "b", "{v}");
    let (_, v) = json(http, "GET", "/admin/docs?limit=1&after=b", TOKEN);
    assert_eq!(v["docs"][0]["id"], "notes/a", "{v}");
    assert!(v["next"].is_null(), "{v}");
    // One document (its id percent-encoded), and a snapshot of it.
    let (status, v) = json(http, "GET", "/admin/docs/notes%2Fa", TOKEN);
    assert_eq!((status, v["id"].as_str()), (200, Some("notes/a")), "{v}");
    assert_eq!(json(http, "GET", "/admin/docs/nothing", TOKEN).0, 404);
    // An id that is not UTF-8 is refused, not read as another one.
    assert_eq!(json(http, "GET", "/admin/docs/a%FF", TOKEN).0, 400);
    let (status, snapshot) = call(http, "GET", "/admin/docs/notes%2Fa/snapshot", TOKEN, b"");
    assert_eq!(status, 200);
    let copy = loro::LoroDoc::new();
    copy.import(&snapshot).unwrap();
    assert_eq!(
        copy.get_map("root").get("k").unwrap().into_value().unwrap(),
        loro::LoroValue::from("one")
    );
    // Imported under another id: every client can read it.
    let (status, body) = call(
        http,
        "POST",
        "/admin/docs/copied/snapshot",
        TOKEN,
        &snapshot,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (ok, out, err) = cli(&["doc", "get", &url, "copied"]);
    assert!(ok && out.contains("one"), "{out} {err}");
    let (status, _) = call(http, "POST", "/admin/docs/x/snapshot", TOKEN, b"not loro");
    assert_eq!(status, 400);
    // Compaction folds the stored changes; the document reads the same.
    for i in 0..5 {
        let (ok, _, err) = cli(&["doc", "put", &url, "b", "k", &format!("v{i}")]);
        assert!(ok, "{err}");
    }
    let (status, v) = json(http, "POST", "/admin/docs/b/compact", TOKEN);
    assert_eq!(status, 200, "{v}");
    assert!(v["bytes_after"].as_u64().unwrap() > 0, "{v}");
    let (ok, out, _) = cli(&["doc", "get", &url, "b"]);
    assert!(ok && out.contains("v4"), "{out}");
    // `docweave inspect` reads a running server through the API.
    let addr = format!("http://127.0.0.1:{http}");
    let (ok, out, err) = cli(&["inspect", &addr, "--admin-token", "sesame"]);
    assert!(
        ok && out.contains("notes/a") && out.contains("copied"),
        "{out} {err}"
    );
    let (ok, _, err) = cli(&["inspect", &addr, "--admin-token", "guess"]);
    assert!(!ok && err.contains("BadToken"), "{err}");
    // Deletion reaches clients: the document is gone.
    let (status, _) = json(http, "DELETE", "/admin/docs/b", TOKEN);
    assert_eq!(status, 200);
    let (ok, _, _) = cli(&["doc", "get", &url, "b"]);
    assert!(!ok, "b was still there");
    // Connections, and one identity cut off (told why).
    smol::block_on(async {
        let mut alice = raw_ws(server.ws).await;
        send(&mut alice, &[hello("alice", None)]).await;
        receive_until(&mut alice, Duration::from_secs(10), |ms| !ms.is_empty()).await;
        let (status, v) = json(http, "GET", "/admin/connections", TOKEN);
        assert_eq!(status, 200);
        let listed = v["connections"].as_array().unwrap();
        assert!(listed.iter().any(|c| c["peer"] == "alice"), "{v}");
        let (status, v) = json(http, "DELETE", "/admin/identities/alice", TOKEN);
        assert_eq!((status, v["disconnected"].as_u64()), (200, Some(1)), "{v}");
        let (got, closed) = receive(&mut alice, Duration::from_secs(10)).await;
        assert!(closed, "alice's connection stayed open: {got:?}");
        assert!(
            got.iter().any(|m| matches!(m, Message::Error { code: ErrorCode::PermissionDenied, message } if message.contains("administrator"))),
            "{got:?}"
        );
    });
    let (_, v) = json(http, "GET", "/admin/connections", TOKEN);
    assert!(
        !v["connections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["peer"] == "alice"),
        "{v}"
    );
}

#[test]
fn without_an_admin_token_there_is_no_admin_api() {
    let server = Server::start(
        "server",
        &data_dir("admin-off"),
        free_port(),
        free_port(),
        &[],
    );
    let (status, v) = json(server.http, "GET", "/admin/docs", Some("anything"));
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("NoAdminApi")),
        "{v}"
    );
}
