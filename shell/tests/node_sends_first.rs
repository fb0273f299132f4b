//! A node puts out what the first messages of an input sent before it
//! imports data that came after them in the same input: a cold sync's
//! requests for the next page reach the remote while this node imports the
//! last page, instead of both sides taking turns.

use docweave_core::{
    decode, encode, AckStatus, BatchId, Clock, Config, DocId, Hello, Limits, Message, Payload,
    PeerId, PeerKind, VersionVector, PROTOCOL_VERSION,
};
use docweave_shell::{DocEngine, Input, LoroEngine, Node, NodeOptions, Output};

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
