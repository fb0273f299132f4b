//! The plain HTML status page served at `GET /` (or `/status`).
//!
//! On a server with tokens it is shown only to a request that presents one
//! (`Authorization: Bearer TOKEN`, a static or a signed one), and lists
//! only the documents that token's peer may read; the server's figures
//! (connections, documents, traffic, refusals, the store, each remote
//! server's lag) only to those who may see everything. Its figures come
//! from what the node keeps in memory and the metrics; nothing is read
//! from the store to draw it. It reloads itself every few seconds.

use crate::serve_auth::{ServeAuth, Statics};
use docweave_adapters::transport::StatusRequest;
use docweave_core::{Pattern, PeerId};
use docweave_shell::Checked;
use docweave_shell::Repo;
use std::collections::BTreeMap;

/// Most documents the page lists (the count says how many memory knows:
/// past `--idle-metadata`, the store holds more, which the admin API lists).
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
    let statics = auth
        .statics
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if statics == Statics::default() && auth.open() {
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
    if statics.tokens.iter().any(|t| t == token) {
        return Some(Viewer::All);
    }
    let grant = statics.grants.iter().find(|g| g.token == token)?;
    let peer = match &grant.peers {
        Pattern::Exact(p) | Pattern::Prefix(p) => p.clone(),
        Pattern::Any => return Some(Viewer::All),
    };
    PeerId::parse(&peer)
        .ok()
        .map(|p| Viewer::Peer(p, token.to_string()))
}

/// Seconds between the page's own reloads, unless `?refresh=N` says.
const REFRESH_S: u64 = 5;

/// One figure of the metrics (0 when it was never counted).
fn figure(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    samples.get(name).copied().unwrap_or(0.0)
}

/// The samples of a labelled family: (label value, figure), in order.
fn by_label<'a>(samples: &'a BTreeMap<String, f64>, family: &str) -> Vec<(&'a str, f64)> {
    let prefix = format!("{family}{{");
    samples
        .iter()
        .filter_map(|(k, v)| {
            let labels = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            let (_, value) = labels.split_once("=\"")?;
            Some((value, *v))
        })
        .collect()
}

/// A row of the server table.
fn row(html: &mut String, what: &str, value: &str) {
    html.push_str(&format!(
        "<tr><th scope=row>{}</th><td>{}</td></tr>",
        escape(what),
        escape(value)
    ));
}

/// The server's figures, for operators: connections, documents, traffic,
/// acknowledgements, refusals, the store.
fn server_table(repo: &Repo, samples: &BTreeMap<String, f64>) -> String {
    let mut html = String::from("<h2>Server</h2><table id=server border=1 cellpadding=4>");
    let health = repo.health();
    let store = match health.store_failing() {
        Some(why) => format!("failing: {why}"),
        None => "answering".into(),
    };
    row(&mut html, "store", &store);
    if let Some(why) = health.recording_stopped() {
        row(&mut html, "recording", &format!("stopped: {why}"));
    }
    let connections: Vec<String> = by_label(samples, "docweave_connections")
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    row(&mut html, "connections", &connections.join(", "));
    let n = |name: &str| figure(samples, name).to_string();
    row(&mut html, "peers connected", &n("docweave_peers_connected"));
    row(
        &mut html,
        "documents",
        &format!(
            "{} known, {} in memory, {} loading",
            figure(samples, "docweave_documents_known"),
            figure(samples, "docweave_documents_resident"),
            figure(samples, "docweave_documents_loading")
        ),
    );
    row(
        &mut html,
        "updates received",
        &n("docweave_messages_received_total{kind=\"update\"}"),
    );
    row(
        &mut html,
        "bytes in / out",
        &format!(
            "{} / {}",
            figure(samples, "docweave_received_bytes_total"),
            figure(samples, "docweave_sent_bytes_total")
        ),
    );
    let acks = figure(samples, "docweave_ack_latency_seconds_count");
    let mean = match acks {
        0.0 => "none yet".to_string(),
        _ => format!(
            "{:.1} ms mean over {acks}",
            figure(samples, "docweave_ack_latency_seconds_sum") * 1000.0 / acks
        ),
    };
    row(&mut html, "acknowledgement latency", &mean);
    row(
        &mut html,
        "in flight",
        &n("docweave_transmissions_in_flight"),
    );
    row(
        &mut html,
        "presence entries",
        &n("docweave_presence_entries"),
    );
    row(&mut html, "listeners", &n("docweave_listeners"));
    row(&mut html, "Loro rooms", &n("docweave_loro_rooms"));
    let refusals: Vec<String> = by_label(samples, "docweave_refusals_total")
        .iter()
        .filter(|(_, n)| *n > 0.0)
        .map(|(code, n)| format!("{code} {n}"))
        .collect();
    row(
        &mut html,
        "refusals",
        &match refusals.is_empty() {
            true => "none".to_string(),
            false => refusals.join(", "),
        },
    );
    row(
        &mut html,
        "store failures",
        &n("docweave_store_failures_total"),
    );
    html.push_str("</table>");
    html
}

/// Each webhook: where it goes, whether this server delivers it, what it
/// delivered, what waits, and its last failure.
fn webhooks_table(w: &crate::webhooks::Webhooks) -> String {
    use std::sync::atomic::Ordering;
    let mut html = String::from(
        "<h2>Webhooks</h2><table id=webhooks border=1 cellpadding=4><tr><th>hook</th><th>URL</th>\
         <th>delivered here</th><th>delivered</th><th>failed attempts</th><th>waiting</th><th>last failure</th></tr>",
    );
    for c in &w.hooks {
        let f = &c.figures;
        let last = f
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "none".into());
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&c.hook.name),
            escape(&c.hook.shown),
            if f.delivering.load(Ordering::Relaxed) { "yes" } else { "no (another server holds its lease)" },
            f.delivered.load(Ordering::Relaxed),
            f.failures.load(Ordering::Relaxed),
            f.pending.load(Ordering::Relaxed),
            escape(&last)
        ));
    }
    html.push_str("</table>");
    html
}

/// The page for a request; `None` when it may not see it. It reloads
/// itself every few seconds (`?refresh=N`, 1 to 3600; 0 never).
pub async fn render(
    repo: &Repo,
    auth: &ServeAuth,
    req: &StatusRequest,
    samples: &BTreeMap<String, f64>,
    webhooks: Option<&crate::webhooks::Webhooks>,
) -> Option<String> {
    let viewer = viewer(auth, req.bearer.as_deref())?;
    let Ok(s) = repo.summary().await else {
        return Some("<p>the node is stopping</p>".into());
    };
    let refresh = req
        .query
        .as_deref()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("refresh=")))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(REFRESH_S, |v| v.min(3600));
    let readable: Vec<_> = s
        .docs
        .iter()
        .filter(|(doc, _, _)| match &viewer {
            Viewer::All => true,
            Viewer::Peer(p, token) => auth.access(p, Some(token), doc).read,
        })
        .collect();
    let reload = match refresh {
        0 => String::new(),
        n => format!("<meta http-equiv=refresh content={n}>"),
    };
    let mut html = format!(
        "<!doctype html><html><head><meta charset=utf-8>{reload}<title>docweave {peer}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}th{{text-align:left}}td,th{{padding:2px 8px}}</style>\
         </head><body>\
         <h1>docweave: {peer}</h1><p>clock {clock} &middot; {n} documents known in memory &middot; {resident} loaded</p>",
        peer = escape(s.peer.as_str()),
        clock = s.clock.0,
        n = readable.len(),
        resident = s.resident,
    );
    if let Some(why) = repo.health().stopped() {
        html.push_str(&format!("<p><b>the node stopped: {}</b></p>", escape(&why)));
    }
    // The server's figures and its peers are the operators' business.
    if matches!(viewer, Viewer::All) {
        html.push_str(&server_table(repo, samples));
        if let Some(w) = webhooks {
            html.push_str(&webhooks_table(w));
        }
    }
    html.push_str("<h2>Documents</h2><table id=documents border=1 cellpadding=4><tr><th>document</th><th>operations</th><th>clock</th></tr>");
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
    if matches!(viewer, Viewer::All) {
        let lag: BTreeMap<&PeerId, u64> = s.lags.iter().map(|(p, l)| (p, *l)).collect();
        html.push_str("<h2>Peers</h2><table id=peers border=1 cellpadding=4><tr><th>peer</th><th>connected</th><th>pulled up to</th><th>pushed up to</th><th>lag</th></tr>");
        for (peer, connected, cursor) in s.peers.iter().take(LISTED) {
            let lag = lag
                .get(peer)
                .map_or("-".to_string(), |l| format!("{l} changes"));
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(peer.as_str()),
                if *connected { "yes" } else { "no" },
                cursor.pulled.0,
                cursor.pushed.0,
                escape(&lag)
            ));
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>");
    Some(html)
}
