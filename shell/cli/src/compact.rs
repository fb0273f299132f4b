//! `docweave compact`: folds each document's changes into one snapshot,
//! keeping its clock (the change feed stays intact). Run it on a stopped
//! server's data directory, or on a live one: SQLite serialises the writes.

use docweave_adapters::{SqliteStore, Store};
use docweave_core::{Clock, Filter};
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
    let engine = LoroEngine;
    for d in docs {
        bar.set_message(d.doc.to_string());
        let Some(loaded) = store.load(&d.doc).map_err(|e| e.to_string())? else {
            bar.inc(1);
            continue;
        };
        before += loaded.snapshot.as_ref().map_or(0, Vec::len)
            + loaded.changes.iter().map(Vec::len).sum::<usize>();
        let mut doc = engine.create(0);
        let mut unreadable = 0;
        for bytes in loaded.snapshot.iter().chain(loaded.changes.iter()) {
            if !matches!(
                engine.import(&mut doc, bytes),
                Ok(docweave_core::ImportOutcome::Applied { .. })
            ) {
                unreadable += 1;
            }
        }
        // Fold only what imported whole: a change that does not import (or
        // waits for one that is missing) stays stored as it is.
        if unreadable > 0 {
            bar.suspend(|| {
                eprintln!(
                    "{}: {unreadable} stored change(s) do not import; left uncompacted",
                    d.doc
                )
            });
            skipped.push(d.doc.to_string());
            bar.inc(1);
            continue;
        }
        let snapshot = engine.export(&doc, None).map_err(|e| e.to_string())?;
        after += snapshot.len();
        store
            .compact(&d.doc, &snapshot, loaded.clock)
            .map_err(|e| e.to_string())?;
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
