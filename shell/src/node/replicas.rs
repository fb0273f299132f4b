//! The node's document replicas: created, loaded from stored bytes,
//! watched for local edits, and evicted least recently used first, when
//! there are more than a count or (with a memory budget) when their
//! estimated memory is over the budget. Under a budget an evicted replica
//! sleeps as its bytes ([`super::dormant`]) and wakes on its next
//! use without a store read. A replica unused for a while sleeps the same
//! way whatever the budget ([`Replicas::sleep_idle`]): an idle 500-byte
//! document then costs about 1 KB (S12) instead of the 12 KB it takes
//! awake, so memory follows the documents in use.

use crate::engine::DocEngine;
use docweave_adapters::Loaded;
use docweave_core::{Clock, DocId, ImportOutcome, Millis, VersionVector};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Most replicas put to sleep for being idle in one look (the rest follow
/// at the next, a second or so later).
const MOST_PUT_TO_SLEEP_AT_ONCE: usize = 256;

/// Called (from whatever thread commits) after a local edit through a handle.
pub type LocalNotify = Arc<dyn Fn(&DocId) + Send + Sync>;

struct Replica<E: DocEngine> {
    doc: E::Doc,
    /// Ends the local-edit watch when the replica goes.
    _watch: Box<dyn std::any::Any + Send>,
    used: u64,
    /// When it was last used (the node's clock).
    used_at: Millis,
    /// The application was given a handle on it: it never sleeps for being
    /// idle, since an edit through that handle after it slept would go to a
    /// replica the node no longer watches.
    handed: bool,
    /// The store clock up to which this replica holds all the store had
    /// (from its last load): a later load need only bring what follows.
    loaded_to: Option<Clock>,
    /// Its memory, as the engine estimated it when last measured.
    estimate: usize,
    /// Set by the local-edit watch, cleared once the node took the edit
    /// ([`Replicas::changed`]): such a replica is never evicted, or the
    /// edit would be lost (or sleep ahead of what the core knows).
    edited: Arc<AtomicBool>,
}

/// What importing a document's stored bytes gave.
pub(crate) struct Imported {
    /// The replica's version now.
    pub version: VersionVector,
    /// The part of it the stored bytes brought.
    pub stored: VersionVector,
    /// Stored pieces that could not be imported.
    pub unreadable: u32,
}

pub(crate) struct Replicas<E: DocEngine> {
    engine: E,
    actor: u64,
    notify: LocalNotify,
    docs: BTreeMap<DocId, Replica<E>>,
    /// Last use of each replica, oldest first.
    by_use: BTreeMap<u64, DocId>,
    uses: u64,
    /// The node's clock, for when replicas are used.
    now: Millis,
    /// Whether memory is estimated (only under a budget: it costs a little).
    measured: bool,
    /// The estimates of all replicas, summed.
    total: usize,
    /// Replicas used since they were last measured (they may have grown).
    stale: BTreeSet<DocId>,
    /// Replicas evicted under the budget, as their bytes.
    dormant: super::dormant::Dormant,
}

/// Watches `d` for local edits: marks it edited, then tells the node.
fn watch<E: DocEngine>(
    engine: &E,
    d: &E::Doc,
    doc: &DocId,
    notify: &LocalNotify,
) -> (Box<dyn std::any::Any + Send>, Arc<AtomicBool>) {
    let edited = Arc::new(AtomicBool::new(false));
    let (mark, notify, id) = (edited.clone(), notify.clone(), doc.clone());
    let guard = engine.watch_local(
        d,
        Box::new(move || {
            mark.store(true, Ordering::SeqCst);
            notify(&id)
        }),
    );
    (guard, edited)
}

impl<E: DocEngine> Replicas<E> {
    /// Replicas of `engine`'s documents; `measured`: their memory is
    /// estimated, for eviction by a budget.
    pub fn new(engine: E, actor: u64, notify: LocalNotify, measured: bool) -> Self {
        Self {
            engine,
            actor,
            notify,
            docs: BTreeMap::new(),
            by_use: BTreeMap::new(),
            uses: 0,
            now: 0,
            measured,
            total: 0,
            stale: BTreeSet::new(),
            dormant: Default::default(),
        }
    }

    /// The replicas' memory, as estimated when last measured (0 unless
    /// measured: under a budget), and the sleeping ones' bytes.
    pub fn estimated_bytes(&self) -> usize {
        self.total + self.dormant.bytes()
    }

    /// How many replicas sleep as their bytes.
    pub fn dormant(&self) -> usize {
        self.dormant.len()
    }

    /// Whether `doc`'s replica is in memory, woken from its sleeping bytes
    /// if it slept. Sleeping bytes that do not import are dropped (the store
    /// has the document; a reload follows).
    pub fn wake(&mut self, doc: &DocId) -> bool {
        if self.docs.contains_key(doc) {
            return true;
        }
        let Some((bytes, loaded_to)) = self.dormant.take(doc) else {
            return false;
        };
        let mut d = self.engine.create(self.actor);
        match self.engine.import(&mut d, &bytes) {
            Ok(ImportOutcome::Applied { .. }) => {}
            Ok(other) => {
                tracing::warn!(
                    "{doc} did not wake from its sleeping bytes ({other:?}); it is read again"
                );
                return false;
            }
            Err(e) => {
                tracing::warn!(
                    "{doc} did not wake from its sleeping bytes ({e}); it is read again"
                );
                return false;
            }
        }
        let (watch, edited) = watch(&self.engine, &d, doc, &self.notify);
        self.uses += 1;
        self.by_use.insert(self.uses, doc.clone());
        self.stale.insert(doc.clone());
        self.docs.insert(
            doc.clone(),
            Replica {
                doc: d,
                _watch: watch,
                used: self.uses,
                used_at: self.now,
                handed: false,
                loaded_to,
                estimate: 0,
                edited,
            },
        );
        true
    }

    /// The node's clock now: replicas used from here on were used then.
    pub fn set_now(&mut self, now: Millis) {
        self.now = self.now.max(now);
    }

    /// The application was given a handle on `doc`'s replica: it stays
    /// awake however long it is idle (see [`Replicas::sleep_idle`]).
    pub fn handed_out(&mut self, doc: &DocId) {
        if let Some(r) = self.docs.get_mut(doc) {
            r.handed = true;
        }
    }

    /// Whether the application holds a handle on `doc`'s replica, or
    /// edited it through one and the node has not taken the edit yet: such
    /// a replica may hold what no store does, and must stay.
    pub fn in_use(&self, doc: &DocId) -> bool {
        self.docs
            .get(doc)
            .is_some_and(|r| r.handed || r.edited.load(Ordering::SeqCst))
    }

    /// When the least recently used replica will have been idle for
    /// `after` ms, on a grid of 10 seconds (or `after`, if shorter) so that replicas falling due close
    /// together (or spared and looked at again) cost one wake-up (`None`:
    /// none could sleep, or `after` is 0).
    pub fn next_sleep(&self, after: Millis) -> Option<Millis> {
        if after == 0 {
            return None;
        }
        let grid = after.min(10_000);
        let doc = self.by_use.values().next()?;
        let r = self.docs.get(doc)?;
        let due = r.used_at.saturating_add(after);
        Some(due.div_ceil(grid).saturating_mul(grid))
    }

    /// Puts to sleep, as their bytes, the replicas unused for
    /// `after` ms (0: never), sparing those `keep` says are needed, those
    /// edited through a handle the node did not take yet, and those the
    /// application holds a handle on; a spared one is looked at again
    /// after another `after` ms. One whose bytes would cost as much as
    /// it does awake stays awake. At most `most_asleep` sleep, the least
    /// recently put going first.
    pub fn sleep_idle(&mut self, after: Millis, most_asleep: usize, keep: impl Fn(&DocId) -> bool) {
        if after == 0 {
            return;
        }
        let now = self.now;
        // Each sleep exports the document on the node's thread: after a cold
        // sync loaded thousands at once, they fall asleep a batch per look.
        let idle: Vec<DocId> = self
            .by_use
            .values()
            .take_while(|doc| {
                self.docs
                    .get(*doc)
                    .is_some_and(|r| r.used_at.saturating_add(after) <= now)
            })
            .take(MOST_PUT_TO_SLEEP_AT_ONCE)
            .cloned()
            .collect();
        for doc in idle {
            let Some(r) = self.docs.get(&doc) else {
                continue;
            };
            let spared = r.handed || r.edited.load(Ordering::SeqCst) || keep(&doc);
            let bytes = if spared {
                None
            } else {
                let awake = self.engine.resident_estimate(&r.doc);
                self.asleep_bytes(&doc, awake.saturating_sub(super::dormant::OVERHEAD))
            };
            match bytes {
                Some(bytes) => {
                    let loaded_to = self.loaded_to(&doc);
                    self.remove(&doc);
                    self.dormant.put(doc, bytes, loaded_to);
                }
                // Looked at again once it has been idle as long again.
                None => {
                    self.touch(&doc);
                }
            }
        }
        self.dormant.keep_at_most(most_asleep);
    }

    /// The node took the local edits made to `doc`'s replica through its
    /// handle (it read the version they give): it may be evicted again,
    /// and may have grown.
    pub fn changed(&mut self, doc: &DocId) {
        let Some(r) = self.docs.get(doc) else {
            return;
        };
        r.edited.store(false, Ordering::SeqCst);
        if self.measured {
            self.stale.insert(doc.clone());
        }
    }

    /// Measures the replicas used since their last measure.
    fn remeasure(&mut self) {
        for doc in std::mem::take(&mut self.stale) {
            if let Some(r) = self.docs.get_mut(&doc) {
                let now = self.engine.resident_estimate(&r.doc);
                self.total = self.total.saturating_sub(r.estimate).saturating_add(now);
                r.estimate = now;
            }
        }
    }

    pub fn engine(&self) -> &E {
        &self.engine
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn get(&self, doc: &DocId) -> Option<&E::Doc> {
        self.docs.get(doc).map(|r| &r.doc)
    }

    /// The replica, marked as just used.
    pub fn touch(&mut self, doc: &DocId) -> Option<&mut E::Doc> {
        self.wake(doc);
        let r = self.docs.get_mut(doc)?;
        if self.measured {
            self.stale.insert(doc.clone());
        }
        self.uses += 1;
        self.by_use.remove(&r.used);
        r.used = self.uses;
        r.used_at = self.now;
        self.by_use.insert(self.uses, doc.clone());
        Some(&mut r.doc)
    }

    /// The replica, created empty (and watched) if there is none.
    pub fn get_or_create(&mut self, doc: &DocId) -> &mut E::Doc {
        self.wake(doc);
        let Self {
            engine,
            actor,
            notify,
            docs,
            by_use,
            uses,
            now,
            measured,
            stale,
            ..
        } = self;
        *uses += 1;
        if *measured {
            stale.insert(doc.clone());
        }
        let r = docs.entry(doc.clone()).or_insert_with(|| {
            let d = engine.create(*actor);
            let (watch, edited) = watch(engine, &d, doc, notify);
            Replica {
                doc: d,
                _watch: watch,
                used: 0,
                used_at: *now,
                handed: false,
                loaded_to: None,
                estimate: 0,
                edited,
            }
        });
        by_use.remove(&r.used);
        r.used = *uses;
        r.used_at = *now;
        by_use.insert(*uses, doc.clone());
        &mut r.doc
    }

    /// Whether the node holds `doc`'s replica, awake or asleep.
    pub fn holds(&self, doc: &DocId) -> bool {
        self.docs.contains_key(doc) || self.dormant.holds(doc)
    }

    /// The store clock up to which the replica holds all the store had.
    pub fn loaded_to(&self, doc: &DocId) -> Option<Clock> {
        match self.docs.get(doc) {
            Some(r) => r.loaded_to,
            None => self.dormant.loaded_to(doc),
        }
    }

    pub fn remove(&mut self, doc: &DocId) {
        if let Some(r) = self.docs.remove(doc) {
            self.by_use.remove(&r.used);
            self.total = self.total.saturating_sub(r.estimate);
            self.stale.remove(doc);
        }
        self.dormant.remove(doc);
    }

    /// Imports everything a store held into the replica (created if absent),
    /// or, for a load since a clock, what followed it (the caller checked
    /// that the replica holds all up to that clock).
    /// A piece that does not import is counted, never taken as held.
    pub fn import_loaded(&mut self, doc: &DocId, loaded: &Loaded) -> Imported {
        let engine = self.engine.clone();
        let (actor, notify) = (self.actor, self.notify.clone());
        self.get_or_create(doc);
        let Some(r) = self.docs.get_mut(doc) else {
            return Imported {
                version: VersionVector::new(),
                stored: VersionVector::new(),
                unreadable: 0,
            };
        };
        let pieces: Vec<&Vec<u8>> = loaded
            .snapshot
            .iter()
            .chain(loaded.changes.iter())
            .collect();
        // Pieces that made the library panic: left out of a rebuilt replica.
        let mut poison: BTreeSet<usize> = BTreeSet::new();
        let mut unreadable = 0u32;
        let mut i = 0;
        while i < pieces.len() {
            if poison.contains(&i) {
                i += 1;
                continue;
            }
            match engine.import(&mut r.doc, pieces[i]) {
                Ok(ImportOutcome::Failed { reason }) => {
                    tracing::warn!("a stored piece of {doc} does not import: {reason}");
                    unreadable = unreadable.saturating_add(1);
                }
                Ok(_) => {}
                Err(e) => {
                    // The replica is broken: start again without this piece
                    // (a poison change written by an older version, or by
                    // another server), so the rest of the document is served.
                    tracing::error!("a stored piece of {doc} is quarantined: {e}");
                    poison.insert(i);
                    unreadable = 0;
                    i = 0;
                    r.doc = engine.create(actor);
                    let (guard, edited) = watch(&engine, &r.doc, doc, &notify);
                    (r._watch, r.edited) = (guard, edited);
                    continue;
                }
            }
            i += 1;
        }
        unreadable = unreadable.saturating_add(poison.len() as u32);
        // What did not import must be read again in full next time.
        r.loaded_to = (unreadable == 0).then(|| r.loaded_to.unwrap_or_default().max(loaded.clock));
        let d = &r.doc;
        let version = engine.version(d);
        let stored = loaded.version.meet(&version);
        Imported {
            version,
            stored,
            unreadable,
        }
    }

    /// Drops least recently used replicas until at most `max` remain and
    /// their estimated memory is at most `budget` bytes, sparing those
    /// `keep` says are still needed and those edited through their handle
    /// that the node did not take yet. Under a budget a dropped replica
    /// sleeps as its bytes (if they cost less than it did awake, and
    /// is small beside the budget); the sleeping ones then fit in what the
    /// replicas in memory leave of the budget, oldest dropped first.
    pub fn evict(&mut self, max: usize, budget: usize, keep: impl Fn(&DocId) -> bool) {
        self.remeasure();
        // Replicas in memory go only while they alone are too many or too
        // large; the sleeping ones then make room (oldest first), never the
        // other way round.
        let over = |r: &Self| r.docs.len() > max || r.total > budget;
        let oldest: Vec<DocId> = if over(self) {
            self.by_use.values().cloned().collect()
        } else {
            Vec::new()
        };
        for doc in oldest {
            if !over(self) {
                break;
            }
            // Edited through its handle and not yet taken by the node.
            let edited = self
                .docs
                .get(&doc)
                .is_some_and(|r| r.edited.load(Ordering::SeqCst));
            if edited || keep(&doc) {
                continue;
            }
            // Asleep only when its bytes cost less than it does awake.
            let asleep = self.measured.then(|| {
                let estimate = self.docs.get(&doc).map_or(0, |r| r.estimate);
                let most = (budget / 16).min(estimate.saturating_sub(super::dormant::OVERHEAD));
                self.asleep_bytes(&doc, most)
            });
            let loaded_to = self.loaded_to(&doc);
            self.remove(&doc);
            if let Some(Some(bytes)) = asleep {
                self.dormant.put(doc, bytes, loaded_to);
            }
        }
        if self.measured {
            self.dormant.trim(budget.saturating_sub(self.total));
        }
    }

    /// `doc`'s bytes to sleep as, if it exports and they are at most
    /// `most` bytes.
    fn asleep_bytes(&self, doc: &DocId, most: usize) -> Option<Vec<u8>> {
        let r = self.docs.get(doc)?;
        match self.engine.export_asleep(&r.doc) {
            Ok(bytes) if bytes.len() <= most => Some(bytes),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!("{doc} is dropped from memory, not kept asleep: {e}");
                None
            }
        }
    }
}
