use super::kit::*;
use crate::{AckStatus, BatchId, Clock, Event, ImportOutcome, Message, Msg, Outgoing, Payload};

#[test]
fn a_network_update_is_acknowledged_only_once_the_store_made_it_durable() {
    let mut k = Kit::hub();
    k.store(10);
    k.peer(1, "alice");
    k.create(&[10], "d");
    k.follow(1, "d");
    let cmds = k.recv(
        1,
        Message::Update {
            doc: doc("d"),
            batch: BatchId(7),
            data: Payload::new(vec![1]),
            version: vv(&[(1, 1)]),
        },
    );
    let id = imports(&cmds)[0];
    let cmds = k.feed(Msg::Imported {
        id,
        outcome: ImportOutcome::Applied {
            version: vv(&[(1, 1)]),
        },
    });
    assert!(
        !messages(&cmds, 1)
            .iter()
            .any(|m| matches!(m, Message::Ack { .. })),
        "acked before durable"
    );
    let batches: Vec<BatchId> = sent(&cmds, 10)
        .into_iter()
        .filter_map(|o| match o {
            Outgoing::Data { batch, .. } => Some(batch),
            _ => None,
        })
        .collect();
    let mut acked = Vec::new();
    for b in batches {
        let cmds = k.recv(
            10,
            Message::Ack {
                batch: b,
                status: AckStatus::Ok,
                clock: Some(Clock(b.0 + 40)),
            },
        );
        acked.extend(messages(&cmds, 1));
        assert!(events(&cmds)
            .iter()
            .any(|e| matches!(e, Event::Durable { .. })));
    }
    assert!(acked.iter().any(|m| matches!(
        m,
        Message::Ack {
            batch: BatchId(7),
            status: AckStatus::Ok,
            clock: Some(_)
        }
    )));
    assert!(
        k.model.doc_clock(&doc("d")).is_some_and(|c| c.0 > 40),
        "the store's clock is the doc's clock"
    );
}
