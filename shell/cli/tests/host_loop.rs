//! A host that brings its own loop: a tokio application (no docweave
//! thread, no smol) drives a `Node` itself, opens its own WebSocket to
//! `docweave serve`, runs the store jobs inline, and syncs both ways.

mod common;

use async_tungstenite::tungstenite::Message as Ws;
use common::{cli, data_dir, free_port, Server};
use docweave_adapters::transport::fragments::{split, Reassembler, ReassemblyLimits};
use docweave_adapters::MemoryStore;
use docweave_core::{Config, DocId, Event, Filter, Limits, RemoteAddr};
use docweave_shell::{run_job, Input, LoroEngine, Node, NodeOptions, Output, StoreAnswer};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

/// WebSocket pieces are at most this large (as docweave's own transport).
const PIECE: usize = 256 * 1024;

#[test]
fn a_tokio_application_drives_a_node_and_syncs_with_docweave_serve() {
    let data = data_dir("host-loop");
    let (ws_port, http_port) = (free_port(), free_port());
    let _server = Server::start("server", &data, ws_port, http_port, &[]);
    let url = format!("ws://127.0.0.1:{ws_port}");
    // The server already holds a value the host must receive.
    let (ok, _, err) = cli(&["doc", "put", &url, "shared", "from-cli", "yes"]);
    assert!(ok, "{err}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let start = Instant::now();
        let now = || start.elapsed().as_millis() as u64;
        let options = NodeOptions {
            store: true,
            ..NodeOptions::default()
        };
        let mut node = Node::new(Config::new("tokio-app"), LoroEngine, options);
        let mut store = MemoryStore::new();
        let doc = DocId::new("shared");
        node.handle(
            now(),
            Input::Connect {
                // A name the host resolves itself when the node asks to dial it.
                remote: RemoteAddr::new("server"),
                token: None,
                filter: Filter::all(),
            },
        );
        node.handle(now(), Input::Open { doc: doc.clone() });

        let mut socket = None;
        let mut channel = None;
        let mut pieces = Reassembler::new(ReassemblyLimits {
            max_message: Limits::default().max_frame + 64,
            max_pending: 4,
            max_held: Limits::default().max_frame + 64,
            deadline_ms: 30_000,
        });
        let mut piece_id = 0u32;
        let mut edited = false;
        let mut acked_by_server = false;
        let mut got_cli_value = false;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(acked_by_server && got_cli_value) {
            assert!(Instant::now() < deadline, "the host did not sync in time: edited {edited} acked {acked_by_server} cli {got_cli_value}");
            // Carry out everything the node wants done.
            while let Some(output) = node.poll_output() {
                match output {
                    Output::Dial { remote } => {
                        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", ws_port))
                            .await
                            .unwrap();
                        assert_eq!(remote.as_str(), "server");
                        let (ws, _) = async_tungstenite::tokio::client_async(url.as_str(), tcp)
                            .await
                            .unwrap();
                        socket = Some(ws);
                        channel = Some(node.channel_opened(now(), Some(remote)));
                    }
                    Output::Transmit { frame, .. } => {
                        piece_id += 1;
                        let ws = socket.as_mut().unwrap();
                        for piece in split(&frame, PIECE, piece_id) {
                            ws.send(Ws::Binary(piece.into())).await.unwrap();
                        }
                    }
                    Output::TransmitShared { frame, .. } => {
                        let ws = socket.as_mut().unwrap();
                        for i in 0..frame.chunk_count() {
                            piece_id += 1;
                            for piece in split(&frame.chunk(i), PIECE, piece_id) {
                                ws.send(Ws::Binary(piece.into())).await.unwrap();
                            }
                        }
                    }
                    Output::Close { reason, .. } => panic!("the node closed its link: {reason}"),
                    Output::Authenticate { .. } => panic!("this host's node checks no tokens"),
                    Output::Store(job) => {
                        let result = run_job(&mut store, job.op);
                        node.handle(now(), Input::Store(StoreAnswer { id: job.id, result }));
                    }
                    Output::Event(Event::DocReady { doc: d, .. }) if d == doc && !edited => {
                        let handle = node.doc_handle(&doc).unwrap();
                        handle.get_map("root").insert("from-tokio", "yes").unwrap();
                        handle.commit();
                        node.handle(now(), Input::LocalChange { doc: doc.clone() });
                        edited = true;
                    }
                    Output::Event(Event::AckedByRemote { doc: d, .. }) if d == doc && edited => {
                        acked_by_server = true;
                    }
                    Output::Event(Event::DocChanged { doc: d, .. }) if d == doc => {
                        let handle = node.doc_handle(&doc).unwrap();
                        got_cli_value = handle.get_map("root").get("from-cli").is_some();
                    }
                    Output::Event(_) => {}
                }
            }
            // Then wait for the socket or the node's next timer.
            let wait = node
                .poll_timeout()
                .map(|at| Duration::from_millis(at.saturating_sub(now())))
                .unwrap_or(Duration::from_millis(200))
                .min(Duration::from_millis(200));
            let Some(ws) = socket.as_mut() else {
                tokio::time::sleep(wait).await;
                node.handle(now(), Input::Timeout);
                continue;
            };
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(Ws::Binary(bytes))) => {
                        if let Some(frame) = pieces.take(&bytes, now()).unwrap() {
                            let channel = channel.unwrap();
                            node.handle(now(), Input::Frame { channel, bytes: frame });
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("the server went away: {other:?}"),
                },
                _ = tokio::time::sleep(wait) => node.handle(now(), Input::Timeout),
            }
        }
    });
    // The server has the host's edit.
    let (ok, out, err) = cli(&["doc", "get", &url, "shared"]);
    assert!(ok, "{err}");
    assert!(out.contains("from-tokio"), "{out}");
}
