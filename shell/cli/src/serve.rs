//! `docweave serve`: WebSocket and HTTP endpoints in front of one node on
//! an SQLite store, optionally syncing both ways with other servers.

use crate::client::dialer_for;
use docweave_adapters::transport::{
    serve_http, serve_ws, ConnectionLimit, Connector, HttpOptions, StatusPage, WsOptions,
};
use docweave_adapters::SqliteStore;
use docweave_core::{PeerKind, Rules};
use docweave_shell::Repo;
use std::path::PathBuf;
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
    /// A token clients must present (repeat; comma-separated in the variable). None: open to all.
    #[arg(long = "token", env = "DOCWEAVE_TOKENS", value_delimiter = ',')]
    tokens: Vec<String>,
    /// Permission rules as JSON (see `docweave_core::Rules`).
    #[arg(long, env = "DOCWEAVE_RULES")]
    rules: Option<PathBuf>,
    /// This server's peer id.
    #[arg(long, env = "DOCWEAVE_NAME", default_value = "server")]
    name: String,
    /// Another server to sync with both ways (ws://host:port or http://host:port). Repeatable.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// The token this server presents to its --peer servers.
    #[arg(long, env = "DOCWEAVE_PEER_TOKEN")]
    peer_token: Option<String>,
    /// Most connections at once, per endpoint.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
}

pub fn run(a: ServeArgs) -> Result<(), String> {
    std::fs::create_dir_all(&a.data)
        .map_err(|e| format!("cannot create {}: {e}", a.data.display()))?;
    let db = a.data.join("docweave.db");
    let store = SqliteStore::open(&db).map_err(|e| format!("cannot open {}: {e}", db.display()))?;
    let rules = match &a.rules {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            serde_json::from_str::<Rules>(&text)
                .map_err(|e| format!("{} is not a rules file: {e}", p.display()))?
        }
        None => Rules::allow_all(),
    };
    let tokens = a
        .tokens
        .iter()
        .filter(|t| !t.is_empty())
        .cloned()
        .collect::<Vec<_>>();
    let repo = Repo::builder(&a.name)
        .store(store)
        .configure(|c| {
            c.kind = PeerKind::Service;
            c.tokens = tokens;
            c.rules = rules;
        })
        .build()
        .map_err(|e| e.to_string())?;
    let repo = Arc::new(repo);
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    })
    .map_err(|e| format!("cannot handle signals: {e}"))?;
    smol::block_on(async {
        let ws = smol::net::TcpListener::bind(a.listen.as_str())
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", a.listen))?;
        let http = smol::net::TcpListener::bind(a.http.as_str())
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", a.http))?;
        let ws_addr = ws.local_addr().map_err(|e| e.to_string())?;
        let http_addr = http.local_addr().map_err(|e| e.to_string())?;
        smol::spawn(serve_ws(
            ws,
            WsOptions::default(),
            ConnectionLimit::new(a.max_connections),
            repo.acceptor(),
        ))
        .detach();
        let connect: Connector = repo.connector();
        let (r, data) = (repo.clone(), a.data.clone());
        let page: StatusPage = Arc::new(move || {
            let (r, data) = (r.clone(), data.clone());
            Box::pin(async move { crate::status::render(&r, &data).await })
        });
        smol::spawn(serve_http(
            http,
            HttpOptions::default(),
            connect,
            Some(page),
        ))
        .detach();
        for url in &a.peers {
            let (name, dialer) = dialer_for(url)?;
            repo.connect_with(&name, a.peer_token.as_deref(), dialer)
                .map_err(|e| e.to_string())?;
        }
        // A closed stdout (a parent that stopped reading) must not stop the server.
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(
            out,
            "docweave serving \"{}\": ws://{ws_addr}  http://{http_addr}  (data in {})",
            a.name,
            a.data.display()
        );
        let _ = writeln!(out, "status page: http://{http_addr}/   stop with Ctrl-C");
        let _ = out.flush();
        let _ = stop_rx.recv().await;
        eprintln!("docweave: stopping; flushing the store");
        Ok::<(), String>(())
    })?;
    smol::block_on(repo.shutdown());
    eprintln!("docweave: stopped");
    Ok(())
}
