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
}

impl ApiAnswer {
    /// A JSON answer.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
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
        }
    }
}

/// The host's handler of its routes.
pub type ApiHandler =
    Arc<dyn Fn(ApiRequest) -> Pin<Box<dyn Future<Output = ApiAnswer> + Send>> + Send + Sync>;

/// Routes under one prefix, and the largest body they take.
#[derive(Clone)]
pub struct ApiRoutes {
    /// Paths starting with this (`/admin/`) are the handler's.
    pub prefix: String,
    /// The handler.
    pub handler: ApiHandler,
    /// The largest request body, in bytes (a larger one is answered `413`).
    pub max_body: usize,
}

/// Reads the request's body and asks the handler.
pub(crate) async fn answer(
    req: Request<Incoming>,
    routes: &ApiRoutes,
    within: Duration,
) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let bearer = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let body = match super::http::read_body(req, routes.max_body, within).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let a = (routes.handler)(ApiRequest {
        method,
        path,
        query,
        bearer,
        body,
    })
    .await;
    let mut r = Response::new(Full::new(Bytes::from(a.body)));
    *r.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(a.content_type),
    );
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
            body: Vec::new(),
        };
        assert_eq!(r.param("limit"), Some("5"));
        assert_eq!(r.param("after"), Some("a"));
        assert_eq!(r.param("flag"), Some(""));
        assert_eq!(r.param("lim"), None);
    }
}
