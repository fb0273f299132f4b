//! A document's past for the document API: its history as the store kept
//! it (who wrote what and when, as the server vouches for it), its state at
//! a version, and the difference between two versions. The routes
//! themselves are in `doc_api`; this file reads the store and turns Loro's
//! answers into JSON.
//!
//! A version here is a Loro frontier set: `COUNTER@PEER` for each
//! frontier, joined by commas (`12@7,3@9`; empty for the empty document),
//! as each history entry prints it.

use docweave_adapters::{HistoryEntry, Store};
use docweave_core::DocId;
use loro::{Frontiers, LoroDoc, ID};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// Most entries one history page lists.
pub const PAGE_MOST: usize = 1_000;

/// Entries a page lists unless asked otherwise.
pub const PAGE_DEFAULT: usize = 100;

/// Most frontiers a version given by a client may name.
const FRONTIERS_MOST: usize = 1_000;

/// Store rows one grouped page reads at most: a group is cut there.
const ROWS_PER_PAGE_MOST: usize = 20_000;

/// Reads histories from the store, on a connection of its own (so a long
/// read holds up neither the node's writes nor its loads).
#[derive(Clone)]
pub struct HistoryReader {
    store: Arc<Mutex<Box<dyn Store>>>,
}

impl HistoryReader {
    /// Reads through `store`.
    pub fn new(store: Box<dyn Store>) -> Self {
        Self {
            store: Arc::new(Mutex::new(store)),
        }
    }

    async fn rows(
        &self,
        doc: &DocId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, String> {
        let (store, doc) = (self.store.clone(), doc.clone());
        smol::unblock(move || {
            // A reader that panicked left no transaction open: the store's
            // calls are each one.
            let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
            store
                .history(&doc, before, limit)
                .map_err(|e| format!("the store could not read the history of {doc}: {e}"))
        })
        .await
    }

    /// A page of `doc`'s history, newest first: at most `limit` entries
    /// below `before`. With `group_ms`, consecutive entries of one author
    /// less than that far apart are one entry (whose version is the
    /// newest). Answers the entries and where the next page starts.
    pub async fn page(
        &self,
        doc: &DocId,
        before: Option<u64>,
        limit: usize,
        group_ms: u64,
    ) -> Result<(Vec<Value>, Option<u64>), String> {
        if group_ms == 0 {
            let rows = self.rows(doc, before, limit + 1).await?;
            let next = (rows.len() > limit).then(|| rows[limit - 1].seq);
            let entries = rows.iter().take(limit).map(|r| entry(r, 1, r)).collect();
            return Ok((entries, next));
        }
        let mut groups: Vec<Group> = Vec::new();
        let mut cursor = before;
        let mut read = 0;
        loop {
            let rows = self.rows(doc, cursor, 256).await?;
            let Some(last) = rows.last() else {
                return Ok((groups.iter().map(Group::json).collect(), None));
            };
            cursor = Some(last.seq);
            for row in rows {
                read += 1;
                let joins = groups.last().is_some_and(|g| g.joins(&row, group_ms));
                if joins {
                    if let Some(g) = groups.last_mut() {
                        g.add(row);
                    }
                } else if groups.len() == limit {
                    let next = groups.last().map(|g| g.oldest.seq);
                    return Ok((groups.iter().map(Group::json).collect(), next));
                } else {
                    groups.push(Group::new(row));
                }
                if read >= ROWS_PER_PAGE_MOST {
                    let next = groups.last().map(|g| g.oldest.seq);
                    return Ok((groups.iter().map(Group::json).collect(), next));
                }
            }
        }
    }
}

/// Consecutive entries of one author, newest first.
struct Group {
    newest: HistoryEntry,
    oldest: HistoryEntry,
    entries: usize,
    operations: u64,
}

impl Group {
    fn new(row: HistoryEntry) -> Self {
        Self {
            operations: row.authored.end.saturating_sub(row.authored.start),
            newest: row.clone(),
            oldest: row,
            entries: 1,
        }
    }

    fn joins(&self, row: &HistoryEntry, window: u64) -> bool {
        row.authored.identity == self.oldest.authored.identity
            && self.oldest.authored.at.saturating_sub(row.authored.at) < window
    }

    fn add(&mut self, row: HistoryEntry) {
        self.operations = self
            .operations
            .saturating_add(row.authored.end.saturating_sub(row.authored.start));
        self.entries += 1;
        self.oldest = row;
    }

    fn json(&self) -> Value {
        let mut v = entry(&self.newest, self.entries, &self.oldest);
        v["operations"] = json!(self.operations);
        v
    }
}

/// One history entry as JSON: `newest`'s version and message, from
/// `oldest`'s time (`entries` records in all).
fn entry(newest: &HistoryEntry, entries: usize, oldest: &HistoryEntry) -> Value {
    let a = &newest.authored;
    json!({
        "version": a.version,
        "author": a.identity.as_str(),
        "at": a.at,
        "first_at": oldest.authored.at,
        // As text: a Loro peer is a 64-bit number, past what JSON
        // numbers carry exactly in JavaScript.
        "peer": a.writer.to_string(),
        "operations": a.end.saturating_sub(a.start),
        "message": a.message,
        "entries": entries,
    })
}

/// Reads a version: `COUNTER@PEER` pairs joined by commas (empty: the
/// empty document).
pub fn parse_frontiers(text: &str) -> Result<Frontiers, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Frontiers::default());
    }
    let mut ids = Vec::new();
    for part in text.split(',') {
        if ids.len() == FRONTIERS_MOST {
            return Err(format!(
                "a version names at most {FRONTIERS_MOST} frontiers"
            ));
        }
        let bad =
            || format!("{part:?} is not COUNTER@PEER (as a history entry's version prints it)");
        let (counter, peer) = part.trim().split_once('@').ok_or_else(bad)?;
        let counter: i32 = counter.parse().map_err(|_| bad())?;
        let peer: u64 = peer.parse().map_err(|_| bad())?;
        if counter < 0 {
            return Err(bad());
        }
        if ids.iter().any(|id: &ID| id.peer == peer) {
            return Err(format!(
                "{text:?} names peer {peer} twice: a version has one frontier per peer"
            ));
        }
        ids.push(ID::new(peer, counter));
    }
    Ok(Frontiers::from(ids))
}

/// Whether `doc` holds every operation `version` names, and all it needs
/// to show the state there (a document trimmed by `compact
/// --history-before` no longer can before its trim).
pub fn check_known(
    doc: &LoroDoc,
    version: &Frontiers,
    text: &str,
    id: &DocId,
) -> Result<(), String> {
    let held = doc.oplog_vv();
    for f in version.iter() {
        if !held.includes_id(f) {
            return Err(format!(
                "version {text:?} is not one of {id}'s: it holds no operation {}@{}",
                f.counter, f.peer
            ));
        }
    }
    if doc.is_shallow() {
        let trimmed = doc.shallow_since_vv();
        let before_trim = version.iter().any(|f| {
            trimmed
                .get(&f.peer)
                .is_some_and(|since| f.counter < *since - 1)
        });
        if before_trim {
            return Err(format!(
                "version {text:?} of {id} is older than its history keeps (it was compacted)"
            ));
        }
    }
    Ok(())
}

/// The state of `doc` at `version` (checked), as JSON. The copy is
/// moved there; the live document is never touched.
pub fn state_at(doc: &LoroDoc, version: &Frontiers) -> Result<Value, String> {
    // The version is the client's: a panic in Loro is this request's error.
    let value = docweave_adapters::contained("a checkout", || {
        doc.checkout(version)?;
        Ok::<_, loro::LoroError>(doc.get_deep_value())
    })
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    serde_json::to_value(value).map_err(|e| e.to_string())
}

/// The state of `doc` at `version` (checked), as a Loro snapshot whose
/// history ends there.
pub fn snapshot_at(doc: &LoroDoc, version: &Frontiers) -> Result<Vec<u8>, String> {
    docweave_adapters::contained("a snapshot at a version", || {
        doc.export(loro::ExportMode::SnapshotAt {
            version: std::borrow::Cow::Borrowed(version),
        })
    })
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// What changed from `from` to `to` (both checked), per container, as JSON:
/// text as Quill-style deltas, lists as inserts, deletes and retains, maps
/// as the keys set (`null`: removed), counters as their increment.
pub fn difference(doc: &LoroDoc, from: &Frontiers, to: &Frontiers) -> Result<Value, String> {
    let batch = docweave_adapters::contained("a difference", || doc.diff(from, to))
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut containers = Vec::new();
    for (container, diff) in batch.iter() {
        let (kind, change) = match diff {
            loro::event::Diff::Text(delta) => {
                let mut ops = serde_json::to_value(delta).map_err(|e| e.to_string())?;
                // Plain text has no attributes: say nothing of them.
                for op in ops.as_array_mut().into_iter().flatten() {
                    if let Some(op) = op.as_object_mut() {
                        op.retain(|k, v| k != "attributes" || !v.is_null());
                    }
                }
                ("text", ops)
            }
            loro::event::Diff::List(items) => ("list", list_json(items)),
            loro::event::Diff::Map(map) => {
                let mut keys: Vec<_> = map.updated.iter().collect();
                keys.sort_by(|a, b| a.0.cmp(b.0));
                let mut set = serde_json::Map::new();
                for (key, value) in keys {
                    set.insert(
                        key.to_string(),
                        value.as_ref().map_or(Value::Null, value_json),
                    );
                }
                ("map", Value::Object(set))
            }
            loro::event::Diff::Counter(by) => ("counter", json!(by)),
            loro::event::Diff::Tree(tree) => ("tree", json!(format!("{tree:?}"))),
            loro::event::Diff::Unknown => ("unknown", Value::Null),
        };
        containers.push(json!({
            "container": container.to_string(),
            "kind": kind,
            "change": change,
        }));
    }
    Ok(Value::Array(containers))
}

fn list_json(items: &[loro::event::ListDiffItem]) -> Value {
    use loro::event::ListDiffItem;
    Value::Array(
        items
            .iter()
            .map(|item| match item {
                ListDiffItem::Insert { insert, .. } => {
                    json!({ "insert": insert.iter().map(value_json).collect::<Vec<_>>() })
                }
                ListDiffItem::Delete { delete } => json!({ "delete": delete }),
                ListDiffItem::Retain { retain } => json!({ "retain": retain }),
            })
            .collect(),
    )
}

fn value_json(v: &loro::ValueOrContainer) -> Value {
    serde_json::to_value(v.get_deep_value()).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_parses_from_its_printed_form_and_bad_text_is_refused() {
        let f = parse_frontiers("12@7,3@9").unwrap();
        let printed = docweave_shell::print_frontiers(&f);
        assert_eq!(printed, "12@7,3@9");
        assert_eq!(parse_frontiers("").unwrap(), Frontiers::default());
        for bad in ["7", "a@1", "1@b", "-1@3", "1@2@3", "1@2,,", "3@1,5@1"] {
            assert!(parse_frontiers(bad).is_err(), "{bad} was taken");
        }
    }

    #[test]
    fn a_version_the_document_does_not_hold_is_refused() {
        let doc = LoroDoc::new();
        doc.set_peer_id(5).unwrap();
        doc.get_text("t").insert(0, "abc").unwrap();
        doc.commit();
        let id = DocId::new("d");
        assert!(check_known(&doc, &parse_frontiers("2@5").unwrap(), "2@5", &id).is_ok());
        assert!(check_known(&doc, &parse_frontiers("3@5").unwrap(), "3@5", &id).is_err());
        assert!(check_known(&doc, &parse_frontiers("0@6").unwrap(), "0@6", &id).is_err());
    }

    #[test]
    fn the_state_at_a_version_and_the_difference_between_two_are_loros() {
        let doc = LoroDoc::new();
        doc.set_peer_id(5).unwrap();
        let text = doc.get_text("t");
        text.insert(0, "hello").unwrap();
        doc.commit();
        let v1 = doc.oplog_frontiers();
        text.insert(5, " world").unwrap();
        doc.get_map("m").insert("k", 1).unwrap();
        doc.commit();
        let v2 = doc.oplog_frontiers();
        let diff = difference(&doc, &v1, &v2).unwrap();
        let text_change = diff
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"] == "text")
            .unwrap();
        assert_eq!(
            text_change["change"],
            json!([{"retain": 5}, {"insert": " world"}])
        );
        let map_change = diff
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"] == "map")
            .unwrap();
        assert_eq!(map_change["change"], json!({"k": 1}));
        assert_eq!(state_at(&doc, &v1).unwrap(), json!({"t": "hello", "m": {}}));
    }
}
