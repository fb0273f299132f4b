//! `docweave compact`: folds each document's changes into one snapshot,
//! keeping its clock (the change feed stays intact). Run it on a stopped
//! server's data directory, or on a live one: SQLite serialises the writes.
//! The snapshot is the store's whole-document row, in the form the node
//! sends a whole document (`DocEngine::export`): for a document one writer
//! wrote, all its updates, which load faster than a Loro snapshot.
//!
//! With `--history-before DATE` the snapshot is a Loro shallow snapshot
//! from the newest version the server took before DATE (its history
//! entries say when): the state is whole, but the history before that
//! version is gone (its states, differences and authors), and so are its
//! history entries; who owns each writer number stays. A document with
//! no entry before DATE (older than authorship records) is only folded.

use docweave_adapters::{SqliteStore, Store};
use docweave_core::{Clock, DocId, Filter};
use docweave_shell::{DocEngine, LoroEngine};
use std::path::Path;

pub fn run(dir: &Path, history_before: Option<&str>) -> Result<(), String> {
    let cut = history_before.map(parse_date).transpose()?;
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
    let mut trimmed = 0usize;
    let mut skipped = Vec::new();
    for d in docs {
        bar.set_message(d.doc.to_string());
        let trim = match cut.map(|cut| trim_point(&mut store, &d.doc, cut)) {
            Some(Ok(point)) => point,
            Some(Err(why)) => {
                // One document's history that cannot be read is left whole.
                bar.suspend(|| eprintln!("{}: history left whole: {why}", d.doc));
                None
            }
            None => None,
        };
        if trim.is_some() {
            trimmed += 1;
        }
        match compact_doc_from(&mut store, &d.doc, trim.as_ref())? {
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
    if let Some(date) = history_before {
        out!("history before {date} trimmed from {trimmed} document(s)");
    }
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
    compact_doc_from(store, doc, None)
}

/// Where a document's history is cut: the newest entry the server took
/// before the cut, and its version.
pub struct TrimPoint {
    seq: u64,
    version: loro::Frontiers,
}

/// The newest history entry of `doc` taken before `cut` (Unix ms).
fn trim_point(store: &mut dyn Store, doc: &DocId, cut: u64) -> Result<Option<TrimPoint>, String> {
    let mut before = None;
    loop {
        let page = store
            .history(doc, before, 1_000)
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        before = Some(last.seq);
        if let Some(e) = page.iter().find(|e| e.authored.at < cut) {
            let version = crate::doc_history::parse_frontiers(&e.authored.version)
                .map_err(|why| format!("{doc}: a history entry's version: {why}"))?;
            return Ok(Some(TrimPoint {
                seq: e.seq,
                version,
            }));
        }
    }
}

/// [`compact_doc`], trimming the history before `trim` when given.
pub fn compact_doc_from(
    store: &mut dyn Store,
    doc: &DocId,
    trim: Option<&TrimPoint>,
) -> Result<Compacted, String> {
    let Some((replica, loaded, unreadable)) = read_back(store, doc)? else {
        return Ok(Compacted::Missing);
    };
    if unreadable > 0 {
        return Ok(Compacted::Unreadable(unreadable));
    }
    let before = loaded.snapshot.as_ref().map_or(0, Vec::len)
        + loaded.changes.iter().map(Vec::len).sum::<usize>();
    // A trim point the document does not hold (its entry outlived a
    // change that did not import) leaves the history whole.
    let trim = trim.filter(|t| {
        crate::doc_history::check_known(&replica, &t.version, "the trim point", doc)
            .map_err(|why| eprintln!("{doc}: history left whole: {why}"))
            .is_ok()
    });
    let snapshot = match trim {
        Some(t) => replica
            .export(loro::ExportMode::shallow_snapshot(&t.version))
            .map_err(|e| e.to_string())?,
        None => LoroEngine
            .export(&replica, None)
            .map_err(|e| e.to_string())?,
    };
    store
        .compact(doc, &snapshot, loaded.clock)
        .map_err(|e| e.to_string())?;
    if let Some(t) = trim {
        store
            .forget_history(doc, t.seq)
            .map_err(|e| e.to_string())?;
    }
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
        .export_snapshot(&replica)
        .map_err(|e| e.to_string())?;
    Ok(Some((snapshot, unreadable)))
}

/// A date as `--history-before` takes it: `YYYY-MM-DD` (midnight UTC),
/// `YYYY-MM-DDTHH:MM:SSZ`, or Unix milliseconds; as Unix milliseconds.
pub fn parse_date(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a date: YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or Unix ms");
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && text.len() > 8 {
        return text.parse().map_err(|_| bad());
    }
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (text, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let (y, m, d): (i64, i64, i64) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return Err(bad());
    }
    let seconds = match time {
        None => 0,
        Some(t) => {
            let parts: Vec<&str> = t.split(':').collect();
            let [h, mi, s] = parts.as_slice() else {
                return Err(bad());
            };
            let (h, mi, s): (i64, i64, i64) = (
                h.parse().map_err(|_| bad())?,
                mi.parse().map_err(|_| bad())?,
                s.parse().map_err(|_| bad())?,
            );
            if h > 23 || mi > 59 || s > 60 {
                return Err(bad());
            }
            h * 3600 + mi * 60 + s
        }
    };
    // Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from((days * 86_400 + seconds) * 1000).map_err(|_| bad())
}

#[cfg(test)]
mod date_tests {
    use super::parse_date;

    #[test]
    fn dates_read_as_unix_milliseconds_and_others_are_refused() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("2000-02-29"), Ok(951_782_400_000));
        assert_eq!(parse_date("2026-12-06T08:44:32Z"), Ok(1_796_546_672_000));
        assert_eq!(parse_date("1796546672000"), Ok(1_796_546_672_000));
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-12-06T08:44:32",
            "2026-12",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }
}
