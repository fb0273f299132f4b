//! `docweave compact`: folds each document's changes into one snapshot,
//! keeping its clock (the change feed stays intact). Run it on a stopped
//! server's data directory, or on a live one: SQLite serialises the writes.

use docweave_adapters::{SqliteStore, Store};
use docweave_core::{Clock, DocId, Filter};
use docweave_shell::{DocEngine, LoroEngine};
use std::path::Path;

pub fn run(dir: &Path) -> Result<(), String> {
    let db = dir.join("docweave.db");
    if !db.exists() {
        return Err(format!(
            "{} holds no docweave store (no docweave.db)",
            dir.display()
        ));
    }
    let mut store = SqliteStore::open(&db).map_err(|e| e.to_string())?;
    let docs = store
        .changes_since(Clock(0), &Filter::all(), usize::MAX)
        .map_err(|e| e.to_string())?;
    let bar = indicatif::ProgressBar::new(docs.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("compacting {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (mut before, mut after) = (0usize, 0usize);
    let mut skipped = Vec::new();
    for d in docs {
        bar.set_message(d.doc.to_string());
        match compact_doc(&mut store, &d.doc)? {
            Compacted::Missing => {}
            Compacted::Unreadable(n) => {
                bar.suspend(|| {
                    eprintln!(
                        "{}: {n} stored change(s) do not import; left uncompacted",
                        d.doc
                    )
                });
                skipped.push(d.doc.to_string());
            }
            Compacted::Done {
                before: b,
                after: a,
            } => {
                before += b;
                after += a;
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    out!("compacted: {before} bytes of changes into {after} bytes of snapshots");
    if skipped.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} document(s) left uncompacted because stored changes do not import: {}",
            skipped.len(),
            skipped.join(", ")
        ))
    }
}

/// What compacting one document did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compacted {
    /// The store has no such document.
    Missing,
    /// This many stored changes do not import: nothing was folded (a
    /// change that does not import, or waits for one that is missing,
    /// stays stored as it is).
    Unreadable(usize),
    /// Folded: bytes stored before, and of the snapshot after.
    Done { before: usize, after: usize },
}

/// The document as the store holds it, in one replica; `None` when the
/// store has no such document. Also how many stored changes did not import.
fn read_back(
    store: &mut dyn Store,
    doc: &DocId,
) -> Result<Option<(loro::LoroDoc, docweave_adapters::Loaded, usize)>, String> {
    let Some(loaded) = store.load(doc).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let engine = LoroEngine;
    let mut replica = engine.create(0);
    let mut unreadable = 0;
    for bytes in loaded.snapshot.iter().chain(loaded.changes.iter()) {
        if !matches!(
            engine.import(&mut replica, bytes),
            Ok(docweave_core::ImportOutcome::Applied { .. })
        ) {
            unreadable += 1;
        }
    }
    Ok(Some((replica, loaded, unreadable)))
}

/// Folds one document's stored changes into a snapshot, keeping its clock.
pub fn compact_doc(store: &mut dyn Store, doc: &DocId) -> Result<Compacted, String> {
    let Some((replica, loaded, unreadable)) = read_back(store, doc)? else {
        return Ok(Compacted::Missing);
    };
    if unreadable > 0 {
        return Ok(Compacted::Unreadable(unreadable));
    }
    let before = loaded.snapshot.as_ref().map_or(0, Vec::len)
        + loaded.changes.iter().map(Vec::len).sum::<usize>();
    let snapshot = LoroEngine
        .export(&replica, None)
        .map_err(|e| e.to_string())?;
    store
        .compact(doc, &snapshot, loaded.clock)
        .map_err(|e| e.to_string())?;
    Ok(Compacted::Done {
        before,
        after: snapshot.len(),
    })
}

/// A Loro snapshot of what the store holds of a document (`None`: it has
/// none), and how many stored changes did not import into it.
pub fn stored_snapshot(
    store: &mut dyn Store,
    doc: &DocId,
) -> Result<Option<(Vec<u8>, usize)>, String> {
    let Some((replica, _, unreadable)) = read_back(store, doc)? else {
        return Ok(None);
    };
    let snapshot = LoroEngine
        .export(&replica, None)
        .map_err(|e| e.to_string())?;
    Ok(Some((snapshot, unreadable)))
}
