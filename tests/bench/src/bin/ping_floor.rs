//! `docweave-ping-floor`: the least a WebSocket server on our libraries
//! does for idle connections, S9's floor for its idle CPU and memory.
//!
//! It accepts WebSocket connections on the address given (`host:port`),
//! reads each until it closes and drops what it reads: `async-tungstenite`
//! answers a ping with a pong by itself, which is all an idle connection
//! asks. The same runtime as `docweave serve` (smol's executor on a thread
//! of its own, `async-io`'s reactor, the main thread only waiting), and
//! nothing of docweave's: no protocol, no node, no store, no timers.
//!
//! `docweave-ping-floor 127.0.0.1:9000`

use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use futures_lite::StreamExt;

fn main() {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: docweave-ping-floor host:port");
        std::process::exit(2);
    };
    // Not `smol::block_on`: as in `docweave serve`, this thread only waits,
    // and one that waits on the reactor would take it from the executor's.
    let served = futures_lite::future::block_on(smol::spawn(serve(addr)));
    if let Err(e) = served {
        eprintln!("docweave-ping-floor: {e}");
        std::process::exit(1);
    }
}

async fn serve(addr: String) -> std::io::Result<()> {
    let listener = smol::net::TcpListener::bind(&addr).await?;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of descriptors, or a connection gone before it was
            // taken: the others go on, as on `docweave serve`.
            Err(e) => {
                eprintln!("docweave-ping-floor: accept: {e}");
                smol::Timer::after(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        // Small frames both ways, as on the server's connections.
        if let Err(e) = stream.set_nodelay(true) {
            eprintln!("docweave-ping-floor: nodelay: {e}");
        }
        smol::spawn(async move {
            // Buffers as small as the server's: what a connection holds is
            // the libraries' least, not their defaults (a 128 KB read buffer).
            let config = WebSocketConfig::default()
                .read_buffer_size(1024)
                .write_buffer_size(0);
            let accepted = async_tungstenite::accept_async_with_config(stream, Some(config));
            // A connection that does not upgrade (the harness's probe of
            // the port) is only dropped.
            let Ok(mut ws) = accepted.await else {
                return;
            };
            // Each read also writes the pong a ping before it queued.
            while let Some(Ok(_)) = ws.next().await {}
        })
        .detach();
    }
}
