//! The scenarios. Each builds fresh nodes, measures one thing, and tears down.

use crate::wire::{counted, Wire};
use crate::{memory, Run};
use docweave_adapters::transport::LinkTx;
use docweave_adapters::transport::{memory_pair, serve_ws, ws_connect, ConnectionLimit, WsOptions};
use docweave_adapters::{Append, Link, MemoryStore, SqliteStore, Store};
use docweave_core::{DocId, DocMeta, Event, VersionVector};
use docweave_shell::{Dialer, Repo};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// In-memory links.
    Memory,
    /// Loopback WebSocket.
    WebSocket,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Memory => "memory",
            Transport::WebSocket => "websocket",
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(300);

/// When each count of the editor's operations reached one receiver.
pub(crate) type ArrivalLog = Arc<Mutex<Vec<(Instant, u64)>>>;

/// Records in `log` when each count of `editor`'s operations reaches `r`.
pub(crate) async fn log_arrivals(r: &Repo, editor: u64, log: ArrivalLog) {
    let events = r.events().await.unwrap_or_else(|e| panic!("{e}"));
    smol::spawn(async move {
        while let Ok(e) = events.recv().await {
            if let Event::DocChanged { version, .. } = e {
                if let Ok(mut l) = log.lock() {
                    l.push((Instant::now(), version.get(editor)));
                }
            }
        }
    })
    .detach();
}

/// A server and the means to reach it, counting the client's wire.
struct Net {
    server: Arc<Repo>,
    wire: Arc<Wire>,
    online: Arc<AtomicBool>,
    last: Arc<Mutex<Option<LinkTx>>>,
    dialed_at: Arc<Mutex<Option<Instant>>>,
    ws_addr: Option<String>,
}

impl Net {
    async fn new(server: Repo, t: Transport) -> Net {
        let server = Arc::new(server);
        let ws_addr = match t {
            Transport::Memory => None,
            Transport::WebSocket => {
                let l = smol::net::TcpListener::bind("127.0.0.1:0").await.ok();
                let addr = l
                    .as_ref()
                    .and_then(|l| l.local_addr().ok())
                    .map(|a| a.to_string());
                if let Some(l) = l {
                    smol::spawn(serve_ws(
                        l,
                        WsOptions::default(),
                        ConnectionLimit::new(4096),
                        server.acceptor(),
                    ))
                    .detach();
                }
                addr
            }
        };
        Net {
            server,
            wire: Wire::new(),
            online: Arc::new(AtomicBool::new(true)),
            last: Arc::new(Mutex::new(None)),
            dialed_at: Arc::new(Mutex::new(None)),
            ws_addr,
        }
    }

    /// A dialer; only the first client's wire is counted when `count`.
    fn dialer(&self, count: bool) -> Dialer {
        let (server, wire, online, last, dialed_at, ws) = (
            self.server.clone(),
            self.wire.clone(),
            self.online.clone(),
            self.last.clone(),
            self.dialed_at.clone(),
            self.ws_addr.clone(),
        );
        Arc::new(move |_| {
            let (server, wire, online, last, dialed_at, ws) = (
                server.clone(),
                wire.clone(),
                online.clone(),
                last.clone(),
                dialed_at.clone(),
                ws.clone(),
            );
            Box::pin(async move {
                if !online.load(Ordering::SeqCst) {
                    return Err("offline".to_string());
                }
                let link: Link = match ws {
                    None => {
                        let (mine, theirs) = memory_pair();
                        let _ = server.accept(theirs);
                        mine
                    }
                    Some(addr) => {
                        ws_connect(&format!("ws://{addr}/"), WsOptions::default()).await?
                    }
                };
                let link = if count { counted(link, wire) } else { link };
                if let Ok(mut l) = last.lock() {
                    *l = Some(link.tx.clone());
                }
                if let Ok(mut d) = dialed_at.lock() {
                    *d = Some(Instant::now());
                }
                Ok(link)
            })
        })
    }

    fn disconnect(&self) {
        self.online.store(false, Ordering::SeqCst);
        if let Some(tx) = self.last.lock().ok().and_then(|mut l| l.take()) {
            tx.close("benchmark disconnect");
        }
    }
}

fn text100(i: u64) -> String {
    let base = format!("document {i}: the quick brown fox jumps over the lazy dog, ");
    base.repeat(3).chars().take(100).collect()
}

async fn server_with_docs(n: u64) -> Repo {
    server_with_docs_keeping(n, Metadata::AllInMemory).await
}

/// Where a server keeps its idle documents' metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metadata {
    /// Every document's, in memory (an embedding host's default).
    AllInMemory,
    /// In the store, read on demand (the server's way, scaled down:
    /// `serve --idle-metadata`): about `kept` idle documents' metadata in
    /// memory (up to an eighth more between the server's looks), and as
    /// many documents loaded, so that a reconnect's changed documents
    /// (fewer than `kept`) are all loaded at once; and a peer forgotten
    /// half a second after it left instead of a minute (until then what
    /// it follows is not idle).
    OnDemand { kept: usize },
}

async fn server_with_docs_keeping(n: u64, metadata: Metadata) -> Repo {
    let builder = Repo::builder("server").store(MemoryStore::new());
    let builder = match metadata {
        Metadata::AllInMemory => builder,
        Metadata::OnDemand { kept } => builder.max_docs_in_memory(kept).configure(|c| {
            c.bounds.idle_metadata = kept;
            c.timing.peer_linger_ms = 500;
        }),
    };
    let server = builder.build().unwrap_or_else(|e| panic!("{e}"));
    for i in 0..n {
        let t = text100(i);
        let _ = server
            .edit(&format!("doc-{i}"), |d| d.get_text("t").insert(0, &t))
            .await;
    }
    server
}

fn client(name: &str, dialer: Dialer) -> Repo {
    let c = Repo::builder(name)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = c.connect_with("server", None, dialer);
    c
}

/// A client that has not dialed yet, and what it will come to hold.
async fn watched_client(name: &str) -> (Repo, Arrivals) {
    let c = Repo::builder(name)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let arrivals = Arrivals::watch(&c).await;
    (c, arrivals)
}

/// The documents a client holds with content, counted from its events.
/// Polling its summary instead makes its node list every document each
/// time: at 100,000 documents that was most of the client's time in S1,
/// so the benchmark mostly measured itself.
struct Arrivals {
    events: async_channel::Receiver<Event>,
    held: std::collections::BTreeSet<DocId>,
}

impl Arrivals {
    /// Starts counting: the events from now on, and (once) what the
    /// client already holds, which the events before now would have said.
    async fn watch(client: &Repo) -> Self {
        let events = client
            .events()
            .await
            .unwrap_or_else(|e| panic!("the client's events: {e}"));
        let held = client
            .summary()
            .await
            .unwrap_or_else(|e| panic!("the client's summary: {e}"))
            .docs
            .into_iter()
            .filter(|(_, v, _)| !v.is_empty())
            .map(|(d, _, _)| d)
            .collect();
        Arrivals { events, held }
    }

    /// Waits until the client holds `n` documents with content.
    async fn reach(&mut self, n: usize) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        while self.held.len() < n {
            let next = smol::future::or(async { self.events.recv().await.ok() }, async {
                smol::Timer::at(deadline).await;
                None
            })
            .await;
            match next {
                Some(Event::DocChanged { doc, version, .. } | Event::DocReady { doc, version })
                    if !version.is_empty() =>
                {
                    self.held.insert(doc);
                }
                Some(_) => {}
                None => return false,
            }
        }
        true
    }
}

/// `d` through Loro alone, exported in `mode` and imported into a new
/// document (S1's floors).
fn exported_and_imported(d: &loro::LoroDoc, mode: loro::ExportMode) -> loro::LoroDoc {
    let bytes = d.export(mode).unwrap_or_default();
    let fresh = loro::LoroDoc::new();
    fresh
        .import(&bytes)
        .unwrap_or_else(|e| panic!("the floor's import: {e}"));
    fresh
}

/// Hands the heap's free pages back to the kernel. glibc keeps what the
/// main thread freed (the floors' documents) in the main thread's arena,
/// which the nodes' threads do not allocate from. Without this, the floors
/// ran on pages the kernel had just had back from this process (from the
/// smaller sizes before), and the client on pages it had not; on this
/// virtual machine those cost many times more, as the hypervisor backs
/// them again. S1 at 100,000 documents took 5.4 to 7.5 s without it and
/// 2.7 to 3.0 s with it, the floors unchanged (1.6 to 2.2 s): both now run
/// on the same footing.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no
    // pointer and frees nothing still in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The N documents the server holds in S1, each made by Loro alone.
fn loro_texts(n: u64) -> Vec<loro::LoroDoc> {
    (0..n)
        .map(|i| {
            let d = loro::LoroDoc::new();
            let _ = d.get_text("t").insert(0, &text100(i));
            d.commit();
            d
        })
        .collect()
}

/// S1: a fresh client obtains N documents; compared with export+import alone.
pub async fn s1(n: u64, t: Transport) -> Run {
    let server = server_with_docs(n).await;
    // The floor: the same data through Loro alone.
    let docs = loro_texts(n);
    // In the form docweave sends a small document: its updates (the
    // Loro engine's `whole`, which says why).
    let floor_start = Instant::now();
    for d in &docs {
        drop(exported_and_imported(d, loro::ExportMode::all_updates()));
    }
    let floor = floor_start.elapsed().as_secs_f64();
    // The same, keeping every imported document as a client must: what
    // holding N documents costs Loro beyond importing them.
    let kept_start = Instant::now();
    let kept: Vec<loro::LoroDoc> = docs
        .iter()
        .map(|d| exported_and_imported(d, loro::ExportMode::all_updates()))
        .collect();
    let floor_kept = kept_start.elapsed().as_secs_f64();
    drop(kept);
    // As snapshots, the form docweave sent before: Loro's first snapshot
    // of a document costs 4 times its updates to export (and is then kept
    // in it, so this runs on fresh copies, after the floors above).
    let fresh = loro_texts(n);
    let snapshot_start = Instant::now();
    for d in &fresh {
        drop(exported_and_imported(d, loro::ExportMode::Snapshot));
    }
    let floor_snapshot = snapshot_start.elapsed().as_secs_f64();
    drop(fresh);
    // Their memory goes back (to the allocator) before the sync, not
    // after it. The peak RSS reported is the process's high-water mark,
    // so it includes the floors.
    drop(docs);
    give_back_freed_memory();
    let net = Net::new(server, t).await;
    let (c, mut arrivals) = watched_client("client").await;
    let start = Instant::now();
    c.connect_with("server", None, net.dialer(true))
        .unwrap_or_else(|e| panic!("{e}"));
    let ok = arrivals.reach(n as usize).await;
    let seconds = start.elapsed().as_secs_f64();
    // Content check (not timed): a sample of documents.
    let mut same = ok;
    for i in (0..n).step_by((n as usize / 10).max(1)) {
        let doc = format!("doc-{i}");
        let ours = c
            .open(&doc)
            .await
            .map(|d| d.get_text("t").to_string())
            .unwrap_or_default();
        same &= ours == text100(i);
    }
    assert!(same, "S1: the client does not hold identical content");
    let (messages, bytes) = net.wire.get();
    c.close().await;
    net.server.shutdown().await;
    Run {
        scenario: "S1".into(),
        transport: t.name().into(),
        size: n,
        metric: "seconds".into(),
        value: seconds,
        messages,
        bytes,
        peak_rss: memory().1,
        extra: vec![
            ("floor_seconds".into(), floor),
            ("floor_kept_seconds".into(), floor_kept),
            ("floor_snapshot_seconds".into(), floor_snapshot),
            ("ratio".into(), seconds / floor.max(1e-9)),
            ("ratio_kept".into(), seconds / floor_kept.max(1e-9)),
        ],
    }
}

/// S2: client and server share N documents; k change on the server while
/// the client is away; time, messages and bytes from the redial until the
/// client has them.
pub async fn s2(n: u64, k: u64, t: Transport) -> Run {
    s2_keeping("S2", n, k, t, Metadata::AllInMemory).await
}

/// S2 on a server that keeps idle documents' metadata in its store
/// (scenario "S2d"): 1% of all documents' (at least k) and as many loaded,
/// so the client's "what changed since" is answered from the store's
/// index. It should take the frames S2 takes.
pub async fn s2_on_demand(n: u64, k: u64, t: Transport) -> Run {
    let kept = (n as usize / 100).max(k as usize).max(1);
    s2_keeping("S2d", n, k, t, Metadata::OnDemand { kept }).await
}

/// How many documents' metadata `repo` holds in memory.
async fn metadata_held(repo: &Repo) -> usize {
    let summary = repo.summary().await;
    summary.map_or_else(|e| panic!("no summary: {e}"), |s| s.docs.len())
}

/// Waits until the client `c` has pulled every change of `server`, and
/// nothing crossed the wire for 300 ms; panics after a minute. Holding
/// every document is not enough: a server that holds few of them in
/// memory refuses lookups past its bound per peer (256), the client asks
/// for those again later, and its cursor waits for them; a reconnect
/// before then walks the changes again from there (41 frames and 172 KB in
/// S2d, with a fixed 300 ms).
async fn settle(name: &str, net: &Net, c: &Repo) {
    let start = Instant::now();
    let mut seen = net.wire.get().0;
    loop {
        smol::Timer::after(Duration::from_millis(300)).await;
        let now = net.wire.get().0;
        let server = net.server.summary().await;
        let server = server.unwrap_or_else(|e| panic!("{name}: no summary: {e}"));
        let client = c.summary().await;
        let client = client.unwrap_or_else(|e| panic!("{name}: no summary: {e}"));
        let pulled = client
            .peers
            .into_iter()
            .find(|(p, _, _)| *p == server.peer)
            .map(|(_, _, cursor)| cursor.pulled);
        let caught_up = pulled.is_some_and(|p| p >= server.clock);
        if now == seen && caught_up {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name}: the client's cursor ({pulled:?}) did not reach the server's clock ({:?}) in a minute",
            server.clock
        );
        seen = now;
    }
}

async fn s2_keeping(name: &str, n: u64, k: u64, t: Transport, metadata: Metadata) -> Run {
    let server = server_with_docs_keeping(n, metadata).await;
    let net = Net::new(server, t).await;
    let (c, mut arrivals) = watched_client("client").await;
    c.connect_with("server", None, net.dialer(true))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        arrivals.reach(n as usize).await,
        "{name}: initial sync did not finish"
    );
    settle(name, &net, &c).await;
    net.disconnect();
    smol::Timer::after(Duration::from_millis(100)).await;
    if let Metadata::OnDemand { kept } = metadata {
        // The server forgets idle documents' metadata at its ticks once the
        // client is forgotten, down to the bound once past it by an eighth
        // (`forget_idle` in the core), and looks again 10 s after a look
        // that found too few idle (they were being written, or the client
        // followed them).
        let start = Instant::now();
        while metadata_held(&net.server).await > kept + kept / 8 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name}: the server did not forget idle metadata in 30 s"
            );
            smol::Timer::after(Duration::from_millis(200)).await;
        }
    }
    let changed: Vec<String> = (0..k)
        .map(|j| format!("doc-{}", j * (n / k.max(1))))
        .collect();
    for d in &changed {
        let _ = net
            .server
            .edit(d, |doc| doc.get_text("t").insert(0, "x"))
            .await;
    }
    // How many documents' metadata the server holds as the client comes
    // back (all of them, or about the bound on demand).
    let in_memory = metadata_held(&net.server).await;
    let handles: Vec<loro::LoroDoc> = {
        let mut v = Vec::new();
        for d in &changed {
            v.push(c.open(d).await.unwrap_or_else(|e| panic!("{e}")));
        }
        v
    };
    net.wire.reset();
    if let Ok(mut d) = net.dialed_at.lock() {
        *d = None;
    }
    net.online.store(true, Ordering::SeqCst);
    let start = Instant::now();
    let mut done = false;
    while start.elapsed() < TIMEOUT {
        if handles
            .iter()
            .all(|h| h.get_text("t").to_string().starts_with('x'))
        {
            done = true;
            break;
        }
        smol::Timer::after(Duration::from_millis(1)).await;
    }
    assert!(done, "{name}: the client never got the changes");
    let finished = Instant::now();
    let dialed = net.dialed_at.lock().ok().and_then(|d| *d).unwrap_or(start);
    let seconds = finished.saturating_duration_since(dialed).as_secs_f64();
    // Messages until the changes are in (acks still in flight are not counted).
    let (messages, bytes) = net.wire.get();
    c.close().await;
    net.server.shutdown().await;
    Run {
        scenario: name.into(),
        transport: t.name().into(),
        size: n,
        metric: "seconds".into(),
        value: seconds,
        messages,
        bytes,
        peak_rss: memory().1,
        extra: vec![
            ("changed".into(), k as f64),
            ("message_budget".into(), (2 * k + 4) as f64),
            ("metadata_in_memory".into(), in_memory as f64),
        ],
    }
}

/// The value at fraction `p` of sorted values (0 when there are none).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// S3: one hub, C clients on one document; one client makes M edits,
/// each committed on its own. Edits per second delivered to all, latency p50/p99.
pub async fn s3(clients: usize, m: u64, t: Transport) -> Run {
    s3_with(clients, m, t, |b| b, false).await
}

/// S3 on a hub with every quota set, none of them reached: what checking
/// them costs (scenario "S3q").
pub async fn s3_quotas(clients: usize, m: u64, t: Transport) -> Run {
    let quotas = docweave_core::Quotas {
        updates_per_s: 1_000_000,
        update_bytes_per_s: 1 << 30,
        connections_per_identity: 1_000,
        max_doc_bytes: 1 << 40,
        max_update_bytes: 1 << 30,
        docs_created_per_hour: 1_000_000,
    };
    Run {
        scenario: "S3q".into(),
        ..s3_with(clients, m, t, |b| b.configure(|c| c.quotas = quotas), false).await
    }
}

/// S3 on a hub that records every step (`serve --record`): what the
/// recording costs (scenario "S3r").
pub async fn s3_recorded(clients: usize, m: u64, t: Transport) -> Run {
    let dir = std::env::temp_dir().join(format!("docweave-s3r-{}", std::process::id()));
    let run = Run {
        scenario: "S3r".into(),
        ..s3_with(clients, m, t, |b| b.record(&dir), false).await
    };
    let kept: u64 = docweave_shell::files_in(&dir)
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    // The recording was measured; what it left is not needed.
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        extra: [
            run.extra.clone(),
            vec![("recorded_bytes".into(), kept as f64)],
        ]
        .concat(),
        ..run
    }
}

async fn s3_with(
    clients: usize,
    m: u64,
    t: Transport,
    setup: impl FnOnce(docweave_shell::RepoBuilder) -> docweave_shell::RepoBuilder,
    hooked: bool,
) -> Run {
    let server = setup(Repo::builder("server").store(MemoryStore::new()))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let net = Net::new(server, t).await;
    let hook = hooked.then(|| crate::hooked::Hook::follow(&net.server));
    let mut repos = Vec::new();
    for i in 0..clients {
        repos.push(client(&format!("c{i}"), net.dialer(i == 0)));
    }
    let mut docs = Vec::new();
    for r in &repos {
        docs.push(r.open("fanout").await.unwrap_or_else(|e| panic!("{e}")));
    }
    for r in &repos {
        let _ = r
            .wait_for_sync("fanout", "server", Duration::from_secs(60))
            .await;
    }
    let editor = docs[0].peer_id();
    // Receivers record when each count of the editor's operations arrived.
    let arrivals: Vec<ArrivalLog> = (1..clients)
        .map(|_| Arc::new(Mutex::new(Vec::new())))
        .collect();
    for (r, log) in repos.iter().skip(1).zip(&arrivals) {
        log_arrivals(r, editor, log.clone()).await;
    }
    net.wire.reset();
    let mut sent = Vec::with_capacity(m as usize);
    let text = docs[0].get_text("t");
    for i in 0..m {
        let _ = text.insert(i as usize, "e");
        sent.push(Instant::now());
        docs[0].commit();
        if i % 64 == 63 {
            smol::future::yield_now().await;
        }
    }
    let start = Instant::now();
    let complete = |log: &ArrivalLog| {
        log.lock()
            .map(|l| l.iter().any(|(_, c)| *c >= m))
            .unwrap_or(false)
    };
    while start.elapsed() < TIMEOUT && !arrivals.iter().all(complete) {
        smol::Timer::after(Duration::from_millis(5)).await;
    }
    assert!(
        arrivals.iter().all(complete),
        "S3: not every client got every edit"
    );
    // Latency of edit i: the latest first arrival over clients, minus its commit time.
    let mut latencies = Vec::with_capacity(m as usize);
    let mut last = sent[0];
    for (i, sent_at) in sent.iter().enumerate() {
        let mut worst = *sent_at;
        for log in &arrivals {
            let l = log.lock().map(|l| l.clone()).unwrap_or_default();
            if let Some((at, _)) = l.iter().find(|(_, c)| *c > i as u64) {
                worst = worst.max(*at);
            }
        }
        last = last.max(worst);
        latencies.push(worst.saturating_duration_since(*sent_at).as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let elapsed = last
        .saturating_duration_since(sent[0])
        .as_secs_f64()
        .max(1e-9);
    let (messages, bytes) = net.wire.get();
    let followed = match hook {
        Some(h) => {
            let (pulls, acked) = h.stop().await;
            vec![
                ("hook_pulls".into(), pulls as f64),
                ("hook_strands_acked".into(), acked as f64),
            ]
        }
        None => Vec::new(),
    };
    for r in repos {
        r.close().await;
    }
    net.server.shutdown().await;
    Run {
        scenario: "S3".into(),
        transport: t.name().into(),
        size: clients as u64,
        metric: "edits_per_s".into(),
        value: m as f64 / elapsed,
        messages,
        bytes,
        peak_rss: memory().1,
        extra: vec![
            ("p50_ms".into(), percentile(&latencies, 0.5)),
            ("p99_ms".into(), percentile(&latencies, 0.99)),
            ("edits".into(), m as f64),
        ]
        .into_iter()
        .chain(followed)
        .collect(),
    }
}

/// S3 on a hub that a webhook's listener follows (scenario "S3h"; see
/// [`crate::hooked`]).
pub async fn s3_hooked(clients: usize, m: u64, t: Transport) -> Run {
    Run {
        scenario: "S3h".into(),
        ..s3_with(clients, m, t, |b| b, true).await
    }
}

/// S4: `update` messages per second on the hub workload, over `docs`
/// stored documents: all of their metadata in the core (`on_demand` false,
/// an embedding host's default), or only what the workload asks for, read
/// from the store on demand (`docweave serve`'s default).
pub fn s4(docs: u64, rounds: u64, on_demand: bool) -> Run {
    let mut hub = if on_demand {
        crate::hub::Hub::on_demand(docs)
    } else {
        crate::hub::Hub::new(docs)
    };
    hub.connect_all();
    let before = hub.fed;
    let start = Instant::now();
    for i in 0..rounds * crate::hub::PEERS {
        hub.live_update(i);
    }
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let fed = hub.fed - before;
    Run {
        scenario: "S4".into(),
        transport: if on_demand {
            "on-demand"
        } else {
            "all-in-memory"
        }
        .into(),
        size: docs,
        metric: "messages_per_s".into(),
        value: fed as f64 / seconds,
        messages: fed,
        bytes: 0,
        peak_rss: memory().1,
        extra: vec![
            ("ns_per_message".into(), seconds * 1e9 / fed.max(1) as f64),
            (
                "documents_in_memory".into(),
                hub.documents_in_memory() as f64,
            ),
        ],
    }
}

/// S5: resident bytes per idle document on a hub holding `n` documents
/// (metadata in the core; replicas evicted).
pub async fn s5(n: u64, dir: &std::path::Path) -> Run {
    let path = dir.join(format!("s5-{n}-{}.db", std::process::id()));
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", path.display()));
    }
    {
        let mut store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let d = loro::LoroDoc::new();
        let _ = d.set_peer_id(1);
        let _ = d.get_text("t").insert(0, "idle");
        let snapshot = d.export(loro::ExportMode::Snapshot).unwrap_or_default();
        let mut batch = Vec::new();
        for i in 0..n {
            batch.push(Append {
                doc: DocId::new(&format!("idle-{i}")),
                meta: DocMeta::default(),
                data: snapshot.clone(),
                version: VersionVector::from_entries([(1, 4)]),
                authors: Vec::new(),
            });
            if batch.len() == 1000 {
                let _ = store.append(&batch);
                batch.clear();
            }
        }
        let _ = store.append(&batch);
    }
    let before = memory().0;
    let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let hub = Repo::builder("hub")
        .store(store)
        .max_docs_in_memory(16)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let held = hub.summary().await.map(|s| s.docs.len()).unwrap_or(0);
    let after = memory().0;
    hub.close().await;
    let _ = std::fs::remove_file(&path);
    Run {
        scenario: "S5".into(),
        transport: "none".into(),
        size: held as u64,
        metric: "bytes_per_doc".into(),
        value: after.saturating_sub(before) as f64 / (held.max(1) as f64),
        messages: 0,
        bytes: 0,
        peak_rss: memory().1,
        extra: vec![
            ("rss_before".into(), before as f64),
            ("rss_after".into(), after as f64),
        ],
    }
}
