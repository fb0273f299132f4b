//! Imports released together (updates that waited for a store load) are
//! reported to the core in the order they were made, so the core's version
//! of the document is the replica's newest, not an older one. And what an
//! input's first messages sent leaves before the data that came after them
//! is imported: a cold sync's requests for the next page reach the remote
//! while this node imports the last page, instead of both sides taking turns.

use docweave_adapters::MemoryStore;
use docweave_core::{
    decode, encode, AckStatus, BatchId, Clock, Config, DocId, Hello, Limits, Message, Payload,
    PeerId, PeerKind, Reply, VersionVector, PROTOCOL_VERSION,
};
use docweave_shell::{
    run_job, DocEngine, Input, LoroEngine, Node, NodeOptions, Output, StoreAnswer,
};

fn hello(peer: &str) -> Message {
    Message::Hello(Hello {
        peer: PeerId::new(peer),
        name: peer.into(),
        kind: PeerKind::User,
        protocol: PROTOCOL_VERSION,
        token: None,
        clock: Clock(0),
    })
}

/// Runs the node's store jobs until it is quiet; returns what it sent.
fn settle(node: &mut Node<LoroEngine>, store: &mut MemoryStore) -> Vec<(u64, Message)> {
    let mut sent = Vec::new();
    loop {
        let mut jobs = Vec::new();
        while let Some(out) = node.poll_output() {
            match out {
                Output::Store(job) => jobs.push(job),
                Output::Transmit { channel, frame } => {
                    for m in decode(&frame, &Limits::default()).unwrap() {
                        sent.push((channel.0, m));
                    }
                }
                _ => {}
            }
        }
        if jobs.is_empty() {
            return sent;
        }
        for job in jobs {
            let result = run_job(store, job.op);
            node.handle(0, Input::Store(StoreAnswer { id: job.id, result }));
        }
    }
}

#[test]
fn updates_released_by_one_load_leave_the_core_at_the_newest_version() {
    let options = NodeOptions {
        store: true,
        ..NodeOptions::default()
    };
    let mut node = Node::new(Config::new("server"), LoroEngine, options);
    let mut store = MemoryStore::new();
    settle(&mut node, &mut store);
    // A client's empty document, then its edit: both arrive before the
    // store has said whether it holds the document.
    let engine = LoroEngine;
    let doc = engine.create(7);
    let empty = engine.export(&doc, None).unwrap();
    let base = engine.version(&doc);
    doc.get_text("t").insert(0, "edit").unwrap();
    doc.commit();
    let edit = engine.export(&doc, Some(&base)).unwrap();
    let writer = node.channel_opened(0, None);
    let update = |batch, data: Vec<u8>| Message::Update {
        doc: DocId::new("d"),
        batch: BatchId(batch),
        data: Payload::new(data),
        version: VersionVector::new(),
    };
    let frame = encode(&[hello("writer"), update(1, empty), update(2, edit)]).unwrap();
    node.handle(
        0,
        Input::Frame {
            channel: writer,
            bytes: frame,
        },
    );
    settle(&mut node, &mut store);
    // A reader asking with nothing must get the edit, not "up to date".
    let reader = node.channel_opened(0, None);
    let ask = Message::SyncRequest {
        doc: DocId::new("d"),
        version: VersionVector::new(),
        bidirectional: false,
    };
    node.handle(
        0,
        Input::Frame {
            channel: reader,
            bytes: encode(&[hello("reader"), ask]).unwrap(),
        },
    );
    let answers: Vec<Reply> = settle(&mut node, &mut store)
        .into_iter()
        .filter(|(ch, _)| *ch == reader.0)
        .filter_map(|(_, m)| match m {
            Message::SyncResponse { reply, .. } => Some(reply),
            _ => None,
        })
        .collect();
    assert!(
        matches!(answers.as_slice(), [Reply::Snapshot(_)]),
        "{answers:?}"
    );
}

/// The frames the node transmits, each as its messages, until it is quiet.
fn frames(node: &mut Node<LoroEngine>) -> Vec<Vec<Message>> {
    let mut frames = Vec::new();
    while let Some(out) = node.poll_output() {
        if let Output::Transmit { frame, .. } = out {
            frames.push(decode(&frame, &Limits::default()).unwrap());
        }
    }
    frames
}

fn is_ack(m: &Message) -> bool {
    matches!(
        m,
        Message::Ack {
            status: AckStatus::Ok,
            ..
        }
    )
}

#[test]
fn what_an_input_sent_before_its_data_leaves_before_that_data_is_imported() {
    let mut node = Node::new(Config::new("server"), LoroEngine, NodeOptions::default());
    let engine = LoroEngine;
    let doc = engine.create(7);
    doc.get_text("t").insert(0, "edit").unwrap();
    doc.commit();
    let data = engine.export(&doc, None).unwrap();
    let client = node.channel_opened(0, None);
    let ask = Message::SyncRequest {
        doc: DocId::new("a"),
        version: VersionVector::new(),
        bidirectional: false,
    };
    let update = Message::Update {
        doc: DocId::new("b"),
        batch: BatchId(1),
        data: Payload::new(data),
        version: VersionVector::new(),
    };
    node.handle(
        0,
        Input::Frame {
            channel: client,
            bytes: encode(&[hello("client"), ask, update]).unwrap(),
        },
    );
    // The update waits: nothing of it is imported yet.
    assert!(node.stopped_before_data());
    assert!(node.replica(&DocId::new("b")).is_none());
    let frames = frames(&mut node);
    // First the welcome and the answer to the request, alone; then the
    // update's acknowledgement, once it is imported.
    let first = &frames[0];
    assert!(matches!(first[0], Message::Welcome(_)), "{frames:?}");
    assert!(
        first
            .iter()
            .any(|m| matches!(m, Message::SyncResponse { doc, .. } if doc.as_str() == "a")),
        "{frames:?}"
    );
    assert!(!first.iter().any(is_ack), "{frames:?}");
    assert!(frames[1..].iter().flatten().any(is_ack), "{frames:?}");
    assert!(!node.stopped_before_data());
    assert!(node.replica(&DocId::new("b")).is_some());
}
