//! S9: many WebSocket connections on the real server (`docweave serve`,
//! started as a process of its own so its memory and CPU are its alone),
//! idle, then live edits fanned out through them.
//!
//! The load generator speaks the native protocol itself. It keeps one Loro
//! document per *edited document* (to make real updates for the server to
//! import), none per connection: a subscriber only decodes frames,
//! acknowledges data and notes when each update arrived.
//!
//! Measured: the server's resident memory per connection (each said hello
//! and is subscribed to one document), its CPU while every connection is
//! idle (keepalive pings included: the idle window is longer than their
//! period; it starts once the server's documents went to sleep), and the
//! delay from an edit's send to its arrival at each of its document's
//! subscribers, at a steady aggregate rate of edits.

use crate::scenarios::percentile;
use crate::Run;
use docweave_adapters::transport::{ws_connect, WsOptions};
use docweave_adapters::Link;
use docweave_core::{
    decode, encode, AckStatus, BatchId, Clock, DocId, Hello, Limits, Message, Payload, PeerId,
    PeerKind, Reply, VersionVector, PROTOCOL_VERSION,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The shape of one S9 run.
#[derive(Debug, Clone)]
pub struct S9Sizes {
    /// Connections in all: one writer per edited document, `subscribers`
    /// per edited document, and the rest each subscribed to a quiet one.
    pub connections: usize,
    /// Documents edited (and as many quiet ones).
    pub docs: usize,
    /// Subscribers of each edited document.
    pub subscribers: usize,
    /// Edits per second, over all documents.
    pub rate: f64,
    /// Seconds of edits.
    pub seconds: f64,
    /// Seconds every connection stays idle before the idle window, so that
    /// what the server does once after the last activity (its documents go
    /// to sleep 60 seconds after last use, by default, looked for every 10
    /// seconds) is not counted as idle; its CPU is reported apart, as
    /// `settle_cpu_percent`.
    pub settle_seconds: f64,
    /// Seconds every connection stays idle while the server's CPU is measured.
    pub idle_seconds: f64,
}

impl S9Sizes {
    /// The shape: as many connections as the file-descriptor
    /// limit allows, 1,000 documents with 10 subscribers each, 1,000
    /// edits per second for 10 seconds, 65 idle seconds (two keepalive
    /// periods) after 75 seconds of settling (the documents' sleep: 60
    /// seconds after last use, on the node's 10-second grid, in batches).
    pub fn full() -> Self {
        S9Sizes {
            connections: connections_allowed(),
            docs: 1_000,
            subscribers: 10,
            rate: 1_000.0,
            seconds: 10.0,
            // 65 seconds let the last documents fall asleep inside the idle
            // window in some runs (their sleep is due on a 10-second grid),
            // and their export was counted as idle CPU (seen in a profile:
            // the node's thread, idle otherwise, in the allocator).
            settle_seconds: 75.0,
            idle_seconds: 65.0,
        }
    }

    /// Tiny, for the smoke test.
    pub fn quick() -> Self {
        S9Sizes {
            connections: 60,
            docs: 10,
            subscribers: 3,
            rate: 50.0,
            seconds: 2.0,
            settle_seconds: 0.5,
            idle_seconds: 1.0,
        }
    }
}

/// File descriptors kept aside in each process (the generator's and the
/// server's own: store, listeners, logs).
const SPARE_FDS: usize = 200;

/// Connections this process can open: its file-descriptor limit (raised
/// to the hard limit) less a margin. The server runs under the same limit.
pub fn connections_allowed() -> usize {
    usize::try_from(raise_fd_limit())
        .unwrap_or(1_000)
        .saturating_sub(SPARE_FDS)
        .max(100)
}

/// Raises this process's soft limit on open files to the hard one; returns it.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1_000;
        }
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if lim.rlim_cur < lim.rlim_max && libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
        lim.rlim_cur
    }
}

/// The server process; killed when dropped.
pub(crate) struct Server {
    child: Child,
    /// Its WebSocket address (`host:port`).
    pub ws: String,
    /// Its HTTP address (`host:port`).
    pub http: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // The run is over: a server that already exited has nothing left to stop.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Starts `docweave serve` on a fresh SQLite store in `dir` and waits until
/// its WebSocket port answers.
pub(crate) fn start_server(bin: &Path, dir: &Path) -> Server {
    start_server_with(bin, dir, &[])
}

/// [`start_server`] with more options.
pub(crate) fn start_server_with(bin: &Path, dir: &Path, extra: &[String]) -> Server {
    let ws = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let data = dir.join("data");
    let child = Command::new(bin)
        .args(["serve", "--listen", &ws, "--http", &http, "--data"])
        .arg(&data)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let server = Server { child, ws, http };
    wait_for_port(&server.ws, "the server");
    server
}

/// Waits until `addr` takes connections (a minute at most: `what` did
/// not start).
fn wait_for_port(addr: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a process holds and has spent, read from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    /// Resident bytes.
    rss: u64,
    /// CPU seconds in the process's own code.
    user_s: f64,
    /// CPU seconds in the kernel on its behalf (system calls; on loopback
    /// that includes delivering what it sends to the receiving socket).
    system_s: f64,
}

impl Usage {
    /// CPU seconds, user and system.
    fn cpu(&self) -> f64 {
        self.user_s + self.system_s
    }
}

/// Resident bytes and CPU seconds of process `pid`.
fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it do not.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are the 14th and 15th fields; `after` starts at the 3rd.
    // SAFETY: sysconf only reads a configuration value.
    let per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Usage {
        rss,
        user_s: ticks(11) as f64 / per_s,
        system_s: ticks(12) as f64 / per_s,
    }
}

/// The CPU a process spent from `before` to `after`, over `seconds`, in
/// percent of one core: all of it, in its own code, and in the kernel.
fn cpu_percent(before: Usage, after: Usage, seconds: f64) -> (f64, f64, f64) {
    let of = |spent: f64| spent / seconds.max(1e-9) * 100.0;
    (
        of(after.cpu() - before.cpu()),
        of(after.user_s - before.user_s),
        of(after.system_s - before.system_s),
    )
}

/// What the connections saw, shared by their tasks.
#[derive(Default)]
struct Seen {
    /// Connections that said hello and got their document's first answer.
    ready: AtomicUsize,
    /// Connections that could not connect or were closed.
    failed: AtomicUsize,
    /// Errors the server sent.
    errors: AtomicUsize,
    /// Acknowledgements writers got for their updates.
    acked: AtomicUsize,
    /// Each arrival of an edit at a subscriber.
    delays: Mutex<Vec<Delay>>,
}

/// One arrival of an edit at a subscriber.
struct Delay {
    /// When the edit was sent, in microseconds since the run's epoch.
    sent: u64,
    /// From its send to this arrival.
    micros: u64,
}

/// When the last edit of each edited document was sent, in microseconds
/// since the run's epoch. One edit per document is in flight at a time
/// (a document gets one every `docs / rate` seconds), so an arrival
/// belongs to the last one sent.
struct Sent {
    epoch: Instant,
    at: Vec<AtomicU64>,
}

impl Sent {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

pub(crate) fn hello(peer: &str) -> Message {
    Message::Hello(Hello {
        peer: PeerId::new(peer),
        name: String::new(),
        kind: PeerKind::User,
        protocol: PROTOCOL_VERSION,
        token: None,
        clock: Clock(0),
    })
}

pub(crate) fn send(link: &Link, messages: &[Message]) -> bool {
    match encode(messages) {
        Ok(frame) => link.tx.send(frame).is_ok(),
        Err(_) => false,
    }
}

fn ack(batch: BatchId) -> Message {
    Message::Ack {
        batch,
        status: AckStatus::Ok,
        clock: None,
    }
}

/// The options of generated connection `i`: the client's defaults, with
/// the link's timers in a phase of their own. Separate clients are
/// separate processes, each with its own grid of timer instants; on one
/// grid, the generator's thousands of links would ping the server in one
/// burst a second, which no crowd of real clients does (and which both
/// stalls the edits queued behind the burst and lets the server answer a
/// second's pings in one wake-up). The phases are spread over the second
/// (the grid's tick at the default keepalive) by the golden ratio, nearly
/// evenly for any count of connections.
fn client_options(i: usize) -> WsOptions {
    const GOLDEN_NANOS: u64 = 618_033_989;
    const SECOND: u64 = 1_000_000_000;
    let nanos = (i as u64 % SECOND) * GOLDEN_NANOS % SECOND;
    WsOptions {
        timer_phase: Duration::from_nanos(nanos),
        ..WsOptions::default()
    }
}

/// One subscriber: hello, a sync-request for `doc`, then for ever: data
/// acknowledged, updates of `doc` timed against `edited` (when the
/// document is an edited one, its index).
async fn subscriber(
    url: String,
    options: WsOptions,
    peer: String,
    doc: DocId,
    edited: Option<usize>,
    seen: Arc<Seen>,
    sent: Arc<Sent>,
) {
    let Ok(link) = ws_connect(&url, options).await else {
        seen.failed.fetch_add(1, Ordering::SeqCst);
        return;
    };
    let request = Message::SyncRequest {
        doc: doc.clone(),
        version: VersionVector::new(),
        bidirectional: false,
    };
    if !send(&link, &[hello(&peer), request]) {
        seen.failed.fetch_add(1, Ordering::SeqCst);
        return;
    }
    let limits = Limits::default();
    while let Ok(frame) = link.rx.recv().await {
        let arrived = sent.now();
        let Ok(messages) = decode(&frame, &limits) else {
            seen.errors.fetch_add(1, Ordering::SeqCst);
            continue;
        };
        let mut acks = Vec::new();
        for m in messages {
            match m {
                Message::SyncResponse { batch, reply, .. } => {
                    if matches!(reply, Reply::Snapshot(_) | Reply::Delta(_)) {
                        acks.push(ack(batch));
                    }
                    seen.ready.fetch_add(1, Ordering::SeqCst);
                }
                Message::Update { doc: d, batch, .. } => {
                    acks.push(ack(batch));
                    if let (true, Some(i)) = (d == doc, edited) {
                        let at = sent.at[i].load(Ordering::SeqCst);
                        if let Ok(mut delays) = seen.delays.lock() {
                            delays.push(Delay {
                                sent: at,
                                micros: arrived.saturating_sub(at),
                            });
                        }
                    }
                }
                Message::Error { .. } => {
                    seen.errors.fetch_add(1, Ordering::SeqCst);
                }
                _ => {}
            }
        }
        if !acks.is_empty() && !send(&link, &acks) {
            break;
        }
    }
    seen.failed.fetch_add(1, Ordering::SeqCst);
}

/// A writer: hello, its two documents created; its link is handed back for
/// the edits, and a task counts the acknowledgements.
async fn writer(url: &str, i: usize, first: [Message; 2], seen: &Arc<Seen>) -> Option<Link> {
    let link = ws_connect(url, client_options(i)).await.ok()?;
    let [a, b] = first;
    if !send(&link, &[hello(&format!("writer-{i}")), a, b]) {
        return None;
    }
    let rx = link.rx.clone();
    let seen = seen.clone();
    smol::spawn(async move {
        let limits = Limits::default();
        while let Ok(frame) = rx.recv().await {
            for m in decode(&frame, &limits).unwrap_or_default() {
                match m {
                    Message::Ack {
                        status: AckStatus::Ok,
                        ..
                    } => {
                        seen.acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Message::Ack { .. } | Message::Error { .. } => {
                        seen.errors.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
        }
    })
    .detach();
    Some(link)
}

/// An edited document in the generator: its Loro replica and what was
/// already sent of it.
struct Edited {
    doc: loro::LoroDoc,
    shipped: loro::VersionVector,
}

impl Edited {
    fn new(i: usize) -> Self {
        let doc = loro::LoroDoc::new();
        // Peer 0 is Loro's only reserved id; these start at 1.
        doc.set_peer_id(i as u64 + 1).unwrap_or_default();
        Edited {
            doc,
            shipped: loro::VersionVector::default(),
        }
    }

    /// One character typed; the update that carries it.
    fn edit(&mut self) -> Vec<u8> {
        let text = self.doc.get_text("t");
        text.insert(0, "x").unwrap_or_default();
        self.doc.commit();
        let data = self
            .doc
            .export(loro::ExportMode::updates(&self.shipped))
            .unwrap_or_default();
        self.shipped = self.doc.oplog_vv();
        data
    }
}

pub(crate) fn update(doc: &str, batch: u64, data: Vec<u8>) -> Message {
    Message::Update {
        doc: DocId::new(doc),
        batch: BatchId(batch),
        data: Payload::new(data),
        version: VersionVector::new(),
    }
}

/// Waits until `count()` reaches `want`, or `limit` passes.
async fn wait_for(count: impl Fn() -> usize, want: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while count() < want {
        if Instant::now() > deadline {
            return false;
        }
        smol::Timer::after(Duration::from_millis(20)).await;
    }
    true
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// S9 against the `docweave` binary `bin`, its store in a fresh directory under `dir`.
pub async fn s9(bin: &Path, sizes: &S9Sizes, dir: &Path) -> Run {
    let S9Sizes {
        connections,
        docs,
        subscribers,
        rate,
        seconds,
        settle_seconds,
        idle_seconds,
    } = sizes.clone();
    raise_fd_limit();
    let dir: PathBuf = dir.join(format!("s9-{}", std::process::id()));
    // A leftover of an earlier run would be served again; none is fine.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let server = start_server(bin, &dir);
    let pid = server.child.id();
    let url = format!("ws://{}/", server.ws);
    let seen = Arc::new(Seen::default());
    let sent = Arc::new(Sent {
        epoch: Instant::now(),
        at: (0..docs).map(|_| AtomicU64::new(0)).collect(),
    });

    // Writers create the documents: each its edited one and a quiet one.
    let mut edited: Vec<Edited> = (0..docs).map(Edited::new).collect();
    let mut writers = Vec::with_capacity(docs);
    for (i, e) in edited.iter_mut().enumerate() {
        let quiet = Edited::new(docs + i).edit();
        let first = [
            update(&format!("live-{i}"), 1, e.edit()),
            update(&format!("quiet-{i}"), 2, quiet),
        ];
        match writer(&url, i, first, &seen).await {
            Some(link) => writers.push(link),
            None => panic!("writer {i} could not connect"),
        }
    }
    let created = wait_for(
        || seen.acked.load(Ordering::SeqCst),
        2 * docs,
        Duration::from_secs(120),
    )
    .await;
    assert!(created, "the documents were not all created");
    smol::Timer::after(Duration::from_millis(500)).await;
    let rss_before = usage(pid).rss;

    // Subscribers: `subscribers` per edited document, the rest on quiet ones.
    let others = connections.saturating_sub(docs);
    let started = Instant::now();
    let wave = 256;
    let mut spawned = 0;
    while spawned < others {
        let end = (spawned + wave).min(others);
        for j in spawned..end {
            let (doc, index) = if j < docs * subscribers {
                (format!("live-{}", j % docs), Some(j % docs))
            } else {
                (format!("quiet-{}", j % docs), None)
            };
            smol::spawn(subscriber(
                url.clone(),
                client_options(docs + j),
                format!("sub-{j}"),
                DocId::new(&doc),
                index,
                seen.clone(),
                sent.clone(),
            ))
            .detach();
        }
        spawned = end;
        let reached = wait_for(
            || seen.ready.load(Ordering::SeqCst) + seen.failed.load(Ordering::SeqCst),
            spawned,
            Duration::from_secs(60),
        )
        .await;
        if !reached {
            break;
        }
    }
    let connect_s = started.elapsed().as_secs_f64();
    let ready = seen.ready.load(Ordering::SeqCst);
    smol::Timer::after(Duration::from_millis(1_000)).await;
    let connected = usage(pid);
    let rss_connected = connected.rss;
    // What an idle connection costs once the connection storm is over
    // (read before the documents sleep, which gives memory back).
    let per_connection = rss_connected.saturating_sub(rss_before) as f64 / ready.max(1) as f64;

    // Settling: the server's one-off work after the last activity.
    let settle_started = Instant::now();
    smol::Timer::after(Duration::from_secs_f64(settle_seconds)).await;
    let settled = usage(pid);
    let (settle_cpu, _, _) =
        cpu_percent(connected, settled, settle_started.elapsed().as_secs_f64());

    // Idle: nobody sends anything but keepalives.
    let idle_started = Instant::now();
    smol::Timer::after(Duration::from_secs_f64(idle_seconds)).await;
    let idled = usage(pid);
    let rss_idle = idled.rss;
    let (idle_cpu, idle_user, idle_system) =
        cpu_percent(settled, idled, idle_started.elapsed().as_secs_f64());

    // Edits at a steady rate, round-robin over the edited documents.
    let edits = (rate * seconds).round() as usize;
    let acked_before = seen.acked.load(Ordering::SeqCst);
    let edits_started = Instant::now();
    let edits_from = sent.now();
    for k in 0..edits {
        let due = edits_started + Duration::from_secs_f64(k as f64 / rate);
        smol::Timer::at(due).await;
        let i = k % docs;
        let data = edited[i].edit();
        sent.at[i].store(sent.now(), Ordering::SeqCst);
        let batch = 3 + (k / docs) as u64;
        if !send(&writers[i], &[update(&format!("live-{i}"), batch, data)]) {
            seen.errors.fetch_add(1, Ordering::SeqCst);
        }
    }
    let expected = edits * subscribers.min(ready / docs.max(1));
    let delays_seen = || seen.delays.lock().map_or(0, |d| d.len());
    wait_for(delays_seen, expected, Duration::from_secs(30)).await;
    // An edit's acknowledgement leaves once the store has it, which may be
    // after its subscribers got it: the last acks are waited for too.
    let acks_seen = || seen.acked.load(Ordering::SeqCst) - acked_before;
    // A shortfall shows in `edits_acked`, which the caller checks.
    wait_for(acks_seen, edits, Duration::from_secs(30)).await;
    let rss_end = usage(pid).rss;
    // The edits after the first second are timed apart too: the first
    // wake documents that slept through the idle minutes, on pages this
    // virtual machine charges dearly for after so long (see S1).
    let after_first_second = |sent: u64| sent >= edits_from + 1_000_000;
    // Both lists from one look: arrivals still coming in (if the wait
    // above ran out) must not be in one and not the other.
    let arrivals: Vec<(u64, f64)> = seen
        .delays
        .lock()
        .map(|d| {
            d.iter()
                .map(|d| (d.sent, d.micros as f64 / 1_000.0))
                .collect()
        })
        .unwrap_or_default();
    let sorted = |keep: &dyn Fn(u64) -> bool| {
        let mut ms: Vec<f64> = arrivals
            .iter()
            .filter(|(sent, _)| keep(*sent))
            .map(|(_, ms)| *ms)
            .collect();
        ms.sort_by(f64::total_cmp);
        ms
    };
    let delays = sorted(&|_| true);
    let steady = sorted(&after_first_second);
    let acked = seen.acked.load(Ordering::SeqCst) - acked_before;
    let failed = seen.failed.load(Ordering::SeqCst);
    drop(writers);
    drop(server);
    // The store's files only take disk space once the run is over.
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        scenario: "S9".into(),
        transport: "websocket".into(),
        size: connections as u64,
        metric: "p99_ms".into(),
        value: percentile(&delays, 0.99),
        messages: delays.len() as u64,
        bytes: 0,
        peak_rss: rss_end,
        extra: vec![
            ("connected".into(), (ready + docs) as f64),
            ("failed".into(), failed as f64),
            ("errors".into(), seen.errors.load(Ordering::SeqCst) as f64),
            ("bytes_per_connection".into(), per_connection),
            ("idle_cpu_percent".into(), idle_cpu),
            ("idle_cpu_user_percent".into(), idle_user),
            ("idle_cpu_system_percent".into(), idle_system),
            ("settle_cpu_percent".into(), settle_cpu),
            ("connect_s".into(), connect_s),
            ("edits".into(), edits as f64),
            ("edits_acked".into(), acked as f64),
            ("arrivals_expected".into(), expected as f64),
            ("p50_ms".into(), percentile(&delays, 0.5)),
            (
                "p99_after_first_second_ms".into(),
                percentile(&steady, 0.99),
            ),
            ("max_ms".into(), delays.last().copied().unwrap_or(0.0)),
            ("server_rss_connected_mib".into(), mib(rss_connected)),
            ("server_rss_idle_mib".into(), mib(rss_idle)),
        ],
    }
}

/// S9's floor: `sizes.connections` idle WebSocket connections, made and
/// kept alive as S9's subscribers are (the same client, pinging on the
/// same period), on `docweave-ping-floor` at `bin`: a server on the same
/// libraries and runtime that does nothing but answer pings. Its idle CPU
/// and memory per connection are what those libraries cost alone, below
/// which `docweave serve` cannot go without replacing them.
pub async fn s9_floor(bin: &Path, sizes: &S9Sizes) -> Run {
    raise_fd_limit();
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(bin)
        .arg(&addr)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut server = Server {
        child,
        ws: addr.clone(),
        http: String::new(),
    };
    wait_for_port(&addr, "the floor's server");
    let pid = server.child.id();
    let url = format!("ws://{addr}/");
    smol::Timer::after(Duration::from_millis(200)).await;
    let rss_before = usage(pid).rss;

    let links: Arc<Mutex<Vec<Link>>> = Arc::default();
    let failed = Arc::new(AtomicUsize::new(0));
    let wave = 256;
    let mut spawned = 0;
    while spawned < sizes.connections {
        let end = (spawned + wave).min(sizes.connections);
        let tasks: Vec<_> = (spawned..end)
            .map(|i| {
                let (url, links, failed) = (url.clone(), links.clone(), failed.clone());
                smol::spawn(async move {
                    match ws_connect(&url, client_options(i)).await {
                        Ok(link) => links
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(link),
                        Err(e) => {
                            // The first says why; the count says how many.
                            if failed.fetch_add(1, Ordering::SeqCst) == 0 {
                                eprintln!("S9's floor: a connection failed: {e}");
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        spawned = end;
    }
    let connected = links
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .len();
    smol::Timer::after(Duration::from_millis(1_000)).await;
    let per_connection = usage(pid).rss.saturating_sub(rss_before) as f64 / connected.max(1) as f64;
    // As long as S9 waits before its idle window, so that the clients'
    // pings fall in the window as they do there (they come in bursts, as
    // the connections were made).
    smol::Timer::after(Duration::from_secs_f64(sizes.settle_seconds)).await;
    let before = usage(pid);

    // Idle: nobody sends anything but keepalives.
    let idle_started = Instant::now();
    smol::Timer::after(Duration::from_secs_f64(sizes.idle_seconds)).await;
    let idled = usage(pid);
    let rss_idle = idled.rss;
    let (idle_cpu, idle_user, idle_system) =
        cpu_percent(before, idled, idle_started.elapsed().as_secs_f64());
    // A server gone has no figures (`/proc` would read as zeros).
    if let Ok(Some(status)) = server.child.try_wait() {
        panic!("the floor's server exited during the run: {status}");
    }
    // A connection the server closed while idle shows as a link that ended.
    let open = links
        .lock()
        .map_or(0, |l| l.iter().filter(|k| !k.rx.is_closed()).count());
    drop(server);
    Run {
        scenario: "S9".into(),
        transport: "floor".into(),
        size: sizes.connections as u64,
        metric: "idle_cpu_percent".into(),
        value: idle_cpu,
        messages: 0,
        bytes: 0,
        peak_rss: rss_idle,
        extra: vec![
            ("connected".into(), connected as f64),
            ("failed".into(), failed.load(Ordering::SeqCst) as f64),
            ("open_after_idle".into(), open as f64),
            ("bytes_per_connection".into(), per_connection),
            ("idle_cpu_percent".into(), idle_cpu),
            ("idle_cpu_user_percent".into(), idle_user),
            ("idle_cpu_system_percent".into(), idle_system),
            ("server_rss_idle_mib".into(), mib(rss_idle)),
        ],
    }
}
