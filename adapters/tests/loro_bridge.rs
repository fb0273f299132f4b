//! The Loro-protocol bridge without sockets: what a client's messages
//! become for the node, and what the node's answers become for the client.
#![cfg(feature = "loro-endpoint")]

use docweave_adapters::loro_protocol::{
    version_from_loro, version_to_loro, Body, Bridge, BridgeOptions, Crdt, Effect, JoinErrorCode,
    LoroMessage, UpdateStatus,
};
use docweave_core::{
    AckStatus as NativeAck, BatchId, DocId, Message, Pattern, Payload, PeerId, Reply, Rules,
    VersionVector, Welcome,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn bridge(rules: Rules) -> Bridge {
    let identity = Arc::new(|token: Option<&str>| PeerId::new(token.unwrap_or("anon")));
    Bridge::new(BridgeOptions::new(identity, rules))
}

fn msg(crdt: Crdt, room: &str, body: Body) -> LoroMessage {
    LoroMessage {
        crdt,
        room: room.into(),
        body,
    }
}

fn join(auth: &str, version: Vec<u8>) -> Body {
    Body::JoinRequest {
        auth: auth.as_bytes().to_vec(),
        version,
    }
}

fn welcome() -> Message {
    Message::Welcome(Welcome {
        peer: PeerId::new("server"),
        name: "server".into(),
        kind: docweave_core::PeerKind::Service,
        protocol: docweave_core::PROTOCOL_VERSION,
        clock: docweave_core::Clock(0),
    })
}

fn to_client(effects: &[Effect]) -> Vec<&Body> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ToClient(m) => Some(&m.body),
            _ => None,
        })
        .collect()
}

fn to_node(effects: &[Effect]) -> Vec<&Message> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ToNode(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// Whether the client got one answer: its join refused for its token.
fn refused_alone(effects: &[Effect]) -> bool {
    matches!(
        to_client(effects)[..],
        [Body::JoinError {
            code: JoinErrorCode::AuthFailed,
            ..
        }]
    )
}

/// The node answers the join of `doc` with `reply` (no data: batch 0).
fn answer(b: &mut Bridge, reply: Reply) -> Vec<Effect> {
    b.from_node(Message::SyncResponse {
        doc: DocId::new("doc"),
        batch: BatchId(0),
        reply,
        version: VersionVector::new(),
    })
}

/// The client sends one update to `doc` under batch `[id; 8]`.
fn update(b: &mut Bridge, bytes: Vec<u8>, id: u8) -> Vec<Effect> {
    b.from_client(
        msg(
            Crdt::Loro,
            "doc",
            Body::DocUpdate {
                updates: vec![bytes],
                batch: [id; 8],
            },
        ),
        Instant::now(),
    )
}

/// A bridge whose client joined `doc` as `alice` and got its answer.
fn joined(rules: Rules) -> Bridge {
    let mut b = bridge(rules);
    let now = Instant::now();
    b.from_client(msg(Crdt::Loro, "doc", join("alice", vec![])), now);
    b.from_node(welcome());
    answer(&mut b, Reply::UpToDate);
    b
}

#[test]
fn a_join_says_hello_with_the_token_then_asks_for_what_the_client_lacks() {
    let mut b = bridge(Rules::allow_all());
    let theirs = VersionVector::from_entries([(7, 3)]);
    let effects = b.from_client(
        msg(Crdt::Loro, "doc", join("alice", version_to_loro(&theirs))),
        Instant::now(),
    );
    let sent = to_node(&effects);
    assert_eq!(sent.len(), 1, "the request waits for the welcome");
    let Message::Hello(h) = sent[0] else {
        panic!("{sent:?}")
    };
    assert_eq!(h.peer.as_str(), "alice");
    assert_eq!(h.token.as_deref(), Some("alice"));
    let effects = b.from_node(welcome());
    assert_eq!(
        to_node(&effects),
        vec![&Message::SyncRequest {
            doc: DocId::new("doc"),
            version: theirs,
            bidirectional: false,
        }]
    );
    let ours = VersionVector::from_entries([(7, 3), (9, 1)]);
    let effects = b.from_node(Message::SyncResponse {
        doc: DocId::new("doc"),
        batch: BatchId(5),
        reply: Reply::Delta(Payload::new(vec![1, 2, 3])),
        version: ours.clone(),
    });
    let client = to_client(&effects);
    let Body::JoinResponseOk {
        permission,
        version,
        ..
    } = client[0]
    else {
        panic!("{client:?}")
    };
    assert_eq!(permission, "write");
    assert_eq!(version_from_loro(version), Some(ours));
    assert!(
        matches!(client[1], Body::DocUpdate { updates, .. } if updates == &vec![vec![1, 2, 3]])
    );
    assert!(to_node(&effects).contains(&&Message::Ack {
        batch: BatchId(5),
        status: NativeAck::Ok,
        clock: None,
    }));
}

#[test]
fn a_client_update_is_acknowledged_only_when_the_node_acknowledges_it() {
    let mut b = joined(Rules::allow_all());
    let effects = update(&mut b, vec![4, 5], 1);
    assert!(to_client(&effects).is_empty(), "no ack before the node's");
    let Message::Update { batch, .. } = to_node(&effects)[0] else {
        panic!("{effects:?}")
    };
    let effects = b.from_node(Message::Ack {
        batch: *batch,
        status: NativeAck::Ok,
        clock: None,
    });
    assert_eq!(
        to_client(&effects),
        vec![&Body::Ack {
            batch: [1; 8],
            status: UpdateStatus::Ok
        }]
    );
}

#[test]
fn a_read_only_member_is_told_read_and_its_writes_are_refused() {
    let rules = Rules {
        rules: Vec::new(),
        default: docweave_core::Access::READ,
        quotas: None,
    }
    .with(
        Pattern::Exact("nobody".into()),
        Pattern::Any,
        docweave_core::Access::NONE,
    );
    let mut b = bridge(rules);
    let now = Instant::now();
    b.from_client(msg(Crdt::Loro, "doc", join("alice", vec![])), now);
    b.from_node(welcome());
    let effects = answer(&mut b, Reply::UpToDate);
    assert!(
        matches!(to_client(&effects)[0], Body::JoinResponseOk { permission, .. } if permission == "read")
    );
    let effects = update(&mut b, vec![1], 2);
    assert_eq!(
        to_client(&effects),
        vec![&Body::Ack {
            batch: [2; 8],
            status: UpdateStatus::PermissionDenied
        }]
    );
    assert!(to_node(&effects).is_empty());
}

#[test]
fn refused_credentials_fail_the_join_and_close() {
    let mut b = bridge(Rules::allow_all());
    b.from_client(
        msg(Crdt::Loro, "doc", join("wrong", vec![])),
        Instant::now(),
    );
    let effects = b.from_node(Message::Error {
        code: docweave_core::ErrorCode::BadToken,
        message: "the token was not accepted".into(),
    });
    assert!(matches!(
        to_client(&effects)[0],
        Body::JoinError {
            code: JoinErrorCode::AuthFailed,
            ..
        }
    ));
    assert!(matches!(effects.last(), Some(Effect::Close(_))));
}

#[test]
fn other_crdts_and_bad_room_ids_are_refused_and_nothing_reaches_the_node() {
    let mut b = bridge(Rules::allow_all());
    let now = Instant::now();
    let effects = b.from_client(msg(Crdt::Other(*b"%YJS"), "doc", join("a", vec![])), now);
    assert!(
        matches!(to_client(&effects)[0], Body::JoinError { message, .. } if message.contains("not supported"))
    );
    let effects = b.from_client(msg(Crdt::Loro, "", join("a", vec![])), now);
    assert!(matches!(to_client(&effects)[0], Body::JoinError { .. }));
    assert!(to_node(&effects).is_empty());
}

#[test]
fn fragments_are_gathered_within_bounds_and_time() {
    let mut b = joined(Rules::allow_all());
    let now = Instant::now();
    let frag = |index: u32, bytes: Vec<u8>| {
        msg(
            Crdt::Loro,
            "doc",
            Body::Fragment {
                batch: [3; 8],
                index,
                bytes,
            },
        )
    };
    let header = msg(
        Crdt::Loro,
        "doc",
        Body::FragmentHeader {
            batch: [3; 8],
            count: 2,
            total: 4,
        },
    );
    b.from_client(header.clone(), now);
    // Out of order is fine.
    assert!(b.from_client(frag(1, vec![3, 4]), now).is_empty());
    let effects = b.from_client(frag(0, vec![1, 2]), now);
    assert!(matches!(
        to_node(&effects)[0],
        Message::Update { data, .. } if data.as_bytes() == [1, 2, 3, 4]
    ));
    // One that never completes is answered fragment_timeout.
    b.from_client(header, now);
    b.from_client(frag(0, vec![1, 2]), now);
    assert!(b.tick(now + Duration::from_secs(5)).is_empty());
    assert_eq!(
        to_client(&b.tick(now + Duration::from_secs(11))),
        vec![&Body::Ack {
            batch: [3; 8],
            status: UpdateStatus::FragmentTimeout
        }]
    );
    // A header announcing more than the limit is refused at once.
    let huge = msg(
        Crdt::Loro,
        "doc",
        Body::FragmentHeader {
            batch: [4; 8],
            count: 10,
            total: u32::MAX,
        },
    );
    assert_eq!(
        to_client(&b.from_client(huge, now)),
        vec![&Body::Ack {
            batch: [4; 8],
            status: UpdateStatus::PayloadTooLarge
        }]
    );
}

#[test]
fn a_deleted_document_evicts_its_members() {
    let mut b = joined(Rules::allow_all());
    let effects = b.from_node(Message::Delete {
        doc: DocId::new("doc"),
    });
    assert!(matches!(
        to_client(&effects)[0],
        Body::RoomError {
            code: docweave_adapters::loro_protocol::RoomErrorCode::Evicted,
            ..
        }
    ));
}

#[test]
fn joining_presence_renews_the_filter_so_the_node_sends_live_presence() {
    let mut b = bridge(Rules::allow_all());
    let now = Instant::now();
    b.from_client(msg(Crdt::Loro, "doc", join("alice", vec![])), now);
    b.from_node(welcome());
    // The document does not exist yet: the bridge follows it by filter.
    let effects = answer(&mut b, Reply::Unavailable);
    assert!(to_node(&effects)
        .iter()
        .any(|m| matches!(m, Message::Subscribe { .. })));
    // A presence join for it renews the filter (the node answers a new
    // filter with the presence already there).
    let effects = b.from_client(msg(Crdt::Ephemeral, "doc", join("alice", vec![])), now);
    let sent = to_node(&effects);
    assert!(
        matches!(
            sent.as_slice(),
            [Message::Unsubscribe { .. }, Message::Subscribe { .. }]
        ),
        "{sent:?}"
    );
    assert!(matches!(
        to_client(&effects)[0],
        Body::JoinResponseOk { .. }
    ));
}

/// The client's batch `[6; 8]` goes to the node; its native batch.
fn sent_batch(b: &mut Bridge) -> BatchId {
    let effects = update(b, vec![4, 5], 6);
    let Message::Update { batch, .. } = to_node(&effects)[0] else {
        panic!("{effects:?}")
    };
    *batch
}

fn rejoin_suggested(client: &[&Body]) -> bool {
    client.iter().any(|m| {
        matches!(
            m,
            Body::RoomError {
                code: docweave_adapters::loro_protocol::RoomErrorCode::RejoinSuggested,
                ..
            }
        )
    })
}

fn acks(client: &[&Body]) -> Vec<([u8; 8], UpdateStatus)> {
    client
        .iter()
        .filter_map(|m| match m {
            Body::Ack { batch, status } => Some((*batch, *status)),
            _ => None,
        })
        .collect()
}

/// The client joins `doc` again holding `version`; the node answers that
/// it holds `node`.
fn rejoin(b: &mut Bridge, version: &VersionVector, node: &VersionVector) -> Vec<Effect> {
    b.from_client(
        msg(Crdt::Loro, "doc", join("alice", version_to_loro(version))),
        Instant::now(),
    );
    b.from_node(Message::SyncResponse {
        doc: DocId::new("doc"),
        batch: BatchId(0),
        reply: Reply::UpToDate,
        version: node.clone(),
    })
}

#[test]
fn an_update_kept_only_pending_is_acknowledged_once_a_rejoin_made_it_durable() {
    let mut b = joined(Rules::allow_all());
    let batch = sent_batch(&mut b);
    let effects = b.from_node(Message::Ack {
        batch,
        status: NativeAck::MissingDependencies,
        clock: None,
    });
    let client = to_client(&effects);
    assert!(
        acks(&client).is_empty(),
        "not durable, so not acknowledged: {client:?}"
    );
    assert!(rejoin_suggested(&client), "{client:?}");
    // The client rejoins; the node lacks some of what it has...
    let theirs = VersionVector::from_entries([(7, 3)]);
    let effects = rejoin(&mut b, &theirs, &VersionVector::from_entries([(7, 1)]));
    assert!(acks(&to_client(&effects)).is_empty());
    // ...so its next batch brings it, and once that is durable, both are.
    let next = {
        let effects = update(&mut b, vec![8, 9], 7);
        let Message::Update { batch, .. } = to_node(&effects)[0] else {
            panic!("{effects:?}")
        };
        *batch
    };
    let effects = b.from_node(Message::Ack {
        batch: next,
        status: NativeAck::Ok,
        clock: None,
    });
    let mut got = acks(&to_client(&effects));
    got.sort_by_key(|(batch, _)| *batch);
    assert_eq!(
        got,
        vec![([6; 8], UpdateStatus::Ok), ([7; 8], UpdateStatus::Ok)]
    );
}

#[test]
fn an_update_the_node_never_acknowledges_is_sent_again_through_a_rejoin() {
    let mut b = joined(Rules::allow_all());
    let start = Instant::now();
    sent_batch(&mut b);
    assert!(
        b.tick(start + Duration::from_secs(5)).is_empty(),
        "still in time"
    );
    let effects = b.tick(start + Duration::from_secs(31));
    let client = to_client(&effects);
    assert!(rejoin_suggested(&client), "{client:?}");
    assert!(acks(&client).is_empty());
    // The node turns out to hold all the client has: acknowledged at the answer.
    let theirs = VersionVector::from_entries([(7, 3)]);
    let effects = rejoin(&mut b, &theirs, &theirs);
    assert_eq!(acks(&to_client(&effects)), vec![([6; 8], UpdateStatus::Ok)]);
}

#[test]
fn a_client_that_leaves_a_room_is_told_its_owed_batches_were_not_vouched_for() {
    let mut b = joined(Rules::allow_all());
    let start = Instant::now();
    sent_batch(&mut b);
    b.tick(start + Duration::from_secs(31));
    let effects = b.from_client(msg(Crdt::Loro, "doc", Body::Leave), Instant::now());
    assert_eq!(
        acks(&to_client(&effects)),
        vec![([6; 8], UpdateStatus::Unknown)]
    );
}

#[test]
fn a_client_update_reaches_the_node_with_the_version_its_changes_end_at() {
    let mut b = joined(Rules::allow_all());
    let doc = loro::LoroDoc::new();
    doc.set_peer_id(7).unwrap();
    doc.get_text("t").insert(0, "abc").unwrap();
    doc.commit();
    let effects = update(
        &mut b,
        doc.export(loro::ExportMode::all_updates()).unwrap(),
        1,
    );
    let Message::Update { version, .. } = to_node(&effects)[0] else {
        panic!("{effects:?}")
    };
    // The node then knows the client holds its own changes and never sends them back.
    assert_eq!(version, &VersionVector::from_entries([(7, 3)]));
}

#[test]
fn a_node_update_is_acknowledged_to_the_node_once_relayed() {
    let mut b = joined(Rules::allow_all());
    let effects = b.from_node(Message::Update {
        doc: DocId::new("doc"),
        batch: BatchId(9),
        data: Payload::new(vec![1, 2, 3]),
        version: VersionVector::new(),
    });
    assert!(matches!(to_client(&effects)[..], [Body::DocUpdate { .. }]));
    // The link acknowledges it when its message has gone (coalesce.rs), not the bridge.
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Relayed(BatchId(9)))));
    assert!(
        !to_node(&effects)
            .iter()
            .any(|m| matches!(m, Message::Ack { .. })),
        "{effects:?}"
    );
}

#[test]
fn an_update_the_node_cannot_import_is_answered_invalid_update() {
    let mut b = joined(Rules::allow_all());
    let effects = update(&mut b, vec![0xde, 0xad], 3);
    let Message::Update { batch, .. } = to_node(&effects)[0] else {
        panic!("{effects:?}")
    };
    let effects = b.from_node(Message::Ack {
        batch: *batch,
        status: NativeAck::Invalid,
        clock: None,
    });
    assert_eq!(
        to_client(&effects),
        vec![&Body::Ack {
            batch: [3; 8],
            status: UpdateStatus::InvalidUpdate
        }]
    );
}

#[test]
fn after_leave_the_room_gets_nothing_more_and_its_writes_are_not_taken() {
    let mut b = joined(Rules::allow_all());
    b.from_client(msg(Crdt::Loro, "doc", Body::Leave), Instant::now());
    let effects = b.from_node(Message::Update {
        doc: DocId::new("doc"),
        batch: BatchId(4),
        data: Payload::new(vec![1]),
        version: VersionVector::new(),
    });
    assert!(to_client(&effects).is_empty(), "{effects:?}");
    let effects = update(&mut b, vec![4, 5], 2);
    assert!(
        !to_node(&effects)
            .iter()
            .any(|m| matches!(m, Message::Update { .. })),
        "{effects:?}"
    );
}

#[test]
fn a_join_the_node_never_answers_is_asked_again() {
    let mut b = bridge(Rules::allow_all());
    let start = Instant::now();
    let theirs = VersionVector::from_entries([(7, 3)]);
    b.from_client(
        msg(Crdt::Loro, "doc", join("alice", version_to_loro(&theirs))),
        start,
    );
    b.from_node(welcome());
    let asked = |effects: &[Effect]| {
        to_node(effects)
            .iter()
            .filter(|m| matches!(m, Message::SyncRequest { version, .. } if *version == theirs))
            .count()
    };
    assert_eq!(asked(&b.tick(start + Duration::from_secs(5))), 0);
    assert_eq!(asked(&b.tick(start + Duration::from_secs(11))), 1);
    // Answered: not asked again.
    answer(&mut b, Reply::UpToDate);
    assert_eq!(asked(&b.tick(start + Duration::from_secs(30))), 0);
}

#[test]
fn a_join_whose_token_the_node_would_refuse_fails_alone_without_a_hello() {
    let identity = Arc::new(|token: Option<&str>| PeerId::new(token.unwrap_or("anon")));
    let mut o = BridgeOptions::new(identity, Rules::allow_all());
    o.accepts = Arc::new(|token: Option<&str>| {
        if token == Some("right") {
            Ok(())
        } else {
            Err("the token was not accepted".into())
        }
    });
    let mut b = Bridge::new(o);
    let effects = b.from_client(msg(Crdt::Loro, "a", join("wrong", vec![])), Instant::now());
    assert!(to_node(&effects).is_empty(), "no hello: {effects:?}");
    assert!(refused_alone(&effects), "{effects:?}");
    // A later join with an accepted token says hello as usual.
    let effects = b.from_client(msg(Crdt::Loro, "b", join("right", vec![])), Instant::now());
    assert!(
        matches!(to_node(&effects)[..], [Message::Hello(_)]),
        "{effects:?}"
    );
}

#[test]
fn a_join_with_a_new_token_of_the_same_identity_refreshes_and_another_identitys_fails_alone() {
    // Tokens `NAME:N` name the identity NAME (as a JWT's `sub` would).
    let identity = Arc::new(|token: Option<&str>| {
        PeerId::new(token.and_then(|t| t.split(':').next()).unwrap_or("anon"))
    });
    let mut b = Bridge::new(BridgeOptions::new(identity, Rules::allow_all()));
    let now = Instant::now();
    b.from_client(msg(Crdt::Loro, "a", join("alice:1", vec![])), now);
    b.from_node(welcome());
    let effects = b.from_client(msg(Crdt::Loro, "b", join("alice:2", vec![])), now);
    assert!(
        to_node(&effects).contains(&&Message::Reauth {
            token: "alice:2".into()
        }),
        "{effects:?}"
    );
    assert!(!to_client(&effects)
        .iter()
        .any(|m| matches!(m, Body::JoinError { .. })));
    let effects = b.from_client(msg(Crdt::Loro, "c", join("bob:1", vec![])), now);
    assert!(refused_alone(&effects), "{effects:?}");
    assert!(to_node(&effects).is_empty(), "{effects:?}");
    assert!(!effects.iter().any(|e| matches!(e, Effect::Close(_))));
}

#[test]
fn a_room_the_member_may_no_longer_read_ends_at_the_next_tick_and_write_loss_makes_it_read_only() {
    use std::sync::atomic::{AtomicU8, Ordering};
    // 2: read and write, 1: read only, 0: nothing.
    let rights = Arc::new(AtomicU8::new(2));
    let seen = rights.clone();
    let identity = Arc::new(|token: Option<&str>| PeerId::new(token.unwrap_or("anon")));
    let options = BridgeOptions {
        access: Arc::new(move |_: &PeerId, _: Option<&str>, _: &DocId| {
            match seen.load(Ordering::Relaxed) {
                2 => docweave_core::Access::ALL,
                1 => docweave_core::Access::READ,
                _ => docweave_core::Access::NONE,
            }
        }),
        ..BridgeOptions::new(identity, Rules::allow_all())
    };
    let mut b = Bridge::new(options);
    let now = Instant::now();
    b.from_client(msg(Crdt::Loro, "doc", join("alice", vec![])), now);
    b.from_node(welcome());
    answer(&mut b, Reply::UpToDate);
    assert!(to_client(&b.tick(now)).is_empty(), "nothing changed yet");
    // Read only: its updates are refused from now on, the room stays.
    rights.store(1, Ordering::Relaxed);
    assert!(to_client(&b.tick(now)).is_empty());
    let effects = update(&mut b, vec![1, 2, 3], 9);
    assert!(
        acks(&to_client(&effects)).contains(&([9; 8], UpdateStatus::PermissionDenied)),
        "{:?}",
        to_client(&effects)
    );
    // No rights at all: the membership ends, once.
    rights.store(0, Ordering::Relaxed);
    let effects = b.tick(now);
    assert!(matches!(
        to_client(&effects)[..],
        [Body::RoomError {
            code: docweave_adapters::loro_protocol::RoomErrorCode::Evicted,
            ..
        }]
    ));
    assert!(to_client(&b.tick(now)).is_empty(), "evicted twice");
}
