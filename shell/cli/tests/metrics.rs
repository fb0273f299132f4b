//! `GET /metrics` of the real binary, scraped before and during real
//! traffic (CLI writes over WebSocket, reads over HTTP polling, a Loro
//! client's join and a bad update): each figure moves as the traffic says.

mod common;

use common::raw::*;
use common::{cli, data_dir, free_port, Server};
use docweave_adapters::loro_protocol::{Body, Crdt};
use std::collections::BTreeMap;
use std::time::Duration;

/// The samples of a scrape: `name{labels}` to value.
fn scrape(server: &Server) -> (String, BTreeMap<String, f64>) {
    let answer = http_raw(
        server.http,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_default();
    let samples = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect();
    (head.to_string(), samples)
}

fn value(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    samples.get(name).copied().unwrap_or(0.0)
}

#[test]
fn metrics_of_the_real_server_move_with_its_traffic() {
    let server = Server::start(
        "server",
        &data_dir("metrics"),
        free_port(),
        free_port(),
        &[],
    );
    let (head, before) = scrape(&server);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("application/openmetrics-text"),
        "not the Prometheus text format: {head}"
    );
    let ws = format!("ws://127.0.0.1:{}", server.ws);
    let http = format!("http://127.0.0.1:{}", server.http);
    for i in 0..3 {
        let (ok, _, err) = cli(&["doc", "put", &ws, "notes", "k", &format!("v{i}")]);
        assert!(ok, "{err}");
    }
    let (ok, out, err) = cli(&["doc", "get", &http, "notes"]);
    assert!(ok && out.contains("v2"), "{out}{err}");
    // A Loro client joins a room and sends an update that is no Loro data;
    // a native client stays connected while the page is read.
    let (mut loro_ws, mut native) = smol::block_on(async {
        let wait = Duration::from_secs(10);
        let mut l = loro_join(server.ws, "room").await;
        let bad = Body::DocUpdate {
            updates: vec![vec![1, 2, 3]],
            batch: [1; 8],
        };
        l.send(loro(Crdt::Loro, "room", bad)).await.unwrap();
        loro_until(&mut l, wait, |m| matches!(m.body, Body::Ack { .. })).await;
        let mut n = raw_ws(server.ws).await;
        send(&mut n, &[hello("watcher", None)]).await;
        receive_until(&mut n, wait, |ms| !ms.is_empty()).await;
        (l, n)
    });
    let (_, during) = scrape(&server);
    let moved = |name: &str| value(&during, name) - value(&before, name);
    eprintln!(
        "{}",
        during
            .iter()
            .filter(|(k, _)| !k.contains("_bucket"))
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Three CLI writes and the Loro client's bad update.
    assert!(moved("docweave_messages_received_total{kind=\"update\"}") >= 4.0);
    assert!(moved("docweave_messages_received_total{kind=\"hello\"}") >= 6.0);
    assert!(moved("docweave_messages_sent_total{kind=\"ack\"}") >= 4.0);
    assert!(moved("docweave_received_bytes_total") > 300.0);
    assert!(moved("docweave_sent_bytes_total") > 300.0);
    // Each write was acknowledged once durable: timed, and stored.
    assert!(moved("docweave_ack_latency_seconds_count") >= 3.0);
    assert!(moved("docweave_store_append_seconds_count") >= 1.0);
    assert!(moved("docweave_store_append_changes_sum") >= 3.0);
    assert!(moved("docweave_import_seconds_count") >= 3.0);
    assert!(moved("docweave_export_seconds_count") >= 1.0);
    assert_eq!(value(&during, "docweave_store_failures_total"), 0.0);
    // The bad update was refused (Loro's `invalid_update` is the node's `Invalid`).
    assert!(moved("docweave_refusals_total{code=\"Invalid\"}") >= 1.0);
    assert!(value(&during, "docweave_loro_joins_total{outcome=\"ok\"}") >= 1.0);
    assert_eq!(value(&during, "docweave_loro_rooms"), 1.0);
    // Gauges counted at the scrape: the document, and who is connected.
    assert!(value(&during, "docweave_documents_known") >= 2.0);
    assert!(value(&during, "docweave_documents_resident") >= 1.0);
    assert!(value(&during, "docweave_peers_connected") >= 2.0);
    assert!(value(&during, "docweave_connections{transport=\"websocket\"}") >= 2.0);
    assert!(value(&during, "docweave_connections{transport=\"http\"}") >= 1.0);
    // Gone clients are gone from the gauges.
    smol::block_on(async {
        loro_ws.close(None).await.unwrap();
        native.close(None).await.unwrap();
    });
    let mut after = BTreeMap::new();
    for _ in 0..50 {
        after = scrape(&server).1;
        if value(&after, "docweave_loro_rooms") == 0.0
            && value(&after, "docweave_connections{transport=\"websocket\"}") == 0.0
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(value(&after, "docweave_loro_rooms"), 0.0);
    assert_eq!(
        value(&after, "docweave_connections{transport=\"websocket\"}"),
        0.0
    );
}
