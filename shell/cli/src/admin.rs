//! The admin API of `docweave serve` (`/admin/...` on the HTTP port), on
//! only with `--admin-token`: every request presents it as
//! `Authorization: Bearer TOKEN`. Documents are read from the node (what it
//! knows) and from a store connection of the API's own (sizes, snapshots,
//! compaction, as `docweave compact` does on a live server); deletions,
//! imports and disconnections go through the node, so every client hears
//! of them. Errors are JSON: `{"code": ..., "message": ...}`.
//!
//! ```text
//! GET    /admin/docs?after=ID&limit=N    documents in id order, with sizes, a page at a time
//! GET    /admin/docs/ID                  one document
//! DELETE /admin/docs/ID                  delete it (here and on every peer that follows it)
//! POST   /admin/docs/ID/compact          fold its stored changes into one snapshot
//! GET    /admin/docs/ID/snapshot         a Loro snapshot of what the store holds
//! POST   /admin/docs/ID/snapshot         import a Loro snapshot or update (creates it if new)
//! GET    /admin/connections              the network connections
//! DELETE /admin/connections/CHANNEL      close one
//! DELETE /admin/identities/PEER          close every connection of an identity
//! ```
//! Ids in paths are percent-encoded (`team%2Fnotes` for `team/notes`).

use crate::compact::{compact_doc, stored_snapshot, Compacted};
use docweave_adapters::transport::{ApiAnswer, ApiGate, ApiHandler, ApiRequest, ApiRoutes};
use docweave_adapters::Store;
use docweave_core::{ChannelId, Clock, DocId, Filter, ReadRange};
use docweave_shell::Repo;
use serde_json::json;
use std::sync::{Arc, Mutex};

/// Where the admin API lives.
pub const PREFIX: &str = "/admin/";

/// The most documents one page lists.
const MAX_PAGE: usize = 1_000;
/// Pages of only deleted documents a listing passes over before it
/// answers one empty page with a `next`.
const EMPTY_PAGES_PASSED: usize = 8;

/// What the API works with.
struct Admin {
    repo: Arc<Repo>,
    store: Arc<Mutex<Box<dyn Store>>>,
    token: String,
}

/// The routes for the HTTP endpoint: `store` is a connection of the API's
/// own to the server's store; `max_body` bounds an imported snapshot.
pub fn routes(repo: Arc<Repo>, store: Box<dyn Store>, token: String, max_body: usize) -> ApiRoutes {
    let admin = Arc::new(Admin {
        repo,
        store: Arc::new(Mutex::new(store)),
        token,
    });
    // The token is checked before a body is read: without it a request
    // costs the server nothing.
    let gate: ApiGate = {
        let admin = admin.clone();
        Arc::new(move |req: &ApiRequest| {
            (!admin.authorized(req.bearer.as_deref())).then(|| {
                ApiAnswer::error(
                    401,
                    "BadToken",
                    "the admin API wants the server's admin token: Authorization: Bearer TOKEN",
                )
            })
        })
    };
    let handler: ApiHandler = Arc::new(move |req| {
        let admin = admin.clone();
        Box::pin(async move { admin.answer(req).await })
    });
    ApiRoutes {
        prefix: PREFIX.into(),
        gate,
        handler,
        max_body,
    }
}

/// The routes of a server started without `--admin-token`: each request
/// is told there is no admin API.
pub fn off() -> ApiRoutes {
    let handler: ApiHandler = Arc::new(|_| {
        Box::pin(async {
            ApiAnswer::error(
                404,
                "NoAdminApi",
                "this server has no admin API: start it with --admin-token",
            )
        })
    });
    ApiRoutes {
        prefix: PREFIX.into(),
        gate: Arc::new(|_: &ApiRequest| None),
        handler,
        max_body: 0,
    }
}

/// An id from a path, percent-decoded; bytes that are not UTF-8 are
/// refused rather than replaced (they would name another document).
fn decode(raw: &str) -> Result<String, ApiAnswer> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiAnswer::error(400, "BadRequest", format!("{raw:?} is not UTF-8")))
}

fn bad_doc(e: impl std::fmt::Display) -> ApiAnswer {
    ApiAnswer::error(400, "BadDocId", e.to_string())
}

fn stopped() -> ApiAnswer {
    ApiAnswer::error(503, "Stopped", "the node is stopping")
}

fn store_failed(e: impl std::fmt::Display) -> ApiAnswer {
    ApiAnswer::error(503, "StoreFailed", e.to_string())
}

impl Admin {
    fn authorized(&self, bearer: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        bearer.is_some_and(|b| bool::from(b.as_bytes().ct_eq(self.token.as_bytes())))
    }

    /// Answers a request the gate let through (it holds the token).
    async fn answer(&self, req: ApiRequest) -> ApiAnswer {
        let Some(rest) = req.path.strip_prefix(PREFIX).map(str::to_string) else {
            return ApiAnswer::error(404, "NotFound", format!("no admin route {}", req.path));
        };
        let method = req.method.as_str();
        if rest == "docs" {
            return match method {
                "GET" => self.list(&req).await,
                _ => not_allowed(method, &rest),
            };
        }
        if rest == "connections" {
            return match method {
                "GET" => self.connections().await,
                _ => not_allowed(method, &rest),
            };
        }
        if let Some(channel) = rest.strip_prefix("connections/") {
            return match (method, channel.parse::<u64>()) {
                ("DELETE", Ok(c)) => self.disconnect_channel(ChannelId(c)).await,
                ("DELETE", Err(_)) => ApiAnswer::error(
                    400,
                    "BadRequest",
                    format!("{channel:?} is not a connection's channel number"),
                ),
                _ => not_allowed(method, &rest),
            };
        }
        if let Some(peer) = rest.strip_prefix("identities/") {
            let peer = match decode(peer) {
                Ok(p) => p,
                Err(refused) => return refused,
            };
            return match method {
                "DELETE" => self.disconnect_peer(&peer).await,
                _ => not_allowed(method, &rest),
            };
        }
        if let Some(doc) = rest.strip_prefix("docs/") {
            // The suffix is taken off before decoding: `a%2Fcompact` is a
            // document, `a/compact` a call.
            let (doc, what) = match (doc.strip_suffix("/compact"), doc.strip_suffix("/snapshot")) {
                (Some(d), _) => (d, "compact"),
                (_, Some(d)) => (d, "snapshot"),
                _ => (doc, ""),
            };
            let doc = match decode(doc) {
                Ok(d) => d,
                Err(refused) => return refused,
            };
            return match (what, method) {
                ("compact", "POST") => self.compact(&doc).await,
                ("snapshot", "GET") => self.snapshot(&doc).await,
                ("snapshot", "POST" | "PUT") => self.import(&doc, req.body).await,
                ("", "GET") => self.info(&doc).await,
                ("", "DELETE") => self.delete(&doc).await,
                _ => not_allowed(method, &rest),
            };
        }
        ApiAnswer::error(404, "NotFound", format!("no admin route {}", req.path))
    }

    /// Runs `f` on the API's store connection, off the async threads.
    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> T + Send + 'static,
    ) -> T {
        let store = self.store.clone();
        smol::unblock(move || {
            let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
            f(s.as_mut())
        })
        .await
    }

    async fn list(&self, req: &ApiRequest) -> ApiAnswer {
        let limit = match req.param("limit").map(str::parse::<usize>) {
            None => 100,
            Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
            Some(_) => {
                return ApiAnswer::error(
                    400,
                    "BadRequest",
                    format!("limit is a number from 1 to {MAX_PAGE}"),
                )
            }
        };
        let after = match req.param("after").map(decode).transpose() {
            Ok(a) => a,
            Err(refused) => return refused,
        };
        // The store's page first: memory holds only the documents in use
        // (and the idle ones up to `--idle-metadata`), and the node's
        // thread then merges one page, however many documents there are.
        // A page of only deleted documents is passed over (a few times at
        // most), so an empty page means the end.
        let mut from = match after.as_deref().map(DocId::parse).transpose() {
            Ok(f) => f,
            Err(e) => return bad_doc(e),
        };
        let mut page = docweave_core::DocPage::default();
        for _ in 0..EMPTY_PAGES_PASSED {
            let at = from.clone();
            let stored = self
                .with_store(move |s| {
                    s.read_index(&ReadRange::Ids { after: at }, &Filter::all(), limit + 1)
                })
                .await;
            let stored = match stored {
                Ok(s) => s.into_iter().map(|d| (d.doc, d.version, d.clock)).collect(),
                Err(e) => return store_failed(e),
            };
            page = match self.repo.doc_page(from.clone(), limit, stored).await {
                Ok(p) => p,
                Err(_) => return stopped(),
            };
            if !page.docs.is_empty() || page.next.is_none() {
                break;
            }
            from = page.next.clone();
        }
        let next = page.next.map(|d| d.to_string());
        let page = page.docs;
        let ids: Vec<DocId> = page.iter().map(|(d, _, _)| d.clone()).collect();
        let sizes = self
            .with_store(move |s| {
                ids.iter()
                    .map(|d| s.doc_bytes(d))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await;
        let sizes = match sizes {
            Ok(s) => s,
            Err(e) => return store_failed(e),
        };
        let docs: Vec<_> = page
            .iter()
            .zip(sizes)
            .map(|((doc, version, clock), bytes)| {
                json!({
                    "id": doc.as_str(),
                    "operations": version.total(),
                    "last_change": clock.0,
                    "stored_bytes": bytes,
                })
            })
            .collect();
        ApiAnswer::json(200, &json!({ "docs": docs, "next": next }))
    }

    async fn info(&self, doc: &str) -> ApiAnswer {
        let id = match DocId::parse(doc) {
            Ok(d) => d,
            Err(e) => return bad_doc(e),
        };
        // What the store holds (its metadata only: no change after the
        // last clock), for a document whose metadata memory let go of.
        let key = id.clone();
        let stored = self
            .with_store(move |s| {
                let bytes = s.doc_bytes(&key)?;
                let meta = s.load_since(&key, Clock(u64::MAX))?;
                Ok::<_, docweave_adapters::StoreError>((bytes, meta.map(|l| (l.version, l.clock))))
            })
            .await;
        let (bytes, stored) = match stored {
            Ok(s) => s,
            Err(e) => return store_failed(e),
        };
        let Ok(summary) = self.repo.doc_summary(doc, stored).await else {
            return stopped();
        };
        let Some((version, clock)) = summary else {
            return ApiAnswer::error(404, "NotFound", format!("no document {doc}"));
        };
        let versions: serde_json::Map<String, serde_json::Value> = version
            .iter()
            .map(|(actor, n)| (actor.to_string(), json!(n)))
            .collect();
        ApiAnswer::json(
            200,
            &json!({
                "id": doc,
                "operations": version.total(),
                "version": versions,
                "last_change": clock.0,
                "stored_bytes": bytes,
            }),
        )
    }

    async fn delete(&self, doc: &str) -> ApiAnswer {
        if let Err(e) = DocId::parse(doc) {
            return bad_doc(e);
        }
        match self.repo.delete(doc) {
            Ok(()) => ApiAnswer::json(200, &json!({ "deleted": doc })),
            Err(_) => stopped(),
        }
    }

    async fn compact(&self, doc: &str) -> ApiAnswer {
        let id = match DocId::parse(doc) {
            Ok(d) => d,
            Err(e) => return bad_doc(e),
        };
        match self.with_store(move |s| compact_doc(s, &id)).await {
            Ok(Compacted::Done { before, after }) => ApiAnswer::json(
                200,
                &json!({ "id": doc, "bytes_before": before, "bytes_after": after }),
            ),
            Ok(Compacted::Missing) => {
                ApiAnswer::error(404, "NotFound", format!("the store has no document {doc}"))
            }
            Ok(Compacted::Unreadable(n)) => ApiAnswer::error(
                409,
                "Unreadable",
                format!("{n} stored change(s) of {doc} do not import; it was left as it is"),
            ),
            Err(e) => store_failed(e),
        }
    }

    async fn snapshot(&self, doc: &str) -> ApiAnswer {
        let id = match DocId::parse(doc) {
            Ok(d) => d,
            Err(e) => return bad_doc(e),
        };
        match self.with_store(move |s| stored_snapshot(s, &id)).await {
            Ok(Some((bytes, _))) => ApiAnswer::bytes(bytes),
            Ok(None) => {
                ApiAnswer::error(404, "NotFound", format!("the store has no document {doc}"))
            }
            Err(e) => store_failed(e),
        }
    }

    async fn import(&self, doc: &str, bytes: Vec<u8>) -> ApiAnswer {
        if let Err(e) = DocId::parse(doc) {
            return bad_doc(e);
        }
        if let Err(e) = loro::LoroDoc::new().import(&bytes) {
            return ApiAnswer::error(
                400,
                "Invalid",
                format!("not a Loro snapshot or update: {e}"),
            );
        }
        if self.repo.load(doc).await.is_err() {
            return stopped();
        }
        match self.repo.import(doc, bytes).await {
            Ok(()) => ApiAnswer::json(200, &json!({ "imported": doc })),
            Err(e) => ApiAnswer::error(400, "Invalid", e.to_string()),
        }
    }

    async fn connections(&self) -> ApiAnswer {
        let Ok(all) = self.repo.connections().await else {
            return stopped();
        };
        let list: Vec<_> = all
            .iter()
            .map(|c| {
                json!({
                    "channel": c.channel.0,
                    "peer": c.peer.as_ref().map(|p| p.as_str()),
                    "kind": c.kind.map(|k| format!("{k:?}")),
                    "protocol": c.protocol,
                    "dialed": c.dialed.as_ref().map(|r| r.as_str()),
                })
            })
            .collect();
        ApiAnswer::json(200, &json!({ "connections": list }))
    }

    async fn disconnect_channel(&self, channel: ChannelId) -> ApiAnswer {
        let Ok(all) = self.repo.connections().await else {
            return stopped();
        };
        if !all.iter().any(|c| c.channel == channel) {
            return ApiAnswer::error(404, "NotFound", format!("no connection {}", channel.0));
        }
        match self
            .repo
            .disconnect_channel(channel, "closed by an administrator")
        {
            Ok(()) => ApiAnswer::json(200, &json!({ "disconnected": 1 })),
            Err(_) => stopped(),
        }
    }

    async fn disconnect_peer(&self, peer: &str) -> ApiAnswer {
        let Ok(all) = self.repo.connections().await else {
            return stopped();
        };
        let n = all
            .iter()
            .filter(|c| c.peer.as_ref().is_some_and(|p| p.as_str() == peer))
            .count();
        match self
            .repo
            .disconnect_peer(peer, "closed by an administrator")
        {
            Ok(()) => ApiAnswer::json(200, &json!({ "disconnected": n })),
            Err(e) => ApiAnswer::error(400, "BadPeerId", e.to_string()),
        }
    }
}

fn not_allowed(method: &str, path: &str) -> ApiAnswer {
    ApiAnswer::error(
        405,
        "MethodNotAllowed",
        format!("{method} is not an admin call on /admin/{path}"),
    )
}
