//! S14: the webhooks of the real `docweave serve` (a process of its own, on
//! a fresh SQLite store), told to a fast local receiver:
//! - events delivered per second from a backlog: documents written while
//!   the receiver refused everything, then taken as fast as it can;
//! - what a hook costs the writers: durable `POST /docs/ID/updates` per
//!   second from several writers, on a server without a hook and on one
//!   whose hook takes every event meanwhile.

use crate::connections::start_server_with;
use crate::doc_api::{http_run, post_updates};
use crate::Run;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How large S14 runs.
#[derive(Debug, Clone, Copy)]
pub struct S14Sizes {
    /// Documents written while the receiver refuses: the backlog.
    pub docs: usize,
    /// Writers posting at once.
    pub writers: usize,
    /// Updates each writer posts in the write-cost form.
    pub updates: usize,
}

impl S14Sizes {
    /// The full run.
    pub fn full() -> Self {
        Self {
            docs: 5_000,
            writers: 8,
            updates: 300,
        }
    }

    /// The tiny form the smoke test runs.
    pub fn quick() -> Self {
        Self {
            docs: 20,
            writers: 2,
            updates: 5,
        }
    }
}

/// A receiver that answers as fast as it reads: 200 when taking (and
/// keeps the delivery id), 503 otherwise.
#[derive(Clone, Default)]
struct Receiver {
    taking: Arc<AtomicBool>,
    ids: Arc<Mutex<BTreeSet<String>>>,
    first: Arc<Mutex<Option<Instant>>>,
    last: Arc<Mutex<Option<Instant>>>,
}

impl Receiver {
    /// Listens on a free port: its URL.
    fn start(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("the receiver cannot listen: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the receiver's address: {e}"))
            .port();
        let me = self.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let me = me.clone();
                std::thread::spawn(move || me.serve(stream));
            }
        });
        format!("http://127.0.0.1:{port}/events")
    }

    /// Answers the requests of one connection until it closes.
    fn serve(&self, stream: TcpStream) {
        let Ok(mut out) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(stream);
        loop {
            let mut length = 0usize;
            let mut delivery = String::new();
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((n, v)) = l.split_once(':') {
                    match n.trim().to_ascii_lowercase().as_str() {
                        "content-length" => length = v.trim().parse().unwrap_or(0),
                        "x-docweave-delivery" => delivery = v.trim().to_string(),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let answer: &[u8] = if self.taking.load(Ordering::SeqCst) {
                let now = Instant::now();
                self.first
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(now);
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
                self.ids
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(delivery);
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
            } else {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
            };
            if out.write_all(answer).is_err() {
                return;
            }
        }
    }

    fn taken(&self) -> usize {
        self.ids.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn run(metric: &str, size: u64, value: f64, messages: u64, extra: Vec<(String, f64)>) -> Run {
    http_run("S14", metric, size, value, messages, extra)
}

/// The options of a server whose hook tells `url`, its secret under `dir`.
fn hooked(url: &str, dir: &Path) -> Vec<String> {
    let secret = dir.join("webhook-secret");
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    std::fs::write(&secret, "s14-secret-0123456789abcdef")
        .unwrap_or_else(|e| panic!("{}: {e}", secret.display()));
    [
        "--webhook",
        url,
        "--webhook-secret-file",
        &secret.display().to_string(),
        "--webhook-window-ms",
        "100",
        "--webhook-max-backoff-s",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `writers` writers post `updates` updates each, to a document each:
/// durable updates per second.
async fn write_rate(http: &str, writers: usize, updates: usize, prefix: &str) -> f64 {
    let start = Instant::now();
    let posts: Vec<_> = (0..writers)
        .map(|w| {
            let (http, id) = (http.to_string(), format!("{prefix}{w}"));
            smol::spawn(async move { post_updates(&http, &id, updates).await })
        })
        .collect();
    for p in posts {
        p.await;
    }
    (writers * updates) as f64 / start.elapsed().as_secs_f64().max(1e-9)
}

/// S14 against the `docweave` binary `bin`, with its data under `dir`.
pub async fn s14(bin: &Path, sizes: &S14Sizes, dir: &Path) -> Vec<Run> {
    let dir = dir.join(format!("s14-{}", std::process::id()));
    // A fresh store each run: what an earlier run left is not wanted (and
    // none may be there).
    let _ = std::fs::remove_dir_all(&dir);
    let mut runs = Vec::new();

    // The backlog: every document written while the receiver refuses.
    let receiver = Receiver::default();
    let url = receiver.start();
    let server = start_server_with(bin, &dir.join("backlog"), &hooked(&url, &dir));
    let per_writer = sizes.docs.div_ceil(sizes.writers);
    let writers: Vec<_> = (0..sizes.writers)
        .map(|w| {
            let http = server.http.clone();
            smol::spawn(async move {
                for d in (w * per_writer)..((w + 1) * per_writer) {
                    post_updates(&http, &format!("b{d}"), 1).await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await;
    }
    let written = sizes.writers * per_writer;
    receiver.taking.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(300);
    while receiver.taken() < written {
        assert!(
            Instant::now() < deadline,
            "{} of {written} events delivered in 300 s",
            receiver.taken()
        );
        smol::Timer::after(Duration::from_millis(20)).await;
    }
    let first = *receiver.first.lock().unwrap_or_else(|p| p.into_inner());
    let last = *receiver.last.lock().unwrap_or_else(|p| p.into_inner());
    let seconds = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    runs.push(run(
        "webhook_events_per_s",
        written as u64,
        written as f64 / seconds.max(1e-9),
        written as u64,
        vec![
            ("seconds".into(), seconds),
            ("events_taken".into(), receiver.taken() as f64),
        ],
    ));
    drop(server);

    // What a hook costs the writers: the same writes without and with one.
    for with_hook in [false, true] {
        let receiver = Receiver::default();
        receiver.taking.store(true, Ordering::SeqCst);
        let url = receiver.start();
        let extra = if with_hook {
            hooked(&url, &dir)
        } else {
            Vec::new()
        };
        let form = if with_hook { "with" } else { "without" };
        let server = start_server_with(bin, &dir.join(form), &extra);
        let rate = write_rate(&server.http, sizes.writers, sizes.updates, "w").await;
        runs.push(run(
            &format!("post_updates_per_s_{form}_hook"),
            sizes.writers as u64,
            rate,
            (sizes.writers * sizes.updates) as u64,
            vec![("events_taken".into(), receiver.taken() as f64)],
        ));
    }
    // The store was the run's own; what cannot be removed only costs disk.
    let _ = std::fs::remove_dir_all(&dir);
    runs
}
