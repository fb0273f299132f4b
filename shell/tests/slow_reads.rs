//! One slow store read holds up nothing else: a hub whose store takes
//! long to read one document (a large one, a slow disk) still serves the
//! others, because reads of documents it holds nothing of run beside the
//! ordered jobs, on second connections to the same SQLite file.

use docweave_adapters::{Append, Loaded, SqliteStore, Store, StoreError};
use docweave_core::{Clock, DocId, Filter, StateRecord, StoredDoc};
use docweave_shell::Repo;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Opens once: reads of the gated document wait until then.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn wait(&self) {
        let (open, changed) = &*self.0;
        let mut g = open.lock().unwrap();
        while !*g {
            g = changed.wait(g).unwrap();
        }
    }

    fn open(&self) {
        let (open, changed) = &*self.0;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }
}

/// A SQLite store (or one of its readers) whose reads of `slow` wait for
/// the gate; with `broken_readers`, every read on a second connection fails.
struct SlowRead {
    inner: Box<dyn Store>,
    slow: DocId,
    gate: Gate,
    broken_readers: bool,
    reader: bool,
}

impl Store for SlowRead {
    fn append(&mut self, changes: &[Append]) -> Result<Vec<Clock>, StoreError> {
        self.inner.append(changes)
    }
    fn load(&mut self, doc: &DocId) -> Result<Option<Loaded>, StoreError> {
        if self.reader && self.broken_readers {
            return Err(StoreError::Unavailable(
                "the second connection broke".into(),
            ));
        }
        if doc == &self.slow {
            self.gate.wait();
        }
        self.inner.load(doc)
    }
    fn compact(&mut self, doc: &DocId, snapshot: &[u8], up_to: Clock) -> Result<(), StoreError> {
        self.inner.compact(doc, snapshot, up_to)
    }
    fn history(
        &mut self,
        doc: &DocId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<docweave_adapters::HistoryEntry>, StoreError> {
        self.inner.history(doc, before, limit)
    }
    fn changes_since(
        &mut self,
        clock: Clock,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<StoredDoc>, StoreError> {
        self.inner.changes_since(clock, filter, limit)
    }
    fn clock(&mut self) -> Result<Clock, StoreError> {
        self.inner.clock()
    }
    fn save(&mut self, record: &StateRecord) -> Result<(), StoreError> {
        self.inner.save(record)
    }
    fn records(&mut self) -> Result<Vec<StateRecord>, StoreError> {
        self.inner.records()
    }
    fn purge(&mut self, doc: &DocId) -> Result<(), StoreError> {
        self.inner.purge(doc)
    }
    fn reader(&mut self) -> Result<Option<Box<dyn Store>>, StoreError> {
        Ok(self.inner.reader()?.map(|inner| {
            Box::new(SlowRead {
                inner,
                slow: self.slow.clone(),
                gate: self.gate.clone(),
                broken_readers: self.broken_readers,
                reader: true,
            }) as Box<dyn Store>
        }))
    }
}

fn text(doc: &loro::LoroDoc) -> String {
    doc.get_text("t").to_string()
}

async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < WAIT {
        if f() {
            return true;
        }
        smol::Timer::after(Duration::from_millis(10)).await;
    }
    f()
}

/// A SQLite file holding `big` and `small`, written by a first hub.
async fn stored_documents(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{name}-{}.db", std::process::id()));
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", path.display()));
    }
    let first = Repo::builder("hub")
        .store(SqliteStore::open(&path).unwrap())
        .build()
        .unwrap();
    for (doc, content) in [("big", "slow to read"), ("small", "quick to read")] {
        first
            .edit(doc, |d| d.get_text("t").insert(0, content))
            .await
            .unwrap()
            .unwrap();
    }
    first.close().await;
    path
}

#[test]
fn a_document_whose_read_is_slow_holds_up_no_other_document() {
    smol::block_on(async {
        let path = stored_documents("slow-reads").await;
        let gate = Gate::default();
        let store = SlowRead {
            inner: Box::new(SqliteStore::open(&path).unwrap()),
            slow: DocId::new("big"),
            gate: gate.clone(),
            broken_readers: false,
            reader: false,
        };
        let hub = Repo::builder("hub").store(store).build().unwrap();
        // Two clients: the one waiting for `big` gets `small` on the same
        // connection meanwhile; the other never asked for `big`.
        let waiting = Repo::builder("waiting").build().unwrap();
        let other = Repo::builder("other").build().unwrap();
        waiting.connect(&hub).unwrap();
        other.connect(&hub).unwrap();
        let big = waiting.open("big").await.unwrap();
        // The hub's read of `big` is out (and waits) before `small` is asked for.
        smol::Timer::after(Duration::from_millis(100)).await;
        let small = other.open("small").await.unwrap();
        assert!(
            eventually(|| text(&small) == "quick to read").await,
            "the small document waited for the big one's read: {:?}",
            text(&small)
        );
        let small_there = waiting.open("small").await.unwrap();
        assert!(
            eventually(|| text(&small_there) == "quick to read").await,
            "on the connection waiting for the big document, the small one waited: {:?}",
            text(&small_there)
        );
        assert_eq!(text(&big), "", "the gated read finished early");
        // An edit of `small` reaches the hub and comes back acknowledged
        // while the read of `big` still waits.
        small.get_text("t").insert(0, "edited, ").unwrap();
        small.commit();
        let synced = other.wait_for_sync("small", "hub", WAIT).await;
        assert!(
            synced.as_ref().is_ok_and(|o| o.is_synced()),
            "the edit was not acknowledged: {synced:?}"
        );
        assert_eq!(text(&big), "", "the gated read finished early");
        gate.open();
        assert!(
            eventually(|| text(&big) == "slow to read").await,
            "the big document never came: {:?}",
            text(&big)
        );
        waiting.close().await;
        other.close().await;
        hub.close().await;
    });
}

#[test]
fn a_read_that_fails_on_a_second_connection_runs_again_in_order() {
    smol::block_on(async {
        let path = stored_documents("broken-readers").await;
        let gate = Gate::default();
        gate.open();
        let store = SlowRead {
            inner: Box::new(SqliteStore::open(&path).unwrap()),
            slow: DocId::new("big"),
            gate,
            broken_readers: true,
            reader: false,
        };
        let hub = Repo::builder("hub").store(store).build().unwrap();
        let client = Repo::builder("client").build().unwrap();
        client.connect(&hub).unwrap();
        let big = client.open("big").await.unwrap();
        let small = client.open("small").await.unwrap();
        assert!(
            eventually(|| text(&big) == "slow to read" && text(&small) == "quick to read").await,
            "reads that failed beside the writes were not run again: {:?} {:?}",
            text(&big),
            text(&small)
        );
        client.close().await;
        hub.close().await;
    });
}
