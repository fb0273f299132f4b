//! The bodies of the fuzz targets in `tests/fuzz` (cargo-fuzz, nightly),
//! here so the stable test suite replays every input the fuzzer kept
//! (`fixtures/fuzz/<target>/`). Each must never panic, hang or grow
//! without bound, whatever the bytes.

use docweave_adapters::MemoryStore;
use docweave_core::{
    decode, encode, AckStatus, BatchId, ChangedDoc, ChannelId, Clock, Config, DocId, DocInfo,
    Ephemeral, ErrorCode, Filter, Hello, Limits, ListenerId, Message, Namespace, Payload, PeerId,
    PeerKind, Reply, Revision, RevisionStatus, Strand, VersionVector, Welcome, PROTOCOL_VERSION,
};
use docweave_shell::{
    run_job, DocEngine, Input, LoroEngine, Node, NodeOptions, Output, StoreAnswer,
};
use std::collections::VecDeque;

/// Frame decoding: any bytes decode or fail cleanly; what decodes
/// re-encodes to a frame that decodes to the same messages. A frame of
/// only unknown message kinds decodes to no messages (the node answers
/// each with `Unsupported`); there is nothing of it to re-encode.
pub fn frame(data: &[u8]) {
    let limits = Limits::default();
    if let Ok(messages) =
        decode(data, &limits)
            .map_err(drop)
            .and_then(|m| if m.is_empty() { Err(()) } else { Ok(m) })
    {
        let again = encode(&messages)
            .ok()
            .and_then(|f| decode(&f, &limits).ok());
        assert_eq!(
            again.as_ref(),
            Some(&messages),
            "a decoded frame did not round-trip"
        );
    }
}

/// Message decoding (postcard, no frame): any bytes decode or fail
/// cleanly; a decoded message is checked against the limits like one from
/// a frame, and round-trips when it passes.
pub fn message(data: &[u8]) {
    // Within the budget a frame would give it (see `docweave_core::budget`).
    let (decoded, _) =
        docweave_core::budget::within(data.len(), || postcard::from_bytes::<Message>(data));
    let Ok(m) = decoded else {
        return;
    };
    let limits = Limits::default();
    if docweave_core::validate(&m, &limits).is_ok() {
        let frame = encode(std::slice::from_ref(&m)).unwrap_or_default();
        assert_eq!(decode(&frame, &limits).ok(), Some(vec![m]));
    }
}

/// Reads a script from fuzz bytes.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn small(&mut self, n: u8) -> u8 {
        self.byte().map(|b| b % n.max(1)).unwrap_or(0)
    }
    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        a.to_vec()
    }
    fn doc(&mut self) -> DocId {
        DocId::new(["a", "b", "c", "../x", "", "d/e"][usize::from(self.small(6))])
    }
    fn peer(&mut self) -> PeerId {
        PeerId::new(["p1", "p2", "p3", "store", "node"][usize::from(self.small(5))])
    }
    fn version(&mut self) -> VersionVector {
        let n = self.small(3);
        VersionVector::from_entries(
            (0..n).map(|_| (u64::from(self.small(4)), u64::from(self.small(6)))),
        )
    }
    fn filter(&mut self) -> Filter {
        match self.small(3) {
            0 => Filter::all(),
            _ => Filter::docs([self.doc()]),
        }
    }
}

/// Real document bytes the script can send (a snapshot and a delta), so
/// imports succeed as well as fail.
fn loro_payloads() -> &'static [Payload; 3] {
    static PAYLOADS: std::sync::OnceLock<[Payload; 3]> = std::sync::OnceLock::new();
    PAYLOADS.get_or_init(make_payloads)
}

fn make_payloads() -> [Payload; 3] {
    let e = LoroEngine;
    let d = e.create(7);
    let _ = d.get_text("t").insert(0, "hello");
    d.commit();
    let base = e.version(&d);
    // A true snapshot: the node's own whole export of this document is
    // its updates, much like the delta below.
    let snapshot = e.export_snapshot(&d).unwrap_or_default(); // a fuzz payload: empty is fine too
    let _ = d.get_list("l").push(1);
    d.commit();
    let delta = e.export(&d, Some(&base)).unwrap_or_default();
    [
        Payload::new(snapshot),
        Payload::new(delta),
        Payload::new(vec![1, 2, 3]),
    ]
}

fn message_from(b: &mut Bytes, payloads: &[Payload; 3]) -> Message {
    let payload = |b: &mut Bytes| payloads[usize::from(b.small(3))].clone();
    match b.small(22) {
        0 => Message::Hello(Hello {
            peer: b.peer(),
            name: "n".into(),
            kind: PeerKind::User,
            protocol: PROTOCOL_VERSION + u32::from(b.small(4) == 0),
            token: [None, Some("t".to_string()), Some("x".to_string())][usize::from(b.small(3))]
                .clone(),
            clock: Clock(u64::from(b.small(9))),
        }),
        1 => Message::Welcome(Welcome {
            peer: b.peer(),
            name: "n".into(),
            kind: PeerKind::Service,
            protocol: PROTOCOL_VERSION,
            clock: Clock(u64::from(b.small(9))),
        }),
        2 | 3 => Message::SyncRequest {
            doc: b.doc(),
            version: b.version(),
            bidirectional: b.small(2) == 0,
        },
        4 | 5 => Message::SyncResponse {
            doc: b.doc(),
            batch: BatchId(u64::from(b.small(9))),
            reply: match b.small(4) {
                0 => Reply::UpToDate,
                1 => Reply::Snapshot(payload(b)),
                2 => Reply::Delta(payload(b)),
                _ => Reply::Unavailable,
            },
            version: b.version(),
        },
        6 | 7 => Message::Update {
            doc: b.doc(),
            batch: BatchId(u64::from(b.small(9))),
            data: payload(b),
            version: b.version(),
        },
        8 => Message::Ack {
            batch: BatchId(u64::from(b.small(12))),
            status: [
                AckStatus::Ok,
                AckStatus::Invalid,
                AckStatus::MissingDependencies,
            ][usize::from(b.small(3))],
            clock: Some(Clock(u64::from(b.small(9)))),
        },
        9 => Message::Subscribe { filter: b.filter() },
        10 => Message::ChangesSince {
            clock: Clock(u64::from(b.small(9))),
            filter: b.filter(),
        },
        11 => Message::Changes {
            docs: vec![ChangedDoc {
                doc: b.doc(),
                version: b.version(),
                clock: Clock(u64::from(b.small(9))),
            }],
            up_to: Clock(u64::from(b.small(9))),
            more: b.small(2) == 0,
        },
        12 => Message::Delete { doc: b.doc() },
        13 => Message::Ephemeral(Ephemeral {
            doc: b.doc(),
            namespace: Namespace::new("cursor"),
            origin: b.peer(),
            hops: b.small(3),
            ttl_ms: u32::from(b.small(255)) * 1000,
            data: payload(b),
        }),
        14 => Message::ListenerRegister {
            filter: b.filter(),
            id: [None, Some(ListenerId(1)), Some(ListenerId(u64::MAX))][usize::from(b.small(3))],
        },
        15 => Message::ListenerPull {
            id: ListenerId(u64::from(b.small(3))),
            limit: u32::from(b.small(255)),
        },
        16 => Message::ListenerAck {
            id: ListenerId(u64::from(b.small(3))),
            revisions: vec![Revision {
                doc: b.doc(),
                version: b.version(),
                clock: Clock(0),
                status: RevisionStatus::Ok,
            }],
        },
        17 => Message::Push {
            strands: vec![Strand {
                doc: b.doc(),
                meta: Default::default(),
                since: b.version(),
                data: payload(b),
                version: b.version(),
                clock: Clock(0),
            }],
        },
        18 => Message::DirectoryRequest { filter: b.filter() },
        19 => Message::NewDocs {
            docs: vec![DocInfo {
                doc: b.doc(),
                meta: Default::default(),
            }],
        },
        20 => Message::Unsubscribe { filter: b.filter() },
        _ => Message::Error {
            code: ErrorCode::TooLarge,
            message: "x".into(),
        },
    }
}

/// A sequence of inputs into one real node (Loro documents, a memory
/// store run inline): frames from several channels (well-formed messages
/// and raw bytes), application edits, time jumps, store answers (some
/// failing, some late), closes. Afterwards the node still works.
pub fn node_inputs(data: &[u8]) {
    let mut config = Config::new("node");
    config.tokens = vec!["t".into()];
    let options = NodeOptions {
        store: true,
        max_docs: 2,
        // Time jumps put idle replicas to sleep as their bytes.
        sleep_after_ms: 1_000,
        ..NodeOptions::default()
    };
    let mut node = Node::new(config, LoroEngine, options);
    let mut store = MemoryStore::new();
    let payloads = loro_payloads();
    let mut jobs: VecDeque<docweave_shell::StoreJob> = VecDeque::new();
    let mut channels: Vec<ChannelId> = Vec::new();
    let mut now = 0u64;
    let mut b = Bytes(data);
    let mut steps = 0usize;
    while let Some(out) = node.poll_output() {
        if let Output::Store(job) = out {
            jobs.push_back(job);
        }
    }
    // Bounded: a script is at most a few thousand steps.
    while let Some(op) = b.byte() {
        steps += 1;
        if steps > 4_000 {
            break;
        }
        match op % 10 {
            0 => channels.push(node.channel_opened(now, None)),
            1 | 2 => {
                let Some(ch) = channels.get(usize::from(b.small(4))).copied() else {
                    continue;
                };
                let m = message_from(&mut b, payloads);
                let bytes = encode(&[m]).unwrap_or_default();
                node.handle(now, Input::Frame { channel: ch, bytes });
            }
            3 => {
                let Some(ch) = channels.get(usize::from(b.small(4))).copied() else {
                    continue;
                };
                let n = usize::from(b.small(64));
                let bytes = b.take(n);
                node.handle(now, Input::Frame { channel: ch, bytes });
            }
            4 => match b.small(255) {
                // No time passing: the store announces another process's write.
                0 => node.handle(now, Input::StoreAnnounced),
                // Or published a frame (presence, or anything else).
                1 => {
                    let m = message_from(&mut b, payloads);
                    let bytes = encode(&[m]).unwrap_or_default();
                    node.handle(now, Input::StorePublished { bytes });
                }
                dt => {
                    now += u64::from(dt) * 250;
                    node.handle(now, Input::Timeout);
                }
            },
            5 => {
                let doc = b.doc();
                node.handle(now, Input::Open { doc: doc.clone() });
                if let Some(h) = node.doc_handle(&doc) {
                    let _ = h.get_text("t").insert(0, "x");
                    h.commit();
                    node.handle(now, Input::LocalChange { doc });
                }
            }
            6 => {
                // Run (or fail) the oldest store job.
                if let Some(job) = jobs.pop_front() {
                    let result = if b.small(5) == 0 {
                        docweave_shell::StoreResult::Failed(docweave_shell::JobError {
                            reason: "injected".into(),
                            tombstoned: false,
                        })
                    } else {
                        run_job(&mut store, job.op)
                    };
                    node.handle(now, Input::Store(StoreAnswer { id: job.id, result }));
                }
            }
            7 => {
                if !channels.is_empty() {
                    let i = usize::from(b.small(4)) % channels.len();
                    let ch = channels.remove(i);
                    node.handle(now, Input::ChannelClosed { channel: ch });
                }
            }
            8 => {
                let doc = b.doc();
                node.handle(now, Input::Delete { doc });
            }
            _ => node.handle(
                now,
                Input::SetPresence {
                    doc: b.doc(),
                    namespace: Namespace::new("cursor"),
                    data: Payload::new(b.take(4)),
                },
            ),
        }
        while let Some(out) = node.poll_output() {
            if let Output::Store(job) = out {
                jobs.push_back(job);
            }
        }
        // Nothing the script did may make the node hold without bound.
        assert!(
            node.resident() <= 8,
            "{} replicas resident",
            node.resident()
        );
        assert!(jobs.len() < 10_000, "{} store jobs queued", jobs.len());
    }
    // Whatever happened, the node still answers a fresh peer (once its
    // store has answered everything it was asked).
    let ch = node.channel_opened(now, None);
    let hello = Message::Hello(Hello {
        peer: PeerId::new("late"),
        name: "late".into(),
        kind: PeerKind::User,
        protocol: PROTOCOL_VERSION,
        token: Some("t".into()),
        clock: Clock(0),
    });
    node.handle(
        now,
        Input::Frame {
            channel: ch,
            bytes: encode(&[hello]).unwrap_or_default(),
        },
    );
    let mut welcomed = false;
    for _ in 0..100_000 {
        match node.poll_output() {
            Some(Output::Store(job)) => jobs.push_back(job),
            Some(Output::Transmit { channel, frame }) if channel == ch => {
                welcomed |= decode(&frame, &Limits::default())
                    .is_ok_and(|ms| ms.iter().any(|m| matches!(m, Message::Welcome(_))));
            }
            Some(_) => {}
            None => match jobs.pop_front() {
                Some(job) => {
                    let result = run_job(&mut store, job.op);
                    node.handle(now, Input::Store(StoreAnswer { id: job.id, result }));
                }
                // A node whose start-up read failed decides nothing until
                // its retry timer fires, as a driver would fire it.
                None => match node.poll_timeout().filter(|_| node.waits_for_store()) {
                    Some(at) => {
                        now = now.max(at);
                        node.handle(now, Input::Timeout);
                    }
                    None => break,
                },
            },
        }
    }
    assert!(welcomed, "the node no longer answers a new peer");
}
