//! `docweave inspect`: what a data directory holds, without running a node.

use docweave_adapters::{SqliteStore, Store};
use docweave_core::{Clock, Filter, StateRecord};
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
    let sizes = sizes(&db);
    let clock = store.clock().map_err(|e| e.to_string())?;
    let docs = store
        .changes_since(Clock(0), &Filter::all(), usize::MAX)
        .map_err(|e| e.to_string())?;
    out!(
        "store {}  clock {}  schema {}",
        db.display(),
        clock.0,
        store.schema_version().unwrap_or(0)
    );
    out!("\ndocuments ({}):", docs.len());
    for d in &docs {
        out!(
            "  {:<32} {:>10} bytes  {:>8} ops  clock {}",
            d.doc.as_str(),
            sizes.get(d.doc.as_str()).copied().unwrap_or(0),
            d.version.total(),
            d.clock.0
        );
    }
    let records = store.records().map_err(|e| e.to_string())?;
    out!("\nremotes:");
    for r in &records {
        if let StateRecord::Cursor { peer, cursor } = r {
            out!(
                "  {:<32} pulled up to {}  pushed up to {}",
                peer.as_str(),
                cursor.pulled.0,
                cursor.pushed.0
            );
        }
    }
    out!("\nlisteners:");
    for r in &records {
        if let StateRecord::Listener(l) = r {
            out!(
                "  {} owned by {}  floor {}  {} documents acknowledged",
                l.id.0,
                l.owner,
                l.floor.0,
                l.acked.len()
            );
        }
    }
    let tombstones: Vec<String> = records
        .iter()
        .filter_map(|r| match r {
            StateRecord::Tombstone(d) => Some(d.to_string()),
            _ => None,
        })
        .collect();
    if !tombstones.is_empty() {
        out!("\ndeleted: {}", tombstones.join(", "));
    }
    Ok(())
}

/// Bytes stored per document, read from the database (WAL lets readers in).
fn sizes(db: &Path) -> std::collections::BTreeMap<String, i64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return out;
    };
    let sql = "SELECT d.doc, COALESCE(length(d.snapshot), 0) + COALESCE((SELECT sum(length(c.data)) FROM changes c WHERE c.doc = d.doc), 0) FROM docs d";
    if let Ok(mut stmt) = conn.prepare(sql) {
        if let Ok(rows) = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        {
            out.extend(rows.flatten());
        }
    }
    out
}
