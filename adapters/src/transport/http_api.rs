//! Routes a host answers on the HTTP endpoint (the admin API of
//! `docweave serve`): a request whose path starts with the routes' prefix
//! goes, with its body read (bounded, within the body deadline), to the
//! host's handler; its answer is sent as given. Everything else stays the
//! transport's. The transport knows nothing of what the routes mean.

use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;

/// One request for the host's routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    /// `GET`, `POST`, `DELETE`, ...
    pub method: String,
    /// The path, prefix included (`/admin/docs/a`), not decoded.
    pub path: String,
    /// The query string, without `?`.
    pub query: Option<String>,
    /// The `Authorization: Bearer` token, if any.
    pub bearer: Option<String>,
    /// The request's headers, names in lower case (hyper bounds how many
    /// and how large).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl ApiRequest {
    /// A query parameter's value (not decoded), if given.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then_some(v)
        })
    }

    /// A header's value, by its name in lower case, if given (as text).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The host's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAnswer {
    /// The HTTP status.
    pub status: u16,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
    /// More headers (`etag`, say).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiAnswer {
    /// A JSON answer.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }

    /// The same answer with another status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The same answer with one more header.
    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// An error as JSON: `{"code": ..., "message": ...}`, as every other
    /// error of the endpoint.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        let message: String = message.into();
        Self::json(
            status,
            &serde_json::json!({ "code": code, "message": message }),
        )
    }

    /// Bytes (a snapshot, say).
    pub fn bytes(body: Vec<u8>) -> Self {
        Self {
            status: 200,
            content_type: "application/octet-stream",
            body,
            headers: Vec::new(),
        }
    }
}

/// The host's handler of its routes.
pub type ApiHandler =
    Arc<dyn Fn(ApiRequest) -> Pin<Box<dyn Future<Output = ApiAnswer> + Send>> + Send + Sync>;

/// What refuses a request before its body is read (a missing token, say):
/// `Some(answer)` refuses it. Called with the body empty.
pub type ApiGate = Arc<dyn Fn(&ApiRequest) -> Option<ApiAnswer> + Send + Sync>;

/// Routes under one prefix, and the largest body they take.
#[derive(Clone)]
pub struct ApiRoutes {
    /// Paths starting with this (`/admin/`) are the handler's.
    pub prefix: String,
    /// Asked first: a request it refuses costs no body read.
    pub gate: ApiGate,
    /// The handler.
    pub handler: ApiHandler,
    /// The largest body of a `POST` or `PUT`, in bytes (a larger one is
    /// answered `413`); other methods may send at most 64 KiB.
    pub max_body: usize,
}

/// The most body a request other than `POST` or `PUT` may carry.
const SMALL_BODY: usize = 64 * 1024;

/// Reads the request's body and asks the handler.
pub(crate) async fn answer(
    req: Request<Incoming>,
    routes: &ApiRoutes,
    within: Duration,
) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let bearer = super::http::bearer(&req);
    let headers = req
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let mut request = ApiRequest {
        method,
        path,
        query,
        bearer,
        headers,
        body: Vec::new(),
    };
    let a = match (routes.gate)(&request) {
        Some(refused) => refused,
        None => {
            let max = match request.method.as_str() {
                "POST" | "PUT" => routes.max_body,
                _ => SMALL_BODY.min(routes.max_body.max(SMALL_BODY)),
            };
            request.body = match super::http::read_body(req, max, within).await {
                Ok(b) => b,
                Err(refused) => return refused,
            };
            (routes.handler)(request).await
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(a.body)));
    *r.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(a.content_type),
    );
    for (name, value) in a.headers {
        // A name or value that is no header (a newline in it) is left
        // out: the host's headers are its own figures, not a client's text.
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes());
        if let (Ok(n), Ok(v)) = (name, hyper::header::HeaderValue::from_str(&value)) {
            r.headers_mut().insert(n, v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_is_found_by_its_name_only() {
        let r = ApiRequest {
            method: "GET".into(),
            path: "/admin/docs".into(),
            query: Some("after=a&limit=5&flag".into()),
            bearer: None,
            headers: vec![("accept".into(), "application/json".into())],
            body: Vec::new(),
        };
        assert_eq!(r.header("accept"), Some("application/json"));
        assert_eq!(r.header("etag"), None);
        assert_eq!(r.param("limit"), Some("5"));
        assert_eq!(r.param("after"), Some("a"));
        assert_eq!(r.param("flag"), Some(""));
        assert_eq!(r.param("lim"), None);
    }
}
