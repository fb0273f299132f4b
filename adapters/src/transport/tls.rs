//! TLS for the network transports (rustls, with the `ring` provider): a
//! server's certificate and key from PEM files, and a client that trusts
//! the usual web roots plus, when given, a CA file of its own (a private
//! CA, or the test's). Verification is never turned off.
//!
//! The PostgreSQL store takes only what a client trusts (`client_config`);
//! `TlsServer` and `TlsClient` come with the WebSocket, HTTP and TCP
//! transports.

#[cfg(any(feature = "websocket", feature = "http", feature = "tcp"))]
use futures_rustls::{client, server, TlsAcceptor, TlsConnector};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
#[cfg(any(feature = "websocket", feature = "http", feature = "tcp"))]
use rustls::pki_types::{PrivateKeyDer, ServerName};
#[cfg(any(feature = "websocket", feature = "http", feature = "tcp"))]
use smol::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

/// rustls with ring: aws-lc-rs (rustls' default, with post-quantum key
/// exchange) needs cmake and a longer C build on every machine that builds
/// docweave; ring's classical key exchange is what browsers fall back to.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a server presents: its certificate chain and key. Clones share
/// them: [`TlsServer::replace_with`] on one (a renewed certificate) holds
/// for every endpoint's next handshake.
#[cfg(any(feature = "websocket", feature = "http", feature = "tcp"))]
#[derive(Clone)]
pub struct TlsServer(Arc<std::sync::RwLock<TlsAcceptor>>);

#[cfg(any(feature = "websocket", feature = "http", feature = "tcp"))]
impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsServer")
    }
}

#[cfg(any(feature = "websocket", feature = "http", feature = "tcp"))]
impl TlsServer {
    /// Reads a PEM certificate chain and its PEM private key; an error names
    /// the file (never the key).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| format!("cannot read {}: {e}", cert.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{} holds no readable certificate: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("{} holds no certificate", cert.display()));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("{} holds no readable private key: {e}", key.display()))?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("the certificate and key do not fit together: {e}"))?;
        Ok(Self(Arc::new(std::sync::RwLock::new(TlsAcceptor::from(
            Arc::new(config),
        )))))
    }

    fn acceptor(&self) -> TlsAcceptor {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Presents `other`'s certificate and key from the next handshake on
    /// (connections already open keep theirs): a renewal without a restart.
    pub fn replace_with(&self, other: &TlsServer) {
        let new = other.acceptor();
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = new;
    }

    /// The server side of a TLS handshake on an accepted connection.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<server::TlsStream<TcpStream>> {
        self.acceptor().accept(tcp).await
    }
}

/// What a client trusts.
#[cfg(any(feature = "websocket", feature = "http", feature = "tcp"))]
#[derive(Clone)]
pub struct TlsClient(TlsConnector);

#[cfg(any(feature = "websocket", feature = "http", feature = "tcp"))]
impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient")
    }
}

#[cfg(any(feature = "websocket", feature = "http", feature = "tcp"))]
impl TlsClient {
    /// Trusts the web's roots (Mozilla's list) and the certificates in
    /// `ca_file`, if given.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, String> {
        Ok(Self(TlsConnector::from(Arc::new(client_config(ca_file)?))))
    }

    /// The client side of a TLS handshake with `host` (checked against the
    /// server's certificate) on a connected stream.
    pub async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<client::TlsStream<TcpStream>, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host:?} is not a server name: {e}"))?;
        self.0
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host} failed: {e}"))
    }
}

/// What a client trusts, as rustls takes it: the web's roots (Mozilla's
/// list) and the certificates in `ca_file`, if given. Also what the
/// PostgreSQL store trusts.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{} holds no readable certificate: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no certificate", path.display()));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
        }
    }
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}
