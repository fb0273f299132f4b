//! S10: a burst of small updates to one document, each from a writer of its
//! own (about 90 bytes: one map key from a fresh Loro peer), fed to a real
//! node with a real SQLite store, once in one native frame and once one by
//! one (each update in its own frame, sent after the last was durable).
//! Measured: the node's time until every update is acknowledged (store
//! work included, run inline), the bytes the store's files grew by, and the
//! changes it keeps. The target is that a burst costs at most twice the
//! same updates one by one.

use crate::Run;
use docweave_core::{
    decode, encode, AckStatus, BatchId, ChannelId, Clock, Config, DocId, Hello, Limits, Message,
    Payload, PeerId, PeerKind, VersionVector, PROTOCOL_VERSION,
};
use docweave_shell::{run_job, Input, LoroEngine, Node, NodeOptions, Output, StoreAnswer};
use std::path::Path;
use std::time::Instant;

/// `n` updates, each setting one key from a fresh Loro peer.
pub fn updates(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let doc = loro::LoroDoc::new();
            // Loro refuses only the reserved peer id; these are not it.
            doc.set_peer_id(1_000_000 + i).unwrap_or_default();
            doc.get_map("m")
                .insert(&format!("k{i}"), i as i64)
                .unwrap_or_default();
            doc.commit();
            doc.export(loro::ExportMode::all_updates())
                .unwrap_or_default()
        })
        .collect()
}

/// A node on an SQLite store, with one client connected.
struct Bench {
    node: Node<LoroEngine>,
    store: docweave_adapters::SqliteStore,
    client: ChannelId,
    acked: usize,
}

impl Bench {
    fn new(db: &Path) -> Bench {
        let store = docweave_adapters::SqliteStore::open(db)
            .unwrap_or_else(|e| panic!("{}: {e}", db.display()));
        let options = NodeOptions {
            store: true,
            ..NodeOptions::default()
        };
        let node = Node::new(Config::new("hub"), LoroEngine, options);
        let mut b = Bench {
            node,
            store,
            client: ChannelId(0),
            acked: 0,
        };
        b.settle();
        b.client = b.node.channel_opened(0, None);
        let hello = Message::Hello(Hello {
            peer: PeerId::new("burster"),
            name: "burster".into(),
            kind: PeerKind::User,
            protocol: PROTOCOL_VERSION,
            token: None,
            clock: Clock(0),
        });
        b.frame(&[hello]);
        b
    }

    fn frame(&mut self, messages: &[Message]) {
        let bytes = encode(messages).unwrap_or_else(|e| panic!("{e}"));
        self.node.handle(
            0,
            Input::Frame {
                channel: self.client,
                bytes,
            },
        );
        self.settle();
    }

    /// Runs the node and its store jobs until nothing is left to do,
    /// counting the acknowledgements the client gets.
    fn settle(&mut self) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Store(job) => {
                    let result = run_job(&mut self.store, job.op);
                    self.node
                        .handle(0, Input::Store(StoreAnswer { id: job.id, result }));
                }
                Output::Transmit { channel, frame } if channel == self.client => {
                    let ms = decode(&frame, &Limits::default()).unwrap_or_default();
                    self.acked += ms
                        .iter()
                        .filter(|m| {
                            matches!(
                                m,
                                Message::Ack {
                                    status: AckStatus::Ok,
                                    ..
                                }
                            )
                        })
                        .count();
                }
                _ => {}
            }
        }
    }
}

fn update(batch: u64, data: &[u8]) -> Message {
    Message::Update {
        doc: DocId::new("burst"),
        batch: BatchId(batch),
        data: Payload::new(data.to_vec()),
        version: VersionVector::new(),
    }
}

fn file_bytes(db: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum()
}

/// One run: `n` updates in frames of `per_frame` (1: one by one).
pub fn s10(n: u64, per_frame: usize, dir: &Path) -> Run {
    let burst = updates(n);
    let sent: u64 = burst.iter().map(|u| u.len() as u64).sum();
    let db = dir.join(format!("s10-{}-{n}-{per_frame}.db", std::process::id()));
    for s in ["", "-wal", "-shm"] {
        // A leftover of an earlier run would be counted; a missing one is fine.
        let _ = std::fs::remove_file(format!("{}{s}", db.display()));
    }
    let mut b = Bench::new(&db);
    let before = file_bytes(&db);
    let started = Instant::now();
    let mut batch = 0u64;
    for chunk in burst.chunks(per_frame.max(1)) {
        let frame: Vec<Message> = chunk
            .iter()
            .map(|d| {
                batch += 1;
                update(batch, d)
            })
            .collect();
        b.frame(&frame);
    }
    let took = started.elapsed();
    assert_eq!(b.acked, burst.len(), "every update is acknowledged");
    let stored = file_bytes(&db).saturating_sub(before);
    let changes = docweave_adapters::Store::load(&mut b.store, &DocId::new("burst"))
        .ok()
        .flatten()
        .map_or(0, |l| l.changes.len());
    for s in ["", "-wal", "-shm"] {
        // The run is over; a file left behind only takes disk space.
        let _ = std::fs::remove_file(format!("{}{s}", db.display()));
    }
    Run {
        scenario: "S10".into(),
        transport: if per_frame <= 1 {
            "one-by-one".into()
        } else {
            "one-frame".into()
        },
        size: n,
        metric: "seconds".into(),
        value: took.as_secs_f64(),
        messages: n,
        bytes: stored,
        peak_rss: crate::memory().1,
        extra: vec![
            ("changes_stored".into(), changes as f64),
            ("bytes_sent".into(), sent as f64),
        ],
    }
}

/// Most messages one frame may hold (`Limits::max_messages`): larger
/// bursts come as frames of this many, back to back.
const FRAME_MESSAGES: usize = 4_096;

/// S10: each size in one frame (or frames of 4,096), then the sizes in
/// `by_one` one by one; `each` gets every run as it ends. One by one, Loro brings its state up to date after each
/// import, and for an update concurrent with all the others that walks the
/// history from their common ancestor: about N²/2 change lookups, so 1,000
/// take minutes and 16,000 would take hours.
pub fn s10_all(sizes: &[u64], by_one: &[u64], dir: &Path, mut each: impl FnMut(Run)) {
    for n in sizes {
        each(s10(*n, (*n as usize).min(FRAME_MESSAGES), dir));
    }
    for n in by_one {
        each(s10(*n, 1, dir));
    }
}
