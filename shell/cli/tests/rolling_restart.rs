//! A rolling restart of three `docweave serve` processes on one PostgreSQL
//! database, each stopped with SIGTERM (as a supervisor does) while
//! clients write: a CLI writer given all three servers, a native watcher
//! holding one live connection, and a Loro client. Every acknowledged
//! write is on every server afterwards, and no client is stuck.

mod common;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::Message as Ws;
use common::raw::*;
use common::{cli, data_dir, free_port, Server};
use docweave_adapters::loro_protocol::{Body, Crdt, UpdateStatus};
use docweave_tests::postgres::fresh_database;
use futures_util::StreamExt;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DRAIN_SECONDS: u64 = 10;

fn start(name: &str, store: &str) -> Server {
    let drain = DRAIN_SECONDS.to_string();
    Server::start(
        name,
        &data_dir(name),
        free_port(),
        free_port(),
        &["--store", store, "--drain-seconds", &drain],
    )
}

fn ws(port: u16) -> String {
    format!("ws://127.0.0.1:{port}")
}

/// A Loro client's update setting `root.key` (the CLI shows map `root`).
fn loro_update(key: &str) -> Vec<u8> {
    let doc = loro::LoroDoc::new();
    doc.get_map("root").insert(key, "from-loro").unwrap();
    doc.commit();
    doc.export(loro::ExportMode::all_updates()).unwrap()
}

/// The close code the server ends a Loro connection with (within 30 s).
async fn close_code(s: &mut Socket) -> Option<CloseCode> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let next = futures_lite::future::or(async { Some(s.next().await) }, async {
            smol::Timer::after(Duration::from_millis(200)).await;
            None
        })
        .await;
        match next {
            Some(Some(Ok(Ws::Close(frame)))) => return frame.map(|f| f.code),
            Some(None) | Some(Some(Err(_))) => return None,
            _ => {}
        }
    }
    None
}

#[test]
fn a_rolling_restart_under_writes_loses_nothing_acknowledged_and_strands_no_client() {
    let db = fresh_database("rolling_restart");
    let mut servers = [start("rr-a", &db), start("rr-b", &db), start("rr-c", &db)];
    let urls: Vec<String> = servers.iter().map(|s| ws(s.ws)).collect();
    // A watcher with one live connection to a, told of the others.
    let mut watch = Command::new(common::BIN)
        .args(["doc", "watch", &urls[0], "notes"])
        .args(["--server", &urls[1], "--server", &urls[2]])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let last_seen = Arc::new(Mutex::new(String::new()));
    {
        let out = watch.stdout.take().unwrap();
        let last = last_seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                *last.lock().unwrap() = line;
            }
        });
    }
    // A writer that puts one key after another, through whichever server
    // answers (each put is acknowledged once durable, or fails).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, urls) = (stop.clone(), urls.clone());
        std::thread::spawn(move || {
            let (mut acked, mut failed) = (Vec::new(), Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                // Start at a different server each time, as clients spread.
                let first = &urls[i % 3];
                let key = format!("w{i}");
                let mut args = vec!["doc", "put", first, "notes", &key, "v", "--timeout", "20"];
                for u in urls.iter().filter(|u| *u != first) {
                    args.extend(["--server", u.as_str()]);
                }
                let (ok, _, err) = cli(&args);
                if ok {
                    acked.push(key);
                } else {
                    failed.push(format!("{key}: {err}"));
                }
                i += 1;
            }
            (acked, failed)
        })
    };
    // A Loro client on a: told 1001 when a drains, it rejoins on b.
    let mut loro_a = smol::block_on(loro_join(servers[0].ws, "notes"));
    std::thread::sleep(Duration::from_secs(1));
    let mut stops = Vec::new();
    for (n, s) in servers.iter_mut().enumerate() {
        let (took, clean) = s.terminate();
        stops.push((s.name.clone(), took, clean));
        if n == 0 {
            let code = smol::block_on(close_code(&mut loro_a));
            assert_eq!(
                code,
                Some(CloseCode::Away),
                "the Loro client of a draining server must be closed with 1001"
            );
        }
        s.start_again();
        // Writes go on while the next one is restarted.
        std::thread::sleep(Duration::from_secs(1));
    }
    // The Loro client, back through b, writes and is acknowledged.
    smol::block_on(async {
        let mut l = loro_join(servers[1].ws, "notes").await;
        let update = Body::DocUpdate {
            updates: vec![loro_update("loro")],
            batch: [7; 8],
        };
        futures_util::SinkExt::send(&mut l, loro(Crdt::Loro, "notes", update))
            .await
            .unwrap();
        let (got, _, _) = loro_until(
            &mut l,
            Duration::from_secs(20),
            |m| matches!(m.body, Body::Ack { batch, .. } if batch == [7; 8]),
        )
        .await;
        assert!(
            matches!(
                got.last().map(|m| &m.body),
                Some(Body::Ack {
                    status: UpdateStatus::Ok,
                    ..
                })
            ),
            "the Loro client's update after the restart was not acknowledged: {got:?}"
        );
    });
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = writer.join().unwrap();
    eprintln!(
        "rolling restart: stops {stops:?}; {} writes acknowledged, {} failed: {failed:?}",
        acked.len(),
        failed.len()
    );
    for (name, took, clean) in &stops {
        assert!(*clean, "{name} did not exit cleanly on SIGTERM");
        assert!(
            *took < Duration::from_secs(DRAIN_SECONDS + 10),
            "{name} took {took:?} to stop"
        );
    }
    assert!(acked.len() >= 5, "the writer was stuck: {failed:?}");
    // Every acknowledged write, and the Loro client's, on every server.
    let holds_all = |out: &str| {
        acked.iter().all(|k| out.contains(&format!("\"{k}\""))) && out.contains("\"loro\"")
    };
    for url in &urls {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut out = String::new();
        while Instant::now() < deadline {
            out = cli(&["doc", "get", url, "notes", "--timeout", "10"]).1;
            if holds_all(&out) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(holds_all(&out), "{url} lacks an acknowledged write: {out}");
    }
    // The watcher moved on with its servers and saw everything.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !holds_all(&last_seen.lock().unwrap()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let seen = last_seen.lock().unwrap().clone();
    // The watcher may have ended already; either way it is done with.
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        holds_all(&seen),
        "the watcher was stranded; it last printed {seen}"
    );
}
