//! Which webhooks `serve` calls: `--webhook URL` (every document, every
//! event) and `--webhook-config FILE`, a JSON file with per-hook document
//! patterns and events:
//!
//! ```json
//! {"hooks": [{"url": "https://app.example/hooks/docs", "name": "search",
//!             "docs": ["team-7/*", "readme"], "events": ["changed", "deleted"]}]}
//! ```
//!
//! A hook's identity on the server (its peer and its listener) is derived
//! from the signing secret and what the hook is, so every server on one
//! PostgreSQL, started with the same options, names the same hook, and no
//! client can guess it.

use super::signature::hex;
use crate::jwt::{right, DocClaim};
use docweave_adapters::transport::HttpTarget;
use docweave_core::{DocRight, ListenerId};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Most hooks a server calls.
pub const MOST_HOOKS: usize = 32;
/// Most document patterns one hook names.
const MOST_PATTERNS: usize = 256;

/// The events a hook hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    /// A document was written for the first time.
    pub created: bool,
    /// A document changed.
    pub changed: bool,
    /// A document was deleted.
    pub deleted: bool,
}

impl Events {
    /// Every event.
    pub const ALL: Events = Events {
        created: true,
        changed: true,
        deleted: true,
    };

    fn parse(names: &[String]) -> Result<Self, String> {
        let mut e = Events {
            created: false,
            changed: false,
            deleted: false,
        };
        for n in names {
            match n.strip_prefix("document.").unwrap_or(n) {
                "created" => e.created = true,
                "changed" => e.changed = true,
                "deleted" => e.deleted = true,
                other => {
                    return Err(format!(
                        "unknown event {other:?} (created, changed or deleted)"
                    ))
                }
            }
        }
        Ok(e)
    }
}

/// One hook.
#[derive(Debug, Clone)]
pub struct Hook {
    /// Its name in logs, metrics and the status page.
    pub name: String,
    /// Its URL without query (a query may hold a secret of the receiver's).
    pub shown: String,
    /// Where requests go.
    pub target: HttpTarget,
    /// The request path with its query.
    pub path: String,
    /// The documents it hears of (read rights on their patterns).
    pub rights: Vec<DocRight>,
    /// The events it hears.
    pub events: Events,
    /// Its identity on the node.
    pub peer: String,
    /// Its listener: where its undelivered events wait, in the store.
    pub listener: ListenerId,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHook {
    url: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    docs: Option<Vec<String>>,
    #[serde(default)]
    events: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HooksFile {
    hooks: Vec<FileHook>,
}

/// The hooks of `--webhook` URLs and a config file's text, checked.
pub fn hooks(urls: &[String], file: Option<&str>, secret: &[u8]) -> Result<Vec<Hook>, String> {
    let mut given: Vec<FileHook> = urls
        .iter()
        .map(|u| FileHook {
            url: u.clone(),
            name: None,
            docs: None,
            events: None,
        })
        .collect();
    if let Some(text) = file {
        let parsed: HooksFile =
            serde_json::from_str(text).map_err(|e| format!("the webhook config: {e}"))?;
        given.extend(parsed.hooks);
    }
    if given.len() > MOST_HOOKS {
        return Err(format!("at most {MOST_HOOKS} webhooks"));
    }
    let mut hooks = Vec::new();
    for h in given {
        let hook = hook(h, secret)?;
        if hooks.iter().any(|o: &Hook| o.name == hook.name) {
            return Err(format!("two webhooks are named {:?}", hook.name));
        }
        hooks.push(hook);
    }
    Ok(hooks)
}

fn hook(h: FileHook, secret: &[u8]) -> Result<Hook, String> {
    let (scheme, rest) = h
        .url
        .split_once("://")
        .filter(|(s, _)| *s == "http" || *s == "https")
        .ok_or_else(|| format!("webhook {:?} is not an http:// or https:// URL", h.url))?;
    let (addr, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if addr.is_empty() {
        return Err(format!("webhook {:?} names no host", h.url));
    }
    let target = crate::client::http_target(&format!("{scheme}://{addr}"))?
        .ok_or_else(|| format!("webhook {:?} is not an http:// or https:// URL", h.url))?;
    let docs = h.docs.unwrap_or_else(|| vec!["*".into()]);
    if docs.is_empty() || docs.len() > MOST_PATTERNS {
        return Err(format!(
            "webhook {:?}: name 1 to {MOST_PATTERNS} document patterns",
            h.url
        ));
    }
    let rights = docs
        .iter()
        .map(|d| {
            right(&DocClaim {
                doc: d.clone(),
                access: "r".into(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let events = match &h.events {
        Some(names) => Events::parse(names).map_err(|e| format!("webhook {:?}: {e}", h.url))?,
        None => Events::ALL,
    };
    let shown = format!("{scheme}://{addr}{}", path.split('?').next().unwrap_or("/"));
    // Which hook it is: its name, else its URL. Its place among the options
    // or its patterns may change and it stays the same hook (its
    // undelivered events are kept).
    let (name, key) = match h.name {
        Some(name) => (name.clone(), format!("name\n{name}")),
        None => (shown.clone(), format!("url\n{}", h.url)),
    };
    if name.is_empty() || name.len() > 256 || name.chars().any(|c| c.is_control() || c == '"') {
        return Err(format!(
            "webhook name {name:?}: 1 to 256 characters, no quotes"
        ));
    }
    let digest = keyed(secret, &key);
    let peer = format!("{}{}", super::PEER_PREFIX, hex(&digest[..8]));
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[8..16]);
    // In the range a client may name (below 2^63), never 0.
    let listener = ListenerId((u64::from_be_bytes(id) >> 1).max(1));
    Ok(Hook {
        name,
        shown,
        target,
        path: path.to_string(),
        rights,
        events,
        peer,
        listener,
    })
}

/// SHA-256 of the secret and `what`: unguessable without the secret.
fn keyed(secret: &[u8], what: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((secret.len() as u64).to_be_bytes());
    h.update(secret);
    h.update(what.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_are_read_from_flags_and_file_and_bad_ones_refused() {
        let file = r#"{"hooks": [{"url": "http://127.0.0.1:9/in?key=s3cret", "name": "search",
                       "docs": ["team-7/*"], "events": ["changed", "document.deleted"]}]}"#;
        let hooks = hooks(&["http://127.0.0.1:8/a".into()], Some(file), b"secret").unwrap();
        assert_eq!(hooks.len(), 2);
        assert_eq!(hooks[0].name, "http://127.0.0.1:8/a", "no name: its URL");
        assert_eq!(hooks[0].events, Events::ALL);
        let search = &hooks[1];
        assert_eq!(search.shown, "http://127.0.0.1:9/in", "no query shown");
        assert_eq!(search.path, "/in?key=s3cret");
        assert!(!search.events.created && search.events.changed && search.events.deleted);
        assert!(search.rights[0].doc.matches("team-7/notes"));
        assert!(!search.rights[0].doc.matches("team-8/notes"));
        assert!(search.rights[0].access.read && !search.rights[0].access.write);
        // The same options and secret name the same hook; another secret not.
        let again = super::hooks(&["http://127.0.0.1:8/a".into()], Some(file), b"secret").unwrap();
        assert_eq!(again[1].listener, search.listener);
        assert_eq!(again[1].peer, search.peer);
        let other = super::hooks(&[], Some(file), b"other").unwrap();
        assert_ne!(other[0].listener, search.listener);
        // Another place among the options, other patterns: the same hook.
        let moved = r#"{"hooks": [{"url": "http://127.0.0.1:9/in?key=s3cret", "name": "search",
                        "docs": ["team-8/*"]}]}"#;
        let moved = super::hooks(&[], Some(moved), b"secret").unwrap();
        assert_eq!(moved[0].listener, search.listener);
        assert_eq!(moved[0].peer, search.peer);
        assert!(search.peer.starts_with(super::super::PEER_PREFIX));
        assert!(search.listener.0 < 1 << 63 && search.listener.0 > 0);
        for bad in [
            r#"{"hooks": [{"url": "ftp://x/"}]}"#,
            r#"{"hooks": [{"url": "http:///x"}]}"#,
            r#"{"hooks": [{"url": "http://x/", "events": ["renamed"]}]}"#,
            r#"{"hooks": [{"url": "http://x/", "docs": []}]}"#,
            r#"{"hooks": [{"url": "http://x/", "color": "red"}]}"#,
            r#"{"hooks": [{"url": "http://x/", "name": "a"}, {"url": "http://y/", "name": "a"}]}"#,
            r#"not json"#,
        ] {
            assert!(
                super::hooks(&[], Some(bad), b"s").is_err(),
                "{bad} was taken"
            );
        }
    }
}
