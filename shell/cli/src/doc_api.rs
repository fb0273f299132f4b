//! The document API of `docweave serve` (`/docs...` on the HTTP port), for
//! an app's backend that reads and writes documents without a sync client.
//! Each request is a client of the node like any other: it speaks as the
//! identity its token names (`Authorization: Bearer TOKEN`; a static
//! `SECRET` token may name one with `x-docweave-peer`), and the node's
//! rights, quotas and durability apply to it (`node_exchange`). Errors are
//! JSON: `{"code": ..., "message": ...}`.
//!
//! ```text
//! GET  /docs?prefix=P&after=ID&limit=N  readable documents in id order, a page at a time
//! GET  /docs/ID                         the state as JSON; ETag is its version
//! GET  /docs/ID?format=snapshot         a Loro snapshot (also `Accept: application/octet-stream`)
//! GET  /docs/ID?since=VERSION           a Loro update with what VERSION lacks (204: nothing)
//! POST /docs/ID/updates                 import a Loro update; answered once durable
//! PATCH /docs/ID                        JSON edits (`doc_edits`), written as one change
//! GET  /docs/ID/history?limit=N&before=C&group_ms=W  who wrote what, newest first (`doc_history`)
//! GET  /docs/ID?at=VERSION              the state at a version of its history (JSON or snapshot)
//! GET  /docs/ID/diff?from=V&to=V        what changed between two versions, per container
//! POST /docs/ID/restore                 `{"version": V}`: brings it back there, as a new change
//! ```
//! History and time travel need read access, restore write access. A
//! history version is Loro's frontiers, `COUNTER@PEER` joined by commas.
//! A version is printed as `PEER:COUNTER` pairs joined by commas, by peer
//! (Loro's version vector). The `ETag` is the version (a digest of a long
//! one); `If-None-Match` with the current one answers `304`. Ids in paths
//! are percent-encoded (`team%2Fnotes`).

use crate::doc_edits;
use crate::doc_history::{self, HistoryReader};
use crate::node_exchange::Exchange;
use docweave_adapters::transport::{
    ApiAnswer, ApiHandler, ApiRequest, ApiRoutes, Connector, PeerOfToken,
};
use docweave_core::{
    AckStatus, BatchId, Clock, DocId, Filter, Message, Payload, Reply, VersionVector, MAX_ID_LEN,
};
use serde_json::json;
use std::sync::Arc;

/// Where the document API lives.
pub const PREFIX: &str = "/docs";

/// The most documents one page lists.
const MAX_PAGE: usize = 1_000;

/// The node's pages one listing request reads at most: a prefix few
/// readable documents match ends the request with `next` to go on from,
/// rather than walking the whole store.
const MOST_PAGES: usize = 8;

/// Most peers in a printed version a request may give.
const MOST_VERSION_PEERS: usize = 10_000;

/// What every request works with.
struct Docs {
    connect: Connector,
    peer_of_token: PeerOfToken,
    /// The largest body taken, and answer read from the node.
    max_message: usize,
    /// The Loro peer this process writes each identity's JSON edits and
    /// restores as, and the counter its edits reached: drawn when first
    /// needed (no other process shares it) and held by one edit at a time,
    /// so its counters never repeat; one peer per identity keeps a
    /// document's version from growing by a peer with each edit, and keeps
    /// each identity's changes its own (a writer is its first identity's).
    editors: smol::lock::Mutex<Editors>,
    /// Where histories are read.
    history: HistoryReader,
}

/// The editors, by identity; past [`EDITORS_MOST`] they start again (an
/// identity's next edit then draws a new peer).
#[derive(Default)]
struct Editors(std::collections::BTreeMap<String, Editor>);

/// Identities whose editor is kept.
const EDITORS_MOST: usize = 10_000;

impl Editors {
    fn of(&mut self, identity: &str) -> &mut Editor {
        if !self.0.contains_key(identity) && self.0.len() >= EDITORS_MOST {
            self.0.clear();
        }
        self.0
            .entry(identity.to_string())
            .or_insert_with(Editor::new)
    }
}

/// The routes for the HTTP endpoint: requests go to the node through
/// `connect`; a token's own peer id comes from `peer_of_token`;
/// `max_message` bounds a posted update and an answer. A server that
/// admits no one without a token has `tokens_required`: a request without
/// one is refused before its body is read.
pub fn routes(
    connect: Connector,
    peer_of_token: PeerOfToken,
    max_message: usize,
    tokens_required: bool,
    history: HistoryReader,
) -> ApiRoutes {
    let docs = Arc::new(Docs {
        connect,
        peer_of_token,
        max_message,
        editors: Default::default(),
        history,
    });
    let handler: ApiHandler = Arc::new(move |req| {
        let docs = docs.clone();
        Box::pin(async move { docs.answer(req).await })
    });
    ApiRoutes {
        prefix: PREFIX.into(),
        // The node judges the credentials, as for any client; a server
        // that wants one reads no body of a request that has none.
        gate: Arc::new(move |req: &ApiRequest| {
            (tokens_required && req.bearer.is_none()).then(|| {
                ApiAnswer::error(
                    401,
                    "BadToken",
                    "this server requires a token: Authorization: Bearer TOKEN",
                )
            })
        }),
        handler,
        max_body: max_message,
    }
}

/// The Loro peer of JSON edits.
struct Editor {
    peer: u64,
    /// Per document, the counter its edits reached (Loro counts per
    /// document), for the documents it edited.
    used: std::collections::BTreeMap<DocId, u64>,
}

/// Documents an editor peer keeps count of; past them it is replaced by a
/// new one, which has edited nothing.
const EDITED_DOCS: usize = 10_000;

impl Editor {
    fn new() -> Self {
        Self {
            peer: fresh_editor(),
            used: Default::default(),
        }
    }

    /// Whether this peer may go on editing `doc`, whose copy holds its
    /// changes up to `held`: not if it handed out more (a change the copy
    /// lacks would share counters), nor if it forgot how many.
    fn may_go_on(&self, doc: &DocId, held: u64) -> bool {
        match self.used.get(doc) {
            Some(used) => held >= *used,
            None => held == 0 && self.used.len() < EDITED_DOCS,
        }
    }
}

/// A Loro peer id no other process or earlier editor uses (random).
fn fresh_editor() -> u64 {
    let mut bytes = [0u8; 8];
    // A peer id drawn from the clock instead still differs between runs
    // (and between draws, a millisecond apart at least).
    if getrandom::fill(&mut bytes).is_err() {
        bytes = docweave_shell::now_ms().to_le_bytes();
    }
    // Loro refuses `u64::MAX` as a peer id: the top bit off keeps clear of it.
    u64::from_le_bytes(bytes) >> 1
}

/// A version as the API prints it.
pub fn version_text(v: &VersionVector) -> String {
    v.iter()
        .map(|(peer, counter)| format!("{peer}:{counter}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A version as a client gives it (`version_text`'s form).
pub fn parse_version(text: &str) -> Result<VersionVector, String> {
    if text.is_empty() {
        return Ok(VersionVector::new());
    }
    let pairs: Vec<&str> = text.split(',').collect();
    if pairs.len() > MOST_VERSION_PEERS {
        return Err(format!(
            "a version names at most {MOST_VERSION_PEERS} peers"
        ));
    }
    pairs
        .iter()
        .map(|pair| {
            let (peer, counter) = pair.split_once(':').ok_or("PEER:COUNTER")?;
            Ok((
                peer.parse().map_err(|_| "PEER is a number")?,
                counter.parse().map_err(|_| "COUNTER is a number")?,
            ))
        })
        .collect::<Result<Vec<(u64, u64)>, &str>>()
        .map(VersionVector::from_entries)
        .map_err(|why| format!("{text:?} is not a version ({why}, pairs joined by commas)"))
}

/// Longest version an entity tag holds as it is; a longer one's tag is
/// a digest of it (headers have bounds).
const LONGEST_TAG: usize = 512;

/// The entity tag of a version: the version itself, or a digest of a long
/// one (FNV-1a, stable across builds).
fn tag_of(v: &VersionVector) -> String {
    let text = version_text(v);
    if text.len() <= LONGEST_TAG {
        return text;
    }
    let digest = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("h{digest:016x}")
}

/// The `ETag` header of a version.
fn etag(v: &VersionVector) -> String {
    format!("\"{}\"", tag_of(v))
}

/// The versions an `If-None-Match` header names (its quoted tags).
fn tags_in(header: &str) -> Vec<String> {
    header
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// An id from a path, percent-decoded; bytes that are not UTF-8 are
/// refused rather than replaced (they would name another document).
fn decoded(raw: &str) -> Result<String, ApiAnswer> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiAnswer::error(400, "BadRequest", format!("{raw:?} is not UTF-8")))
}

fn doc_id(raw: &str) -> Result<DocId, ApiAnswer> {
    DocId::parse(&decoded(raw)?).map_err(|e| ApiAnswer::error(400, "BadDocId", e.to_string()))
}

fn not_found(doc: &DocId) -> ApiAnswer {
    // Also what a reader who may not read it hears: a document's
    // existence is not told to who may not see it.
    ApiAnswer::error(404, "NotFound", format!("no document {doc} to read"))
}

fn not_allowed(method: &str, path: &str) -> ApiAnswer {
    ApiAnswer::error(
        405,
        "MethodNotAllowed",
        format!("{method} is not a call of the document API on {path}"),
    )
}

/// What the node sent for a sync-request: its version and the data.
struct Synced {
    version: VersionVector,
    reply: Reply,
}

impl Docs {
    async fn answer(&self, req: ApiRequest) -> ApiAnswer {
        let method = req.method.clone();
        let path = req.path.clone();
        let answer = match path.strip_prefix(PREFIX) {
            Some("" | "/") => match method.as_str() {
                "GET" => self.list(&req).await,
                _ => Err(not_allowed(&method, &path)),
            },
            Some(rest) if rest.starts_with('/') => {
                let rest = &rest[1..];
                // The suffix is taken off before decoding: `a%2Fupdates`
                // is a document, `a/updates` a call.
                let (raw, call) = ["updates", "history", "diff", "restore"]
                    .iter()
                    .find_map(|call| {
                        let doc = rest.strip_suffix(call)?.strip_suffix('/')?;
                        Some((doc, *call))
                    })
                    .unwrap_or((rest, ""));
                match (raw.contains('/'), call, method.as_str()) {
                    (true, _, _) => Err(ApiAnswer::error(
                        404,
                        "NotFound",
                        format!("no route {path}: a / in an id is written %2F"),
                    )),
                    (false, "updates", "POST") => match doc_id(raw) {
                        Ok(doc) => self.post_update(req, doc).await,
                        Err(refused) => Err(refused),
                    },
                    (false, "", "GET") => match doc_id(raw) {
                        Ok(doc) => self.get(&req, doc).await,
                        Err(refused) => Err(refused),
                    },
                    (false, "", "PATCH") => match doc_id(raw) {
                        Ok(doc) => self.patch(&req, doc).await,
                        Err(refused) => Err(refused),
                    },
                    (false, "history", "GET") => match doc_id(raw) {
                        Ok(doc) => self.history(&req, doc).await,
                        Err(refused) => Err(refused),
                    },
                    (false, "diff", "GET") => match doc_id(raw) {
                        Ok(doc) => self.diff(&req, doc).await,
                        Err(refused) => Err(refused),
                    },
                    (false, "restore", "POST") => match doc_id(raw) {
                        Ok(doc) => self.restore(&req, doc).await,
                        Err(refused) => Err(refused),
                    },
                    _ => Err(not_allowed(&method, &path)),
                }
            }
            _ => Err(ApiAnswer::error(
                404,
                "NotFound",
                format!("no route {path}"),
            )),
        };
        answer.unwrap_or_else(|refused| refused)
    }

    /// Who the request speaks as: `x-docweave-peer`, else the peer its
    /// token names, else `http-client` (the node checks the token allows it).
    fn open(&self, req: &ApiRequest) -> Result<Exchange, ApiAnswer> {
        Ok(self.open_as(req)?.0)
    }

    /// [`Docs::open`], and the identity it speaks as.
    fn open_as(&self, req: &ApiRequest) -> Result<(Exchange, String), ApiAnswer> {
        let peer = req
            .header("x-docweave-peer")
            .map(str::to_string)
            .or_else(|| (self.peer_of_token)(req.bearer.as_deref()?))
            .unwrap_or_else(|| "http-client".to_string());
        let ex = Exchange::open(&self.connect, &peer, req.bearer.clone(), self.max_message)?;
        Ok((ex, peer))
    }

    /// Asks for `doc` as one who holds `version`; acknowledges what came.
    async fn sync(
        &self,
        ex: &Exchange,
        doc: &DocId,
        version: VersionVector,
    ) -> Result<Synced, ApiAnswer> {
        ex.send(vec![Message::SyncRequest {
            doc: doc.clone(),
            version,
            bidirectional: false,
        }])?;
        let answer = ex
            .answer(|m| matches!(m, Message::SyncResponse { doc: d, .. } if d == doc))
            .await?;
        let Message::SyncResponse {
            batch,
            reply,
            version,
            ..
        } = answer
        else {
            return Err(ApiAnswer::error(
                500,
                "Internal",
                "an answer of another kind",
            ));
        };
        if matches!(reply, Reply::Snapshot(_) | Reply::Delta(_)) {
            // Taken: the node need not send it again.
            ex.send(vec![Message::Ack {
                batch,
                status: AckStatus::Ok,
                clock: None,
            }])?;
        }
        Ok(Synced { version, reply })
    }

    async fn get(&self, req: &ApiRequest, doc: DocId) -> Result<ApiAnswer, ApiAnswer> {
        if let Some(at) = req.param("at") {
            let at = decoded(at)?;
            return self.get_at(req, doc, &at).await;
        }
        let bad = |e: String| ApiAnswer::error(400, "BadVersion", e);
        let since = match req.param("since") {
            Some(v) => Some(parse_version(&decoded(v)?).map_err(bad)?),
            None => None,
        };
        let binary = match req.param("format") {
            Some("snapshot") => true,
            Some("json") => false,
            None => req
                .header("accept")
                .is_some_and(|a| a.contains("application/octet-stream")),
            Some(other) => {
                let why = format!("format is json or snapshot, not {other:?}");
                return Err(ApiAnswer::error(400, "BadRequest", why));
            }
        };
        let ex = self.open(req)?;
        // A client that names the version it holds: if that is all there
        // is, nothing is sent at all.
        let known = req.header("if-none-match").map(tags_in).unwrap_or_default();
        if let Some(held) = known.iter().find_map(|t| parse_version(t).ok()) {
            let synced = self.sync(&ex, &doc, held).await?;
            if let Reply::Unavailable = synced.reply {
                return Err(not_found(&doc));
            }
            if known.contains(&tag_of(&synced.version)) {
                return Ok(unchanged(&synced.version));
            }
        }
        let synced = self
            .sync(&ex, &doc, since.clone().unwrap_or_default())
            .await?;
        if known.contains(&tag_of(&synced.version)) {
            return Ok(unchanged(&synced.version));
        }
        let tag = etag(&synced.version);
        let bytes = match synced.reply {
            Reply::Unavailable => return Err(not_found(&doc)),
            // Nothing is lacking: no update to send.
            Reply::UpToDate if since.is_some() => {
                return Ok(ApiAnswer::bytes(Vec::new())
                    .with_status(204)
                    .with_header("etag", tag))
            }
            Reply::UpToDate => empty_snapshot()?,
            // The whole document, which the node sends a peer in its
            // cheapest form (for one writer's, its updates): a caller
            // asked for a snapshot.
            Reply::Snapshot(p) if binary && since.is_none() => as_snapshot(p.as_bytes())?,
            Reply::Snapshot(p) | Reply::Delta(p) => p.as_bytes().to_vec(),
        };
        if since.is_some() || binary {
            return Ok(ApiAnswer::bytes(bytes)
                .with_header("etag", tag)
                .with_header("vary", "Accept".into()));
        }
        let state = loro::LoroDoc::new();
        state.import(&bytes).map_err(|e| {
            ApiAnswer::error(
                500,
                "Internal",
                format!("the node's data did not import: {e}"),
            )
        })?;
        let value = serde_json::to_value(state.get_deep_value())
            .map_err(|e| ApiAnswer::error(500, "Internal", e.to_string()))?;
        Ok(ApiAnswer::json(200, &value)
            .with_header("etag", tag)
            .with_header("vary", "Accept".into()))
    }

    async fn post_update(&self, req: ApiRequest, doc: DocId) -> Result<ApiAnswer, ApiAnswer> {
        // What the update brings its sender to (the node records nothing
        // of a request's: see `core::handlers::common::is_request_channel`).
        let meta = loro::LoroDoc::decode_import_blob_meta(&req.body, false).map_err(|e| {
            ApiAnswer::error(
                400,
                "Invalid",
                format!("not a Loro update or snapshot: {e}"),
            )
        })?;
        let theirs = docweave_shell::to_core_version(&meta.partial_end_vv);
        let ex = self.open(&req)?;
        self.write(&ex, &doc, req.body, theirs).await
    }

    /// The whole document as the node has it now, with its history, in a
    /// copy of this request's own (`None`: there is no such document, or
    /// this identity may not read it).
    async fn copy(&self, ex: &Exchange, doc: &DocId) -> Result<Option<loro::LoroDoc>, ApiAnswer> {
        let copy = loro::LoroDoc::new();
        match self.sync(ex, doc, VersionVector::new()).await?.reply {
            Reply::Snapshot(p) | Reply::Delta(p) => {
                copy.import(p.as_bytes()).map_err(|e| {
                    let why = format!("the node's data did not import: {e}");
                    ApiAnswer::error(500, "Internal", why)
                })?;
                Ok(Some(copy))
            }
            Reply::Unavailable | Reply::UpToDate => Ok(None),
        }
    }

    /// A copy of `doc` and `text` read as one of its versions.
    async fn copy_at(
        &self,
        ex: &Exchange,
        doc: &DocId,
        text: &str,
    ) -> Result<(loro::LoroDoc, loro::Frontiers), ApiAnswer> {
        let version = doc_history::parse_frontiers(text)
            .map_err(|e| ApiAnswer::error(400, "BadVersion", e))?;
        let copy = self.copy(ex, doc).await?.ok_or_else(|| not_found(doc))?;
        doc_history::check_known(&copy, &version, text, doc)
            .map_err(|e| ApiAnswer::error(404, "UnknownVersion", e))?;
        Ok((copy, version))
    }

    /// `GET /docs/ID?at=VERSION`: the state there, as JSON or a snapshot.
    async fn get_at(&self, req: &ApiRequest, doc: DocId, at: &str) -> Result<ApiAnswer, ApiAnswer> {
        let ex = self.open(req)?;
        let (copy, version) = self.copy_at(&ex, &doc, at).await?;
        let internal = |e: String| ApiAnswer::error(500, "Internal", e);
        let binary = matches!(req.param("format"), Some("snapshot"))
            || req
                .header("accept")
                .is_some_and(|a| a.contains("application/octet-stream"));
        if binary {
            let bytes = doc_history::snapshot_at(&copy, &version).map_err(internal)?;
            return Ok(ApiAnswer::bytes(bytes));
        }
        let state = doc_history::state_at(&copy, &version).map_err(internal)?;
        Ok(ApiAnswer::json(200, &state))
    }

    /// `GET /docs/ID/history`: a page of who wrote what, newest first.
    async fn history(&self, req: &ApiRequest, doc: DocId) -> Result<ApiAnswer, ApiAnswer> {
        let bad = |why: String| ApiAnswer::error(400, "BadRequest", why);
        let most = doc_history::PAGE_MOST;
        let limit = match req.param("limit").map(str::parse::<usize>) {
            None => doc_history::PAGE_DEFAULT,
            Some(Ok(n)) if (1..=most).contains(&n) => n,
            Some(_) => return Err(bad(format!("limit is a number from 1 to {most}"))),
        };
        let before = match req.param("before").map(str::parse::<u64>) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => return Err(bad("before is a page's `next`, a number".into())),
        };
        let group_ms = match req.param("group_ms").map(str::parse::<u64>) {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(_)) => return Err(bad("group_ms is a number of milliseconds".into())),
        };
        // The node says whether this identity may read it, and whether it
        // exists (a deleted document has no history left).
        let ex = self.open(req)?;
        if self.reads(&ex, &doc).await?.is_none() {
            return Err(not_found(&doc));
        }
        let (entries, next) = self
            .history
            .page(&doc, before, limit, group_ms)
            .await
            .map_err(|e| ApiAnswer::error(503, "Unavailable", e))?;
        let body = json!({
            "doc": doc.as_str(),
            "entries": entries,
            "next": next.map(|n| n.to_string()),
        });
        Ok(ApiAnswer::json(200, &body))
    }

    /// Whether the node lets this identity read `doc`, and it exists (not
    /// deleted): its version then. Asked as a listing of that one id, which
    /// sends no document data.
    async fn reads(&self, ex: &Exchange, doc: &DocId) -> Result<Option<VersionVector>, ApiAnswer> {
        let filter = Filter::docs([doc.clone()]);
        let (docs, _) = list_page(ex, filter, just_before(doc.as_str())).await?;
        Ok(docs.into_iter().find(|d| d.doc == *doc).map(|d| d.version))
    }

    /// `GET /docs/ID/diff?from=V&to=V`: what changed between two versions
    /// (`to` defaults to now).
    async fn diff(&self, req: &ApiRequest, doc: DocId) -> Result<ApiAnswer, ApiAnswer> {
        let from = req
            .param("from")
            .map(decoded)
            .transpose()?
            .ok_or_else(|| ApiAnswer::error(400, "BadVersion", "from=VERSION is needed"))?;
        let to = req.param("to").map(decoded).transpose()?;
        let ex = self.open(req)?;
        let (copy, from_version) = self.copy_at(&ex, &doc, &from).await?;
        let to_version = match &to {
            Some(text) => {
                let v = doc_history::parse_frontiers(text)
                    .map_err(|e| ApiAnswer::error(400, "BadVersion", e))?;
                doc_history::check_known(&copy, &v, text, &doc)
                    .map_err(|e| ApiAnswer::error(404, "UnknownVersion", e))?;
                v
            }
            None => copy.oplog_frontiers(),
        };
        let changes = doc_history::difference(&copy, &from_version, &to_version)
            .map_err(|e| ApiAnswer::error(500, "Internal", e))?;
        let body = json!({
            "doc": doc.as_str(),
            "from": docweave_shell::print_frontiers(&from_version),
            "to": docweave_shell::print_frontiers(&to_version),
            "containers": changes,
        });
        Ok(ApiAnswer::json(200, &body))
    }

    /// `POST /docs/ID/restore` with `{"version": V}`: the document as it
    /// was at V, made as a new change by the identity asking (Loro's
    /// revert), so every client receives it as an ordinary update and no
    /// history is rewritten.
    async fn restore(&self, req: &ApiRequest, doc: DocId) -> Result<ApiAnswer, ApiAnswer> {
        let asked: serde_json::Value = serde_json::from_slice(&req.body).map_err(|e| {
            ApiAnswer::error(400, "BadRequest", format!("the body is not JSON: {e}"))
        })?;
        let Some(text) = asked["version"].as_str() else {
            let why = "the body is {\"version\": \"COUNTER@PEER,...\"}";
            return Err(ApiAnswer::error(400, "BadRequest", why));
        };
        let (ex, identity) = self.open_as(req)?;
        let mut editors = self.editors.lock().await;
        let (copy, version) = self.copy_at(&ex, &doc, text).await?;
        let editor = editors.of(&identity);
        self.edit_as(editor, &copy, &doc)?;
        let before = copy.oplog_vv();
        copy.set_next_commit_message(&format!("restore to {text}"));
        // The version is the client's: a panic in Loro is this request's error.
        docweave_adapters::contained("a revert", || copy.revert_to(&version))
            .map_err(|e| ApiAnswer::error(500, "Internal", e.to_string()))?
            .map_err(|e| ApiAnswer::error(500, "Internal", e.to_string()))?;
        copy.commit();
        if copy.oplog_vv() == before {
            // Already as it was there: nothing to write.
            let body = json!({ "id": doc.as_str(), "version": version_text(&docweave_shell::to_core_version(&before)), "changed": false });
            return Ok(ApiAnswer::json(200, &body));
        }
        let written = self.write_edit(&ex, editor, &copy, &before, &doc).await;
        drop(editors);
        written
    }

    /// Sets `copy` to write as `editor`'s peer, which goes on from where
    /// this copy shows it stopped: a change of its the copy lacks (a write
    /// that failed or was cut off, a document this identity may not read)
    /// would share its counters, so it starts as a new peer instead.
    fn edit_as(
        &self,
        editor: &mut Editor,
        copy: &loro::LoroDoc,
        doc: &DocId,
    ) -> Result<(), ApiAnswer> {
        let held = copy.oplog_vv().get(&editor.peer).copied().unwrap_or(0);
        if !editor.may_go_on(doc, u64::try_from(held).unwrap_or(0)) {
            *editor = Editor::new();
        }
        copy.set_peer_id(editor.peer)
            .map_err(|e| ApiAnswer::error(500, "Internal", e.to_string()))
    }

    /// Writes what `editor` changed in `copy` since `before` (as `edit_as`
    /// set it up), answered as [`Docs::write`] answers.
    async fn write_edit(
        &self,
        ex: &Exchange,
        editor: &mut Editor,
        copy: &loro::LoroDoc,
        before: &loro::VersionVector,
        doc: &DocId,
    ) -> Result<ApiAnswer, ApiAnswer> {
        let update = copy
            .export(loro::ExportMode::updates(before))
            .map_err(|e| ApiAnswer::error(500, "Internal", e.to_string()))?;
        let theirs = docweave_shell::to_core_version(&copy.oplog_vv());
        // Handed out before the write is awaited: a request cut off while
        // it waits still counts them.
        let reached = copy.oplog_vv().get(&editor.peer).copied().unwrap_or(0);
        editor
            .used
            .insert(doc.clone(), u64::try_from(reached).unwrap_or(u64::MAX));
        self.write(ex, doc, update, theirs).await
    }

    /// JSON edits, made on a copy of the document as the node has it and
    /// written as one Loro change by this process's editor peer.
    async fn patch(&self, req: &ApiRequest, doc: DocId) -> Result<ApiAnswer, ApiAnswer> {
        let edits = doc_edits::parse(&req.body)
            .map_err(|e| ApiAnswer::error(400, "BadEdit", e.to_string()))?;
        let (ex, identity) = self.open_as(req)?;
        // One edit at a time: the next one reads this one's change back
        // (acknowledged before the lock is let go) and goes on counting.
        let mut editors = self.editors.lock().await;
        // A new document: the node decides whether this identity may make
        // it when the change arrives.
        let copy = self.copy(&ex, &doc).await?.unwrap_or_default();
        let editor = editors.of(&identity);
        self.edit_as(editor, &copy, &doc)?;
        let before = copy.oplog_vv();
        doc_edits::apply(&copy, &edits).map_err(|e| {
            let code = match e {
                doc_edits::EditError::BadPath(..) => "BadPath",
                _ => "BadEdit",
            };
            ApiAnswer::error(400, code, e.to_string())
        })?;
        let written = self.write_edit(&ex, editor, &copy, &before, &doc).await;
        drop(editors);
        written
    }

    /// Sends `data` (taking its sender to `theirs`) and answers with the
    /// version the node reaches once it acknowledged the change, which it
    /// does only once the change is durable.
    async fn write(
        &self,
        ex: &Exchange,
        doc: &DocId,
        data: Vec<u8>,
        theirs: VersionVector,
    ) -> Result<ApiAnswer, ApiAnswer> {
        let batch = BatchId(1);
        ex.send(vec![Message::Update {
            doc: doc.clone(),
            batch,
            data: Payload::new(data),
            version: theirs,
        }])?;
        let ack = ex
            .answer(|m| matches!(m, Message::Ack { batch: b, .. } if *b == batch))
            .await?;
        let Message::Ack { status, clock, .. } = ack else {
            return Err(ApiAnswer::error(
                500,
                "Internal",
                "an answer of another kind",
            ));
        };
        let refused =
            |status: u16, code: &str, why: String| Err(ApiAnswer::error(status, code, why));
        match status {
            AckStatus::Ok => {}
            AckStatus::PermissionDenied => {
                return refused(403, "PermissionDenied", format!("you may not write {doc}"))
            }
            AckStatus::Invalid => {
                return refused(400, "Invalid", "the update does not import".into())
            }
            AckStatus::TooLarge => {
                return refused(413, "TooLarge", "the update is larger than allowed".into())
            }
            AckStatus::RateLimited => {
                return refused(429, "RateLimited", "too many updates; retry later".into())
            }
            AckStatus::MissingDependencies => {
                let why = format!("the update builds on changes {doc} does not hold");
                return refused(409, "MissingDependencies", why);
            }
            AckStatus::Deleted => return refused(410, "Deleted", format!("{doc} was deleted")),
        }
        // Durable: the node acknowledges only then. Its durable version,
        // from its feed just before the change (a short walk).
        // Best effort: the change is durable whatever this says, and an
        // error here would have the client write it again.
        let version = match clock {
            Some(c) => self.version_at(ex, doc, c).await.unwrap_or(None),
            None => None,
        };
        let body = json!({ "id": doc.as_str(), "version": version.as_ref().map(version_text) });
        let answer = ApiAnswer::json(200, &body);
        Ok(match version {
            Some(v) => answer.with_header("etag", etag(&v)),
            None => answer,
        })
    }

    /// `doc`'s durable version as the node's feed has it from `clock` on
    /// (`None` if this identity may not read it).
    async fn version_at(
        &self,
        ex: &Exchange,
        doc: &DocId,
        clock: Clock,
    ) -> Result<Option<VersionVector>, ApiAnswer> {
        ex.send(vec![Message::ChangesSince {
            clock: Clock(clock.0.saturating_sub(1)),
            filter: Filter::docs([doc.clone()]),
        }])?;
        let Message::Changes { docs, .. } =
            ex.answer(|m| matches!(m, Message::Changes { .. })).await?
        else {
            return Err(ApiAnswer::error(
                500,
                "Internal",
                "an answer of another kind",
            ));
        };
        Ok(docs.into_iter().find(|d| d.doc == *doc).map(|d| d.version))
    }

    async fn list(&self, req: &ApiRequest) -> Result<ApiAnswer, ApiAnswer> {
        let limit = match req.param("limit").map(str::parse::<usize>) {
            None => 100,
            Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
            Some(_) => {
                let why = format!("limit is a number from 1 to {MAX_PAGE}");
                return Err(ApiAnswer::error(400, "BadRequest", why));
            }
        };
        let prefix = req
            .param("prefix")
            .map(decoded)
            .transpose()?
            .unwrap_or_default();
        let after = req.param("after").map(doc_id).transpose()?;
        // Ids at or after the prefix: the list starts after whatever is
        // before it (the node lists after an id).
        let mut from = match after {
            Some(a) if a.as_str() >= prefix.as_str() => Some(a),
            _ => just_before(&prefix),
        };
        let ex = self.open(req)?;
        let mut found = Vec::new();
        let mut next = None;
        for page in 1..=MOST_PAGES {
            let (docs, more) = list_page(&ex, Filter::all(), from.clone()).await?;
            let mut past_prefix = false;
            for d in docs {
                from = Some(d.doc.clone());
                if d.doc.as_str() < prefix.as_str() {
                    continue;
                }
                if !d.doc.as_str().starts_with(prefix.as_str()) {
                    past_prefix = true;
                    break;
                }
                found.push(d);
            }
            if found.len() > limit {
                found.truncate(limit);
                next = found.last().map(|d| d.doc.to_string());
                break;
            }
            if past_prefix || !more {
                break;
            }
            if page == MOST_PAGES {
                // Pages left unread: the client goes on from here (never
                // from before the prefix, where it would start again).
                next = from
                    .as_ref()
                    .filter(|f| f.as_str() >= prefix.as_str())
                    .map(DocId::to_string);
            }
        }
        let docs: Vec<_> = found
            .iter()
            .map(|d| {
                json!({
                    "id": d.doc.as_str(),
                    "version": version_text(&d.version),
                    "operations": d.version.total(),
                    "last_change": d.clock.0,
                })
            })
            .collect();
        Ok(ApiAnswer::json(200, &json!({ "docs": docs, "next": next })))
    }
}

/// One page of the node's listing of what this identity may read, after
/// `after`, and whether more follow.
async fn list_page(
    ex: &Exchange,
    filter: Filter,
    after: Option<DocId>,
) -> Result<(Vec<docweave_core::ListedDoc>, bool), ApiAnswer> {
    ex.send(vec![Message::ListDocs { filter, after }])?;
    match ex.answer(|m| matches!(m, Message::DocList { .. })).await? {
        Message::DocList { docs, more } => Ok((docs, more)),
        _ => Err(ApiAnswer::error(
            500,
            "Internal",
            "an answer of another kind",
        )),
    }
}

/// `304 Not Modified` for a client that holds `version`.
fn unchanged(version: &VersionVector) -> ApiAnswer {
    ApiAnswer {
        status: 304,
        content_type: "application/json",
        body: Vec::new(),
        headers: vec![("etag", etag(version))],
    }
}

/// The whole document in `bytes` (the node's) as a Loro snapshot: as they
/// are when they are one, else through a replica of their own.
fn as_snapshot(bytes: &[u8]) -> Result<Vec<u8>, ApiAnswer> {
    let internal = |e: String| ApiAnswer::error(500, "Internal", e);
    let meta = loro::LoroDoc::decode_import_blob_meta(bytes, false)
        .map_err(|e| internal(format!("the node's data is not Loro's: {e}")))?;
    if matches!(
        meta.mode,
        loro::EncodedBlobMode::Snapshot | loro::EncodedBlobMode::ShallowSnapshot
    ) {
        return Ok(bytes.to_vec());
    }
    let replica = loro::LoroDoc::new();
    replica
        .import(bytes)
        .map_err(|e| internal(format!("the node's data did not import: {e}")))?;
    replica
        .export(loro::ExportMode::Snapshot)
        .map_err(|e| internal(e.to_string()))
}

/// The snapshot of a document with nothing in it yet.
fn empty_snapshot() -> Result<Vec<u8>, ApiAnswer> {
    loro::LoroDoc::new()
        .export(loro::ExportMode::Snapshot)
        .map_err(|e| ApiAnswer::error(500, "Internal", e.to_string()))
}

/// An id that sorts before every id starting with `prefix` and after
/// nearly every other id before them (none for an empty prefix): the
/// prefix with its last character one lower, then the largest character
/// as long as an id may be. Ids between it and the prefix are skipped
/// by the caller.
fn just_before(prefix: &str) -> Option<DocId> {
    let mut chars: Vec<char> = prefix.chars().collect();
    let last = chars.pop()?;
    let lower = (0..last as u32)
        .rev()
        .filter_map(char::from_u32)
        .find(|c| !c.is_control());
    let mut text: String = chars.into_iter().collect();
    if let Some(lower) = lower {
        text.push(lower);
        while text.len() + char::MAX.len_utf8() <= MAX_ID_LEN {
            text.push(char::MAX);
        }
    }
    DocId::parse(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_editor_goes_on_only_from_where_a_copy_shows_it_stopped() {
        let mut e = Editor::new();
        let (a, b) = (DocId::new("a"), DocId::new("b"));
        assert!(e.may_go_on(&a, 0), "a document it never edited");
        e.used.insert(a.clone(), 5);
        assert!(e.may_go_on(&a, 5) && e.may_go_on(&a, 7));
        assert!(!e.may_go_on(&a, 4), "a change of its the copy lacks");
        assert!(e.may_go_on(&b, 0) && !e.may_go_on(&b, 3), "forgotten: not");
        for i in 0..EDITED_DOCS {
            e.used.insert(DocId::new(&format!("d{i}")), 1);
        }
        assert!(!e.may_go_on(&b, 0), "past its bound of documents");
    }

    #[test]
    fn a_version_prints_and_parses_back_and_bad_text_is_refused() {
        let v = VersionVector::from_entries([(7, 3), (12, 40)]);
        assert_eq!(version_text(&v), "7:3,12:40");
        assert_eq!(parse_version("7:3,12:40"), Ok(v));
        assert_eq!(parse_version(""), Ok(VersionVector::new()));
        for bad in ["7", "7:x", "x:3", "7:3,", ":", "7:3;8:1"] {
            assert!(parse_version(bad).is_err(), "{bad:?}");
        }
        let many = vec!["1:1"; MOST_VERSION_PEERS + 1].join(",");
        assert!(parse_version(&many).is_err());
    }

    #[test]
    fn the_tags_of_if_none_match_are_its_quoted_strings() {
        assert_eq!(tags_in(r#""7:3,12:40""#), vec!["7:3,12:40"]);
        assert_eq!(tags_in(r#"W/"1:1", "2:2""#), vec!["1:1", "2:2"]);
        assert!(tags_in("*").is_empty());
    }

    #[test]
    fn the_id_just_before_a_prefix_sorts_before_it_and_after_shorter_neighbours() {
        // Each prefix, with an id just below it that must come before.
        for (prefix, below) in [
            ("team/", "team.zzzz/x"),
            ("b", "azzzzzz"),
            ("ü", "û\u{10ffff}"),
            ("x\u{a0}", "x~~~"),
        ] {
            let before = just_before(prefix).unwrap();
            assert!(before.as_str() < prefix, "{prefix:?}");
            assert!(before.as_str() > below, "{prefix:?}: {below:?}");
        }
        assert_eq!(just_before(""), None);
        // A space has no lower character an id may hold: what precedes it.
        assert_eq!(just_before("a ").map(|d| d.to_string()), Some("a".into()));
    }
}
