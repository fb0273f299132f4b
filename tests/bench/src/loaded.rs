//! S12: what one loaded small document costs resident (issue 24, part 2).
//!
//! Every form runs in a process of its own (see `main.rs`), so what an
//! earlier form freed does not hide what a later one takes:
//!
//! - `loro`: Loro alone, the floor: `n` documents, each imported from the
//!   same 500-byte update the store holds, kept in a vector.
//! - `node`: the node a server runs, on SQLite holding those `n` documents,
//!   with room for all of them in memory, opens each one (loading it as a
//!   client's request would, no handle given out) and keeps it loaded.
//! - `budget`: the same under a 1 MiB memory budget: the least recently
//!   used replicas sleep as their bytes, and past the budget go
//!   altogether (read from the store again on their next use).
//! - `asleep`: the same without a budget, opening one document every 10 ms
//!   (the node's clock) and its replicas sleeping once unused for a second
//!   (the server's default is a minute): what a loaded document costs while
//!   no one uses it, with about 100 awake at any time.
//! - `woken`: the same, then every document opened again at once: what
//!   one costs awake once woken from its sleeping bytes.
//!
//! The value is the growth of the resident set divided by `n`.

use crate::{memory, Run};
use docweave_adapters::{Append, SqliteStore, Store};
use docweave_core::{Config, Event, PeerKind};
use docweave_core::{DocId, DocMeta, VersionVector};
use docweave_shell::{run_job, Input, LoroEngine, Node, NodeOptions, Output, StoreAnswer};

/// Runs the node's store jobs (inline, as a host would) until it is
/// quiet; returns how many documents became ready meanwhile.
fn settle(node: &mut Node<LoroEngine>, store: &mut SqliteStore, now: u64) -> u64 {
    let mut ready = 0;
    loop {
        let mut jobs = Vec::new();
        while let Some(out) = node.poll_output() {
            match out {
                Output::Store(job) => jobs.push(job),
                Output::Event(Event::DocReady { .. }) => ready += 1,
                _ => {}
            }
        }
        if jobs.is_empty() {
            return ready;
        }
        for job in jobs {
            let result = run_job(store, job.op);
            node.handle(now, Input::Store(StoreAnswer { id: job.id, result }));
        }
    }
}

/// The forms S12 measures, each in a process of its own.
pub const FORMS: [&str; 5] = ["loro", "node", "budget", "asleep", "woken"];

/// The stored document: one change of 450 characters of text, 536 bytes
/// as a Loro update (the size of the "500-byte document").
fn stored_update() -> (Vec<u8>, VersionVector) {
    let d = loro::LoroDoc::new();
    d.set_peer_id(1).unwrap_or_else(|e| panic!("{e}"));
    let text: String = "abcdefghij".repeat(45);
    d.get_text("t")
        .insert(0, &text)
        .unwrap_or_else(|e| panic!("{e}"));
    d.commit();
    let bytes = d
        .export(loro::ExportMode::all_updates())
        .unwrap_or_else(|e| panic!("{e}"));
    (bytes, VersionVector::from_entries([(1, 450)]))
}

/// Runs one form of S12 over `n` documents.
pub fn s12(form: &str, n: u64, dir: &std::path::Path) -> Run {
    let (update, version) = stored_update();
    let run = |value: f64, before: u64, after: u64| Run {
        scenario: "S12".into(),
        transport: form.into(),
        size: n,
        metric: "bytes_per_loaded_doc".into(),
        value,
        messages: 0,
        bytes: update.len() as u64,
        peak_rss: memory().1,
        extra: vec![
            ("rss_before".into(), before as f64),
            ("rss_after".into(), after as f64),
        ],
    };
    if form == "loro" {
        let before = memory().0;
        let mut docs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let d = loro::LoroDoc::new();
            d.import(&update).unwrap_or_else(|e| panic!("{e}"));
            docs.push(d);
        }
        let after = memory().0;
        std::hint::black_box(&docs);
        return run(
            after.saturating_sub(before) as f64 / n as f64,
            before,
            after,
        );
    }
    let path = dir.join(format!("s12-{form}-{n}-{}.db", std::process::id()));
    for s in ["", "-wal", "-shm"] {
        // A leftover of an earlier run would be counted again; none is fine.
        let _ = std::fs::remove_file(format!("{}{s}", path.display()));
    }
    {
        let mut store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut batch = Vec::new();
        for i in 0..n {
            batch.push(Append {
                doc: DocId::new(&format!("loaded-{i}")),
                meta: DocMeta::default(),
                data: update.clone(),
                version: version.clone(),
                authors: Vec::new(),
            });
            if batch.len() == 1000 || i + 1 == n {
                store.append(&batch).unwrap_or_else(|e| panic!("{e}"));
                batch.clear();
            }
        }
    }
    let mut store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let options = NodeOptions {
        store: true,
        max_docs: n as usize + 16,
        memory_budget: if form == "budget" {
            1024 * 1024
        } else {
            usize::MAX
        },
        sleep_after_ms: if matches!(form, "asleep" | "woken") {
            1_000
        } else {
            0
        },
        ..NodeOptions::default()
    };
    let mut config = Config::new("hub");
    config.kind = PeerKind::Service;
    let mut node = Node::new(config, LoroEngine, options);
    // The store's metadata is in; what follows is the loading alone.
    settle(&mut node, &mut store, 0);
    let before = memory().0;
    let mut ready = 0;
    // One document opened every 10 ms: once asleep after a second, about
    // 100 are awake at any time, as on a server whose clients come and go.
    for i in 0..n {
        let doc = DocId::new(&format!("loaded-{i}"));
        node.handle(i * 10, Input::Open { doc });
        ready += settle(&mut node, &mut store, i * 10);
    }
    // Past the idle time: the node's next look at its replicas.
    let end = n * 10 + 2_000;
    node.handle(end, Input::Timeout);
    settle(&mut node, &mut store, end);
    if form == "woken" {
        for i in 0..n {
            let doc = DocId::new(&format!("loaded-{i}"));
            node.handle(end, Input::Open { doc });
            ready += settle(&mut node, &mut store, end);
        }
        ready = ready.saturating_sub(n);
    }
    let after = memory().0;
    let resident = node.resident();
    drop(node);
    drop(store);
    for s in ["", "-wal", "-shm"] {
        // The store's files only take disk space once the run is over.
        let _ = std::fs::remove_file(format!("{}{s}", path.display()));
    }
    let mut r = run(
        after.saturating_sub(before) as f64 / n as f64,
        before,
        after,
    );
    r.extra.push(("replicas_resident".into(), resident as f64));
    r.extra.push(("ready".into(), ready as f64));
    r
}
