//! TLS against the real `docweave serve --tls-cert --tls-key`: the test
//! makes its own CA and a certificate for `localhost`; a native client over
//! `wss://` trusting that CA syncs, one that does not trust it refuses the
//! server, plain `ws://` gets nowhere, and the HTTP port answers over TLS.

mod common;

use common::certs::make_certificates;
use common::{cli, data_dir, free_port, Server};
use docweave_adapters::transport::TlsClient;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn start_tls(name: &str) -> (Server, PathBuf) {
    let dir = data_dir(&format!("{name}-certs"));
    let (ca, cert, key) = make_certificates(&dir);
    (serving(name, &cert, &key), ca)
}

/// A server speaking TLS with this certificate and key.
fn serving(name: &str, cert: &Path, key: &Path) -> Server {
    serving_with(name, cert, key, &[])
}

/// [`serving`], with more flags.
fn serving_with(name: &str, cert: &Path, key: &Path, more: &[&str]) -> Server {
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let mut args = vec!["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    args.extend_from_slice(more);
    Server::start("server", &data_dir(name), free_port(), free_port(), &args)
}

#[test]
fn a_client_trusting_the_servers_ca_syncs_over_wss_and_others_get_nowhere() {
    let (server, ca) = start_tls("tls-wss");
    let url = format!("wss://localhost:{}", server.ws);
    let ca = ca.display().to_string();
    let (ok, _, err) = cli(&[
        "doc",
        "put",
        &url,
        "notes",
        "title",
        "secret",
        "--ca-file",
        &ca,
        "--timeout",
        "10",
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&["doc", "get", &url, "notes", "--ca-file", &ca]);
    assert!(ok && out.contains("secret"), "{out} {err}");
    // Without the CA the server's certificate is not trusted.
    let (ok, _, err) = cli(&["doc", "get", &url, "notes", "--timeout", "5"]);
    assert!(!ok, "a client trusted a certificate of an unknown CA");
    assert!(err.contains("certificate") || err.contains("TLS"), "{err}");
    // Plain WebSocket to a TLS port gets no document.
    let plain = format!("ws://localhost:{}", server.ws);
    let (ok, out, _) = cli(&["doc", "get", &plain, "notes", "--timeout", "5"]);
    assert!(!ok && !out.contains("secret"), "{out}");
}

#[test]
fn a_client_polling_over_https_syncs_and_inspect_reads_the_admin_api_over_tls() {
    let dir = data_dir("tls-polling-certs");
    let (ca, cert, key) = make_certificates(&dir);
    let server = serving_with(
        "tls-polling",
        &cert,
        &key,
        &["--admin-token", "admin-secret"],
    );
    let url = format!("https://localhost:{}", server.http);
    let ca = ca.display().to_string();
    let (ok, _, err) = cli(&[
        "doc",
        "put",
        &url,
        "notes",
        "title",
        "polled",
        "--ca-file",
        &ca,
        "--timeout",
        "10",
    ]);
    assert!(ok, "{err}");
    // Read back over WebSocket: the write went through the HTTP session.
    let wss = format!("wss://localhost:{}", server.ws);
    let (ok, out, err) = cli(&["doc", "get", &wss, "notes", "--ca-file", &ca]);
    assert!(ok && out.contains("polled"), "{out} {err}");
    let (ok, out, err) = cli(&[
        "inspect",
        &url,
        "--admin-token",
        "admin-secret",
        "--ca-file",
        &ca,
    ]);
    assert!(ok && out.contains("notes"), "{out} {err}");
    // Without the CA the server is not trusted.
    let (ok, out, _) = cli(&["doc", "get", &url, "notes", "--timeout", "5"]);
    assert!(!ok && !out.contains("polled"), "{out}");
}

#[test]
fn the_store_reaches_a_postgresql_that_takes_only_tls_when_its_url_asks_for_it() {
    let dir = data_dir("tls-postgres-certs");
    let (ca, cert, key) = make_certificates(&dir);
    let base = docweave_tests::postgres::tls_only_cluster(&cert, &key);
    let ca_param = ca.display().to_string().replace('/', "%2F");
    let store = format!("{base}/postgres?sslmode=verify-full&sslrootcert={ca_param}");
    let server = Server::start(
        "server",
        &data_dir("tls-postgres"),
        free_port(),
        free_port(),
        &["--store", &store],
    );
    let url = format!("ws://127.0.0.1:{}", server.ws);
    let (ok, _, err) = cli(&[
        "doc",
        "put",
        &url,
        "notes",
        "title",
        "over-tls",
        "--timeout",
        "10",
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&["doc", "get", &url, "notes"]);
    assert!(ok && out.contains("over-tls"), "{out} {err}");
    // The cluster refuses clear text, so the store above spoke TLS.
    let serve = |store: &str| {
        let (ws, http) = (free_port(), free_port());
        cli(&[
            "serve",
            "--store",
            store,
            "--data",
            &data_dir("tls-postgres-refused").display().to_string(),
            "--listen",
            &format!("127.0.0.1:{ws}"),
            "--http",
            &format!("127.0.0.1:{http}"),
        ])
    };
    let (ok, _, err) = serve(&format!("{base}/postgres"));
    assert!(!ok, "a clear-text connection was let in");
    assert!(err.contains("cannot open"), "{err}");
    // TLS with a server whose CA is not trusted gets nowhere either.
    let (ok, _, err) = serve(&format!("{base}/postgres?sslmode=require"));
    assert!(!ok, "an unknown CA was trusted");
    assert!(err.contains("certificate"), "{err}");
}

/// One HTTPS request to the server's HTTP port, trusting `ca`.
fn https_get(port: u16, ca: &Path, path: &str) -> String {
    smol::block_on(async {
        let trust = TlsClient::new(Some(ca)).unwrap();
        let tcp = smol::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut tls = trust.connect("localhost", tcp).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let read = async {
            // The server closes after answering; whatever came is the answer.
            let _ = tls.read_to_end(&mut out).await;
        };
        futures_lite::future::or(read, async {
            smol::Timer::after(Duration::from_secs(5)).await;
        })
        .await;
        String::from_utf8_lossy(&out).into_owned()
    })
}

#[test]
fn the_http_port_answers_over_tls() {
    let (server, ca) = start_tls("tls-https");
    let health = https_get(server.http, &ca, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let page = https_get(server.http, &ca, "/");
    assert!(page.contains("docweave"), "{page}");
    // Plain HTTP to the TLS port gets no page.
    let plain = common::raw::http_raw(
        server.http,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(3),
    );
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
}

/// Whether a TLS handshake with the server's HTTP port succeeds when
/// trusting only `ca`.
fn trusted_by(port: u16, ca: &Path) -> bool {
    smol::block_on(async {
        let trust = TlsClient::new(Some(ca)).unwrap();
        let tcp = smol::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        trust.connect("localhost", tcp).await.is_ok()
    })
}

#[test]
fn a_certificate_renewed_on_disk_is_presented_after_sighup() {
    let dir = data_dir("tls-renewed-certs");
    let (old_ca, cert, key) = make_certificates(&dir);
    let server = serving("tls-renewed", &cert, &key);
    assert!(trusted_by(server.http, &old_ca));
    // A renewal: another CA's certificate and key, written over the old.
    let renewed = data_dir("tls-renewed-certs-2");
    let (new_ca, new_cert, new_key) = make_certificates(&renewed);
    std::fs::copy(&new_key, &key).unwrap();
    std::fs::copy(&new_cert, &cert).unwrap();
    // SAFETY: kill(2) on the child's own pid with a signal it handles.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !trusted_by(server.http, &new_ca) {
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate was not presented"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!trusted_by(server.http, &old_ca), "the old one still is");
    // A broken file is refused; the certificate in force stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_secs(2));
    assert!(trusted_by(server.http, &new_ca));
}
