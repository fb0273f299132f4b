//! The plain HTML status page served at `GET /`.

use docweave_shell::Repo;
use std::path::Path;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Bytes stored per document, read from the database (WAL lets readers in).
pub fn sizes(db: &Path) -> std::collections::BTreeMap<String, i64> {
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

/// The page; sizes come from the SQLite file `db` when there is one.
pub async fn render(repo: &Repo, db: Option<&Path>) -> String {
    let Ok(s) = repo.summary().await else {
        return "<p>the node is stopping</p>".into();
    };
    let sizes = db.map(sizes).unwrap_or_default();
    let mut html = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>docweave {peer}</title></head><body>\
         <h1>docweave: {peer}</h1><p>clock {clock} &middot; {n} documents &middot; {resident} in memory</p>",
        peer = escape(s.peer.as_str()),
        clock = s.clock.0,
        n = s.docs.len(),
        resident = s.resident,
    );
    html.push_str("<h2>Documents</h2><table border=1 cellpadding=4><tr><th>document</th><th>bytes stored</th><th>operations</th><th>clock</th></tr>");
    for (doc, version, clock) in &s.docs {
        let bytes = sizes.get(doc.as_str()).copied().unwrap_or(0);
        html.push_str(&format!(
            "<tr><td>{}</td><td>{bytes}</td><td>{}</td><td>{}</td></tr>",
            escape(doc.as_str()),
            version.total(),
            clock.0
        ));
    }
    html.push_str("</table><h2>Peers</h2><table border=1 cellpadding=4><tr><th>peer</th><th>connected</th><th>pulled up to</th><th>pushed up to</th></tr>");
    for (peer, connected, cursor) in &s.peers {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(peer.as_str()),
            if *connected { "yes" } else { "no" },
            cursor.pulled.0,
            cursor.pushed.0
        ));
    }
    html.push_str("</table></body></html>");
    html
}
