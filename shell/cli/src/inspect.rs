//! `docweave inspect`: what a data directory holds, without running a node,
//! or what a running server holds, through its admin API.

use docweave_adapters::transport::HttpTarget;
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

/// Asks a running server's admin API; the answer's JSON, or its error.
fn admin_get(server: &HttpTarget, path: &str, token: &str) -> Result<serde_json::Value, String> {
    let addr = &server.addr;
    let bearer = format!("Bearer {token}");
    let (status, body) = smol::block_on(docweave_adapters::transport::request_to(
        "GET",
        server,
        path,
        &[("authorization", bearer.as_str())],
        Vec::new(),
    ))
    .map_err(|e| format!("cannot reach {addr}: {e}"))?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("{addr}{path} answered {status} with no JSON: {e}"))?;
    if status != 200 {
        return Err(format!(
            "{addr}{path}: {status} {}: {}",
            v["code"].as_str().unwrap_or("?"),
            v["message"].as_str().unwrap_or("")
        ));
    }
    Ok(v)
}

/// What a running server holds: its documents (every page) with their
/// sizes, and its connections.
pub fn server(server: &HttpTarget, token: Option<&str>) -> Result<(), String> {
    let addr = &server.addr;
    let token = token.ok_or("inspecting a server takes its admin token (--admin-token)")?;
    let mut docs = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!(
                "/admin/docs?limit=1000&after={}",
                percent_encoding::utf8_percent_encode(a, percent_encoding::NON_ALPHANUMERIC)
            ),
            None => "/admin/docs?limit=1000".to_string(),
        };
        let page = admin_get(server, &path, token)?;
        docs.extend(page["docs"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    out!("server {addr}");
    out!("\ndocuments ({}):", docs.len());
    for d in &docs {
        out!(
            "  {:<32} {:>10} bytes  {:>8} ops  clock {}",
            d["id"].as_str().unwrap_or("?"),
            d["stored_bytes"].as_u64().unwrap_or(0),
            d["operations"].as_u64().unwrap_or(0),
            d["last_change"].as_u64().unwrap_or(0)
        );
    }
    let connections = admin_get(server, "/admin/connections", token)?;
    let list = connections["connections"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    out!("\nconnections ({}):", list.len());
    for c in &list {
        out!(
            "  {:>6}  {:<32} {:<8} protocol {}",
            c["channel"].as_u64().unwrap_or(0),
            c["peer"].as_str().unwrap_or("(handshake)"),
            c["kind"].as_str().unwrap_or("-"),
            c["protocol"].as_u64().unwrap_or(0)
        );
    }
    Ok(())
}
