//! Client commands: `sync` (a headless replica) and `doc get|put|watch`.

use docweave_adapters::transport::{
    http_link_to, tcp_connect, ws_connect, HttpOptions, HttpTarget, TlsClient, WsOptions,
};
use docweave_adapters::SqliteStore;
use docweave_core::{Event, Limits};
use docweave_shell::{Dialer, Repo};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A remote name the core accepts, and a dialer for the URL (presenting
/// `token` to HTTP as the session's credentials).
/// What `wss://` dials trust (set once at start from `--ca-file`).
static TRUST: std::sync::OnceLock<TlsClient> = std::sync::OnceLock::new();

/// Sets what `wss://` and `https://` dials trust: the web's roots, and
/// `ca_file`'s CAs.
pub fn trust(ca_file: Option<&std::path::Path>) -> Result<(), String> {
    let client = TlsClient::new(ca_file)?;
    // Set once, at start; a second call (none is made) would keep the first.
    let _ = TRUST.set(client);
    Ok(())
}

/// Where requests to an `http://` or `https://` URL go, or `None` for
/// another kind of URL.
pub fn http_target(url: &str) -> Result<Option<HttpTarget>, String> {
    let url = url.trim_end_matches('/');
    if let Some(addr) = url.strip_prefix("http://") {
        return Ok(Some(HttpTarget::plain(addr)));
    }
    let Some(addr) = url.strip_prefix("https://") else {
        return Ok(None);
    };
    let trust = match TRUST.get() {
        Some(t) => t.clone(),
        None => TlsClient::new(None)?,
    };
    Ok(Some(HttpTarget::tls(addr, trust)))
}

pub fn dialer_for(url: &str, token: Option<&str>) -> Result<(String, Dialer), String> {
    let name: String = url
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-').to_string();
    let url = url.trim_end_matches('/').to_string();
    let websocket = url
        .strip_prefix("ws://")
        .map(|a| format!("ws://{a}/"))
        .or_else(|| url.strip_prefix("wss://").map(|a| format!("wss://{a}/")));
    let dialer: Dialer = if let Some(u) = websocket {
        let options = WsOptions {
            trust: TRUST.get().cloned(),
            ..WsOptions::default()
        };
        Arc::new(move |_| {
            let (u, o) = (u.clone(), options.clone());
            Box::pin(async move { ws_connect(&u, o).await })
        })
    } else if let Some(target) = http_target(&url)? {
        let token = token.map(str::to_string);
        // Each connection opens a fresh session (the server names it).
        Arc::new(move |_| {
            let (target, token) = (target.clone(), token.clone());
            Box::pin(async move {
                Ok(http_link_to(
                    target,
                    token.as_deref(),
                    HttpOptions::default(),
                ))
            })
        })
    } else if let Some(addr) = url.strip_prefix("tcp://") {
        let addr = addr.to_string();
        Arc::new(move |_| {
            let addr = addr.clone();
            Box::pin(async move {
                tcp_connect(&addr, Limits::default())
                    .await
                    .map_err(|e| e.to_string())
            })
        })
    } else {
        return Err(format!(
            "{url:?} is not a ws://, wss://, http://, https:// or tcp:// address"
        ));
    };
    Ok((name, dialer))
}

/// A URL fit to print: its password (`user:password@`) replaced by `***`.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

fn is_url(target: &str) -> bool {
    ["ws://", "wss://", "http://", "https://", "tcp://"]
        .iter()
        .any(|p| target.starts_with(p))
}

/// The peer id of a command given no `--as`: a signed token's `sub` (the
/// server takes no other id with it), else `cli-<pid>`.
fn default_peer(token: Option<&str>) -> String {
    token
        .filter(|t| crate::jwt::looks_like_jwt(t))
        .and_then(crate::jwt::subject)
        .unwrap_or_else(|| unique("cli"))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

/// A Repo for a command: connected to a server URL (keeping nothing on
/// disk), or working on a local data directory.
fn repo_for(target: &str, auth: &Credentials) -> Result<Repo, String> {
    repo_writing_as(target, auth, None)
}

/// [`repo_for`], its local edits made as `actor` when given.
fn repo_writing_as(target: &str, auth: &Credentials, actor: Option<u64>) -> Result<Repo, String> {
    let token = auth.token.as_deref();
    if is_url(target) {
        let id = auth.peer.clone().unwrap_or_else(|| default_peer(token));
        let mut builder = Repo::builder(&id);
        if let Some(actor) = actor {
            builder = builder.actor(actor);
        }
        let repo = builder.build().map_err(|e| e.to_string())?;
        let mut urls = vec![target.to_string()];
        urls.extend(auth.servers.iter().filter(|u| *u != target).cloned());
        connect(&repo, &urls, token)?;
        Ok(repo)
    } else {
        let db = PathBuf::from(target).join("docweave.db");
        let store =
            SqliteStore::open(&db).map_err(|e| format!("cannot open {}: {e}", db.display()))?;
        Repo::builder(&unique("local"))
            .store(store)
            .build()
            .map_err(|e| e.to_string())
    }
}

/// Connects `repo` to the server at `urls[0]`, failing over to the others;
/// returns the remote's name.
fn connect(repo: &Repo, urls: &[String], token: Option<&str>) -> Result<String, String> {
    let mut dialers = Vec::with_capacity(urls.len());
    let mut first = None;
    for url in urls {
        let (name, dialer) = dialer_for(url, token)?;
        first.get_or_insert(name);
        dialers.push(dialer);
    }
    let name = first.ok_or("no server given")?;
    repo.connect_any(&name, token, dialers)
        .map_err(|e| e.to_string())?;
    Ok(name)
}

/// The next event before `deadline` (`None` once it passed).
async fn next_event(
    events: &async_channel::Receiver<Event>,
    deadline: std::time::Instant,
) -> Option<Event> {
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    if left.is_zero() {
        return None;
    }
    futures_lite::future::or(async { events.recv().await.ok() }, async {
        smol::Timer::after(left).await;
        None
    })
    .await
}

/// Errors that end a wait at once: the server will not serve us.
fn fatal(event: &Event) -> Option<String> {
    match event {
        Event::Error { reason, .. }
            if reason.contains("refused the handshake")
                || reason.contains("token")
                || reason.contains("TooLarge") =>
        {
            Some(reason.clone())
        }
        _ => None,
    }
}

/// Waits until the server answered for `doc` (or said it has none); returns
/// the server's peer id. Errors (a refused token) end the wait with the reason.
async fn pulled(
    events: &async_channel::Receiver<Event>,
    doc: &str,
    within: Duration,
) -> Result<Option<String>, String> {
    Ok(answered(events, doc, within).await?.map(|(peer, _)| peer))
}

/// Like [`pulled`], with whether the server has the document.
async fn answered(
    events: &async_channel::Receiver<Event>,
    doc: &str,
    within: Duration,
) -> Result<Option<(String, bool)>, String> {
    let deadline = std::time::Instant::now() + within;
    while let Some(event) = next_event(events, deadline).await {
        if let Some(reason) = fatal(&event) {
            return Err(reason);
        }
        if let Event::PeerSynced {
            peer,
            doc: d,
            state,
        } = event
        {
            if d.as_str() == doc {
                let has = !matches!(state, docweave_core::SyncState::Absent);
                return Ok(Some((peer.to_string(), has)));
            }
        }
    }
    Ok(None)
}

/// How a `doc` command ended, when it did not fail.
pub enum Done {
    /// It did what it was asked.
    Ok,
    /// `doc get`: the server (or data directory) has no such document.
    Missing(String),
}

/// `doc get`: prints the document, or says it does not exist.
async fn get(target: &str, doc: &str, timeout: u64, auth: &Credentials) -> Result<Done, String> {
    let wait = Duration::from_secs(timeout);
    if let Some(server) = http_target(target)? {
        // One request to the document API: no replica, no sync session.
        let asked = get_over_http(&server, target, doc, auth);
        let late = async {
            smol::Timer::after(wait).await;
            Err(format!(
                "{target} did not answer for {doc} within {timeout} s"
            ))
        };
        return futures_lite::future::or(asked, late).await;
    }
    if !is_url(target) {
        // A data directory: read its store, which is what holds the document.
        let db = PathBuf::from(target).join("docweave.db");
        let mut store =
            SqliteStore::open(&db).map_err(|e| format!("cannot open {}: {e}", db.display()))?;
        let id = docweave_core::DocId::parse(doc).map_err(|e| e.to_string())?;
        if docweave_adapters::Store::load(&mut store, &id)
            .map_err(|e| e.to_string())?
            .is_none()
        {
            return Ok(Done::Missing(format!("{target} holds no document {doc}")));
        }
    }
    let repo = repo_for(target, auth)?;
    let events = repo.events().await.map_err(|e| e.to_string())?;
    let d = repo.open(doc).await.map_err(|e| e.to_string())?;
    if is_url(target) {
        match answered(&events, doc, wait).await? {
            None => {
                return Err(format!(
                    "{target} did not answer for {doc} within {timeout} s"
                ))
            }
            Some((server, false)) => {
                repo.close().await;
                return Ok(Done::Missing(format!(
                    "{server} at {target} has no document {doc}"
                )));
            }
            Some(_) => {}
        }
    }
    out!("{}", json(&d));
    repo.close().await;
    Ok(Done::Ok)
}

/// `doc get` of an `http://` or `https://` server: `GET /docs/ID`, as
/// the identity the credentials name.
async fn get_over_http(
    server: &HttpTarget,
    target: &str,
    doc: &str,
    auth: &Credentials,
) -> Result<Done, String> {
    let path = format!(
        "/docs/{}",
        percent_encoding::utf8_percent_encode(doc, percent_encoding::NON_ALPHANUMERIC)
    );
    let bearer = auth.token.as_ref().map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    if let Some(peer) = &auth.peer {
        headers.push(("x-docweave-peer", peer.as_str()));
    }
    let (status, body) =
        docweave_adapters::transport::request_to("GET", server, &path, &headers, Vec::new())
            .await
            .map_err(|e| format!("cannot reach {target}: {e}"))?;
    match status {
        200 => {
            out!("{}", String::from_utf8_lossy(&body));
            Ok(Done::Ok)
        }
        404 => Ok(Done::Missing(format!("{target} has no document {doc}"))),
        _ => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            Err(format!(
                "{target} answered {status} {}: {}",
                v["code"].as_str().unwrap_or("?"),
                v["message"].as_str().unwrap_or("")
            ))
        }
    }
}

/// Waits until the server welcomed us; returns its peer id. A refused
/// handshake ends the wait with the reason.
async fn connected(
    repo: &Repo,
    events: &async_channel::Receiver<Event>,
    within: Duration,
) -> Result<Option<String>, String> {
    // Connected before we listened?
    if let Ok(s) = repo.summary().await {
        if let Some((peer, _, _)) = s.peers.iter().find(|(_, up, _)| *up) {
            return Ok(Some(peer.to_string()));
        }
    }
    let deadline = std::time::Instant::now() + within;
    while let Some(event) = next_event(events, deadline).await {
        if let Some(reason) = fatal(&event) {
            return Err(reason);
        }
        if let Event::PeerConnected { peer } = event {
            return Ok(Some(peer.to_string()));
        }
    }
    Ok(None)
}

/// Who a `doc` command speaks as to a server.
#[derive(clap::Args)]
pub struct Credentials {
    /// Token to present to the server.
    #[arg(long, env = "DOCWEAVE_TOKEN")]
    token: Option<String>,
    /// The peer id to connect as (one the token grants); default: a signed
    /// token's `sub`, else `cli-<pid>`.
    #[arg(long = "as", env = "DOCWEAVE_PEER")]
    peer: Option<String>,
    /// Another server sharing the first one's store, to go on with when
    /// the first goes away. Repeatable.
    #[arg(long = "server")]
    servers: Vec<String>,
}

impl Credentials {
    /// The token to present, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The peer id asked for, if any.
    pub fn peer(&self) -> Option<&str> {
        self.peer.as_deref()
    }
}

/// `docweave doc ...`
#[derive(clap::Subcommand)]
pub enum DocCommand {
    /// Print a document as JSON.
    #[command(
        after_help = "Exit status: 0 printed; 1 failed (the reason is on stderr); \
3 the server or data directory has no such document (said on stderr, nothing printed)."
    )]
    Get {
        /// A server (ws://host:port, http://host:port) or a data directory.
        target: String,
        /// The document id.
        doc: String,
        /// Seconds to wait for the server (large documents take longer).
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// The state at this version of its history instead (`COUNTER@PEER,...`,
        /// as `doc history` prints it; http:// and https:// servers only).
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        auth: Credentials,
    },
    /// Who changed the document and when, newest first, as the server
    /// vouches for it (http:// and https:// servers).
    History {
        /// The server (http://host:port).
        target: String,
        /// The document id.
        doc: String,
        /// Most entries to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One entry for consecutive changes of one author less than this
        /// many milliseconds apart (0: every change).
        #[arg(long, default_value_t = 0)]
        group_ms: u64,
        /// Print each entry as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        auth: Credentials,
    },
    /// What changed between two versions of the document, as JSON
    /// (http:// and https:// servers).
    Diff {
        /// The server (http://host:port).
        target: String,
        /// The document id.
        doc: String,
        /// The version to start from (`COUNTER@PEER,...`; "" for the empty document).
        from: String,
        /// The version to end at (default: now).
        to: Option<String>,
        #[command(flatten)]
        auth: Credentials,
    },
    /// Bring the document back to a version, as a new change of yours that
    /// every client receives (http:// and https:// servers; needs write access).
    Restore {
        /// The server (http://host:port).
        target: String,
        /// The document id.
        doc: String,
        /// The version to bring it back to (`COUNTER@PEER,...`).
        version: String,
        #[command(flatten)]
        auth: Credentials,
    },
    /// Set a key of the document's "root" map, or append to its "text".
    Put {
        /// A server (ws://host:port, http://host:port) or a data directory.
        target: String,
        /// The document id.
        doc: String,
        /// The key to set (omit with --text).
        key: Option<String>,
        /// The value (a string).
        value: Option<String>,
        /// Append this to the document's text instead.
        #[arg(long)]
        text: Option<String>,
        /// Append the contents of this file to the document's text.
        #[arg(long, conflicts_with = "text")]
        text_file: Option<std::path::PathBuf>,
        /// Seconds to wait for the server (large documents take longer).
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        #[command(flatten)]
        auth: Credentials,
    },
    /// Delete a document (on the server, or in a data directory).
    Delete {
        /// A server (ws://host:port, http://host:port) or a data directory.
        target: String,
        /// The document id.
        doc: String,
        #[command(flatten)]
        auth: Credentials,
    },
    /// List the documents a server holds that you may read, with their sizes.
    List {
        /// A server (ws://host:port, http://host:port) or a data directory.
        target: String,
        #[command(flatten)]
        auth: Credentials,
    },
    /// Print the document, then again each time it changes.
    Watch {
        /// A server (ws://host:port, http://host:port) or a data directory.
        target: String,
        /// The document id.
        doc: String,
        #[command(flatten)]
        auth: Credentials,
    },
}

fn json(doc: &loro::LoroDoc) -> String {
    serde_json::to_string(&doc.get_deep_value()).unwrap_or_default()
}

pub fn doc(cmd: DocCommand) -> Result<Done, String> {
    smol::block_on(async {
        match cmd {
            DocCommand::Get {
                target,
                doc,
                at: Some(at),
                auth,
                ..
            } => crate::doc_past::get_at(&target, &doc, &at, &auth).await,
            DocCommand::Get {
                target,
                doc,
                timeout,
                auth,
                ..
            } => get(&target, &doc, timeout, &auth).await,
            DocCommand::History {
                target,
                doc,
                limit,
                group_ms,
                json,
                auth,
            } => crate::doc_past::history(&target, &doc, limit, group_ms, json, &auth).await,
            DocCommand::Diff {
                target,
                doc,
                from,
                to,
                auth,
            } => crate::doc_past::diff(&target, &doc, &from, to.as_deref(), &auth).await,
            DocCommand::Restore {
                target,
                doc,
                version,
                auth,
            } => crate::doc_past::restore(&target, &doc, &version, &auth).await,
            DocCommand::Put {
                target,
                doc,
                key,
                value,
                text,
                text_file,
                timeout,
                auth,
            } => {
                let text = text_to_append(text, text_file)?;
                let edit = Edit { key, value, text };
                put(&target, &doc, edit, timeout, &auth).await
            }
            DocCommand::Delete { target, doc, auth } => delete(&target, &doc, &auth).await,
            DocCommand::List { target, auth } => list(&target, &auth).await,
            DocCommand::Watch { target, doc, auth } => watch(&target, &doc, &auth).await,
        }
    })
}

/// The text `doc put` appends: the contents of `--text-file`, else `--text`.
fn text_to_append(
    text: Option<String>,
    text_file: Option<std::path::PathBuf>,
) -> Result<Option<String>, String> {
    Ok(match text_file {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        ),
        None => text,
    })
}

/// What `doc put` writes: `text` appended to the document's "text", or
/// `key` set to `value` in its "root" map.
struct Edit {
    /// The key to set.
    key: Option<String>,
    /// The value to set it to.
    value: Option<String>,
    /// The text to append instead.
    text: Option<String>,
}

impl Edit {
    /// Makes the edit in `d` (the caller commits it).
    fn apply(self, d: &loro::LoroDoc) -> Result<(), String> {
        match (self.text, self.key, self.value) {
            (Some(t), _, _) => {
                let body = d.get_text("text");
                body.insert(body.len_unicode(), &t)
                    .map_err(|e| e.to_string())?;
            }
            (None, Some(k), Some(v)) => {
                d.get_map("root").insert(&k, v).map_err(|e| e.to_string())?;
            }
            _ => return Err("give KEY VALUE, --text TEXT or --text-file PATH".into()),
        }
        Ok(())
    }
}

/// The lease of the Loro peer `doc put` writes as on a server (none for a
/// data directory).
fn writer_lease(
    target: &str,
    doc: &str,
    auth: &Credentials,
) -> Option<crate::writer_lease::WriterLease> {
    // One Loro peer per machine, server, document and user.
    if is_url(target) {
        let user = match (&auth.peer, &auth.token) {
            (Some(peer), _) => format!("as {peer}"),
            // A signed token is refreshed often; its holder is its `sub`.
            (None, Some(token)) if crate::jwt::looks_like_jwt(token) => {
                format!("as {}", default_peer(Some(token)))
            }
            (None, Some(token)) => format!("token {token}"),
            (None, None) => "anonymous".to_string(),
        };
        crate::writer_lease::acquire(&without_password(target), doc, &user)
    } else {
        None
    }
}

/// `doc put`: makes the edit and, on a server, waits until the server keeps
/// it; then prints the document.
async fn put(
    target: &str,
    doc: &str,
    edit: Edit,
    timeout: u64,
    auth: &Credentials,
) -> Result<Done, String> {
    let wait = Duration::from_secs(timeout);
    let lease = writer_lease(target, doc, auth);
    let repo = repo_writing_as(target, auth, lease.as_ref().map(|l| l.actor))?;
    let events = repo.events().await.map_err(|e| e.to_string())?;
    let d = repo.open(doc).await.map_err(|e| e.to_string())?;
    let server = if is_url(target) {
        pulled(&events, doc, wait).await?
    } else {
        None
    };
    if is_url(target) && server.is_none() {
        return Err(format!(
            "{target} did not answer for {doc} within {timeout} s"
        ));
    }
    if let Some(server) = &server {
        let status = repo.status(doc, server).await.map_err(|e| e.to_string())?;
        if status == docweave_shell::SyncStatus::Deleted {
            return Err(format!(
                "{doc} was deleted on {server}; nothing was written"
            ));
        }
    }
    edit.apply(&d)?;
    d.commit();
    if let Some(server) = server {
        kept(&repo, &events, doc, &server, timeout, lease.as_ref()).await?;
    }
    out!("{}", json(&d));
    repo.close().await;
    Ok(Done::Ok)
}

/// Waits until `server` keeps the change just made to `doc` (then the
/// writer lease is clean), or refuses it, or `timeout` seconds pass.
async fn kept(
    repo: &Repo,
    events: &async_channel::Receiver<Event>,
    doc: &str,
    server: &str,
    timeout: u64,
    lease: Option<&crate::writer_lease::WriterLease>,
) -> Result<(), String> {
    let wait = Duration::from_secs(timeout);
    // A server that refuses the change says so at once:
    // no need to wait out the timeout.
    let refused = async {
        let deadline = std::time::Instant::now() + wait;
        while let Some(event) = next_event(events, deadline).await {
            if let Event::Error {
                doc: Some(d),
                reason,
            } = event
            {
                if d.as_str() == doc && reason.contains("refused") {
                    return Err(format!("the change was not kept: {reason}"));
                }
            }
        }
        std::future::pending().await
    };
    let synced = async {
        repo.wait_for_sync(doc, server, wait)
            .await
            .map_err(|e| e.to_string())
    };
    let outcome = futures_lite::future::or(synced, refused).await?;
    match outcome {
        docweave_shell::SyncOutcome::Synced => {
            if let Some(lease) = lease {
                lease.clean();
            }
        }
        docweave_shell::SyncOutcome::Deleted => {
            return Err(format!(
                "{doc} was deleted on {server}; the change was not kept"
            ))
        }
        _ => {
            return Err(format!(
                "{server} did not acknowledge the change within {timeout} s"
            ))
        }
    }
    Ok(())
}

/// `doc delete`: deletes the document in a data directory, or asks the
/// server to.
async fn delete(target: &str, doc: &str, auth: &Credentials) -> Result<Done, String> {
    let repo = repo_for(target, auth)?;
    if !is_url(target) {
        repo.delete(doc).map_err(|e| e.to_string())?;
        repo.close().await;
        out!("deleted {doc}");
        return Ok(Done::Ok);
    }
    let events = repo.events().await.map_err(|e| e.to_string())?;
    let server = connected(&repo, &events, Duration::from_secs(10))
        .await?
        .ok_or_else(|| format!("{target} did not answer within 10 s"))?;
    let answer = repo
        .delete_on(doc, &server, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    repo.close().await;
    match answer {
        Some(true) => {
            out!("deleted {doc} on {server}");
            Ok(Done::Ok)
        }
        Some(false) => Err(format!("{server} refused to delete {doc}")),
        None => Err(format!("{server} did not answer the deletion within 10 s")),
    }
}

/// `doc list`: the documents the server lists (or the data directory
/// holds), with their operations and clocks.
async fn list(target: &str, auth: &Credentials) -> Result<Done, String> {
    let repo = repo_for(target, auth)?;
    let docs: Vec<(String, u64, u64)> = if is_url(target) {
        let events = repo.events().await.map_err(|e| e.to_string())?;
        let server = connected(&repo, &events, Duration::from_secs(10))
            .await?
            .ok_or_else(|| format!("{target} did not answer within 10 s"))?;
        let listed = repo
            .list(&server, Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{server} did not list its documents"))?;
        listed
            .into_iter()
            .map(|d| (d.doc.to_string(), d.version.total(), d.clock.0))
            .collect()
    } else {
        let s = repo.summary().await.map_err(|e| e.to_string())?;
        s.docs
            .into_iter()
            .map(|(d, v, c)| (d.to_string(), v.total(), c.0))
            .collect()
    };
    repo.close().await;
    out!("{:<40} {:>12} {:>10}", "document", "operations", "clock");
    for (doc, ops, clock) in docs {
        out!("{doc:<40} {ops:>12} {clock:>10}");
    }
    Ok(Done::Ok)
}

/// `doc watch`: prints the document, then again each time it changes,
/// until Ctrl-C.
async fn watch(target: &str, doc: &str, auth: &Credentials) -> Result<Done, String> {
    let repo = repo_for(target, auth)?;
    let events = repo.events().await.map_err(|e| e.to_string())?;
    let d = repo.open(doc).await.map_err(|e| e.to_string())?;
    out!("{}", json(&d));
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let _ = ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    });
    let mut last = json(&d);
    loop {
        let next = futures_lite::future::or(async { events.recv().await.ok().map(Some) }, async {
            // A dropped handler is a stop too.
            let _ = stop_rx.recv().await;
            None
        })
        .await;
        match next {
            None | Some(None) => break,
            Some(Some(Event::Error { reason, .. })) if reason.contains("refused the handshake") => {
                return Err(reason)
            }
            Some(Some(_)) => {
                let now = json(&d);
                if now != last {
                    out!("{now}");
                    last = now;
                }
            }
        }
    }
    repo.close().await;
    Ok(Done::Ok)
}

/// Options of `docweave sync`.
#[derive(clap::Args)]
pub struct SyncArgs {
    /// The server (ws://host:port, or http://host:port with --http).
    url: String,
    /// More servers sharing the first one's store: when one goes away,
    /// the replica syncs through the next. Repeatable.
    #[arg(long = "server")]
    servers: Vec<String>,
    /// Where the local replica lives.
    #[arg(long)]
    dir: PathBuf,
    /// Token to present.
    #[arg(long, env = "DOCWEAVE_TOKEN", conflicts_with = "token_command")]
    token: Option<String>,
    /// A command that prints a fresh token (e.g. one that asks your app's
    /// backend); run at start and again before each token expires, the new
    /// token replacing the old on the live connection.
    #[arg(long, env = "DOCWEAVE_TOKEN_COMMAND")]
    token_command: Option<String>,
    /// This replica's peer id (default: a signed token's `sub`, else `replica`).
    #[arg(long)]
    name: Option<String>,
}

pub fn sync(a: SyncArgs) -> Result<(), String> {
    std::fs::create_dir_all(&a.dir)
        .map_err(|e| format!("cannot create {}: {e}", a.dir.display()))?;
    let store = SqliteStore::open(a.dir.join("docweave.db")).map_err(|e| e.to_string())?;
    let token = match &a.token_command {
        Some(command) => Some(crate::token_command::fetch(command)?),
        None => a.token.clone(),
    };
    let name = a.name.clone().unwrap_or_else(|| {
        token
            .as_deref()
            .filter(|t| crate::jwt::looks_like_jwt(t))
            .and_then(crate::jwt::subject)
            .unwrap_or_else(|| "replica".to_string())
    });
    let repo = Repo::builder(&name)
        .store(store)
        .build()
        .map_err(|e| e.to_string())?;
    let mut urls = vec![a.url.clone()];
    urls.extend(a.servers.iter().filter(|u| **u != a.url).cloned());
    let shown = urls.join(", ");
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    })
    .map_err(|e| e.to_string())?;
    smol::block_on(async {
        let events = repo.events().await.map_err(|e| e.to_string())?;
        let remote = connect(&repo, &urls, token.as_deref())?;
        if let (Some(command), Some(first)) = (a.token_command.clone(), token.as_deref()) {
            repo.keep_token_fresh(&remote, first, move || {
                crate::token_command::fetch(&command)
            })
            .map_err(|e| e.to_string())?;
        }
        show_progress(&repo, &events, &stop_rx, &shown).await?;
        repo.close().await;
        Ok(())
    })
}

/// Shows the replica's progress with `shown` (the servers): a spinner
/// until the initial sync is done, then a status line after each change;
/// until Ctrl-C, or a server refuses the handshake.
async fn show_progress(
    repo: &Repo,
    events: &async_channel::Receiver<Event>,
    stop_rx: &async_channel::Receiver<()>,
    shown: &str,
) -> Result<(), String> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(format!("initial sync with {}", shown));
    let mut changed = 0u64;
    let mut quiet_since = std::time::Instant::now();
    let mut initial = true;
    loop {
        let next = futures_lite::future::or(
            async { Some(events.recv().await.ok()) },
            futures_lite::future::or(
                async {
                    smol::Timer::after(Duration::from_millis(250)).await;
                    Some(None)
                },
                async {
                    // A dropped handler is a stop too.
                    let _ = stop_rx.recv().await;
                    None
                },
            ),
        )
        .await;
        match next {
            None => break,
            Some(Some(Event::DocChanged { .. })) => {
                changed += 1;
                quiet_since = std::time::Instant::now();
                bar.set_message(format!("initial sync with {}: {changed} changes", shown));
                bar.tick();
            }
            Some(Some(Event::Error { reason, .. })) if reason.contains("refused the handshake") => {
                bar.finish_and_clear();
                return Err(reason);
            }
            _ => {}
        }
        if initial && quiet_since.elapsed() > Duration::from_secs(1) {
            initial = false;
            let s = repo.summary().await.map_err(|e| e.to_string())?;
            bar.finish_and_clear();
            out!(
                "initial sync done: {} documents, clock {}",
                s.docs.len(),
                s.clock.0
            );
        }
        if !initial && quiet_since.elapsed() < Duration::from_millis(300) {
            let s = repo.summary().await.map_err(|e| e.to_string())?;
            eprint!(
                "\rin sync with {}: {} documents, clock {}   ",
                shown,
                s.docs.len(),
                s.clock.0
            );
        }
    }
    eprintln!();
    Ok(())
}
