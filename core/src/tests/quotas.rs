//! The operator's quotas on one client: updates and bytes per second per
//! connection (per identity for requests), connections per identity, documents created per hour, the
//! largest document. Past one a client is answered and keeps its connection.

use super::kit::*;
use crate::{AckStatus, BatchId, Config, ErrorCode, Message, Payload, Quotas, VersionVector};

fn hub(quotas: Quotas) -> Kit {
    let mut c = Config::new("hub");
    c.quotas = quotas;
    Kit::new(c)
}

fn update(batch: u64, bytes: usize) -> Message {
    update_of("d", batch, bytes)
}

fn update_of(d: &str, batch: u64, bytes: usize) -> Message {
    Message::Update {
        doc: doc(d),
        batch: BatchId(batch),
        data: Payload::new(vec![1u8; bytes]),
        version: VersionVector::new(),
    }
}

/// A hello from `peer` saying it is of `kind` (its own word).
fn hello_as(peer: &str, kind: crate::PeerKind) -> Message {
    let Message::Hello(mut h) = hello(peer) else {
        unreachable!()
    };
    h.kind = kind;
    Message::Hello(h)
}

/// Whether `batch` was refused for a quota, and the wait it was told.
fn limited(k: &mut Kit, ch: u64, batch: u64, bytes: usize) -> Option<String> {
    let cmds = k.recv(ch, update(batch, bytes));
    let ms = messages(&cmds, ch);
    let refused = ms.iter().any(|m| {
        matches!(m, Message::Ack { batch: b, status: AckStatus::RateLimited, .. } if *b == BatchId(batch))
    });
    refused.then(|| {
        ms.iter()
            .find_map(|m| match m {
                Message::Error {
                    code: ErrorCode::RateLimited,
                    message,
                } => Some(message.clone()),
                _ => None,
            })
            .unwrap_or_default()
    })
}

#[test]
fn updates_past_the_rate_are_refused_with_when_to_retry_and_the_connection_stays() {
    let mut k = hub(Quotas {
        updates_per_s: 5,
        ..Quotas::default()
    });
    k.peer(1, "alice");
    k.peer(2, "bob");
    for b in 1..=5 {
        assert_eq!(limited(&mut k, 1, b, 10), None, "update {b}");
    }
    let told = limited(&mut k, 1, 6, 10).expect("the sixth update in a second is refused");
    assert!(told.contains("retry after 200 ms"), "{told}");
    // Another connection has its own bucket.
    assert_eq!(limited(&mut k, 2, 1, 10), None);
    // The bucket refills with time: one update per 200 ms.
    k.tick(199);
    assert!(limited(&mut k, 1, 7, 10).is_some());
    k.tick(200);
    assert_eq!(limited(&mut k, 1, 8, 10), None);
}

#[test]
fn bytes_past_the_rate_are_refused_and_an_update_larger_than_a_second_waits_for_a_full_bucket() {
    let mut k = hub(Quotas {
        update_bytes_per_s: 100,
        ..Quotas::default()
    });
    k.peer(1, "alice");
    assert_eq!(limited(&mut k, 1, 1, 60), None);
    let told = limited(&mut k, 1, 2, 60).expect("120 bytes in a second");
    assert!(told.contains("retry after 200 ms"), "{told}");
    k.tick(1_000);
    // 300 bytes never fit a 100-byte second: it goes once the bucket is full.
    assert_eq!(limited(&mut k, 1, 3, 300), None);
    assert!(limited(&mut k, 1, 4, 1).is_some());
}

#[test]
fn an_identity_past_its_connections_is_refused_and_others_are_not() {
    let mut k = hub(Quotas {
        connections_per_identity: 2,
        ..Quotas::default()
    });
    // A bot's connections add up (a user's newer one replaces the older).
    let bot = || hello_as("robot", crate::PeerKind::Bot);
    k.greet(1, bot());
    k.greet(2, bot());
    let cmds = k.greet(3, bot());
    assert!(
        messages(&cmds, 3).iter().any(|m| matches!(
            m,
            Message::Error {
                code: ErrorCode::RateLimited,
                ..
            }
        )),
        "{cmds:?}"
    );
    assert!(closes(&cmds, 3));
    let cmds = k.peer(4, "bob");
    assert!(messages(&cmds, 4)
        .iter()
        .any(|m| matches!(m, Message::Welcome(_))));
}

#[test]
fn the_requests_of_one_identity_share_one_bucket_however_many_channels_they_come_on() {
    let mut k = hub(Quotas {
        updates_per_s: 3,
        ..Quotas::default()
    });
    let bot = |name: &str| hello_as(name, crate::PeerKind::Bot);
    // Each call of the document API is a channel of its own, closed after it.
    let call = |k: &mut Kit, ch: u64, who: &str| {
        k.greet(ch, bot(who));
        let refused = limited(k, ch, ch, 10);
        k.feed(crate::Msg::ChannelRemoved {
            channel: crate::ChannelId(ch),
        });
        refused
    };
    for ch in 1..=3 {
        assert_eq!(call(&mut k, ch, "robot"), None, "call {ch}");
    }
    let told = call(&mut k, 4, "robot").expect("the fourth call in a second is refused");
    assert!(told.contains("retry after"), "{told}");
    // Another identity's calls have their own bucket.
    assert_eq!(call(&mut k, 5, "other"), None);
    // The bucket refills with time.
    k.tick(400);
    assert_eq!(call(&mut k, 6, "robot"), None);
}

#[test]
fn a_client_saying_it_is_a_server_is_limited_and_a_relay_or_a_dialed_server_is_not() {
    let mut c = Config::new("hub");
    c.quotas = Quotas {
        updates_per_s: 1,
        ..Quotas::default()
    };
    c.relays = vec![crate::policy::Pattern::Prefix("edge-".into())];
    let mut k = Kit::new(c);
    let service = |name: &str| hello_as(name, crate::PeerKind::Service);
    // A hello's kind is the client's word, not a credential.
    k.greet(1, service("mallory"));
    assert_eq!(limited(&mut k, 1, 1, 10), None);
    assert!(
        limited(&mut k, 1, 2, 10).is_some(),
        "a self-declared server is limited like any client"
    );
    // The operator is told how to exempt a real one.
    let cmds = k.recv(1, update(3, 10));
    assert!(
        cmds.iter().any(|c| matches!(
            c,
            crate::Cmd::Log { level: crate::Level::Warn, text } if text.contains("relay")
        )),
        "{cmds:?}"
    );
    // A server the operator named a relay replicates unlimited.
    k.greet(2, service("edge-1"));
    for b in 1..=20 {
        assert_eq!(limited(&mut k, 2, b, 10), None, "relay update {b}");
    }
    // And so does one this node dials.
    k.dial(3, "ws://hub2", "hub2");
    for b in 1..=20 {
        assert_eq!(
            limited(&mut k, 3, b, 10),
            None,
            "dialed server's update {b}"
        );
    }
}

#[test]
fn without_quotas_nothing_is_limited() {
    let mut k = hub(Quotas::default());
    k.peer(1, "alice");
    for b in 1..=1_000 {
        assert_eq!(limited(&mut k, 1, b, 1_000), None);
    }
}

/// The status `batch` of `d` was acknowledged with, and the error told;
/// an import it asked for is carried out (each one a change of its own).
fn answer(k: &mut Kit, ch: u64, d: &str, batch: u64, bytes: usize) -> (Option<AckStatus>, String) {
    let cmds = k.recv(ch, update_of(d, batch, bytes));
    for id in imports(&cmds) {
        k.feed(crate::Msg::Imported {
            id,
            outcome: crate::ImportOutcome::Applied {
                version: vv(&[(1_000 + batch, 1)]),
            },
        });
    }
    answer_in(&cmds, ch, batch)
}

fn answer_in(cmds: &[crate::Cmd], ch: u64, batch: u64) -> (Option<AckStatus>, String) {
    let ms = messages(cmds, ch);
    let status = ms.iter().find_map(|m| match m {
        Message::Ack {
            batch: b, status, ..
        } if *b == BatchId(batch) => Some(*status),
        _ => None,
    });
    let told = ms
        .iter()
        .find_map(|m| match m {
            Message::Error { message, .. } => Some(message.clone()),
            _ => None,
        })
        .unwrap_or_default();
    (status, told)
}

#[test]
fn documents_created_past_the_hourly_quota_are_refused_until_the_hour_is_over() {
    let mut k = hub(Quotas {
        docs_created_per_hour: 2,
        ..Quotas::default()
    });
    k.peer(1, "alice");
    k.peer(2, "bob");
    // Creating counts; writing to a document that exists does not.
    assert_eq!(
        answer(&mut k, 1, "a", 1, 10).0,
        None,
        "imported, not refused"
    );
    assert_eq!(answer(&mut k, 1, "a", 2, 10).0, None);
    assert_eq!(answer(&mut k, 1, "b", 3, 10).0, None);
    let (status, told) = answer(&mut k, 1, "c", 4, 10);
    assert_eq!(status, Some(AckStatus::RateLimited));
    assert!(told.contains("too many documents created"), "{told}");
    // Another identity has its own count, and existing documents stay writable.
    assert_eq!(answer(&mut k, 2, "c", 1, 10).0, None);
    assert_eq!(answer(&mut k, 1, "b", 5, 10).0, None);
    // An hour after its first creation, alice may create again.
    k.tick(3_600_000);
    assert_eq!(answer(&mut k, 1, "d", 6, 10).0, None);
}

#[test]
fn a_document_created_through_the_store_counts_against_its_creator() {
    let mut c = Config::new("hub");
    c.quotas = Quotas {
        docs_created_per_hour: 1,
        ..Quotas::default()
    };
    let mut k = Kit::new(c);
    k.store(9);
    k.peer(1, "alice");
    // The store is asked first; it has neither document, so they are new.
    k.recv(1, update_of("a", 1, 10));
    let cmds = k.missing(9, "a");
    assert_eq!(answer_in(&cmds, 1, 1).0, None, "the first is created");
    k.recv(1, update_of("b", 2, 10));
    let cmds = k.missing(9, "b");
    assert_eq!(answer_in(&cmds, 1, 2).0, Some(AckStatus::RateLimited));
    // A document the store holds is not created: it is not counted.
    k.recv(1, update_of("old", 3, 10));
    let cmds = k.found(9, "old", VersionVector::new());
    assert_eq!(answer_in(&cmds, 1, 3).0, None);
}

#[test]
fn an_update_that_would_make_a_document_too_large_is_refused_and_smaller_ones_go_on() {
    let mut k = hub(Quotas {
        max_doc_bytes: 100,
        ..Quotas::default()
    });
    k.peer(1, "alice");
    assert_eq!(answer(&mut k, 1, "d", 1, 60).0, None);
    let (status, told) = answer(&mut k, 1, "d", 2, 60);
    assert_eq!(status, Some(AckStatus::TooLarge));
    assert!(
        told.contains("largest document allowed (100 bytes)"),
        "{told}"
    );
    // What still fits goes in; another document has its own size.
    assert_eq!(answer(&mut k, 1, "d", 3, 40).0, None);
    assert_eq!(answer(&mut k, 1, "d", 4, 1).0, Some(AckStatus::TooLarge));
    assert_eq!(answer(&mut k, 1, "e", 5, 100).0, None);
}

#[test]
fn a_loaded_document_counts_what_the_store_held_toward_its_size() {
    let mut c = Config::new("hub");
    c.quotas = Quotas {
        max_doc_bytes: 100,
        ..Quotas::default()
    };
    let mut k = Kit::new(c);
    k.store(9);
    k.peer(1, "alice");
    k.recv(1, update_of("big", 1, 30));
    let cmds = k.feed(crate::Msg::StoreLoaded {
        store: crate::ChannelId(9),
        doc: doc("big"),
        outcome: crate::LoadOutcome::Found {
            version: VersionVector::new(),
            stored: VersionVector::new(),
            unreadable: 0,
            clock: crate::Clock(1),
            bytes: 80,
            meta: None,
        },
    });
    assert_eq!(answer_in(&cmds, 1, 1).0, Some(AckStatus::TooLarge));
    assert_eq!(answer(&mut k, 1, "big", 2, 20).0, None);
}

#[test]
fn a_change_a_server_refused_for_its_rate_is_offered_again_a_second_later() {
    let mut k = Kit::new(Config::new("client"));
    k.feed(crate::Msg::OpenDoc {
        doc: doc("d"),
        meta: Default::default(),
    });
    k.dial(1, "hub", "hub");
    k.recv(
        1,
        Message::SyncResponse {
            doc: doc("d"),
            batch: BatchId(0),
            reply: crate::Reply::UpToDate,
            version: VersionVector::new(),
        },
    );
    let cmds = k.feed(crate::Msg::LocalChange {
        doc: doc("d"),
        version: vv(&[(1, 1)]),
    });
    let (batch, _, _) = *data(&cmds, 1).first().expect("the change is pushed");
    k.recv(
        1,
        Message::Ack {
            batch,
            status: AckStatus::RateLimited,
            clock: None,
        },
    );
    let asks = |cmds: &[crate::Cmd]| {
        messages(cmds, 1)
            .iter()
            .any(|m| matches!(m, Message::SyncRequest { doc: d, bidirectional: true, .. } if *d == doc("d")))
    };
    let now = k.now;
    assert!(!asks(&k.tick(now + 999)), "asked again too soon");
    assert!(asks(&k.tick(now + 1_000)), "the refused change was left");
    // Refused again: the next try waits twice as long.
    let cmds = k.recv(
        1,
        Message::SyncResponse {
            doc: doc("d"),
            batch: BatchId(0),
            reply: crate::Reply::UpToDate,
            version: VersionVector::new(),
        },
    );
    let (batch, _, _) = *data(&cmds, 1).first().expect("the gap is sent");
    k.recv(
        1,
        Message::Ack {
            batch,
            status: AckStatus::RateLimited,
            clock: None,
        },
    );
    let now = k.now;
    assert!(!asks(&k.tick(now + 1_999)), "no backoff");
    assert!(asks(&k.tick(now + 2_000)));
}

#[test]
fn an_update_larger_than_the_largest_allowed_is_refused_and_smaller_ones_go() {
    let mut k = hub(Quotas {
        max_update_bytes: 100,
        ..Quotas::default()
    });
    k.peer(1, "alice");
    let (status, told) = answer(&mut k, 1, "d", 1, 101);
    assert_eq!(status, Some(AckStatus::TooLarge));
    assert!(
        told.contains("larger than the largest allowed (100 bytes)"),
        "{told}"
    );
    assert_eq!(
        answer(&mut k, 1, "d", 2, 100).0,
        None,
        "imported, not refused"
    );
}

#[test]
fn only_what_changes_a_document_counts_toward_its_size() {
    let mut k = hub(Quotas {
        max_doc_bytes: 100,
        ..Quotas::default()
    });
    k.peer(1, "alice");
    assert_eq!(answer(&mut k, 1, "d", 1, 60).0, None);
    // The same bytes again (a resend) change nothing: not counted.
    let cmds = k.recv(1, update_of("d", 2, 30));
    for id in imports(&cmds) {
        k.feed(crate::Msg::Imported {
            id,
            outcome: crate::ImportOutcome::Applied {
                version: vv(&[(1_001, 1)]),
            },
        });
    }
    assert_eq!(
        answer(&mut k, 1, "d", 3, 30).0,
        None,
        "a duplicate was counted"
    );
    assert_eq!(answer(&mut k, 1, "d", 4, 30).0, Some(AckStatus::TooLarge));
}

#[test]
fn a_write_too_large_for_any_document_creates_nothing_and_is_not_counted() {
    let quotas = Quotas {
        max_doc_bytes: 100,
        docs_created_per_hour: 1,
        ..Quotas::default()
    };
    // Without a store, and through a store that has no such document.
    let mut k = hub(quotas.clone());
    k.peer(1, "alice");
    assert_eq!(
        answer(&mut k, 1, "big", 1, 101).0,
        Some(AckStatus::TooLarge)
    );
    assert!(k.model.doc_version(&doc("big")).is_none(), "created");
    assert_eq!(
        answer(&mut k, 1, "small", 2, 10).0,
        None,
        "the creation was counted"
    );
    let mut c = Config::new("hub");
    c.quotas = quotas;
    let mut k = Kit::new(c);
    k.store(9);
    k.peer(1, "alice");
    k.recv(1, update_of("big", 1, 101));
    let cmds = k.missing(9, "big");
    assert_eq!(answer_in(&cmds, 1, 1).0, Some(AckStatus::TooLarge));
    assert!(k.model.doc_version(&doc("big")).is_none(), "created");
    k.recv(1, update_of("small", 2, 10));
    let cmds = k.missing(9, "small");
    assert_eq!(answer_in(&cmds, 1, 2).0, None, "the creation was counted");
}
