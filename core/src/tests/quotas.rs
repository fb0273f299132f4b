//! The operator's quotas on one client: updates and bytes per second per
//! connection, connections per identity. Past one a client is answered
//! and keeps its connection.

use super::kit::*;
use crate::{AckStatus, BatchId, Config, ErrorCode, Message, Payload, Quotas, VersionVector};

fn hub(quotas: Quotas) -> Kit {
    let mut c = Config::new("hub");
    c.quotas = quotas;
    Kit::new(c)
}

fn update(batch: u64, bytes: usize) -> Message {
    Message::Update {
        doc: doc("d"),
        batch: BatchId(batch),
        data: Payload::new(vec![1u8; bytes]),
        version: VersionVector::new(),
    }
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
    let bot = || {
        let Message::Hello(mut h) = hello("robot") else {
            unreachable!()
        };
        h.kind = crate::PeerKind::Bot;
        Message::Hello(h)
    };
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
fn without_quotas_nothing_is_limited() {
    let mut k = hub(Quotas::default());
    k.peer(1, "alice");
    for b in 1..=1_000 {
        assert_eq!(limited(&mut k, 1, b, 1_000), None);
    }
}
