//! A real node behind TCP, WebSocket and HTTP: clients on each transport
//! converge, and bad input at the edges is refused with a clear error while
//! everyone else is served.

use docweave_adapters::transport::{
    http_link, post, serve_tcp, tcp_connect, ws_connect, ConnectionLimit, HttpOptions, WsOptions,
};
use docweave_adapters::MemoryStore;
use docweave_core::{decode, Access, ErrorCode, Limits, Message, Pattern, Rules, FRAME_VERSION};
use docweave_shell::{Dialer, Repo};
use docweave_tests::endpoints::{bind, dialer, serve_ws_and_http};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

struct Server {
    repo: Arc<Repo>,
    tcp: String,
    ws: String,
    http: String,
}

async fn server() -> Server {
    let repo = Repo::builder("hub")
        .store(MemoryStore::new())
        .configure(|c| {
            c.tokens = vec!["good".into(), "http".into()];
            c.rules = Rules::allow_all().with(
                Pattern::Exact("reader".into()),
                Pattern::Any,
                Access::READ,
            );
        })
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let repo = Arc::new(repo);
    let (tcp, tcp_addr) = bind().await;
    smol::spawn(serve_tcp(
        tcp,
        Limits::default(),
        ConnectionLimit::new(64),
        repo.acceptor(),
    ))
    .detach();
    let (ws_addr, http_addr) = serve_ws_and_http(&repo, 64).await;
    Server {
        repo,
        tcp: tcp_addr,
        ws: ws_addr,
        http: http_addr,
    }
}

/// Dials the server's TCP endpoint.
fn tcp_dialer(addr: String) -> Dialer {
    dialer(move || {
        let a = addr.clone();
        Box::pin(async move {
            tcp_connect(&a, Limits::default())
                .await
                .map_err(|e| e.to_string())
        })
    })
}

fn client(name: &str) -> Repo {
    Repo::builder(name)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn text(d: &loro::LoroDoc) -> String {
    d.get_text("t").to_string()
}

async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < WAIT {
        if f() {
            return true;
        }
        smol::Timer::after(Duration::from_millis(20)).await;
    }
    f()
}

#[test]
fn clients_over_tcp_websocket_and_http_converge() {
    smol::block_on(async {
        let s = server().await;
        let (tcp, ws, http) = (s.tcp.clone(), s.ws.clone(), s.http.clone());
        let alice = client("alice");
        alice
            .connect_with("hub", Some("good"), tcp_dialer(tcp.clone()))
            .ok();
        let bob = client("bob");
        bob.connect_with(
            "hub",
            Some("good"),
            dialer(move || {
                let a = format!("ws://{ws}/");
                Box::pin(async move { ws_connect(&a, WsOptions::default()).await })
            }),
        )
        .ok();
        let carol = client("carol");
        carol
            .connect_with(
                "hub",
                Some("http"),
                dialer(move || {
                    let a = http.clone();
                    Box::pin(async move { Ok(http_link(&a, Some("http"), HttpOptions::default())) })
                }),
            )
            .ok();
        let docs: Vec<loro::LoroDoc> = futures_lite::future::zip(
            futures_lite::future::zip(alice.open("shared"), bob.open("shared")),
            carol.open("shared"),
        )
        .await
        .into_iter_docs();
        for (i, d) in docs.iter().enumerate() {
            d.get_text("t").insert(0, &format!("[{i}]")).ok();
            d.commit();
        }
        let ok = eventually(|| {
            docs.iter()
                .all(|d| text(d).len() == 9 && text(d) == text(&docs[0]))
        })
        .await;
        assert!(ok, "{:?}", docs.iter().map(text).collect::<Vec<_>>());
        for r in [alice, bob, carol] {
            r.close().await;
        }
        drop(s);
    });
}

trait IntoDocs {
    fn into_iter_docs(self) -> Vec<loro::LoroDoc>;
}

type Opened = Result<loro::LoroDoc, docweave_shell::RepoError>;

impl IntoDocs for ((Opened, Opened), Opened) {
    fn into_iter_docs(self) -> Vec<loro::LoroDoc> {
        let ((a, b), c) = self;
        [a, b, c]
            .into_iter()
            .map(|d| d.unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }
}

async fn raw_tcp(addr: &str, bytes: &[u8]) -> Vec<Message> {
    let mut s = smol::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = futures_lite::future::or(async { s.read_to_end(&mut out).await.ok() }, async {
        smol::Timer::after(WAIT).await;
        None
    })
    .await;
    let mut msgs = Vec::new();
    let mut rest = &out[..];
    while let Ok(len) = docweave_core::payload_len(rest, &Limits::default()) {
        let total = docweave_core::HEADER_LEN + len;
        if rest.len() < total {
            break;
        }
        msgs.extend(decode(&rest[..total], &Limits::default()).unwrap_or_default());
        rest = &rest[total..];
    }
    msgs
}

fn has_error(msgs: &[Message], code: ErrorCode) -> bool {
    msgs.iter()
        .any(|m| matches!(m, Message::Error { code: c, .. } if *c == code))
}

#[test]
fn bad_input_is_refused_clearly_and_everyone_else_is_served() {
    smol::block_on(async {
        let s = server().await;
        // A well-behaved client first.
        let tcp = s.tcp.clone();
        let alice = client("alice");
        alice
            .connect_with("hub", Some("good"), tcp_dialer(tcp.clone()))
            .ok();
        alice
            .edit("notes", |d| d.get_text("t").insert(0, "before"))
            .await
            .ok();
        assert!(alice
            .wait_for_sync("notes", "hub", WAIT)
            .await
            .is_ok_and(|o| o.is_synced()));

        // Garbage bytes, a 4 GiB claim, a frame over the limit.
        assert!(has_error(
            &raw_tcp(&s.tcp, b"\x00\x01garbage!").await,
            ErrorCode::MalformedFrame
        ));
        assert!(has_error(
            &raw_tcp(&s.tcp, &[FRAME_VERSION, 0, 0xff, 0xff, 0xff, 0xff]).await,
            ErrorCode::TooLarge
        ));
        let mut huge = vec![FRAME_VERSION, 0];
        huge.extend_from_slice(&(17u32 * 1024 * 1024).to_le_bytes());
        assert!(has_error(
            &raw_tcp(&s.tcp, &huge).await,
            ErrorCode::TooLarge
        ));
        // A well-framed payload that is not a message list.
        let mut junk = vec![FRAME_VERSION, 0, 4, 0, 0, 0];
        junk.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert!(has_error(
            &raw_tcp(&s.tcp, &junk).await,
            ErrorCode::MalformedFrame
        ));
        // A bad token is refused with a reason.
        let hello = docweave_core::encode(&[Message::Hello(docweave_core::Hello {
            peer: docweave_core::PeerId::new("mallory"),
            name: String::new(),
            kind: docweave_core::PeerKind::User,
            protocol: docweave_core::PROTOCOL_VERSION,
            token: Some("guess".into()),
            clock: Default::default(),
        })])
        .unwrap_or_default();
        assert!(has_error(
            &raw_tcp(&s.tcp, &hello).await,
            ErrorCode::BadToken
        ));

        // HTTP listeners: an unknown listener id, and a push it may not write.
        let reader = [
            ("x-docweave-peer", "reader"),
            ("authorization", "Bearer http"),
        ];
        let (status, body) = post(&s.http, "/listeners/77/pull?limit=5", &reader, Vec::new())
            .await
            .unwrap_or_default();
        assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("not registered"));
        let (status, body) = post(
            &s.http,
            "/listeners",
            &reader,
            b"{\"filter\":{\"docs\":[],\"types\":[],\"scopes\":[],\"branches\":[]}}".to_vec(),
        )
        .await
        .unwrap_or_default();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let strand = serde_json::json!({ "strands": [{
            "doc": "notes", "meta": {"doc_type": "", "scope": "", "branch": ""},
            "since": {}, "data": [1, 2, 3], "version": {"9": 1}, "clock": 0 }] });
        let (status, body) = post(&s.http, "/push", &reader, strand.to_string().into_bytes())
            .await
            .unwrap_or_default();
        assert_eq!(status, 200);
        assert!(
            String::from_utf8_lossy(&body).contains("Denied"),
            "{}",
            String::from_utf8_lossy(&body)
        );
        let (status, _) = post(&s.http, "/push", &reader, b"not json".to_vec())
            .await
            .unwrap_or_default();
        assert_eq!(status, 400);

        // Through all of that, the good client kept working.
        alice
            .edit("notes", |d| d.get_text("t").insert(6, " and after"))
            .await
            .ok();
        assert!(alice
            .wait_for_sync("notes", "hub", WAIT)
            .await
            .is_ok_and(|o| o.is_synced()));
        let on_hub = s.repo.open("notes").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            eventually(|| text(&on_hub) == "before and after").await,
            "{}",
            text(&on_hub)
        );
        alice.close().await;
    });
}

#[test]
fn a_client_keeps_redialing_with_backoff_until_the_server_is_up() {
    smol::block_on(async {
        // A port with nobody behind it yet (one no other test can take).
        let addr = docweave_tests::endpoints::address_for_later();
        let a = addr.clone();
        let alice = client("alice");
        alice.connect_with("hub", None, tcp_dialer(a.clone())).ok();
        alice
            .edit("notes", |d| d.get_text("t").insert(0, "written offline"))
            .await
            .ok();
        smol::Timer::after(Duration::from_millis(700)).await;
        // Now the server comes up on that address.
        let hub = Arc::new(
            Repo::builder("hub")
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let listener = smol::net::TcpListener::bind(addr.as_str())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        smol::spawn(serve_tcp(
            listener,
            Limits::default(),
            ConnectionLimit::new(8),
            hub.acceptor(),
        ))
        .detach();
        assert!(
            alice
                .wait_for_sync("notes", "hub", WAIT)
                .await
                .is_ok_and(|o| o.is_synced()),
            "never reconnected"
        );
        let on_hub = hub.open("notes").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(eventually(|| text(&on_hub) == "written offline").await);
        alice.close().await;
    });
}

/// A TCP proxy in front of `target` that drops every third connection (an
/// HTTP request here, one per connection) without forwarding it.
async fn lossy_proxy(target: String) -> String {
    let (listener, addr) = bind().await;
    smol::spawn(async move {
        let mut n = 0u64;
        while let Ok((inbound, _)) = listener.accept().await {
            n += 1;
            if n % 3 == 0 {
                drop(inbound);
                continue;
            }
            let target = target.clone();
            smol::spawn(async move {
                let Ok(outbound) = smol::net::TcpStream::connect(target.as_str()).await else {
                    return;
                };
                let (ri, wi) = (inbound.clone(), inbound);
                let (ro, wo) = (outbound.clone(), outbound);
                let _ = futures_lite::future::zip(
                    futures_lite::io::copy(ri, wo),
                    futures_lite::io::copy(ro, wi),
                )
                .await;
            })
            .detach();
        }
    })
    .detach();
    addr
}

#[test]
fn http_polling_through_a_proxy_that_drops_every_third_request_loses_nothing() {
    smol::block_on(async {
        let s = server().await;
        let proxy = lossy_proxy(s.http.clone()).await;
        let carol = client("carol");
        let fast = HttpOptions {
            poll_min: Duration::from_millis(10),
            poll_max: Duration::from_millis(100),
            ..HttpOptions::default()
        };
        carol
            .connect_with(
                "hub",
                Some("http"),
                dialer(move || {
                    let a = proxy.clone();
                    Box::pin(async move { Ok(http_link(&a, Some("http"), fast)) })
                }),
            )
            .ok();
        let d = carol.open("lossy").await.unwrap_or_else(|e| panic!("{e}"));
        for i in 0..30 {
            d.get_list("l").push(i).ok();
            d.commit();
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        let there = s.repo.open("lossy").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            eventually(|| there.get_list("l").len() == 30).await,
            "the server has {} of 30 edits",
            there.get_list("l").len()
        );
        // And the other way: the server's edits reach carol.
        for i in 0..30 {
            there.get_list("m").push(i).ok();
            there.commit();
        }
        assert!(
            eventually(|| d.get_list("m").len() == 30).await,
            "carol has {} of 30 edits",
            d.get_list("m").len()
        );
        carol.close().await;
        s.repo.shutdown().await;
    });
}
