//! The wire, pinned: every message kind and its frame, as hex in
//! `fixtures/protocol/frames.hex`, checked both ways (what this build
//! encodes, and what it decodes from the fixture). A change here is a change
//! of the protocol: follow the evolution rule in ARCHITECTURE.md (new
//! messages are new trailing variants; nothing existing changes).
//! `DOCWEAVE_BLESS=1 cargo test -p docweave-core --test golden_bytes`
//! rewrites the fixture after a deliberate, rule-abiding change.

use docweave_core::{
    chunk_frames, decode_frame, encode, parse_chunk, AckStatus, BatchId, ChangedDoc, Clock,
    DeleteOutcome, DocId, DocInfo, DocMeta, Ephemeral, ErrorCode, Filter, Hello, Limits, ListedDoc,
    ListenerId, Message, Namespace, Payload, PeerId, PeerKind, Reply, Revision, RevisionStatus,
    Strand, VersionVector, Welcome, MESSAGE_KINDS,
};
use std::path::PathBuf;

fn vv() -> VersionVector {
    VersionVector::from_entries([(7, 3), (1_000_000, 1)])
}

fn meta() -> DocMeta {
    DocMeta {
        doc_type: "text".into(),
        scope: "global".into(),
        branch: "main".into(),
    }
}

fn filter() -> Filter {
    Filter {
        docs: vec![DocId::new("notes")],
        types: vec!["text".into()],
        scopes: vec![],
        branches: vec!["main".into()],
    }
}

fn strand() -> Strand {
    Strand {
        doc: DocId::new("notes"),
        meta: meta(),
        since: VersionVector::new(),
        data: Payload::new(vec![1, 2, 3]),
        version: vv(),
        clock: Clock(9),
    }
}

fn revision() -> Revision {
    Revision {
        doc: DocId::new("notes"),
        version: vv(),
        clock: Clock(9),
        status: RevisionStatus::Ok,
    }
}

/// One sample of every message kind, in variant order.
fn samples() -> Vec<Message> {
    let doc = || DocId::new("notes");
    vec![
        Message::Hello(Hello {
            peer: PeerId::new("alice"),
            name: "Alice".into(),
            kind: PeerKind::User,
            protocol: 2,
            token: Some("t0k".into()),
            clock: Clock(5),
        }),
        Message::Welcome(Welcome {
            peer: PeerId::new("hub"),
            name: "hub".into(),
            kind: PeerKind::Service,
            protocol: 2,
            clock: Clock(12),
        }),
        Message::SyncRequest {
            doc: doc(),
            version: vv(),
            bidirectional: true,
        },
        Message::SyncResponse {
            doc: doc(),
            batch: BatchId(4),
            reply: Reply::Delta(Payload::new(vec![9, 8, 7])),
            version: vv(),
        },
        Message::Update {
            doc: doc(),
            batch: BatchId(5),
            data: Payload::new(vec![1, 2]),
            version: vv(),
        },
        Message::Ack {
            batch: BatchId(5),
            status: AckStatus::Ok,
            clock: Some(Clock(13)),
        },
        Message::Subscribe { filter: filter() },
        Message::Unsubscribe { filter: filter() },
        Message::ChangesSince {
            clock: Clock(3),
            filter: Filter::all(),
        },
        Message::Changes {
            docs: vec![ChangedDoc {
                doc: doc(),
                version: vv(),
                clock: Clock(4),
            }],
            up_to: Clock(4),
            more: false,
        },
        Message::DirectoryRequest { filter: filter() },
        Message::DirectoryResponse {
            docs: vec![DocInfo {
                doc: doc(),
                meta: meta(),
            }],
        },
        Message::NewDocs {
            docs: vec![DocInfo {
                doc: doc(),
                meta: meta(),
            }],
        },
        Message::Delete { doc: doc() },
        Message::DeleteResult {
            doc: doc(),
            outcome: DeleteOutcome::Deleted,
        },
        Message::Ephemeral(Ephemeral {
            doc: doc(),
            namespace: Namespace::new("cursor"),
            origin: PeerId::new("alice"),
            hops: 1,
            ttl_ms: 30_000,
            data: Payload::new(vec![3]),
        }),
        Message::Error {
            code: ErrorCode::TooLarge,
            message: "too large".into(),
        },
        Message::ListenerRegister {
            filter: filter(),
            id: Some(ListenerId(2)),
        },
        Message::ListenerRegistered { id: ListenerId(2) },
        Message::ListenerPull {
            id: ListenerId(2),
            limit: 100,
        },
        Message::Strands {
            id: ListenerId(2),
            strands: vec![strand()],
            more: true,
        },
        Message::ListenerAck {
            id: ListenerId(2),
            revisions: vec![revision()],
        },
        Message::ListenerAcked {
            id: ListenerId(2),
            accepted: 1,
        },
        Message::Push {
            strands: vec![strand()],
        },
        Message::PushResult {
            revisions: vec![revision()],
        },
        Message::ListDocs {
            filter: Filter::all(),
            after: Some(doc()),
        },
        Message::DocList {
            docs: vec![ListedDoc {
                doc: doc(),
                meta: meta(),
                version: vv(),
                clock: Clock(4),
            }],
            more: false,
        },
        Message::Reauth {
            token: "eyJ.new.token".into(),
        },
        Message::GoingAway {
            reason: "restarting".into(),
            retry_after_ms: 1500,
        },
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/protocol/frames.hex")
}

#[test]
fn every_message_kind_has_a_sample() {
    assert_eq!(samples().len() as u32, MESSAGE_KINDS);
}

#[test]
fn every_message_encodes_to_its_pinned_bytes_and_back() {
    let lines: Vec<String> = samples()
        .iter()
        .map(|m| {
            let frame = encode(std::slice::from_ref(m)).unwrap_or_else(|e| panic!("{e}"));
            format!("{} {}", m.name(), hex(&frame))
        })
        .collect();
    if std::env::var_os("DOCWEAVE_BLESS").is_some() {
        std::fs::write(fixture(), lines.join("\n") + "\n").unwrap_or_else(|e| panic!("{e}"));
    }
    let pinned = std::fs::read_to_string(fixture()).unwrap_or_else(|e| panic!("{e}"));
    let pinned: Vec<&str> = pinned.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(pinned.len(), lines.len(), "the fixture lacks message kinds");
    for ((line, m), expected) in pinned.iter().zip(samples()).zip(&lines) {
        assert_eq!(
            line,
            expected,
            "{} no longer encodes to its pinned bytes",
            m.name()
        );
        let (_, bytes) = line.split_once(' ').unwrap_or_else(|| panic!("{line}"));
        let decoded = decode_frame(&unhex(bytes), &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", m.name()));
        assert_eq!(decoded.messages, vec![m.clone()]);
        assert!(decoded.unknown.is_empty());
    }
}

#[test]
fn a_frame_with_a_newer_message_kind_decodes_the_rest_and_names_the_unknown() {
    // [version 2][flags][len][count 3]([len][msg])*: known, kind 200, known.
    let known = |m: &Message| {
        let f = encode(std::slice::from_ref(m)).unwrap_or_default();
        // Skip the header (6 bytes) and the count (1): the length-prefixed message.
        f[7..].to_vec()
    };
    let a = Message::Delete {
        doc: DocId::new("a"),
    };
    let b = Message::Delete {
        doc: DocId::new("b"),
    };
    let mut payload = vec![3u8];
    payload.extend(known(&a));
    payload.extend([4u8, 0xc8, 0x01, 0xff, 0xff]); // kind 200, then its body
    payload.extend(known(&b));
    let mut frame = vec![2u8, 0];
    frame.extend((payload.len() as u32).to_le_bytes());
    frame.extend(payload);
    let decoded = decode_frame(&frame, &Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decoded.messages, vec![a, b]);
    assert_eq!(decoded.unknown, vec![200]);
}

#[test]
fn a_chunked_frame_has_pinned_chunk_headers_and_reassembles() {
    let frame = encode(&[Message::Delete {
        doc: DocId::new("notes"),
    }])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hex(&frame), "02000900000001070d056e6f746573");
    let chunks = chunk_frames(&frame, 8, 7);
    // [version 2][flags 1][payload len u32][id u32][index u32][count u32][total u64][bytes]
    let pinned = [
        "02011c000000070000000000000002000000\
         0f000000000000000200090000000107",
        "02011b000000070000000100000002000000\
         0f000000000000000d056e6f746573",
    ];
    let got: Vec<String> = chunks.iter().map(|c| hex(c)).collect();
    assert_eq!(got, pinned);
    let whole: Vec<u8> = chunks
        .iter()
        .flat_map(|c| parse_chunk(c).map(|c| c.bytes.to_vec()).unwrap_or_default())
        .collect();
    assert_eq!(whole, frame);
}
