//! Real endpoints for tests: a Repo served on WebSocket and HTTP on free
//! local ports, and dialers (made from closures, or to a WebSocket URL).

use docweave_adapters::transport::{
    serve_http, serve_ws, ConnectionLimit, Connector, HttpOptions, WsOptions,
};
use docweave_adapters::Link;
use docweave_shell::{Dialer, Repo};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A listener on a free local port, and its address.
pub async fn bind() -> (smol::net::TcpListener, String) {
    let l = smol::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let a = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    (l, a)
}

/// A free local address for a server that starts later. It is below the
/// kernel's range for ports it hands out itself (from 32768), so no other
/// test's listener or connection takes it meanwhile, as one can take a
/// port a test bound to 0 and let go of.
pub fn address_for_later() -> String {
    let start = 20_000 + (std::process::id() % 10_000) as u16;
    (0..10_000u16)
        .map(|i| 20_000 + (start - 20_000 + i) % 10_000)
        .find_map(|port| {
            let addr = format!("127.0.0.1:{port}");
            std::net::TcpListener::bind(&addr).ok().map(|_| addr)
        })
        .unwrap_or_else(|| panic!("no free port from 20000 to 29999"))
}

/// Serves `repo` over WebSocket and HTTP (at most `connections` each);
/// returns both addresses.
pub async fn serve_ws_and_http(repo: &Arc<Repo>, connections: usize) -> (String, String) {
    let (ws, ws_addr) = bind().await;
    let (http, http_addr) = bind().await;
    smol::spawn(serve_ws(
        ws,
        WsOptions::default(),
        ConnectionLimit::new(connections),
        repo.acceptor(),
    ))
    .detach();
    let connect: Connector = repo.connector();
    smol::spawn(serve_http(http, HttpOptions::default(), connect, None)).detach();
    (ws_addr, http_addr)
}

/// A dialer that makes a link with `f` each time.
pub fn dialer(
    f: impl Fn() -> Pin<Box<dyn Future<Output = Result<Link, String>> + Send>> + Send + Sync + 'static,
) -> Dialer {
    Arc::new(move |_| f())
}

/// A dialer that opens a WebSocket link to `url` (`ws://host:port/`) each time.
pub fn ws_dialer(url: &str) -> Dialer {
    let url = url.to_string();
    dialer(move || {
        let url = url.clone();
        Box::pin(async move {
            docweave_adapters::transport::ws_connect(
                &url,
                docweave_adapters::transport::WsOptions::default(),
            )
            .await
        })
    })
}
