//! A server that keeps one idle document's metadata in memory: the others
//! leave memory, and still are listed (to clients and by the admin API),
//! read and written, before and after a restart (which reads none of them
//! back at start).

mod common;

use common::raw::http_raw;
use common::{cli, data_dir, free_port, Server};
use std::time::{Duration, Instant};

const DOCS: usize = 6;

/// The server's `docweave_documents_known`: documents whose metadata is in memory.
fn known(server: &Server) -> Option<f64> {
    let answer = http_raw(
        server.http,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    answer
        .lines()
        .find_map(|l| l.strip_prefix("docweave_documents_known "))
        .and_then(|v| v.trim().parse().ok())
}

fn every_document_is_listed_and_read(ws_url: &str, http_url: &str, suffix: &str) {
    let (ok, out, err) = cli(&["doc", "list", ws_url]);
    assert!(ok, "{err}");
    for i in 0..DOCS {
        assert!(
            out.contains(&format!("idle-{i}")),
            "idle-{i} not listed: {out}"
        );
        let (ok, out, err) = cli(&["doc", "get", http_url, &format!("idle-{i}")]);
        let value = format!("\"v{i}{suffix}\"");
        assert!(ok && out.contains(&value), "idle-{i}: {out}{err}");
    }
}

/// The admin API's answer to a GET, as JSON.
fn admin(server: &Server, path: &str) -> serde_json::Value {
    let answer = http_raw(
        server.http,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sesame\r\nConnection: close\r\n\r\n"),
        Duration::from_secs(10),
    );
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: {e}: {answer}"))
}

/// The admin API lists every document, two to a page, and finds each one.
fn the_admin_api_lists_and_finds_every_document(server: &Server) {
    let mut listed = Vec::new();
    let mut path = "/admin/docs?limit=2".to_string();
    loop {
        let page = admin(server, &path);
        for d in page["docs"].as_array().unwrap() {
            listed.push(d["id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/admin/docs?limit=2&after={next}"),
            None => break,
        }
    }
    let every: Vec<String> = (0..DOCS).map(|i| format!("idle-{i}")).collect();
    assert_eq!(listed, every);
    for doc in &every {
        let info = admin(server, &format!("/admin/docs/{doc}"));
        assert_eq!(info["id"].as_str(), Some(doc.as_str()), "{info}");
        assert!(info["operations"].as_u64() > Some(0), "{info}");
    }
}

#[test]
fn documents_whose_metadata_left_memory_are_still_listed_read_and_written() {
    let data = data_dir("idle-metadata");
    let (ws, http) = (free_port(), free_port());
    // A client that left is forgotten soon (its subscriptions keep documents in use).
    let flags = [
        "--idle-metadata",
        "1",
        "--peer-linger-ms",
        "300",
        "--admin-token",
        "sesame",
    ];
    let mut server = Server::start("server", &data, ws, http, &flags);
    let ws_url = format!("ws://127.0.0.1:{ws}");
    let http_url = format!("http://127.0.0.1:{http}");
    for i in 0..DOCS {
        let (ok, out, err) = cli(&[
            "doc",
            "put",
            &ws_url,
            &format!("idle-{i}"),
            "k",
            &format!("v{i}"),
        ]);
        assert!(ok, "{out}{err}");
    }
    // Idle once their writers are forgotten: all but about one leave memory.
    let start = Instant::now();
    while known(&server).is_none_or(|n| n > 2.0) && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let held = known(&server);
    assert!(
        held.is_some_and(|n| n <= 2.0),
        "metadata in memory: {held:?}"
    );
    the_admin_api_lists_and_finds_every_document(&server);
    every_document_is_listed_and_read(&ws_url, &http_url, "");
    // Restarted, the server reads none of them back at start.
    server.restart();
    assert_eq!(known(&server), Some(0.0));
    the_admin_api_lists_and_finds_every_document(&server);
    every_document_is_listed_and_read(&ws_url, &http_url, "");
    for i in 0..DOCS {
        let doc = format!("idle-{i}");
        let (ok, out, err) = cli(&["doc", "put", &ws_url, &doc, "k", &format!("v{i}b")]);
        assert!(ok, "{out}{err}");
    }
    every_document_is_listed_and_read(&ws_url, &http_url, "b");
}
