//! The default engine: Loro documents.

use crate::engine::{DocEngine, ExportError, Run};
use docweave_adapters::{contained, EnginePanic};
use docweave_core::{ImportOutcome, VersionVector};
use loro::{ExportMode, LoroDoc};

/// Loro documents. A [`LoroDoc`] clone is a reference to the same document,
/// so the application edits the very replica the shell syncs.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoroEngine;

/// Converts Loro's version (peer -> next counter, hash ordered) to the core's (sorted).
pub fn to_core_version(vv: &loro::VersionVector) -> VersionVector {
    VersionVector::from_entries(
        vv.iter()
            .map(|(peer, counter)| (*peer, (*counter).max(0) as u64)),
    )
}

/// Converts the core's version to Loro's.
pub fn to_loro_version(v: &VersionVector) -> loro::VersionVector {
    let mut out = loro::VersionVector::new();
    for (peer, next) in v.iter() {
        out.insert(peer, i32::try_from(next).unwrap_or(i32::MAX));
    }
    out
}

impl LoroEngine {
    /// The whole of `doc` as a Loro snapshot, whatever form
    /// [`DocEngine::export`] would choose: what the C and Python hosts and
    /// the admin API promise their callers (a shallow replica's is a
    /// shallow snapshot).
    pub fn export_snapshot(&self, doc: &LoroDoc) -> Result<Vec<u8>, ExportError> {
        exported(doc, |_| ExportMode::Snapshot)
    }
}

/// `doc`, its pending edits committed, exported in the form `mode` picks
/// for it. Both run inside the panic guard: a replica the library broke is
/// reported, not a panic of the node.
fn exported<'a>(
    doc: &LoroDoc,
    mode: impl FnOnce(&LoroDoc) -> ExportMode<'a>,
) -> Result<Vec<u8>, ExportError> {
    contained("export", || {
        // `mode` reads the history, so pending edits go in first. Only when
        // there are some: a commit starts Loro's next transaction at once,
        // and the export starts one again, which made every export of a
        // 100-character text 5% slower (0.58 s against 0.55 s for 100,000).
        if doc.get_pending_txn_len() > 0 {
            doc.commit();
        }
        doc.export(mode(doc))
    })?
    .map_err(|e| ExportError::Refused(e.to_string()))
}

impl DocEngine for LoroEngine {
    type Doc = LoroDoc;
    type Handle = LoroDoc;

    fn handle(&self, doc: &LoroDoc) -> LoroDoc {
        doc.clone()
    }

    fn commit(handle: &LoroDoc) {
        handle.commit();
    }

    fn watch_local(
        &self,
        doc: &LoroDoc,
        notify: Box<dyn Fn() + Send + Sync>,
    ) -> Box<dyn std::any::Any + Send> {
        let sub = doc.subscribe_local_update(Box::new(move |_| {
            notify();
            true
        }));
        Box::new(sub)
    }

    fn create(&self, actor: u64) -> LoroDoc {
        let doc = LoroDoc::new();
        // A refused peer id keeps Loro's random one: still unique.
        let _ = doc.set_peer_id(actor);
        doc
    }

    fn version(&self, doc: &LoroDoc) -> VersionVector {
        // Only a replica an earlier panic broke can panic here, and the node
        // drops those at once; an empty version makes peers send it all again.
        contained("version", || to_core_version(&doc.oplog_vv())).unwrap_or_default()
    }

    fn export(&self, doc: &LoroDoc, since: Option<&VersionVector>) -> Result<Vec<u8>, ExportError> {
        let since = since.map(to_loro_version).filter(|v| !v.is_empty());
        exported(doc, |doc| match &since {
            // A shallow replica lacks the history before its start: a delta
            // from an older version would import as pending and empty.
            Some(v) if doc.is_shallow() && !v.includes_vv(&doc.shallow_since_vv().to_vv()) => {
                whole(doc, 0)
            }
            Some(v) => ExportMode::updates(v),
            None => whole(doc, 0),
        })
    }

    fn export_asleep(&self, doc: &LoroDoc) -> Result<Vec<u8>, ExportError> {
        exported(doc, |doc| whole(doc, MOST_SHARED_CHANGES_ASLEEP))
    }

    /// Measured (`tests/tests/replica_memory.rs`): an empty replica holds
    /// about 18 KB, each operation about 4 bytes (text typed by one peer:
    /// 1,000,000 characters, 4.0 MB), each change a few dozen (a map
    /// written by many peers, one change per key).
    fn resident_estimate(&self, doc: &LoroDoc) -> usize {
        18 * 1024 + 4 * doc.len_ops() + 40 * doc.len_changes()
    }

    fn runs(&self, bytes: &[u8]) -> Result<Vec<Run>, String> {
        // The bytes come from anyone: a panic reading them is a refusal.
        let meta = contained("read an update's writers", || {
            LoroDoc::decode_import_blob_meta(bytes, false)
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("not a Loro update or snapshot: {e}"))?;
        Ok(meta
            .partial_end_vv
            .iter()
            .map(|(writer, end)| Run {
                writer: *writer,
                start: meta
                    .partial_start_vv
                    .get(writer)
                    .copied()
                    .unwrap_or(0)
                    .max(0) as u64,
                end: (*end).max(0) as u64,
            })
            .filter(|r| r.start < r.end)
            .collect())
    }

    fn message(&self, doc: &LoroDoc, writer: u64, counter: u64) -> Option<String> {
        let counter = i32::try_from(counter).ok()?;
        let change = doc.get_change(loro::ID::new(writer, counter))?;
        change.message.map(|m| m.to_string())
    }

    fn import(&self, doc: &mut LoroDoc, bytes: &[u8]) -> Result<ImportOutcome, EnginePanic> {
        loop_fault(bytes);
        // The bytes come from anyone. Loro refuses what it cannot read; a
        // panic (a Loro bug) is kept to this replica, which the caller drops.
        contained("import", || {
            import_fault(bytes);
            import_unguarded(doc, bytes)
        })
    }

    fn import_many(
        &self,
        doc: &mut LoroDoc,
        batch: &[&[u8]],
    ) -> Result<Vec<ImportOutcome>, EnginePanic> {
        if batch.len() < 2 {
            return batch.iter().map(|bytes| self.import(doc, bytes)).collect();
        }
        batch.iter().for_each(|bytes| loop_fault(bytes));
        contained("import", || {
            // Detached, an import only adds to the history; the state is
            // brought up to date once, after the last. Attached, each import
            // of changes concurrent to the state recomputes its diff from
            // their common ancestor: 1,000 updates from 1,000 writers took
            // minutes.
            let was_detached = doc.is_detached();
            doc.detach();
            let results: Vec<_> = batch
                .iter()
                .map(|bytes| {
                    import_fault(bytes);
                    doc.import(bytes)
                })
                .collect();
            if !was_detached {
                doc.checkout_to_latest();
            }
            // Every import reports the version after the last one, one
            // shared copy: a version per import grows with the writers, so
            // 16,000 of them held gigabytes. The acknowledgements wait for
            // that version to be durable, which its write makes it at once.
            let version = to_core_version(&doc.oplog_vv());
            results
                .into_iter()
                .map(|result| outcome(result, &version))
                .collect()
        })
    }
}

/// A version as histories print it: each frontier `COUNTER@PEER`, by
/// peer, joined by commas (Loro's way of naming one operation).
pub fn print_frontiers(frontiers: &loro::Frontiers) -> String {
    let mut ids: Vec<loro::ID> = frontiers.iter().collect();
    ids.sort_by_key(|id| (id.peer, id.counter));
    ids.iter()
        .map(|id| format!("{}@{}", id.counter, id.peer))
        .collect::<Vec<_>>()
        .join(",")
}

/// `DOCWEAVE_FAULT=loop-panic:MARK`: a panic outside every guard.
fn loop_fault(bytes: &[u8]) {
    use crate::fault::{holds, injected, Fault};
    if let Some(Fault::LoopPanic(mark)) = injected() {
        if holds(bytes, mark) {
            panic!("DOCWEAVE_FAULT: a panic in the node's loop, injected on purpose");
        }
    }
}

/// `DOCWEAVE_FAULT=import-panic:MARK`: a panic inside the import's guard.
fn import_fault(bytes: &[u8]) {
    use crate::fault::{holds, injected, Fault};
    if let Some(Fault::ImportPanic(mark)) = injected() {
        if holds(bytes, mark) {
            panic!("DOCWEAVE_FAULT: a panic in the import, injected on purpose");
        }
    }
}

/// What [`LoroEngine::import`] does inside its guard.
fn import_unguarded(doc: &mut LoroDoc, bytes: &[u8]) -> ImportOutcome {
    let result = doc.import(bytes);
    outcome(result, &to_core_version(&doc.oplog_vv()))
}

/// What Loro's answer to an import means, with the replica's version after it.
fn outcome(result: loro::LoroResult<loro::ImportStatus>, version: &VersionVector) -> ImportOutcome {
    match result {
        Ok(status) if status.pending.is_some() => ImportOutcome::Pending {
            version: version.clone(),
        },
        Ok(_) => ImportOutcome::Applied {
            version: version.clone(),
        },
        Err(e) => ImportOutcome::Failed {
            reason: e.to_string(),
        },
    }
}

/// How the whole of `doc` is exported: what a peer that holds none of it is
/// sent and what the store is given for a new document (`shared_changes`
/// 0), or what an asleep replica is kept as ([`MOST_SHARED_CHANGES_ASLEEP`]).
///
/// A document one writer wrote (up to 10,000 operations) goes as all its
/// updates, not as a snapshot. Measured on 100,000 texts of 100 characters
/// (`docweave-bench --scenario s1`), its updates are 181 bytes against 425.
/// They export in 5.6 µs against 22.6 µs, since Loro encodes a first
/// snapshot's state and keeps that encoding in the replica. They import in
/// 8.3 µs against 12.6 µs. And they leave the importer holding 10.3 KB
/// against 16.5 KB, since Loro keeps a snapshot's encoded form beside the
/// state it decodes from it. One writer's updates import faster than its
/// snapshot at every size tried (1 to 10,000 changes).
///
/// A document several writers wrote goes as its updates only up to
/// `shared_changes` changes. Loro imports changes of several writers that
/// depend on one another far more slowly than it decodes their outcome:
/// two writers taking turns 10 times, 50 µs against 16 µs; 100 times,
/// 502 µs against 51 µs; 10,000 writers of one key each, 7 s against
/// 73 ms. So a peer is sent a snapshot of it, while an asleep replica,
/// woken once on its next use, may still favour the memory it will hold.
/// A large document goes as a snapshot, which brings it back without
/// replaying its operations, and so does a shallow one, whose history
/// does not go back to the start.
fn whole(doc: &LoroDoc, shared_changes: usize) -> ExportMode<'static> {
    const MOST_OPS_AS_UPDATES: usize = 10_000;
    let few_changes = doc.oplog_vv().len() <= 1 || doc.len_changes() <= shared_changes;
    if few_changes && !doc.is_shallow() && doc.len_ops() <= MOST_OPS_AS_UPDATES {
        ExportMode::all_updates()
    } else {
        ExportMode::Snapshot
    }
}

/// How many changes of several writers an asleep replica may keep as
/// updates: waking 64 writers' lines took 354 µs against 243 µs from a
/// snapshot, and a woken 500-byte text holds 12.4 KB rather than 18.9 KB.
const MOST_SHARED_CHANGES_ASLEEP: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    /// The form `bytes` are in, as Loro reads their header.
    fn form(bytes: &[u8]) -> loro::EncodedBlobMode {
        LoroDoc::decode_import_blob_meta(bytes, true).unwrap().mode
    }

    #[test]
    fn one_writers_small_document_goes_as_its_updates_and_sleeps_so_with_few_shared_changes() {
        let e = LoroEngine;
        let wakes_whole = |d: &LoroDoc, bytes: &[u8]| {
            let mut woken = e.create(9);
            assert!(matches!(
                e.import(&mut woken, bytes).unwrap(),
                ImportOutcome::Applied { .. }
            ));
            assert_eq!(woken.get_deep_value(), d.get_deep_value());
            assert_eq!(e.version(&woken), e.version(d));
        };
        let small = e.create(1);
        small
            .get_text("t")
            .insert(0, &"abcdefghij".repeat(45))
            .unwrap();
        small.commit();
        let bytes = e.export(&small, None).unwrap();
        assert_eq!(form(&bytes), loro::EncodedBlobMode::Updates);
        wakes_whole(&small, &bytes);

        let large = e.create(2);
        large.get_text("t").insert(0, &"x".repeat(20_000)).unwrap();
        large.commit();
        let bytes = e.export(&large, None).unwrap();
        assert_eq!(form(&bytes), loro::EncodedBlobMode::Snapshot);
        wakes_whole(&large, &bytes);

        // Small, but two writers: their updates import slowly.
        let shared = e.create(4);
        let other = e.create(5);
        other.get_text("t").insert(0, "theirs ").unwrap();
        other.commit();
        shared
            .import(&other.export(ExportMode::all_updates()).unwrap())
            .unwrap();
        shared.get_text("t").insert(0, "ours ").unwrap();
        shared.commit();
        let bytes = e.export(&shared, None).unwrap();
        assert_eq!(form(&bytes), loro::EncodedBlobMode::Snapshot);
        wakes_whole(&shared, &bytes);
        // Asleep, it keeps its updates while they are few.
        let bytes = e.export_asleep(&shared).unwrap();
        assert_eq!(form(&bytes), loro::EncodedBlobMode::Updates);
        wakes_whole(&shared, &bytes);
        for turn in 0..MOST_SHARED_CHANGES_ASLEEP {
            let (writer, reader) = if turn % 2 == 0 {
                (&other, &shared)
            } else {
                (&shared, &other)
            };
            writer.get_text("t").insert(0, "turn ").unwrap();
            writer.commit();
            reader
                .import(&writer.export(ExportMode::all_updates()).unwrap())
                .unwrap();
        }
        let bytes = e.export_asleep(&shared).unwrap();
        assert_eq!(form(&bytes), loro::EncodedBlobMode::Snapshot);
        wakes_whole(&shared, &bytes);

        let shallow = e.create(3);
        let at = {
            small.get_text("t").insert(0, "more ").unwrap();
            small.commit();
            small.oplog_frontiers()
        };
        let trimmed = small.export(ExportMode::shallow_snapshot(&at)).unwrap();
        shallow.import(&trimmed).unwrap();
        let bytes = e.export(&shallow, None).unwrap();
        assert_eq!(form(&bytes), loro::EncodedBlobMode::ShallowSnapshot);
        wakes_whole(&shallow, &bytes);
    }

    #[test]
    fn pending_edits_are_exported_and_count_in_the_form_chosen() {
        let e = LoroEngine;
        let shared = e.create(4);
        let other = e.create(5);
        // Two writers taking turns, up to as many changes as a replica may
        // sleep with as updates, the last one the other writer's.
        let mut turn = 0;
        while shared.len_changes() < MOST_SHARED_CHANGES_ASLEEP {
            let (writer, reader) = match turn % 2 {
                0 => (&shared, &other),
                _ => (&other, &shared),
            };
            writer.get_text("t").insert(0, "turn ").unwrap();
            writer.commit();
            reader
                .import(&writer.export(ExportMode::all_updates()).unwrap())
                .unwrap();
            turn += 1;
        }
        assert_eq!(shared.len_changes(), MOST_SHARED_CHANGES_ASLEEP);
        assert_eq!(turn % 2, 0, "the other writer wrote last");
        // Not committed: one change more, past the line.
        shared.get_text("t").insert(0, "pending ").unwrap();
        assert!(shared.get_pending_txn_len() > 0);
        assert_eq!(shared.len_changes(), MOST_SHARED_CHANGES_ASLEEP);
        let bytes = e.export_asleep(&shared).unwrap();
        assert_eq!(form(&bytes), loro::EncodedBlobMode::Snapshot);
        let woken = LoroDoc::new();
        woken.import(&bytes).unwrap();
        assert!(woken.get_text("t").to_string().starts_with("pending turn "));
    }

    #[test]
    fn a_snapshot_asked_for_is_a_snapshot_even_of_one_writers_small_document() {
        let e = LoroEngine;
        let small = e.create(1);
        small.get_text("t").insert(0, "hello").unwrap();
        let bytes = e.export_snapshot(&small).unwrap();
        assert_eq!(form(&bytes), loro::EncodedBlobMode::Snapshot);
        let woken = LoroDoc::new();
        woken.import(&bytes).unwrap();
        assert_eq!(woken.get_text("t").to_string(), "hello");
    }

    #[test]
    fn versions_convert_both_ways_and_deltas_apply() {
        let e = LoroEngine;
        let a = e.create(1);
        a.get_text("t").insert(0, "hello").ok();
        a.commit();
        let v = e.version(&a);
        assert_eq!(v, VersionVector::from_entries([(1, 5)]));
        assert_eq!(to_core_version(&to_loro_version(&v)), v);
        let mut b = e.create(2);
        let snapshot = e.export(&a, None).unwrap();
        assert!(matches!(
            e.import(&mut b, &snapshot).unwrap(),
            ImportOutcome::Applied { .. }
        ));
        a.get_text("t").insert(5, " world").ok();
        let delta = e.export(&a, Some(&e.version(&b))).unwrap();
        assert!(matches!(
            e.import(&mut b, &delta).unwrap(),
            ImportOutcome::Applied { .. }
        ));
        assert_eq!(b.get_text("t").to_string(), "hello world");
    }

    #[test]
    fn a_delta_without_its_base_is_pending_not_complete() {
        let e = LoroEngine;
        let a = e.create(1);
        a.get_text("t").insert(0, "ab").ok();
        a.commit();
        let base = e.version(&a);
        a.get_text("t").insert(2, "cd").ok();
        let delta = e.export(&a, Some(&base)).unwrap();
        let mut b = e.create(2);
        assert!(matches!(
            e.import(&mut b, &delta).unwrap(),
            ImportOutcome::Pending { .. }
        ));
    }
}
