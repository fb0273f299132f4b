//! The plain HTML status page served at `GET /` (or `/status`).
//!
//! On a server with tokens it is shown only to a request that presents one
//! (`Authorization: Bearer TOKEN`, a static or a signed one), and lists
//! only the documents that token's peer may read. Its figures come from what the node keeps in
//! memory; nothing is read from the store to draw it.

use crate::serve_auth::ServeAuth;
use docweave_core::{Pattern, PeerId};
use docweave_shell::Checked;
use docweave_shell::Repo;

/// Most documents the page lists (the count says how many there are).
const LISTED: usize = 200;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Whose view the page shows.
enum Viewer {
    /// Everything: an open server, or a token that grants any peer id.
    All,
    /// What this peer, presenting this token, may read.
    Peer(PeerId, String),
}

/// The viewer a request's bearer token makes, or `None` (refused).
fn viewer(auth: &ServeAuth, bearer: Option<&str>) -> Option<Viewer> {
    if auth.tokens.is_empty() && auth.grants.is_empty() && auth.jwt.is_none() {
        return Some(Viewer::All);
    }
    let token = bearer?;
    match auth.signed(token) {
        Some(Checked::Valid { credential, .. }) => {
            return Some(Viewer::Peer(credential.peer, token.to_string()))
        }
        Some(Checked::Refused(_)) => return None,
        None => {}
    }
    if auth.tokens.iter().any(|t| t == token) {
        return Some(Viewer::All);
    }
    let grant = auth.grants.iter().find(|g| g.token == token)?;
    let peer = match &grant.peers {
        Pattern::Exact(p) | Pattern::Prefix(p) => p.clone(),
        Pattern::Any => return Some(Viewer::All),
    };
    PeerId::parse(&peer)
        .ok()
        .map(|p| Viewer::Peer(p, token.to_string()))
}

/// The page for a request presenting `bearer`; `None` when it may not see it.
pub async fn render(repo: &Repo, auth: &ServeAuth, bearer: Option<&str>) -> Option<String> {
    let viewer = viewer(auth, bearer)?;
    let Ok(s) = repo.summary().await else {
        return Some("<p>the node is stopping</p>".into());
    };
    let readable: Vec<_> = s
        .docs
        .iter()
        .filter(|(doc, _, _)| match &viewer {
            Viewer::All => true,
            Viewer::Peer(p, token) => auth.access(p, Some(token), doc).read,
        })
        .collect();
    let mut html = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>docweave {peer}</title></head><body>\
         <h1>docweave: {peer}</h1><p>clock {clock} &middot; {n} documents &middot; {resident} in memory</p>",
        peer = escape(s.peer.as_str()),
        clock = s.clock.0,
        n = readable.len(),
        resident = s.resident,
    );
    if let Some(why) = repo.health().stopped() {
        html.push_str(&format!("<p><b>the node stopped: {}</b></p>", escape(&why)));
    }
    html.push_str("<h2>Documents</h2><table border=1 cellpadding=4><tr><th>document</th><th>operations</th><th>clock</th></tr>");
    for (doc, version, clock) in readable.iter().take(LISTED) {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(doc.as_str()),
            version.total(),
            clock.0
        ));
    }
    html.push_str("</table>");
    if readable.len() > LISTED {
        html.push_str(&format!("<p>and {} more</p>", readable.len() - LISTED));
    }
    // Peers are the operators' business.
    if matches!(viewer, Viewer::All) {
        html.push_str("<h2>Peers</h2><table border=1 cellpadding=4><tr><th>peer</th><th>connected</th><th>pulled up to</th><th>pushed up to</th></tr>");
        for (peer, connected, cursor) in s.peers.iter().take(LISTED) {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(peer.as_str()),
                if *connected { "yes" } else { "no" },
                cursor.pulled.0,
                cursor.pushed.0
            ));
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>");
    Some(html)
}
