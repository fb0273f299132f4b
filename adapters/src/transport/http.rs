//! HTTP, for where sockets are not allowed (hyper 1 on smol).
//!
//! Two faces:
//! - `POST /sync`: a polling channel (seed 001). The first request opens a
//!   session and its answer names it (`x-docweave-session`, a long random
//!   value); later requests give `?session=ID` with the same credentials
//!   (`authorization`) as the first. The body holds the client's pending
//!   frames, folded into one request; the answer holds the frames the node
//!   had for it. To the node, a session is an ordinary link.
//! - Pull-responder listeners (seed 000), JSON: `POST /listeners` (register),
//!   `POST /listeners/{id}/pull?limit=N`, `POST /listeners/{id}/ack`,
//!   `POST /push`. Each request is one exchange with the node under the
//!   peer named by `x-docweave-peer`, with `authorization: Bearer <token>`.

use super::slots::accept as accept_next;
use super::{outbound, ConnectionLimit, Link, Outbound, PolledLink, DEFAULT_BACKLOG};
use docweave_core::{
    payload_len, ErrorCode, Filter, Hello, Limits, ListenerId, Message, PeerId, PeerKind, Revision,
    Strand, PROTOCOL_VERSION,
};
use futures_lite::AsyncWriteExt;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use smol::net::{TcpListener, TcpStream};
use smol_hyper::rt::FuturesIo;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// HTTP settings.
#[derive(Debug, Clone, Copy)]
pub struct HttpOptions {
    /// Most connections held at once (more get `503`).
    pub max_connections: usize,
    /// Most polling sessions open at once.
    pub max_sessions: usize,
    /// Most polling sessions one client address, or one credential, may
    /// have open at once (more get `429`): one client cannot take them all.
    pub sessions_per_client: usize,
    /// A client must send a request's headers within this time.
    pub header_timeout: Duration,
    /// ... and its body within this time.
    pub body_timeout: Duration,
    /// A connection is closed after this long, whatever it does.
    pub connection_lifetime: Duration,
    /// Frame limits.
    pub limits: Limits,
    /// Largest request body.
    pub max_body: usize,
    /// Bytes of frames one poll's answer takes from the session's queue
    /// (plus the one frame that crosses it). What is left waits there,
    /// shared with other readers, for the next poll: an answer a client
    /// does not read holds this much, not all that waits for it.
    pub max_answer: usize,
    /// A session not polled for this long is closed.
    pub session_idle: Duration,
    /// How long a poll waits for frames before answering empty.
    pub poll_wait: Duration,
    /// Shortest and longest pause between client polls.
    pub poll_min: Duration,
    /// Longest pause between client polls while idle.
    pub poll_max: Duration,
    /// How fast one session's request bodies are taken (the answer waits).
    pub inbound_rate: super::InboundRate,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_sessions: 1024,
            sessions_per_client: 32,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(15),
            connection_lifetime: Duration::from_secs(120),
            limits: Limits::default(),
            max_body: 16 * 1024 * 1024 + 64,
            max_answer: 2 * 1024 * 1024,
            session_idle: Duration::from_secs(60),
            poll_wait: Duration::from_millis(200),
            poll_min: Duration::from_millis(50),
            poll_max: Duration::from_secs(2),
            inbound_rate: super::InboundRate::default(),
        }
    }
}

/// Opens a link into the node (one per session or listener request),
/// whose frames from the node wait in the node's queue until a poll takes
/// them.
pub type Connector = Arc<dyn Fn() -> PolledLink + Send + Sync>;

/// A request for the status page.
#[derive(Debug, Clone, Default)]
pub struct StatusRequest {
    /// The bearer token it presented.
    pub bearer: Option<String>,
    /// Its query string (`refresh=5`, say), without `?`.
    pub query: Option<String>,
    /// What the endpoint itself holds now.
    pub http: HttpFigures,
}

/// Renders the HTML status page served at `GET /` for a request; `None`
/// refuses it (`401`).
pub type StatusPage = Arc<
    dyn Fn(
            StatusRequest,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send>>
        + Send
        + Sync,
>;

/// Whether the node behind the endpoint still runs (`Err`: why not), for
/// `GET /healthz`: `200 ok`, or `503` with the reason.
pub type HealthCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What the HTTP endpoint itself holds, for its metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpFigures {
    /// Open HTTP connections.
    pub connections: usize,
    /// Open polling sessions.
    pub sessions: usize,
}

/// Renders `GET /metrics` (the Prometheus text format), given what the
/// endpoint itself holds.
pub type MetricsPage = Arc<
    dyn Fn(HttpFigures) -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>
        + Send
        + Sync,
>;

/// What an HTTP endpoint serves besides syncing and listeners.
#[derive(Clone, Default)]
pub struct HttpPages {
    /// The HTML status page (at `/`, or `/status` with `web`).
    pub status: Option<StatusPage>,
    /// A directory of files served for other `GET` requests.
    pub web: Option<Arc<std::path::PathBuf>>,
    /// The answer to `GET /healthz`.
    pub health: Option<HealthCheck>,
    /// The answer to `GET /readyz` (whether to send this server clients).
    pub ready: Option<HealthCheck>,
    /// The answer to `GET /metrics`.
    pub metrics: Option<MetricsPage>,
    /// The endpoint's connection limit, shared with the host so it can
    /// close it when the server drains (then new connections and new
    /// polling sessions get `503` with `Retry-After`); by default one of
    /// `HttpOptions::max_connections`.
    pub limit: Option<super::ConnectionLimit>,
    /// A server with this speaks only TLS (`https://`).
    pub tls: Option<super::TlsServer>,
    /// The peer id a listener request without `x-docweave-peer` speaks as,
    /// from its bearer token (the one peer it names); else `http-client`.
    pub peer_of_token: Option<PeerOfToken>,
    /// The host's own routes (the admin API, the document API), answered
    /// before anything else of the endpoint, also while it drains; the
    /// first whose prefix the path starts with answers.
    pub apis: Vec<super::ApiRoutes>,
}

/// The peer id a bearer token names, if it names one.
pub type PeerOfToken = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

struct Session {
    link: PolledLink,
    last_seen: Instant,
    /// The address that opened it.
    client: Option<std::net::IpAddr>,
    /// The credentials that opened it; every request on it must repeat them.
    auth: Option<String>,
    /// How fast its requests' bodies are taken.
    pacer: super::Pacer,
}

type Sessions = Arc<Mutex<BTreeMap<String, Session>>>;

fn lock(s: &Sessions) -> std::sync::MutexGuard<'_, BTreeMap<String, Session>> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Splits a body into frames, each checked against the limits: the frames
/// before a bad one, and the error that stopped the split, if any.
pub fn split_frames(mut body: &[u8], limits: &Limits) -> (Vec<Vec<u8>>, Option<String>) {
    let mut out = Vec::new();
    while !body.is_empty() {
        let len = match payload_len(body, limits) {
            Ok(len) => len,
            Err(e) => return (out, Some(e.to_string())),
        };
        let total = docweave_core::HEADER_LEN + len;
        if body.len() < total {
            let e = format!("a frame announces {len} bytes but the body ends first");
            return (out, Some(e));
        }
        out.push(body[..total].to_vec());
        body = &body[total..];
    }
    (out, None)
}

/// A session id: 128 random bits from the OS, in hex.
fn new_session_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn respond(status: StatusCode, body: Vec<u8>, json: bool) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let kind = if json {
        "application/json"
    } else {
        "application/octet-stream"
    };
    if let Ok(v) = hyper::header::HeaderValue::from_str(kind) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// The token of a request's `Authorization: Bearer` header, if any.
pub(super) fn bearer(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

fn problem(status: StatusCode, code: &str, message: String) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "code": code, "message": message });
    respond(status, body.to_string().into_bytes(), true)
}

/// A raw answer for a connection hyper never sees (refused at the door).
fn raw_answer(status: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "code": "Unavailable", "message": message }).to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves HTTP for ever: at most `max_connections` at once (more get
/// `503`), each with deadlines for its headers, its body and its whole
/// life; accept errors are retried.
pub async fn serve_http(
    listener: TcpListener,
    o: HttpOptions,
    connect: Connector,
    status: Option<StatusPage>,
) {
    let pages = HttpPages {
        status,
        ..HttpPages::default()
    };
    serve_http_with_web(listener, o, connect, pages).await
}

/// [`serve_http`] with more [`HttpPages`]: with `web` set, `GET` requests
/// are answered with the files of that directory (`/` is its `index.html`);
/// the status page is then at `/status` (it is at both `/` and `/status`
/// without `web`); `/healthz` answers whether the node runs, `/readyz`
/// whether it should be sent clients, `/metrics` with the metrics page.
pub async fn serve_http_with_web(
    listener: TcpListener,
    o: HttpOptions,
    connect: Connector,
    pages: HttpPages,
) {
    let HttpPages {
        status,
        web,
        health,
        ready,
        metrics,
        limit,
        peer_of_token,
        tls,
        apis,
    } = pages;
    let sessions: Sessions = Arc::new(Mutex::new(BTreeMap::new()));
    sweep_sessions(sessions.clone(), o);
    let limit = limit.unwrap_or_else(|| ConnectionLimit::new(o.max_connections));
    let state = HttpState {
        o,
        sessions,
        connect,
        status,
        web,
        health,
        ready,
        metrics,
        limit,
        peer_of_token,
        apis,
    };
    let mut pause = Duration::from_millis(5);
    loop {
        let stream = accept_next(&listener, &mut pause).await;
        let client = stream.peer_addr().ok().map(|a| a.ip());
        // While the server drains, health, readiness and metrics still
        // answer; new polling sessions are refused (see `sync`).
        let Some(slot) = state.limit.enter_even_closed() else {
            refuse_connection(stream, state.limit.max());
            continue;
        };
        let connection = serve_connection(stream, client, slot, state.clone(), tls.clone());
        smol::spawn(connection).detach();
    }
}

/// What every request to an HTTP endpoint may use: its options, its
/// polling sessions, the way into the node and the pages it serves.
#[derive(Clone)]
struct HttpState {
    o: HttpOptions,
    sessions: Sessions,
    connect: Connector,
    status: Option<StatusPage>,
    web: Option<Arc<std::path::PathBuf>>,
    health: Option<HealthCheck>,
    ready: Option<HealthCheck>,
    metrics: Option<MetricsPage>,
    limit: ConnectionLimit,
    peer_of_token: Option<PeerOfToken>,
    apis: Vec<super::ApiRoutes>,
}

impl HttpState {
    /// What the endpoint holds now.
    fn figures(&self) -> HttpFigures {
        HttpFigures {
            connections: self.limit.open(),
            sessions: lock(&self.sessions).len(),
        }
    }
}

/// Spawns the task that closes, every half `o.session_idle`, the polling
/// sessions not polled for `o.session_idle`.
fn sweep_sessions(sessions: Sessions, o: HttpOptions) {
    smol::spawn(async move {
        loop {
            smol::Timer::after(o.session_idle / 2).await;
            lock(&sessions).retain(|_, s| {
                let keep = s.last_seen.elapsed() < o.session_idle;
                if !keep {
                    s.link.close("session idle");
                }
                keep
            });
        }
    })
    .detach();
}

/// Answers a connection past the limit (`max` connections) `503` and
/// closes it, on a task of its own.
fn refuse_connection(mut s: TcpStream, max: usize) {
    smol::spawn(async move {
        let m = format!("this server holds at most {max} HTTP connections; try again later");
        // Best effort: a client that cannot be told is gone anyway.
        let _ = s
            .write_all(&raw_answer("503 Service Unavailable", &m))
            .await;
        let _ = s.close().await;
    })
    .detach();
}

/// Serves one accepted connection (over TLS with `tls`), each of its
/// requests answered by [`answer_request`], holding its `slot` until it
/// ends.
async fn serve_connection(
    stream: TcpStream,
    client: Option<std::net::IpAddr>,
    slot: super::Slot,
    state: HttpState,
    tls: Option<super::TlsServer>,
) {
    let _slot = slot;
    let o = state.o;
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        async move {
            let r = answer_request(req, state, client).await;
            Ok::<_, std::convert::Infallible>(r)
        }
    });
    let builder = {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(smol_hyper::rt::SmolTimer::new())
            .header_read_timeout(o.header_timeout);
        b
    };
    // The whole connection, its TLS handshake included, lives
    // within its lifetime.
    let serve = async {
        // A connection's end (the client left, a bad request) is
        // the client's business: hyper has answered what it could.
        match tls {
            None => {
                let _ = builder
                    .serve_connection(FuturesIo::new(stream), service)
                    .await;
            }
            Some(tls) => match tls.accept(stream).await {
                Ok(stream) => {
                    let _ = builder
                        .serve_connection(FuturesIo::new(stream), service)
                        .await;
                }
                Err(e) => tracing::debug!("http: TLS handshake failed: {e}"),
            },
        }
    };
    futures_lite::future::or(serve, async {
        smol::Timer::after(o.connection_lifetime).await;
    })
    .await;
}

/// Answers one request: the host's API first, then metrics, health,
/// readiness, files and the status page; then, unless the server drains,
/// syncing and listeners (see [`route`]).
async fn answer_request(
    req: Request<Incoming>,
    state: HttpState,
    client: Option<std::net::IpAddr>,
) -> Response<Full<Bytes>> {
    let get = req.method() == hyper::Method::GET;
    let path = req.uri().path().to_string();
    // `/docs` takes `/docs` and `/docs/...`, not `/docsfoo`.
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'))
    };
    if let Some(api) = state.apis.iter().find(|a| under(&a.prefix)) {
        return super::http_api::answer(req, api, state.o.body_timeout).await;
    }
    if let (true, "/metrics", Some(page)) = (get, path.as_str(), &state.metrics) {
        let figures = state.figures();
        return metrics_answer(page, figures).await;
    }
    if get && path == "/healthz" {
        return match state.health.as_ref().map_or(Ok(()), |h| h()) {
            Ok(()) => respond(StatusCode::OK, b"ok\n".to_vec(), false),
            Err(why) => problem(StatusCode::SERVICE_UNAVAILABLE, "Stopped", why),
        };
    }
    if get && path == "/readyz" {
        return match state.ready.as_ref().map_or(Ok(()), |h| h()) {
            Ok(()) => respond(StatusCode::OK, b"ready\n".to_vec(), false),
            Err(why) => problem(StatusCode::SERVICE_UNAVAILABLE, "NotReady", why),
        };
    }
    if let (true, Some(root), false) = (get, &state.web, path == "/status") {
        return web_file(root, &path).await;
    }
    if get && (path == "/" || path == "/status") {
        let bearer = bearer(&req);
        let request = StatusRequest {
            bearer,
            query: req.uri().query().map(str::to_string),
            http: state.figures(),
        };
        return status_answer(state.status.as_ref(), request).await;
    }
    // A draining server opens no new polling session and
    // takes no listener request (its node turns new peers
    // away): the client tries another server, or this one
    // again later. Open sessions go on until they are told.
    let open_session = path == "/sync" && req.uri().query().unwrap_or("").contains("session=");
    let to_node = req.method() == hyper::Method::POST && !open_session;
    if state.limit.is_closed() && to_node {
        let mut r = problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "GoingAway",
            "this server is stopping; use another, or try again later".into(),
        );
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
        return r;
    }
    let HttpState {
        o,
        sessions,
        connect,
        peer_of_token,
        ..
    } = state;
    route(req, o, sessions, connect, client, peer_of_token).await
}

/// `GET /metrics`: the metrics page, given what the endpoint holds.
async fn metrics_answer(page: &MetricsPage, figures: HttpFigures) -> Response<Full<Bytes>> {
    let mut r = respond(StatusCode::OK, page(figures).await.into_bytes(), false);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    r
}

/// The file of the web directory `root` that `path` names, or `404`.
async fn web_file(root: &std::path::Path, path: &str) -> Response<Full<Bytes>> {
    match super::static_files::find(root, path).await {
        Some(f) => {
            let mut r = respond(StatusCode::OK, f.bytes, false);
            if let Ok(v) = hyper::header::HeaderValue::from_str(f.content_type) {
                r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
            }
            r
        }
        None => {
            let why = format!("no file {path}");
            problem(StatusCode::NOT_FOUND, "NotFound", why)
        }
    }
}

/// The status page for `request`, drawn by `render` (without one, a
/// placeholder), or `401` when `render` refuses the request.
async fn status_answer(
    render: Option<&StatusPage>,
    request: StatusRequest,
) -> Response<Full<Bytes>> {
    let page = match render {
        Some(render) => render(request).await,
        None => Some("<p>docweave</p>".to_string()),
    };
    let Some(page) = page else {
        let mut r = problem(
            StatusCode::UNAUTHORIZED,
            "BadToken",
            "this server's status is shown to its token holders: \
             send Authorization: Bearer TOKEN"
                .into(),
        );
        if let Ok(v) = hyper::header::HeaderValue::from_str("Bearer") {
            r.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, v);
        }
        return r;
    };
    let mut r = respond(StatusCode::OK, page.into_bytes(), false);
    if let Ok(v) = hyper::header::HeaderValue::from_str("text/html; charset=utf-8") {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

pub(super) async fn read_body(
    req: Request<Incoming>,
    max: usize,
    within: Duration,
) -> Result<Vec<u8>, Response<Full<Bytes>>> {
    let read = async { Some(Limited::new(req.into_body(), max).collect().await) };
    let late = async {
        smol::Timer::after(within).await;
        None
    };
    match futures_lite::future::or(read, late).await {
        Some(Ok(b)) => Ok(b.to_bytes().to_vec()),
        Some(Err(_)) => Err(problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "TooLarge",
            format!("the body exceeds {max} bytes or could not be read"),
        )),
        None => Err(problem(
            StatusCode::REQUEST_TIMEOUT,
            "Timeout",
            format!("the body did not arrive within {within:?}"),
        )),
    }
}

fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    })
}

async fn route(
    req: Request<Incoming>,
    o: HttpOptions,
    sessions: Sessions,
    connect: Connector,
    client: Option<std::net::IpAddr>,
    peer_of_token: Option<PeerOfToken>,
) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::POST {
        return problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "docweave answers POST only".into(),
        );
    }
    let path: Vec<String> = req
        .uri()
        .path()
        .trim_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    let token = bearer(&req);
    let peer = req
        .headers()
        .get("x-docweave-peer")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            let named = peer_of_token.as_ref()?;
            named(token.as_deref()?)
        })
        .unwrap_or_else(|| "http-client".to_string());
    let limit = query(&req, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100);
    let session = query(&req, "session");
    let closing = query(&req, "close").is_some();
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match read_body(req, o.max_body, o.body_timeout).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    let message = match parts.as_slice() {
        ["sync"] if closing => {
            let mut all = lock(&sessions);
            let own = session
                .as_ref()
                .is_some_and(|id| all.get(id).is_some_and(|s| s.auth == auth));
            if let Some(s) = session.filter(|_| own).and_then(|id| all.remove(&id)) {
                s.link.close("the client closed the session");
            }
            return respond(StatusCode::OK, Vec::new(), false);
        }
        ["sync"] => return sync(session, auth, client, body, o, sessions, connect).await,
        other => match listener_message(other, &body, limit) {
            Ok(m) => m,
            Err(r) => return r,
        },
    };
    exchange(&peer, token, message, connect).await
}

/// The message a listener request (`/listeners`, `/listeners/{id}/pull`,
/// `/listeners/{id}/ack`, `/push`) asks of the node, or the answer that
/// refuses it (`404` for another path).
// The error is the refusal's answer itself, as `read_body`'s is.
#[allow(clippy::result_large_err)]
fn listener_message(
    parts: &[&str],
    body: &[u8],
    limit: u32,
) -> Result<Message, Response<Full<Bytes>>> {
    let message = match parts {
        ["listeners"] => match json::<RegisterBody>(body) {
            Ok(b) => Message::ListenerRegister {
                filter: b.filter,
                id: b.id,
            },
            Err(e) => {
                return Err(problem(
                    StatusCode::BAD_REQUEST,
                    "MalformedFrame",
                    format!("not a registration: {e}"),
                ))
            }
        },
        ["listeners", id, "pull"] => match id.parse() {
            Ok(id) => Message::ListenerPull {
                id: ListenerId(id),
                limit,
            },
            Err(_) => {
                return Err(problem(
                    StatusCode::NOT_FOUND,
                    "UnknownListener",
                    format!("{id:?} is not a listener id"),
                ))
            }
        },
        ["listeners", id, "ack"] => match (id.parse(), json::<AckBody>(body)) {
            (Ok(id), Ok(b)) => Message::ListenerAck {
                id: ListenerId(id),
                revisions: b.revisions,
            },
            (Err(_), _) => {
                return Err(problem(
                    StatusCode::NOT_FOUND,
                    "UnknownListener",
                    format!("{id:?} is not a listener id"),
                ))
            }
            (_, Err(e)) => {
                return Err(problem(
                    StatusCode::BAD_REQUEST,
                    "MalformedFrame",
                    format!("not an acknowledgement: {e}"),
                ))
            }
        },
        ["push"] => match json::<PushBody>(body) {
            Ok(b) => Message::Push { strands: b.strands },
            Err(e) => {
                return Err(problem(
                    StatusCode::BAD_REQUEST,
                    "MalformedFrame",
                    format!("not a push: {e}"),
                ))
            }
        },
        _ => {
            let why = "no such endpoint".into();
            return Err(problem(StatusCode::NOT_FOUND, "NotFound", why));
        }
    };
    Ok(message)
}

/// The hello of one HTTP request's link into the node: a bot's, so it
/// stands beside the identity's live connections (neither replaces the
/// other) and the node records nothing of it as the identity's.
pub fn request_hello(peer: PeerId, token: Option<String>) -> Message {
    Message::Hello(Hello {
        peer,
        name: String::new(),
        kind: PeerKind::Bot,
        protocol: PROTOCOL_VERSION,
        token,
        clock: Default::default(),
    })
}

/// One request, one answer, through a fresh link into the node.
async fn exchange(
    peer: &str,
    token: Option<String>,
    message: Message,
    connect: Connector,
) -> Response<Full<Bytes>> {
    let Ok(peer) = PeerId::parse(peer) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "BadPeer",
            format!("{peer:?} is not a valid peer id"),
        );
    };
    let link = connect();
    let hello = request_hello(peer, token);
    let wanted = match &message {
        Message::ListenerRegister { .. } => "listener-registered",
        Message::ListenerPull { .. } => "strands",
        Message::ListenerAck { .. } => "listener-acked",
        _ => "push-result",
    };
    let frame = docweave_core::encode(&[hello, message]).unwrap_or_default();
    // A refused frame shows as no answer: the request then times out.
    let _ = link.tx.send(frame);
    let deadline = Duration::from_secs(30);
    let answer = futures_lite::future::or(
        async {
            while let Some(Outbound::Frame(f)) = link.rx.recv().await {
                link.rx.written(&f);
                for m in docweave_core::decode(&f, &Limits::default()).unwrap_or_default() {
                    if m.name() == wanted || matches!(m, Message::Error { .. }) {
                        return Some(m);
                    }
                }
            }
            None
        },
        async {
            smol::Timer::after(deadline).await;
            None
        },
    )
    .await;
    link.close("request answered");
    match answer {
        Some(Message::Error { code, message }) => {
            let status = match code {
                ErrorCode::UnknownListener => StatusCode::NOT_FOUND,
                ErrorCode::BadToken => StatusCode::UNAUTHORIZED,
                ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
                ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::BAD_REQUEST,
            };
            problem(status, &format!("{code:?}"), message)
        }
        Some(m) => respond(
            StatusCode::OK,
            serde_json::to_vec(&answer_body(m)).unwrap_or_default(),
            true,
        ),
        None => problem(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            "the node did not answer in time".into(),
        ),
    }
}

fn answer_body(m: Message) -> serde_json::Value {
    match m {
        Message::ListenerRegistered { id } => serde_json::json!({ "id": id }),
        Message::Strands { strands, more, .. } => {
            serde_json::json!({ "strands": strands, "more": more })
        }
        Message::ListenerAcked { accepted, .. } => serde_json::json!({ "accepted": accepted }),
        Message::PushResult { revisions } => serde_json::json!({ "revisions": revisions }),
        other => serde_json::json!({ "message": other.name() }),
    }
}

/// A client at its bound of sessions opens another: its session polled
/// least recently is closed in its favour, if no well-behaved client could
/// still be polling it (quiet past the longest pause between polls and a
/// poll's wait, with a second to spare). Clients that end without closing
/// their sessions (a killed process, an older client) are not locked out
/// until their sessions idle out, while sessions that are polled still
/// count. Whether one was closed.
fn replace_idle(
    all: &mut BTreeMap<String, Session>,
    client: Option<std::net::IpAddr>,
    auth: Option<&str>,
    o: &HttpOptions,
) -> bool {
    let quiet = o.poll_max + o.poll_wait + Duration::from_secs(1);
    let oldest = all
        .iter()
        .filter(|(_, s)| {
            (client.is_some() && s.client == client)
                || (auth.is_some() && s.auth.as_deref() == auth)
        })
        .filter(|(_, s)| s.last_seen.elapsed() >= quiet)
        .min_by_key(|(_, s)| s.last_seen)
        .map(|(id, _)| id.clone());
    match oldest.and_then(|id| all.remove(&id)) {
        Some(s) => {
            s.link
                .close("replaced by a newer session of the same client");
            true
        }
        None => false,
    }
}

#[allow(clippy::too_many_arguments)]
async fn sync(
    session: Option<String>,
    auth: Option<String>,
    client: Option<std::net::IpAddr>,
    body: Vec<u8>,
    o: HttpOptions,
    sessions: Sessions,
    connect: Connector,
) -> Response<Full<Bytes>> {
    let (frames, bad) = split_frames(&body, &o.limits);
    let found = poll_session(session, auth, client, body.len(), &o, &sessions, &connect);
    let Polled { id, tx, rx, wait } = match found {
        Ok(polled) => polled,
        Err(r) => return r,
    };
    // A session sending faster than its rate waits for its answer: its
    // client, waiting for it, sends its next request later.
    if !wait.is_zero() {
        smol::Timer::after(wait).await;
    }
    for f in frames {
        if tx.send(f).is_err() {
            break;
        }
    }
    if let Some(e) = bad {
        // The frames before the bad one were taken; the session ends.
        if let Some(s) = lock(&sessions).remove(&id) {
            s.link.close("malformed body");
        }
        return problem(StatusCode::BAD_REQUEST, "MalformedFrame", e);
    }
    poll_answer(id, rx, sessions, o).await
}

/// A polling session's part in one request: its id, its link's two
/// queues, and how long its pace makes the request wait.
struct Polled {
    id: String,
    tx: super::LinkTx,
    rx: Arc<super::LinkOut>,
    wait: Duration,
}

/// The request's polling session (one it names, used only with the
/// credentials that opened it, or a new one), with its body of `size`
/// bytes charged to its pace; or the answer that refuses the request.
// The error is the refusal's answer itself, as `read_body`'s is.
#[allow(clippy::result_large_err)]
fn poll_session(
    session: Option<String>,
    auth: Option<String>,
    client: Option<std::net::IpAddr>,
    size: usize,
    o: &HttpOptions,
    sessions: &Sessions,
    connect: &Connector,
) -> Result<Polled, Response<Full<Bytes>>> {
    let mut all = lock(sessions);
    let id = match session {
        // A session is used only with the credentials that opened it.
        Some(id) => match all.get_mut(&id) {
            Some(s) if s.auth == auth => {
                s.last_seen = Instant::now();
                id
            }
            _ => {
                return Err(problem(
                    StatusCode::NOT_FOUND,
                    "NoSession",
                    "no such session for these credentials; open one with POST /sync".into(),
                ))
            }
        },
        None => open_session(&mut all, client, auth, o, connect)?,
    };
    let Some(s) = all.get_mut(&id) else {
        return Err(problem(
            StatusCode::GONE,
            "SessionClosed",
            "the session closed".into(),
        ));
    };
    let wait = s.pacer.charge(size, Instant::now());
    Ok(Polled {
        id,
        tx: s.link.tx.clone(),
        rx: s.link.rx.clone(),
        wait,
    })
}

/// Opens a polling session for a client, within the bounds of sessions
/// open at all and per client address and credential (making room by
/// [`replace_idle`]): its id, or the answer that refuses it.
// The error is the refusal's answer itself, as `read_body`'s is.
#[allow(clippy::result_large_err)]
fn open_session(
    all: &mut BTreeMap<String, Session>,
    client: Option<std::net::IpAddr>,
    auth: Option<String>,
    o: &HttpOptions,
    connect: &Connector,
) -> Result<String, Response<Full<Bytes>>> {
    if all.len() >= o.max_sessions {
        return Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            format!(
                "at most {} sessions are open; try again later",
                o.max_sessions
            ),
        ));
    }
    let per_client = all
        .values()
        .filter(|s| client.is_some() && s.client == client)
        .count();
    let per_credential = all
        .values()
        .filter(|s| auth.is_some() && s.auth == auth)
        .count();
    if per_client.max(per_credential) >= o.sessions_per_client
        && !replace_idle(all, client, auth.as_deref(), o)
    {
        let mut r = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "RateLimited",
            format!(
                "at most {} sessions per client and per credential are open; \
                 close one or try again later",
                o.sessions_per_client
            ),
        );
        if let Ok(v) = hyper::header::HeaderValue::from_str("5") {
            r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
        }
        return Err(r);
    }
    let Some(id) = new_session_id() else {
        return Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "no randomness for a session id".into(),
        ));
    };
    all.insert(
        id.clone(),
        Session {
            link: connect(),
            last_seen: Instant::now(),
            client,
            auth,
            pacer: super::Pacer::new(o.inbound_rate, Instant::now()),
        },
    );
    Ok(id)
}

/// Answers a poll with what the node has for the session, waiting up to
/// `o.poll_wait` for the first frame and taking at most about
/// `o.max_answer` bytes; `410` once the node closed the session.
async fn poll_answer(
    id: String,
    rx: Arc<super::LinkOut>,
    sessions: Sessions,
    o: HttpOptions,
) -> Response<Full<Bytes>> {
    // Answer with what the node has for this client, waiting a little for the first frame.
    let mut out = Vec::new();
    let first = futures_lite::future::or(
        async {
            match rx.recv().await {
                Some(Outbound::Frame(f)) => Some(Some(f)),
                Some(Outbound::Close(_)) | None => None,
            }
        },
        async {
            smol::Timer::after(o.poll_wait).await;
            Some(None)
        },
    )
    .await;
    match first {
        None => {
            lock(&sessions).remove(&id);
            return problem(
                StatusCode::GONE,
                "SessionClosed",
                "the node closed this session; start a new one".into(),
            );
        }
        Some(Some(f)) => {
            rx.written(&f);
            out.extend(f);
        }
        Some(None) => {}
    }
    // Frames are taken (and so built from the bytes they share) only now,
    // for a client that asked for them.
    while out.len() < o.max_answer {
        match rx.try_recv() {
            Some(Outbound::Frame(f)) => {
                rx.written(&f);
                out.extend(f);
            }
            // A close is seen by the next poll, as the queue's end.
            Some(Outbound::Close(_)) | None => break,
        }
    }
    let mut r = respond(StatusCode::OK, out, false);
    if let Ok(v) = hyper::header::HeaderValue::from_str(&id) {
        r.headers_mut().insert("x-docweave-session", v);
    }
    r
}

#[derive(serde::Deserialize)]
struct RegisterBody {
    #[serde(default)]
    filter: Filter,
    #[serde(default)]
    id: Option<ListenerId>,
}

/// A JSON body, decoded within the memory budget of its size (see
/// `docweave_core::budget`).
fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    match docweave_core::budget::within(body.len(), || serde_json::from_slice::<T>(body)) {
        (Ok(v), _) => Ok(v),
        (Err(_), true) => Err(docweave_core::budget::EXCEEDED.into()),
        (Err(e), false) => Err(e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct AckBody {
    revisions: Vec<Revision>,
}

#[derive(serde::Deserialize)]
struct PushBody {
    strands: Vec<Strand>,
}

/// Where an HTTP client's requests go: `host:port`, over TLS (`https://`)
/// when it is given what to trust.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    /// `host:port`.
    pub addr: String,
    /// TLS with the server, checked against what this trusts.
    pub tls: Option<super::tls::TlsClient>,
}

impl HttpTarget {
    /// Plain HTTP to `addr`.
    pub fn plain(addr: &str) -> Self {
        Self {
            addr: addr.to_string(),
            tls: None,
        }
    }

    /// HTTPS to `addr`, whose certificate must name its host and be signed
    /// by a CA `trust` holds.
    pub fn tls(addr: &str, trust: super::tls::TlsClient) -> Self {
        Self {
            addr: addr.to_string(),
            tls: Some(trust),
        }
    }

    /// The host part of the address, as its certificate names it.
    fn host(&self) -> &str {
        let host = match self.addr.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => &self.addr,
        };
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// Sends one POST and returns the status, the session header and the body.
pub async fn post(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), String> {
    post_with_session(&HttpTarget::plain(addr), path, headers, body, ANSWER_LIMIT)
        .await
        .map(|(status, _, body)| (status, body))
}

/// Sends one request of any method (`GET`, `DELETE`, ...) and returns the
/// status and the body (at most 64 MiB of it): for tools that call a
/// server's HTTP API, such as `docweave inspect`.
pub async fn request(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), String> {
    request_to(method, &HttpTarget::plain(addr), path, headers, body).await
}

/// [`request`] to a target that may speak TLS.
pub async fn request_to(
    method: &str,
    target: &HttpTarget,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), String> {
    request_capped(method, target, path, headers, body, ANSWER_LIMIT).await
}

/// [`request_to`], reading at most `max_answer` bytes of the answer (a
/// longer one is an error).
pub async fn request_capped(
    method: &str,
    target: &HttpTarget,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    max_answer: usize,
) -> Result<(u16, Vec<u8>), String> {
    let method = hyper::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    send_request(method, target, path, headers, body, max_answer)
        .await
        .map(|(status, _, body)| (status, body))
}

/// Largest answer [`post`] reads: a server cannot make a client hold more.
const ANSWER_LIMIT: usize = 64 * 1024 * 1024;

async fn post_with_session(
    target: &HttpTarget,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    max_answer: usize,
) -> Result<(u16, Option<String>, Vec<u8>), String> {
    send_request(hyper::Method::POST, target, path, headers, body, max_answer).await
}

async fn send_request(
    method: hyper::Method,
    target: &HttpTarget,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    max_answer: usize,
) -> Result<(u16, Option<String>, Vec<u8>), String> {
    let tcp = TcpStream::connect(&target.addr)
        .await
        .map_err(|e| e.to_string())?;
    match &target.tls {
        None => {
            request_on(
                FuturesIo::new(tcp),
                method,
                target,
                path,
                headers,
                body,
                max_answer,
            )
            .await
        }
        Some(trust) => {
            let stream = trust.connect(target.host(), tcp).await?;
            let io = FuturesIo::new(stream);
            request_on(io, method, target, path, headers, body, max_answer).await
        }
    }
}

/// One request and its answer on a connected stream (plain or TLS).
async fn request_on<IO>(
    io: IO,
    method: hyper::Method,
    target: &HttpTarget,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    max_answer: usize,
) -> Result<(u16, Option<String>, Vec<u8>), String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let addr = target.addr.as_str();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    smol::spawn(async move {
        let _ = conn.await;
    })
    .detach();
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let session = resp
        .headers()
        .get("x-docweave-session")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = Limited::new(resp.into_body(), max_answer)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok((status, session, body))
}

/// A polling link to a node's `/sync`, presenting `token` on every request:
/// the first request opens a session, the answer names it. Pending frames
/// are folded into the next request; polls come quickly while frames flow
/// and back off to `poll_max` while idle. A request that fails is sent
/// again with the same content; three failures in a row end the link, and
/// the node's reconnect schedule takes over. Frames of an answer are taken
/// one by one: one bad frame does not lose the others.
pub fn http_link(addr: &str, token: Option<&str>, o: HttpOptions) -> Link {
    http_link_to(HttpTarget::plain(addr), token, o)
}

/// [`http_link`] to a target that may speak TLS (`https://`).
pub fn http_link_to(target: HttpTarget, token: Option<&str>, o: HttpOptions) -> Link {
    let (out_tx, out_rx) = outbound(DEFAULT_BACKLOG);
    let (in_tx, in_rx) = async_channel::bounded::<Vec<u8>>(crate::transport::INBOUND_FRAMES);
    let auth = token.map(|t| format!("Bearer {t}"));
    smol::spawn(poll_server(target, auth, o, out_rx, in_tx)).detach();
    Link {
        tx: out_tx,
        rx: in_rx,
    }
}

/// The task of a polling link: folds what the node sends into requests
/// and hands the frames of their answers to the node, polling while
/// nothing is sent, until the link closes, the server refuses a request
/// (`4xx`) or three requests in a row fail.
async fn poll_server(
    target: HttpTarget,
    auth: Option<String>,
    o: HttpOptions,
    out_rx: super::LinkOut,
    in_tx: async_channel::Sender<Vec<u8>>,
) {
    let mut pause = o.poll_min;
    let mut failures = 0;
    let mut session: Option<String> = None;
    // What the last failed request carried: sent again first.
    let mut unsent: Vec<u8> = Vec::new();
    // A frame that did not fit into the last request: it opens the next.
    let mut carried: Option<Vec<u8>> = None;
    // An answer holds frames up to the server's body limit, plus the
    // one frame that crossed it.
    let max_answer = o.max_body.saturating_add(o.limits.max_frame);
    loop {
        // Wait for something to send, or for the next poll.
        let first = if !unsent.is_empty() {
            smol::Timer::after(pause).await;
            None
        } else if let Some(f) = carried.take() {
            Some(Some(Outbound::Frame(f)))
        } else {
            futures_lite::future::or(async { Some(out_rx.recv().await) }, async {
                smol::Timer::after(pause).await;
                None
            })
            .await
        };
        let mut body = std::mem::take(&mut unsent);
        let closing = fold_frames(first, &out_rx, &mut body, &mut carried, o.max_body);
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let path = match &session {
            Some(id) => format!("/sync?session={id}"),
            None => "/sync".to_string(),
        };
        if closing {
            // Tell the server, so the node sees the session end now
            // (if this fails, the session idles out there instead).
            if session.is_some() {
                let close = format!("{path}&close=1");
                let _ = post_with_session(&target, &close, &headers, body, ANSWER_LIMIT).await;
            }
            break;
        }
        let sent = !body.is_empty() || carried.is_some();
        match post_with_session(&target, &path, &headers, body.clone(), max_answer).await {
            Ok((200, id, answer)) => {
                failures = 0;
                if session.is_none() {
                    session = id;
                }
                let Some(busy) = deliver_answer(&answer, sent, &o.limits, &in_tx).await else {
                    return;
                };
                pause = if busy {
                    o.poll_min
                } else {
                    (pause * 2).min(o.poll_max)
                };
            }
            Ok((status, _, _)) if (400..500).contains(&status) => break,
            _ => {
                failures += 1;
                if failures >= 3 {
                    break;
                }
                unsent = body;
                pause = (pause * 2).min(o.poll_max);
            }
        }
    }
    in_tx.close();
    out_rx.close();
}

/// Hands the frames of a server's answer to the node, one by one (one bad
/// frame does not lose the others): whether the link is busy (it `sent`
/// something, or frames came), or `None` once the node is gone.
async fn deliver_answer(
    answer: &[u8],
    sent: bool,
    limits: &Limits,
    in_tx: &async_channel::Sender<Vec<u8>>,
) -> Option<bool> {
    let (frames, bad) = split_frames(answer, limits);
    if let Some(e) = bad {
        tracing::warn!("http: part of an answer could not be read: {e}");
    }
    let busy = sent || !frames.is_empty();
    for f in frames {
        if in_tx.send(f).await.is_err() {
            return None;
        }
    }
    Some(busy)
}

/// Folds the node's frames into one request's `body`: `first` (what the
/// wait for the node brought, `None` for a poll), then what else is
/// queued, up to the server's body limit `max_body` (a frame that does not
/// fit is `carried` into the next request). Whether the link closes.
fn fold_frames(
    first: Option<Option<Outbound>>,
    out_rx: &super::LinkOut,
    body: &mut Vec<u8>,
    carried: &mut Option<Vec<u8>>,
    max_body: usize,
) -> bool {
    let mut closing = false;
    // Frames are folded into one request up to the server's body
    // limit; a large message's chunks go in as many requests.
    let mut take = |item: Outbound, body: &mut Vec<u8>| match item {
        Outbound::Frame(f) if !body.is_empty() && body.len() + f.len() > max_body => {
            *carried = Some(f);
            false
        }
        Outbound::Frame(f) => {
            out_rx.written(&f);
            body.extend(f);
            true
        }
        Outbound::Close(_) => {
            closing = true;
            false
        }
    };
    let mut more = match first {
        // The link was dropped: the session ends as if closed, so
        // the server does not hold it until it idles out (a
        // client's sessions are bounded per address).
        Some(None) => take(Outbound::Close(String::new()), body),
        Some(Some(item)) => take(item, body),
        None => true,
    };
    while more {
        match out_rx.try_recv() {
            Some(item) => more = take(item, body),
            None => break,
        }
    }
    closing
}
