//! S8: a server whose store holds many documents, few of them in use: its
//! start-up time and resident memory when idle documents' metadata stays in
//! the store and is read on demand (`Bounds::idle_metadata`, the server's
//! default), against keeping every document's metadata in memory (0).
//!
//! The store is filled once by the parent process ([`fill`]); each form
//! runs in a fresh process ([`s8`]) so that neither the filling nor the
//! other form is counted.

use crate::{memory, Run};
use docweave_adapters::{Append, PostgresStore, SqliteStore, Store};
use docweave_core::{DocId, DocMeta, PeerKind, VersionVector};
use docweave_shell::Repo;
use std::path::Path;
use std::time::Instant;

/// Idle documents whose metadata the on-demand form keeps (the server's
/// default for `--idle-metadata`).
pub const ON_DEMAND_IDLE_METADATA: usize = 20_000;

fn doc_name(i: u64) -> String {
    format!("doc-{i:08}")
}

/// Where S8's store is: a SQLite file, or a PostgreSQL database's URL.
pub fn open(at: &str) -> Result<Box<dyn Store>, String> {
    if at.starts_with("postgres://") || at.starts_with("postgresql://") {
        let store = PostgresStore::open(at).map_err(|e| e.to_string())?;
        return Ok(Box::new(store));
    }
    let store = SqliteStore::open(Path::new(at)).map_err(|e| e.to_string())?;
    Ok(Box::new(store))
}

/// Fills an empty store with `n` documents, each one small Loro update (a
/// few characters of text).
pub fn fill(store: &mut dyn Store, n: u64) -> Result<(), String> {
    let d = loro::LoroDoc::new();
    d.set_peer_id(1).map_err(|e| e.to_string())?;
    d.get_text("t")
        .insert(0, "idle")
        .map_err(|e| e.to_string())?;
    let update = d
        .export(loro::ExportMode::all_updates())
        .map_err(|e| e.to_string())?;
    let mut batch = Vec::new();
    for i in 0..n {
        batch.push(Append {
            doc: DocId::new(&doc_name(i)),
            meta: DocMeta::default(),
            data: update.clone(),
            version: VersionVector::from_entries([(1, 4)]),
            authors: Vec::new(),
        });
        if batch.len() == 10_000 || i + 1 == n {
            store.append(&batch).map_err(|e| e.to_string())?;
            batch.clear();
        }
    }
    Ok(())
}

/// Removes the store's files.
pub fn remove(path: &Path) {
    for s in ["", "-wal", "-shm"] {
        // Absent files are what is wanted.
        let _ = std::fs::remove_file(format!("{}{s}", path.display()));
    }
}

/// Starts a server on the store at `at` ([`open`]) holding `n` documents
/// (`form`: "on-demand" or "all", with the store's kind before a slash:
/// "sqlite/on-demand"), then edits `active` of them spread over the store,
/// and measures start-up and resident memory.
pub fn s8(form: &str, at: &str, n: u64, active: u64) -> Run {
    let idle_metadata = match form.ends_with("on-demand") {
        true => ON_DEMAND_IDLE_METADATA,
        false => 0,
    };
    let before = memory().0;
    let started = Instant::now();
    let store = open(at).unwrap_or_else(|e| panic!("{e}"));
    let hub = Repo::builder("hub")
        .boxed_store(store)
        .max_docs_in_memory(active as usize + 16)
        .configure(|c| {
            c.kind = PeerKind::Service;
            c.bounds.idle_metadata = idle_metadata;
        })
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // Answered once the store's restore is in: nothing is taken before.
    let ready = smol::block_on(hub.resident_docs());
    let startup = started.elapsed().as_secs_f64();
    let at_start = memory().0;
    let step = (n / active.max(1)).max(1);
    let edited = smol::block_on(async {
        let mut edited = 0u64;
        for i in 0..active.min(n) {
            let doc = doc_name(i * step);
            let done = hub
                .edit(&doc, |d| d.get_text("t").insert(0, "a").is_ok())
                .await;
            edited += u64::from(done.unwrap_or(false));
        }
        edited
    });
    let resident = smol::block_on(hub.resident_docs()).unwrap_or(0);
    let after = memory().0;
    // Counted after the measure: the summary lists every document in memory.
    let in_memory = smol::block_on(hub.summary()).map_or(0, |s| s.docs.len());
    smol::block_on(hub.close());
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    Run {
        scenario: "S8".into(),
        transport: form.into(),
        size: n,
        metric: "rss_mb".into(),
        value: mb(after),
        messages: 0,
        bytes: 0,
        peak_rss: memory().1,
        extra: vec![
            ("startup_s".into(), startup),
            ("rss_before_mb".into(), mb(before)),
            ("rss_start_mb".into(), mb(at_start)),
            ("edited".into(), edited as f64),
            ("resident".into(), resident as f64),
            ("metadata_in_memory".into(), in_memory as f64),
            ("ready".into(), f64::from(u8::from(ready.is_ok()))),
        ],
    }
}
