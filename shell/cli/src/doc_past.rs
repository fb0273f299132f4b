//! `docweave doc history | diff | restore` and `doc get --at`: a document's
//! past through a server's document API (`http://` or `https://` targets),
//! as the identity the credentials name (see `doc_history` for the routes).

use crate::client::{http_target, Credentials, Done};
use docweave_adapters::transport::{request_to, HttpTarget};
use serde_json::Value;

/// The server's document API at `target`, or why not.
fn server(target: &str, what: &str) -> Result<HttpTarget, String> {
    http_target(target)?.ok_or_else(|| {
        format!("{what} asks a server's document API: give its http:// or https:// address, not {target:?}")
    })
}

/// `/docs/ID` with the id percent-encoded, then `rest`.
fn path(doc: &str, rest: &str) -> String {
    let id = percent_encoding::utf8_percent_encode(doc, percent_encoding::NON_ALPHANUMERIC);
    format!("/docs/{id}{rest}")
}

/// A query value, percent-encoded.
fn q(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// One request as the credentials' identity; a failure says the server's
/// code and message. `None`: the document does not exist (404 NotFound).
async fn call(
    target: &str,
    method: &str,
    path: &str,
    auth: &Credentials,
    body: Vec<u8>,
) -> Result<Option<Vec<u8>>, String> {
    let at = server(target, &format!("doc {}", method.to_lowercase()))?;
    let bearer = auth.token().map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    if let Some(peer) = auth.peer() {
        headers.push(("x-docweave-peer", peer));
    }
    if !body.is_empty() {
        headers.push(("content-type", "application/json"));
    }
    let (status, answer) = request_to(method, &at, path, &headers, body)
        .await
        .map_err(|e| format!("cannot reach {target}: {e}"))?;
    let v: Value = serde_json::from_slice(&answer).unwrap_or_default();
    match status {
        200..=299 => Ok(Some(answer)),
        404 if v["code"] == "NotFound" => Ok(None),
        _ => Err(format!(
            "{target} answered {status} {}: {}",
            v["code"].as_str().unwrap_or("?"),
            v["message"].as_str().unwrap_or("")
        )),
    }
}

/// `doc get --at VERSION`: the document's state at a version, as JSON.
pub async fn get_at(target: &str, doc: &str, at: &str, auth: &Credentials) -> Result<Done, String> {
    match call(
        target,
        "GET",
        &path(doc, &format!("?at={}", q(at))),
        auth,
        Vec::new(),
    )
    .await?
    {
        Some(body) => {
            out!("{}", String::from_utf8_lossy(&body));
            Ok(Done::Ok)
        }
        None => Ok(Done::Missing(format!("{target} has no document {doc}"))),
    }
}

/// `doc history`: who wrote what, newest first, one entry a line:
/// time, author, version, operations, message.
pub async fn history(
    target: &str,
    doc: &str,
    limit: usize,
    group_ms: u64,
    json: bool,
    auth: &Credentials,
) -> Result<Done, String> {
    let mut before: Option<String> = None;
    let mut left = limit;
    while left > 0 {
        let page = left.min(1_000);
        let mut rest = format!("/history?limit={page}&group_ms={group_ms}");
        if let Some(b) = &before {
            rest.push_str(&format!("&before={b}"));
        }
        let Some(body) = call(target, "GET", &path(doc, &rest), auth, Vec::new()).await? else {
            return Ok(Done::Missing(format!("{target} has no document {doc}")));
        };
        let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let entries = v["entries"].as_array().cloned().unwrap_or_default();
        for e in &entries {
            if json {
                out!("{e}");
            } else {
                out!(
                    "{}  {}  {}  peer {}  {} ops{}",
                    utc(e["at"].as_u64().unwrap_or(0)),
                    e["author"].as_str().unwrap_or("?"),
                    e["version"].as_str().unwrap_or(""),
                    e["peer"].as_str().unwrap_or("?"),
                    e["operations"].as_u64().unwrap_or(0),
                    e["message"]
                        .as_str()
                        .map(|m| format!("  {m:?}"))
                        .unwrap_or_default(),
                );
            }
        }
        left = left.saturating_sub(entries.len());
        match v["next"].as_str() {
            Some(next) if !entries.is_empty() => before = Some(next.to_string()),
            _ => break,
        }
    }
    Ok(Done::Ok)
}

/// `doc diff`: what changed from one version to another (or to now).
pub async fn diff(
    target: &str,
    doc: &str,
    from: &str,
    to: Option<&str>,
    auth: &Credentials,
) -> Result<Done, String> {
    let mut rest = format!("/diff?from={}", q(from));
    if let Some(to) = to {
        rest.push_str(&format!("&to={}", q(to)));
    }
    match call(target, "GET", &path(doc, &rest), auth, Vec::new()).await? {
        Some(body) => {
            out!("{}", String::from_utf8_lossy(&body));
            Ok(Done::Ok)
        }
        None => Ok(Done::Missing(format!("{target} has no document {doc}"))),
    }
}

/// `doc restore`: the document brought back to a version, as a new change.
pub async fn restore(
    target: &str,
    doc: &str,
    version: &str,
    auth: &Credentials,
) -> Result<Done, String> {
    let body = serde_json::json!({ "version": version })
        .to_string()
        .into_bytes();
    match call(target, "POST", &path(doc, "/restore"), auth, body).await? {
        Some(answer) => {
            out!("{}", String::from_utf8_lossy(&answer));
            Ok(Done::Ok)
        }
        None => Ok(Done::Missing(format!("{target} has no document {doc}"))),
    }
}

/// Unix milliseconds as UTC (`2026-12-06T08:44:32.123Z`).
fn utc(ms: u64) -> String {
    let (secs, milli) = (ms / 1000, ms % 1000);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_milliseconds_print_as_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc(1_796_546_672_000), "2026-12-06T08:44:32.000Z");
    }
}
