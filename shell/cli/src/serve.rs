//! `docweave serve`: WebSocket and HTTP endpoints in front of one node on
//! an SQLite store (or a PostgreSQL database shared with other servers),
//! optionally syncing both ways with other servers.

use crate::client::dialer_for;
use crate::serve_auth::{ServeAuth, Statics};
use docweave_adapters::loro_protocol::{BridgeOptions, LoroFigures, PERSISTED_PRESENCE_NAMESPACE};
use docweave_adapters::transport::{
    serve_http_with_web, serve_tcp_tls, serve_ws_with_loro, ApiRoutes, ConnectionLimit, Connector,
    HealthCheck, HttpFigures, HttpOptions, HttpPages, InboundRate, MetricsPage, PeerOfToken,
    StatusPage, StatusRequest, TlsServer, WsOptions,
};
use docweave_adapters::{PostgresStore, SqliteStore, Store};
use docweave_core::{Namespace, PeerKind, Rules};
use docweave_shell::Repo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Options of `docweave serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// WebSocket address.
    #[arg(long, env = "DOCWEAVE_LISTEN", default_value = "127.0.0.1:7878")]
    listen: String,
    /// HTTP address: listeners, polling clients and the status page.
    #[arg(long, env = "DOCWEAVE_HTTP", default_value = "127.0.0.1:7879")]
    http: String,
    /// Where the SQLite store lives.
    #[arg(long, env = "DOCWEAVE_DATA", default_value = "./docweave-data")]
    data: PathBuf,
    /// Keep documents in this PostgreSQL database instead
    /// (`postgres://user:password@host:port/db`). Several servers on one
    /// database serve the same documents and see each other's changes.
    #[arg(long, env = "DOCWEAVE_STORE")]
    store: Option<String>,
    /// A token clients must present: `SECRET` lets them use any peer id (but
    /// this server's), `PEER=SECRET` only PEER (`team-*=SECRET`: ids starting
    /// with `team-`). Repeat; comma-separated in the variable. None: open to all.
    #[arg(long = "token", env = "DOCWEAVE_TOKENS", value_delimiter = ',')]
    tokens: Vec<String>,
    /// Permission rules as JSON (see `docweave_core::Rules`); read again
    /// when the file changes and on SIGHUP.
    #[arg(long, env = "DOCWEAVE_RULES")]
    rules: Option<PathBuf>,
    /// This server's peer id.
    #[arg(long, env = "DOCWEAVE_NAME", default_value = "server")]
    name: String,
    /// Another server to sync with both ways (ws://host:port or http://host:port). Repeatable.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// A server that dials this one to relay its own clients' changes
    /// (`edge-1`, or `edge-*` for ids starting with `edge-`): its changes
    /// are recorded as no one's here and not checked against who owns each
    /// Loro peer (the server they were written on did that), and it is
    /// never limited by the quotas (a replica refused would differ). Give
    /// relays tokens: on an open server anyone may claim the id. Repeatable.
    #[arg(long = "relay")]
    relays: Vec<String>,
    /// Each Loro peer id of a document belongs to the first identity that
    /// wrote as it: another identity's update carrying new changes of it is
    /// refused. Off by default: after a crash that lost a change this
    /// server had already passed on, the first client to send it back would
    /// own its writer (see the README's History).
    #[arg(long, env = "DOCWEAVE_BIND_WRITERS")]
    bind_writers: bool,
    /// The token this server presents to its --peer servers.
    #[arg(long, env = "DOCWEAVE_PEER_TOKEN")]
    peer_token: Option<String>,
    /// Most connections at once, on all endpoints together (WebSocket, TCP
    /// and HTTP share them; default: what the process's file-descriptor
    /// limit allows, raised to its hard limit).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Seed of the node's jitter (default: drawn from the OS at start-up).
    #[arg(long)]
    seed: Option<u64>,
    /// Milliseconds the state of a client that left is kept for its return.
    #[arg(long, default_value_t = 60_000)]
    peer_linger_ms: u64,
    /// On SIGTERM or Ctrl-C, seconds to drain before stopping: no new
    /// connections, clients told to go elsewhere (protocol 4 `going-away`,
    /// Loro close 1001, HTTP polling 503), what they sent written; the
    /// server stops once they left or the time is up (0: stop at once).
    /// A second signal stops it at once.
    #[arg(long, default_value_t = 10)]
    drain_seconds: u64,
    /// Updates one connection may send per second (0: no limit); past it
    /// an update is acknowledged `rate-limited` and the client told when to
    /// try again, its connection kept. One identity's bot connections
    /// (each document-API call is one) share one such budget (`429` past it).
    #[arg(long, default_value_t = 0)]
    max_updates_per_s: u64,
    /// Bytes of updates one connection may send per second (0: no limit;
    /// shared by one identity's bot connections, as the updates are).
    #[arg(long, default_value_t = 0)]
    max_update_bytes_per_s: u64,
    /// Connections one identity may hold at once (0: no limit).
    #[arg(long, default_value_t = 0)]
    max_connections_per_identity: usize,
    /// The largest a client may make one document, in MiB (0: no limit):
    /// what the store held when it was loaded plus what clients sent since.
    /// An update past it is acknowledged `too-large` (Loro:
    /// `payload_too_large`) and the connection kept.
    #[arg(long, default_value_t = 0)]
    max_doc_mib: u64,
    /// The largest update a client may send, in KiB (0: only the message
    /// limit, --max-message-mib); a larger one is acknowledged `too-large`.
    #[arg(long, default_value_t = 0)]
    max_update_kib: u64,
    /// Documents one identity may create per hour (0: no limit); past it a
    /// write that would create one is acknowledged `rate-limited`.
    #[arg(long, default_value_t = 0)]
    max_docs_created_per_hour: u64,
    /// Most documents held in memory; idle ones are evicted and reloaded
    /// from the store when asked for again.
    #[arg(long, default_value_t = 10_000)]
    max_docs_in_memory: usize,
    /// Most memory, in MiB, the documents held in memory may take (as
    /// estimated: for Loro about 18 KB per document plus 4 bytes per
    /// operation); least recently used ones are evicted first. 0: no budget
    /// (only --max-docs-in-memory).
    #[arg(long, default_value_t = 0)]
    memory_budget_mb: usize,
    /// Seconds a document may stay unused before it sleeps as its bytes
    /// (for a small one its updates; an idle 500-byte document: about 1 KB instead of 12 KB
    /// awake); it wakes on its next use without a store read. 0: never.
    #[arg(long, default_value_t = 60)]
    sleep_after_s: u64,
    /// Most idle documents whose metadata (id, version, clock: about 1 KB
    /// each) stays in memory; past it, those changed longest ago are
    /// forgotten and read back from the store's indexes when asked for.
    /// Start-up then reads no document's row. 0: every document's metadata
    /// stays in memory, read whole at start.
    #[arg(long, default_value_t = 20_000)]
    idle_metadata: usize,
    /// Also accept TCP connections here (docweave frames back to back: the
    /// simplest transport for a host with its own sockets, as the C API's
    /// example and the Python package); with --tls-cert they speak TLS.
    #[arg(long, env = "DOCWEAVE_TCP")]
    tcp: Option<String>,
    /// Serve this directory's files on the HTTP port (`/` is its
    /// `index.html`; the status page moves to `/status`): a web app for
    /// `ws://.../loro` from the same server.
    #[arg(long)]
    web: Option<PathBuf>,
    /// Record every input of the node and its commands into rotating
    /// files in this directory (compact binary; `docweave replay DIR`
    /// checks them, `docweave trace DIR` prints them). Tokens are not
    /// written, so a recording can be shared.
    #[arg(long)]
    record: Option<PathBuf>,
    /// The most a recording keeps, in MiB: past it, its oldest files go.
    #[arg(long, default_value_t = 1024)]
    record_max_mb: u64,
    /// The largest document snapshot or update sent or accepted, in MiB.
    #[arg(long, default_value_t = 512)]
    max_message_mib: usize,
    /// MiB per second one client's WebSocket connection (or HTTP polling
    /// session) is read at most, after a burst of twice that: a faster
    /// sender is read (or answered) more slowly, so no one client keeps the
    /// node busy for all (0: no limit).
    #[arg(long, default_value_t = 32)]
    max_read_mib_per_s: u64,
    #[command(flatten)]
    jwt: crate::serve_auth::JwtArgs,
    #[command(flatten)]
    webhooks: crate::webhooks::WebhookArgs,
    /// Revoked tokens (their `jti`) and identities (`sub:NAME`), one per
    /// line; read again when it changes and on SIGHUP, and every connection
    /// holding one is closed within a second.
    #[arg(long, env = "DOCWEAVE_REVOKED_FILE")]
    revoked_file: Option<PathBuf>,
    /// More static tokens, one `--token` value per line (`#` starts a
    /// comment), beside those of --token: read again when it changes and on
    /// SIGHUP, and a connection a withdrawn token let in is closed within a
    /// second. Keeps tokens off the command line, where `ps` shows them.
    #[arg(long, env = "DOCWEAVE_TOKENS_FILE")]
    tokens_file: Option<PathBuf>,
    /// The app's backend, asked about tokens that are neither static nor
    /// signed (session tokens): it is POSTed `{"token": ...}` and answers
    /// 200 `{"sub": ..., "docs": [...], "ttl_s": ..., "exp": ...}` or
    /// 401/403. Answers are kept for their TTL (see README).
    #[arg(long, env = "DOCWEAVE_AUTH_URL")]
    auth_url: Option<String>,
    /// How long a connection waits for the app's backend to answer about
    /// its token before it is refused (it may try again).
    #[arg(long, default_value_t = 2000)]
    auth_timeout_ms: u64,
    /// Speak TLS on the WebSocket and HTTP ports (`wss://`, `https://`)
    /// with this PEM certificate chain (with --tls-key), for deployments
    /// without a proxy in front. Tokens must not cross networks in clear.
    /// Both files are read again when the certificate changes and on
    /// SIGHUP (a renewal needs no restart).
    #[arg(long, env = "DOCWEAVE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Turns the admin API on (`/admin/...` on the HTTP port: documents,
    /// sizes, delete, compact, snapshots, connections, disconnect), for
    /// requests presenting this token (`Authorization: Bearer TOKEN`).
    /// Without it there is no admin API.
    #[arg(long, env = "DOCWEAVE_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "DOCWEAVE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// The store `--store` or `--data` names, and how to say where it is.
fn open_store(a: &ServeArgs) -> Result<(Box<dyn Store>, String), String> {
    if let Some(url) = &a.store {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(format!(
                "--store takes a postgres:// URL (for SQLite, use --data DIR), not {url:?}"
            ));
        }
        let shown = crate::client::without_password(url);
        let store = PostgresStore::open(url).map_err(|e| format!("cannot open {shown}: {e}"))?;
        return Ok((Box::new(store), shown));
    }
    std::fs::create_dir_all(&a.data)
        .map_err(|e| format!("cannot create {}: {e}", a.data.display()))?;
    let db = a.data.join("docweave.db");
    let store = SqliteStore::open(&db).map_err(|e| format!("cannot open {}: {e}", db.display()))?;
    Ok((Box::new(store), format!("data in {}", a.data.display())))
}

/// `docweave serve`: reads who may connect and do what, starts the node,
/// watches the files it was given, and serves until it is stopped.
pub fn run(a: ServeArgs) -> Result<(), String> {
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(TlsServer::from_pem_files(cert, key)?),
        _ => None,
    };
    let (store, store_shown) = open_store(&a)?;
    let flag_quotas = quotas_from_flags(&a);
    let parse_rules = rules_parser(flag_quotas.clone());
    let (rules_text, rules) = read_rules(a.rules.as_deref(), &parse_rules)?;
    let quotas = rules.quotas.as_deref().cloned().unwrap_or(flag_quotas);
    let auth_url = open_auth_url(&a)?;
    let flag_statics = Statics::parse(a.tokens.iter().map(String::as_str));
    let (tokens_text, statics) = read_tokens_file(a.tokens_file.as_deref(), &flag_statics)?;
    let revoked = match &a.revoked_file {
        Some(path) => Some(crate::revocations::read(path)?),
        None => None,
    };
    let mut auth = ServeAuth::new(statics.clone(), rules.clone(), &a.jwt, auth_url)?;
    // With a tokens file every connection needs a token, even when the
    // file (re-read later) lists none: an emptied list lets nobody in.
    auth.tokens_required = a.tokens_file.is_some();
    let max_message = a.max_message_mib.saturating_mul(1024 * 1024);
    let webhooks = a.webhooks.configure(max_message)?;
    if let Some(w) = &webhooks {
        auth.internal = Arc::new(w.credentials());
    }
    let loro_figures = Arc::new(LoroFigures::default());
    let loro = loro_options(&auth, &rules, max_message, loro_figures.clone());
    let (repo, metrics) = build_repo(&a, store, &auth, statics, rules, quotas, max_message)?;
    let max_connections = a
        .max_connections
        .unwrap_or_else(crate::limits::connections_allowed);
    tracing::info!("at most {max_connections} connections in all");
    let node = Running {
        repo: Arc::new(repo),
        auth,
        metrics,
        loro_figures,
        max_connections,
        max_message,
        webhooks: webhooks.map(Arc::new),
    };
    let stop_rx = take_signals(&a)?;
    watch_certificate(&a, tls.clone())?;
    watch_revocations(&a, &node, revoked)?;
    watch_tokens_file(&a, &node, tokens_text, flag_statics)?;
    watch_rules(&a, &node, rules_text, parse_rules)?;
    // Not `smol::block_on`: this thread only waits, and one that waits on
    // the reactor takes it from the executor's thread, so that the clients'
    // events then cross threads (see `docweave_adapters::timer_thread`).
    futures_lite::future::block_on(serve(&a, &node, tls, loro, &store_shown, &stop_rx))?;
    smol::block_on(node.repo.shutdown());
    eprintln!("docweave: stopped");
    Ok(())
}

/// The quotas the flags set (a rules file's own replace them one by one).
fn quotas_from_flags(a: &ServeArgs) -> docweave_core::Quotas {
    docweave_core::Quotas {
        updates_per_s: a.max_updates_per_s,
        update_bytes_per_s: a.max_update_bytes_per_s,
        connections_per_identity: a.max_connections_per_identity,
        max_doc_bytes: a.max_doc_mib.saturating_mul(1024 * 1024),
        max_update_bytes: a.max_update_kib.saturating_mul(1024),
        docs_created_per_hour: a.max_docs_created_per_hour,
    }
}

/// The `--rules` file's text and rules (none: empty text, everything allowed).
fn read_rules(
    path: Option<&Path>,
    parse_rules: &impl Fn(&str) -> Result<Rules, String>,
) -> Result<(String, Rules), String> {
    Ok(match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            let rules = parse_rules(&text).map_err(|e| format!("{}: {e}", p.display()))?;
            (text, rules)
        }
        None => (String::new(), Rules::allow_all()),
    })
}

/// The app's backend asked about session tokens (`--auth-url`), if given.
fn open_auth_url(a: &ServeArgs) -> Result<Option<Arc<crate::auth_url::AuthUrl>>, String> {
    Ok(match &a.auth_url {
        Some(url) => Some(crate::auth_url::AuthUrl::new(
            url,
            std::time::Duration::from_millis(a.auth_timeout_ms),
        )?),
        None => None,
    })
}

/// The `--tokens-file` text (empty without one) and the static tokens in
/// force: those of --token, and the file's.
fn read_tokens_file(
    path: Option<&Path>,
    flag_statics: &Statics,
) -> Result<(String, Statics), String> {
    Ok(match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let listed =
                Statics::parse_file(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            (text.clone(), flag_statics.clone().and(&listed))
        }
        None => (String::new(), flag_statics.clone()),
    })
}

/// The Loro endpoint's options: its figures, its largest update, and the
/// node's checks of a join's token.
fn loro_options(
    auth: &ServeAuth,
    rules: &Rules,
    max_message: usize,
    figures: Arc<LoroFigures>,
) -> BridgeOptions {
    // The node's own rules for a join's token, so a Loro join with a token
    // it would refuse fails alone instead of closing the connection.
    BridgeOptions {
        figures,
        max_update: max_message,
        accepts: auth.loro_accepts(),
        access: auth.loro_access(),
        ..BridgeOptions::new(auth.loro_identity(), rules.clone())
    }
}

/// Starts the node on `store` with who may connect, its rules and quotas,
/// and the flags' limits, recording and seed; returns it and its metrics.
fn build_repo(
    a: &ServeArgs,
    store: Box<dyn Store>,
    auth: &ServeAuth,
    statics: Statics,
    rules: Rules,
    quotas: docweave_core::Quotas,
    max_message: usize,
) -> Result<(Repo, docweave_shell::Metrics), String> {
    let mut builder = Repo::builder(&a.name)
        .boxed_store(store)
        .max_docs_in_memory(a.max_docs_in_memory)
        .memory_budget(match a.memory_budget_mb {
            0 => usize::MAX,
            mb => mb.saturating_mul(1024 * 1024),
        })
        .sleep_after(std::time::Duration::from_secs(a.sleep_after_s))
        .max_message(max_message)
        .configure(|c| {
            c.kind = PeerKind::Service;
            c.tokens = statics.tokens;
            c.grants = statics.grants;
            // See `tokens_required` (set in `run`): the core asks a token of
            // every hello (a signed one, or one of the static list).
            c.signed_tokens |= a.tokens_file.is_some();
            c.rules = rules;
            c.timing.peer_linger_ms = a.peer_linger_ms;
            c.bounds.idle_metadata = a.idle_metadata;
            c.quotas = quotas;
            // The webhooks' peers: only this server's own tokens speak as them.
            c.internal_peers = Some(crate::webhooks::PEER_PREFIX.to_string());
            c.bind_writers = a.bind_writers;
            c.relays = a
                .relays
                .iter()
                .map(|r| match r.strip_suffix('*') {
                    Some(prefix) => docweave_core::Pattern::Prefix(prefix.to_string()),
                    None => docweave_core::Pattern::Exact(r.clone()),
                })
                .collect();
            // Loro `%EPS` rooms: the server keeps their state for later members.
            c.lasting_presence = vec![Namespace::new(PERSISTED_PRESENCE_NAMESPACE)];
        });
    if let Some(checker) = auth.authenticator() {
        builder = builder.authenticator(checker);
        // A checker makes the node ask every hello for a token. Signed
        // tokens, the app's backend and a tokens file mean that; the
        // server's own links alone (its webhooks) do not.
        let asks = auth.jwt.is_some() || auth.auth_url.is_some() || a.tokens_file.is_some();
        builder = builder.configure(move |c| c.signed_tokens = asks);
    }
    if let Some(seed) = a.seed {
        builder = builder.seed(seed);
    }
    if let Some(path) = &a.record {
        builder = builder
            .record(path)
            .record_max_bytes(a.record_max_mb.saturating_mul(1024 * 1024));
    }
    let metrics = docweave_shell::Metrics::new();
    builder = builder.metrics(metrics.clone());
    let repo = builder.build().map_err(|e| e.to_string())?;
    Ok((repo, metrics))
}

/// The running node and what the file watchers and endpoints share with it.
struct Running {
    /// The node.
    repo: Arc<Repo>,
    /// Who may connect and do what (the watchers update it).
    auth: ServeAuth,
    /// What the node counts, for `/metrics` and the status page.
    metrics: docweave_shell::Metrics,
    /// What the Loro endpoint counts.
    loro_figures: Arc<LoroFigures>,
    /// Most connections at once, on all endpoints together.
    max_connections: usize,
    /// The largest message sent or accepted, in bytes.
    max_message: usize,
    /// The webhooks, if any.
    webhooks: Option<Arc<crate::webhooks::Webhooks>>,
}

/// Takes Ctrl-C and SIGTERM (heard on the returned receiver), and SIGHUP
/// when there are files to read again.
fn take_signals(a: &ServeArgs) -> Result<async_channel::Receiver<()>, String> {
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    })
    .map_err(|e| format!("cannot handle signals: {e}"))?;
    // After the stop handler, which also takes SIGHUP: with files to
    // watch, SIGHUP reads them again instead of stopping the server.
    if a.revoked_file.is_some()
        || a.rules.is_some()
        || a.tls_cert.is_some()
        || a.tokens_file.is_some()
    {
        crate::file_watch::take_hangups()?;
    }
    Ok(stop_rx)
}

/// With --tls-cert, reads the certificate and key again when they change.
fn watch_certificate(a: &ServeArgs, tls: Option<TlsServer>) -> Result<(), String> {
    // A renewed certificate (and key) is presented from the next
    // handshake on, read again when the certificate file changes and on
    // SIGHUP; one that does not load leaves the one in force.
    if let (Some(in_force), Some(cert), Some(key)) = (tls, &a.tls_cert, &a.tls_key) {
        let first = std::fs::read_to_string(cert)
            .map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
        let (cert_path, key_path) = (cert.clone(), key.clone());
        crate::file_watch::watch(
            "certificate",
            cert.clone(),
            first,
            move |_| TlsServer::from_pem_files(&cert_path, &key_path),
            move |renewed: TlsServer| {
                in_force.replace_with(&renewed);
                true
            },
        )?;
    }
    Ok(())
}

/// Puts the `--revoked-file` list in force (shared with the other servers
/// on PostgreSQL), and reads the file again when it changes.
fn watch_revocations(
    a: &ServeArgs,
    node: &Running,
    revoked: Option<(String, docweave_core::Revocations)>,
) -> Result<(), String> {
    // What is revoked goes to the token checks and to the node, which
    // closes every connection it revokes at once.
    let put_in_force = {
        let (repo, shared) = (node.repo.clone(), node.auth.revoked.clone());
        move |list: docweave_core::Revocations| {
            *shared.write().unwrap_or_else(|p| p.into_inner()) = list.clone();
            repo.revoke(list).is_ok()
        }
    };
    let (revoked_text, own_list) = match revoked {
        Some((text, list)) => (Some(text), Some(list)),
        None => (None, None),
    };
    // On PostgreSQL the servers share their lists through the store.
    let own_changed: Box<dyn Fn(docweave_core::Revocations) -> bool + Send> = if a.store.is_some() {
        let to_sharing =
            crate::shared_revocations::start(open_store(a)?.0, &a.name, own_list, put_in_force)?;
        Box::new(move |list| to_sharing.send(list).is_ok())
    } else {
        if let Some(list) = own_list {
            if !put_in_force(list) {
                return Err("the node stopped before it started".into());
            }
        }
        Box::new(put_in_force)
    };
    if let (Some(path), Some(text)) = (&a.revoked_file, revoked_text) {
        crate::file_watch::watch(
            "revocations",
            path.clone(),
            text,
            crate::revocations::parse,
            own_changed,
        )?;
    }
    Ok(())
}

/// With --tokens-file, reads it again when it changes: its tokens and those
/// of --token go to the token checks and to the node.
fn watch_tokens_file(
    a: &ServeArgs,
    node: &Running,
    tokens_text: String,
    flag_statics: Statics,
) -> Result<(), String> {
    if let Some(path) = &a.tokens_file {
        let (repo, shared) = (node.repo.clone(), node.auth.statics.clone());
        crate::file_watch::watch(
            "static tokens",
            path.clone(),
            tokens_text,
            move |text| Ok(flag_statics.clone().and(&Statics::parse_file(text)?)),
            move |statics: Statics| {
                *shared.write().unwrap_or_else(|p| p.into_inner()) = statics.clone();
                repo.set_tokens(statics.tokens, statics.grants).is_ok()
            },
        )?;
    }
    Ok(())
}

/// With --rules, reads the file again when it changes: its rules go to the
/// token checks and to the node.
fn watch_rules(
    a: &ServeArgs,
    node: &Running,
    rules_text: String,
    parse_rules: impl Fn(&str) -> Result<Rules, String> + Send + 'static,
) -> Result<(), String> {
    if let Some(path) = &a.rules {
        let (repo, shared) = (node.repo.clone(), node.auth.rules.clone());
        crate::file_watch::watch(
            "rules",
            path.clone(),
            rules_text,
            parse_rules,
            move |rules: Rules| {
                *shared.write().unwrap_or_else(|p| p.into_inner()) = rules.clone();
                repo.set_rules(rules).is_ok()
            },
        )?;
    }
    Ok(())
}

/// Each endpoint's connection limit, all closed when the server drains.
struct EndpointLimits {
    /// The WebSocket endpoint's (closed: `/readyz` says the server drains).
    ws: ConnectionLimit,
    /// The TCP endpoint's.
    tcp: ConnectionLimit,
    /// The HTTP endpoint's.
    http: ConnectionLimit,
}

/// Serves until Ctrl-C or SIGTERM, then drains for --drain-seconds; fails
/// when the node stops on its own.
async fn serve(
    a: &ServeArgs,
    node: &Running,
    tls: Option<TlsServer>,
    loro: BridgeOptions,
    store_shown: &str,
    stop_rx: &async_channel::Receiver<()>,
) -> Result<(), String> {
    let (ws_scheme, http_scheme) = match tls {
        Some(_) => ("wss", "https"),
        None => ("ws", "http"),
    };
    let (limits, ws_addr, http_addr) = start_endpoints(a, node, tls, loro).await?;
    for url in &a.peers {
        let (name, dialer) = dialer_for(url, a.peer_token.as_deref())?;
        node.repo
            .connect_with(&name, a.peer_token.as_deref(), dialer)
            .map_err(|e| e.to_string())?;
    }
    print_banner(a, ws_scheme, ws_addr, http_scheme, http_addr, store_shown);
    wait_for_stop(&node.repo, stop_rx).await?;
    if a.drain_seconds > 0 {
        for limit in [&limits.ws, &limits.tcp, &limits.http] {
            limit.close();
        }
        drain(&node.repo, a.drain_seconds, stop_rx).await;
    }
    eprintln!("docweave: stopping; flushing the store");
    Ok(())
}

/// Binds the WebSocket and HTTP ports (and --tcp's) and serves each;
/// returns their connection limits and the WebSocket and HTTP addresses.
async fn start_endpoints(
    a: &ServeArgs,
    node: &Running,
    tls: Option<TlsServer>,
    loro: BridgeOptions,
) -> Result<(EndpointLimits, SocketAddr, SocketAddr), String> {
    let ws = bind(&a.listen).await?;
    let http = bind(&a.http).await?;
    let ws_addr = ws.local_addr().map_err(|e| e.to_string())?;
    let http_addr = http.local_addr().map_err(|e| e.to_string())?;
    let mib = a.max_read_mib_per_s.saturating_mul(1024 * 1024);
    let inbound_rate = InboundRate {
        bytes_per_s: mib,
        burst: mib.saturating_mul(2),
    };
    let ws_options = WsOptions {
        inbound_rate,
        tls: tls.clone(),
        ..WsOptions::default()
    };
    // One pool of connections for every endpoint (they share the file
    // descriptors); each endpoint is counted and closed on its own.
    // WebSocket clients may not take the last few: the HTTP port's health,
    // readiness and metrics pages and TCP links between servers still get
    // in when clients fill the process.
    let all = ConnectionLimit::new(node.max_connections);
    let for_others = (node.max_connections / 64).clamp(1, 64);
    let limits = EndpointLimits {
        ws: all.within(node.max_connections.saturating_sub(for_others).max(1)),
        tcp: all.within(node.max_connections),
        http: all.within(node.max_connections),
    };
    smol::spawn(serve_ws_with_loro(
        ws,
        ws_options,
        limits.ws.clone(),
        node.repo.acceptor(),
        Some(loro),
    ))
    .detach();
    if let Some(addr) = &a.tcp {
        start_tcp(addr, tls.clone(), limits.tcp.clone(), &node.repo).await?;
    }
    start_http(a, node, http, inbound_rate, tls, &limits)?;
    Ok((limits, ws_addr, http_addr))
}

/// A listener on `addr`, for an endpoint.
async fn bind(addr: &str) -> Result<smol::net::TcpListener, String> {
    smol::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Binds --tcp's address and serves docweave frames there (in TLS with a
/// certificate).
async fn start_tcp(
    addr: &str,
    tls: Option<TlsServer>,
    limit: ConnectionLimit,
    repo: &Arc<Repo>,
) -> Result<(), String> {
    let tcp = bind(addr).await?;
    let tcp_addr = tcp.local_addr().map_err(|e| e.to_string())?;
    match tls {
        Some(_) => tracing::info!("TCP with TLS on {tcp_addr}"),
        None => tracing::info!("plain TCP on {tcp_addr}"),
    }
    smol::spawn(serve_tcp_tls(
        tcp,
        docweave_core::Limits::default(),
        limit,
        tls,
        repo.acceptor(),
    ))
    .detach();
    Ok(())
}

/// Serves the HTTP endpoint: polling clients and listeners, the status,
/// health, readiness and metrics pages, the admin API and --web's files.
fn start_http(
    a: &ServeArgs,
    node: &Running,
    http: smol::net::TcpListener,
    inbound_rate: InboundRate,
    tls: Option<TlsServer>,
    limits: &EndpointLimits,
) -> Result<(), String> {
    let connect: Connector = node.repo.connector();
    if let Some(w) = &node.webhooks {
        w.start(&node.repo, &connect, a.store.as_deref());
    }
    let figures = crate::figures::Figures {
        repo: node.repo.clone(),
        metrics: node.metrics.clone(),
        loro: node.loro_figures.clone(),
        ws: limits.ws.clone(),
        tcp: limits.tcp.clone(),
        webhooks: node.webhooks.clone(),
    };
    let http_options = HttpOptions {
        max_connections: node.max_connections,
        max_sessions: node.max_connections,
        inbound_rate,
        ..HttpOptions::default()
    };
    let admin = admin_api(a, &node.repo, node.max_message)?;
    // A listener or document request without `x-docweave-peer` speaks as
    // its token's own peer (checked by the node like any hello).
    let peer_of_token: PeerOfToken = node.auth.peer_of_token();
    // Histories are read on a connection of their own.
    let history = crate::doc_history::HistoryReader::new(open_store(a)?.0);
    let docs = crate::doc_api::routes(
        connect.clone(),
        peer_of_token.clone(),
        node.max_message,
        node.auth.requires_token(),
        history,
    );
    let pages = HttpPages {
        limit: Some(limits.http.clone()),
        metrics: Some(metrics_page(figures.clone())),
        status: Some(status_page(node.auth.clone(), figures)),
        web: a.web.clone().map(Arc::new),
        health: Some(health_check(node.repo.clone())),
        ready: Some(ready_check(node.repo.clone(), limits.ws.clone())),
        tls,
        peer_of_token: Some(peer_of_token.clone()),
        apis: vec![admin, docs],
    };
    smol::spawn(serve_http_with_web(http, http_options, connect, pages)).detach();
    Ok(())
}

/// The status page: what the request's token may see, drawn anew for each
/// request from the node and its figures.
fn status_page(seen: ServeAuth, shown: crate::figures::Figures) -> StatusPage {
    Arc::new(move |req: StatusRequest| {
        let (seen, shown) = (seen.clone(), shown.clone());
        Box::pin(async move {
            shown.refresh(req.http).await;
            let hooks = shown.webhooks.as_deref();
            crate::status::render(&shown.repo, &seen, &req, &shown.metrics.samples(), hooks).await
        })
    })
}

/// `/healthz`: whether the node runs.
fn health_check(watched: Arc<Repo>) -> HealthCheck {
    Arc::new(move || match watched.health().stopped() {
        Some(why) => Err(format!("the node stopped: {why}")),
        None => Ok(()),
    })
}

/// `/readyz`: whether to send this server clients.
fn ready_check(watched: Arc<Repo>, draining: ConnectionLimit) -> HealthCheck {
    // Ready: running, listening (every port is bound by now), and its
    // store answering.
    Arc::new(move || {
        let health = watched.health();
        if let Some(why) = health.stopped() {
            return Err(format!("the node stopped: {why}"));
        }
        if draining.is_closed() {
            return Err("draining: the server is stopping".into());
        }
        match health.store_failing() {
            Some(why) => Err(format!("the store is not answering: {why}")),
            None => Ok(()),
        }
    })
}

/// `/metrics`: the figures, brought up to date for each request.
fn metrics_page(figures: crate::figures::Figures) -> MetricsPage {
    // Figures the node counts as it runs, its gauges counted now, and
    // each endpoint's open connections. No document ids or contents:
    // the page is open to whoever reaches the HTTP port.
    Arc::new(move |http: HttpFigures| {
        let figures = figures.clone();
        Box::pin(async move {
            figures.refresh(http).await;
            figures.metrics.render()
        })
    })
}

/// The admin API's routes with --admin-token; without it, routes that say
/// there is no admin API.
fn admin_api(a: &ServeArgs, repo: &Arc<Repo>, max_message: usize) -> Result<ApiRoutes, String> {
    Ok(match a.admin_token.as_deref().filter(|t| !t.is_empty()) {
        // A store connection of its own: sizes, snapshots and
        // compaction never wait behind the node's writes.
        Some(token) => crate::admin::routes(
            repo.clone(),
            open_store(a)?.0,
            token.to_string(),
            max_message,
        ),
        // Said plainly, rather than the endpoint's "POST only".
        None => crate::admin::off(),
    })
}

/// Says on stdout where the server is reached and where its data is.
fn print_banner(
    a: &ServeArgs,
    ws_scheme: &str,
    ws_addr: SocketAddr,
    http_scheme: &str,
    http_addr: SocketAddr,
    store_shown: &str,
) {
    // A closed stdout (a parent that stopped reading) must not stop the server.
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "docweave serving \"{}\": {ws_scheme}://{ws_addr}  {http_scheme}://{http_addr}  ({store_shown})",
        a.name,
    );
    let _ = writeln!(
        out,
        "loro-websocket clients: {ws_scheme}://{ws_addr}/loro   status page: {http_scheme}://{http_addr}/   stop with Ctrl-C"
    );
    let _ = out.flush();
}

/// Waits until Ctrl-C (or SIGTERM), or fails once the node can no longer
/// run.
async fn wait_for_stop(
    repo: &Arc<Repo>,
    stop_rx: &async_channel::Receiver<()>,
) -> Result<(), String> {
    // Until Ctrl-C (or SIGTERM), or until the node can no longer run:
    // then the process exits non-zero, so a supervisor restarts it.
    let watched = repo.clone();
    let stopped = async move { Some(watched.health().wait_stopped().await) };
    let asked = async {
        // A dropped handler is a stop too.
        let _ = stop_rx.recv().await;
        None
    };
    if let Some(why) = futures_lite::future::or(asked, stopped).await {
        return Err(format!("the node stopped: {why}"));
    }
    Ok(())
}

/// Tells every client to go elsewhere and waits, at most `seconds` (or
/// until a second signal), for them to leave; what they sent meanwhile is
/// written as usual.
async fn drain(repo: &Repo, seconds: u64, stop: &async_channel::Receiver<()>) {
    eprintln!("docweave: draining for up to {seconds} s (a second Ctrl-C stops at once)");
    // Clients come back at once: one given several servers lands on
    // another; one with only this server finds it gone and backs off.
    if let Err(e) = repo.drain("the server is restarting", 0) {
        tracing::warn!("the node could not be drained: {e}");
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let left = async {
        while std::time::Instant::now() < deadline {
            match repo.connected_peers().await {
                Ok(0) => return,
                Ok(_) => {
                    let next = std::time::Instant::now() + std::time::Duration::from_millis(50);
                    docweave_adapters::timer_thread::ThreadTimer::at(next).await;
                }
                Err(e) => {
                    tracing::warn!("the node did not say who is connected: {e}");
                    return;
                }
            }
        }
    };
    let interrupted = async {
        // A dropped handler ends the wait too: nothing more can come.
        let _ = stop.recv().await;
    };
    futures_lite::future::or(left, interrupted).await;
    match repo.connected_peers().await {
        Ok(n) if n > 0 => eprintln!("docweave: {n} clients still connected; closing them"),
        _ => eprintln!("docweave: every client left"),
    }
}

/// Reads a rules file's text (JSON, see `docweave_core::Rules`). Its
/// `quotas`, if any, replace the flags' quotas one by one (what it leaves
/// out stays as the flags say), so a file that drops them restores the flags.
fn rules_parser(flags: docweave_core::Quotas) -> impl Fn(&str) -> Result<Rules, String> {
    move |text| {
        let mut rules =
            serde_json::from_str::<Rules>(text).map_err(|e| format!("not a rules file: {e}"))?;
        let file: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut quotas = serde_json::to_value(&flags).map_err(|e| e.to_string())?;
        if let (Some(given), Some(all)) = (
            file.get("quotas").and_then(|q| q.as_object()),
            quotas.as_object_mut(),
        ) {
            for (k, v) in given {
                if !all.contains_key(k) {
                    return Err(format!("no quota is called {k:?}"));
                }
                all.insert(k.clone(), v.clone());
            }
        }
        let quotas = serde_json::from_value(quotas).map_err(|e| format!("quotas: {e}"))?;
        rules.quotas = Some(Box::new(quotas));
        Ok(rules)
    }
}
