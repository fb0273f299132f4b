//! Failures no caller waits for are kept, not swallowed: a store that
//! panics stops the node (and says why), a recording that cannot be
//! written stops (and says why) while the node goes on.

use docweave_adapters::{Append, Loaded, MemoryStore, Store, StoreError};
use docweave_core::{Clock, DocId, Filter, StateRecord, StoredDoc};
use docweave_shell::Repo;
use std::time::{Duration, Instant};

/// A memory store whose appends panic (a bug in a store).
struct PanickingStore(MemoryStore);

impl Store for PanickingStore {
    fn append(&mut self, _changes: &[Append]) -> Result<Vec<Clock>, StoreError> {
        panic!("a bug in the store");
    }
    fn load(&mut self, doc: &DocId) -> Result<Option<Loaded>, StoreError> {
        self.0.load(doc)
    }
    fn compact(&mut self, doc: &DocId, snapshot: &[u8], up_to: Clock) -> Result<(), StoreError> {
        self.0.compact(doc, snapshot, up_to)
    }
    fn history(
        &mut self,
        doc: &DocId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<docweave_adapters::HistoryEntry>, StoreError> {
        self.0.history(doc, before, limit)
    }
    fn changes_since(
        &mut self,
        clock: Clock,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<StoredDoc>, StoreError> {
        self.0.changes_since(clock, filter, limit)
    }
    fn clock(&mut self) -> Result<Clock, StoreError> {
        self.0.clock()
    }
    fn save(&mut self, record: &StateRecord) -> Result<(), StoreError> {
        self.0.save(record)
    }
    fn records(&mut self) -> Result<Vec<StateRecord>, StoreError> {
        self.0.records()
    }
    fn purge(&mut self, doc: &DocId) -> Result<(), StoreError> {
        self.0.purge(doc)
    }
}

fn eventually(f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

#[test]
fn a_store_that_panics_stops_the_node_and_says_why() {
    let repo = Repo::builder("node")
        .store(PanickingStore(MemoryStore::new()))
        .build()
        .unwrap();
    assert_eq!(repo.health().stopped(), None);
    smol::block_on(async {
        // The store dies under this edit: its outcome is what the health
        // check below is about, not the edit's own answer.
        let _ = repo
            .edit("notes", |d| d.get_map("m").insert("k", 1).unwrap())
            .await;
    });
    assert!(
        eventually(|| repo.health().stopped().is_some()),
        "the node did not notice its store died"
    );
    let why = repo.health().stopped().unwrap();
    assert!(
        why.contains("the store panicked: a bug in the store"),
        "{why}"
    );
}

#[test]
fn a_recording_that_cannot_be_written_stops_and_says_why_and_the_node_goes_on() {
    let dir = std::env::temp_dir().join(format!("docweave-record-fail-{}", std::process::id()));
    // A leftover of an earlier run goes; none there is fine.
    let _ = std::fs::remove_dir_all(&dir);
    let repo = Repo::builder("node")
        .record(&dir)
        .record_max_bytes(256 * 1024)
        .build()
        .unwrap();
    // Its directory goes, as a full or failing disk would: the file being
    // written lives on, the next one (64 KiB later) cannot be made.
    std::fs::remove_dir_all(&dir).unwrap();
    // What it receives is recorded with its bytes.
    let writer = Repo::builder("writer").build().unwrap();
    writer.connect(&repo).unwrap();
    smol::block_on(async {
        for i in 0..8 {
            let text = "x".repeat(30_000);
            writer
                .edit("notes", |d| d.get_text("t").insert(0, &text).unwrap())
                .await
                .unwrap();
            writer
                .edit("notes", |d| d.get_map("m").insert("k", i).unwrap())
                .await
                .unwrap();
        }
        writer
            .wait_for_sync("notes", "node", Duration::from_secs(10))
            .await
            .unwrap();
    });
    assert!(
        eventually(|| repo.health().recording_stopped().is_some()),
        "a recording that lost its steps said nothing"
    );
    assert_eq!(repo.health().stopped(), None, "the node itself goes on");
    let open = smol::block_on(repo.open("notes")).unwrap();
    assert_eq!(open.get_map("m").len(), 1);
}

#[test]
fn a_store_that_cannot_be_read_at_start_is_read_again_and_nothing_is_decided_meanwhile() {
    use docweave_core::Config;
    use docweave_shell::{
        Input, JobError, LoroEngine, Node, NodeOptions, Output, StoreAnswer, StoreResult,
    };
    let options = NodeOptions {
        store: true,
        ..NodeOptions::default()
    };
    let mut node = Node::new(Config::new("n"), LoroEngine, options);
    let mut store = MemoryStore::new();
    let mut now = 0;
    for attempt in 0..3 {
        let job = loop {
            match node.poll_output() {
                Some(Output::Store(job)) => break job,
                Some(_) => {}
                None => panic!("attempt {attempt}: no read of the store"),
            }
        };
        let failed = StoreResult::Failed(JobError {
            reason: "the disk is gone".into(),
            tombstoned: false,
        });
        node.handle(
            now,
            Input::Store(StoreAnswer {
                id: job.id,
                result: failed,
            }),
        );
        assert!(node.waits_for_store(), "it went on without its store");
        // Nothing is decided while it waits: an open is held.
        node.handle(
            now,
            Input::Open {
                doc: DocId::new("d"),
            },
        );
        let at = node.poll_timeout().expect("a time to read again");
        assert!(at > now);
        now = at;
        node.handle(now, Input::Timeout);
    }
    let job = loop {
        match node.poll_output() {
            Some(Output::Store(job)) => break job,
            Some(_) => {}
            None => panic!("no read after the pause"),
        }
    };
    let result = docweave_shell::run_job(&mut store, job.op);
    node.handle(now, Input::Store(StoreAnswer { id: job.id, result }));
    assert!(!node.waits_for_store());
}
