//! A replica read back from the store (evicted earlier) holds up only
//! what needs it: other documents are served, timers keep running, and
//! reads of different documents are out at once and may be answered in
//! any order.

use docweave_adapters::MemoryStore;
use docweave_core::{Config, DocId, Event, RemoteAddr};
use docweave_shell::{
    run_job, Input, LoroEngine, Node, NodeOptions, Output, StoreAnswer, StoreJob, StoreOp,
};

/// Runs the node's store jobs until it is quiet; returns its events.
fn settle(node: &mut Node<LoroEngine>, store: &mut MemoryStore) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let mut jobs = Vec::new();
        while let Some(out) = node.poll_output() {
            match out {
                Output::Store(job) => jobs.push(job),
                Output::Event(e) => events.push(e),
                _ => {}
            }
        }
        if jobs.is_empty() {
            return events;
        }
        for job in jobs {
            let result = run_job(store, job.op);
            node.handle(0, Input::Store(StoreAnswer { id: job.id, result }));
        }
    }
}

/// What the node put out now: its store jobs and its events.
fn outputs(node: &mut Node<LoroEngine>) -> (Vec<StoreJob>, Vec<Event>) {
    let (mut jobs, mut events) = (Vec::new(), Vec::new());
    while let Some(out) = node.poll_output() {
        match out {
            Output::Store(job) => jobs.push(job),
            Output::Event(e) => events.push(e),
            _ => {}
        }
    }
    (jobs, events)
}

fn ready(events: &[Event], doc: &str) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::DocReady { doc: d, .. } if d.as_str() == doc))
}

fn options() -> NodeOptions {
    NodeOptions {
        store: true,
        max_docs: 1,
        ..NodeOptions::default()
    }
}

#[test]
fn a_replica_read_back_holds_up_only_the_commands_that_need_it() {
    let mut store = MemoryStore::new();
    // A first process stores two documents.
    let mut first = Node::new(Config::new("laptop"), LoroEngine, options());
    settle(&mut first, &mut store);
    for (i, doc) in ["a", "b"].into_iter().enumerate() {
        let id = DocId::new(doc);
        first.handle(0, Input::Open { doc: id.clone() });
        settle(&mut first, &mut store);
        let handle = first.doc_handle(&id).unwrap();
        handle.get_text("t").insert(0, doc).unwrap();
        handle.commit();
        first.handle(i as u64, Input::LocalChange { doc: id });
        settle(&mut first, &mut store);
    }
    drop(first);

    // The next process knows both from its store, and holds no replica.
    let mut node = Node::new(Config::new("laptop"), LoroEngine, options());
    settle(&mut node, &mut store);
    assert_eq!(node.resident(), 0);
    // A remote it cannot reach: its reconnection is a timer.
    let remote = RemoteAddr::new("mem://hub");
    node.handle(
        1,
        Input::Connect {
            remote: remote.clone(),
            token: None,
            filter: docweave_core::Filter::all(),
        },
    );
    outputs(&mut node);
    node.handle(2, Input::DialFailed { remote });
    outputs(&mut node);
    assert!(node.poll_timeout().is_some(), "no reconnection timer");

    node.handle(
        3,
        Input::Open {
            doc: DocId::new("a"),
        },
    );
    let (jobs_a, events) = outputs(&mut node);
    assert!(!ready(&events, "a"), "ready before its replica was read");
    let [read_a] = jobs_a.as_slice() else {
        panic!("expected one read of a, got {jobs_a:?}");
    };
    assert_eq!(read_a.op, StoreOp::Load(DocId::new("a")));
    assert!(read_a.aside, "a clean replica's read may run aside");
    assert_eq!(node.reloads(), 1);
    assert!(
        node.poll_timeout().is_some(),
        "timers stopped while a replica was read back"
    );
    assert!(!node.waits_for_store(), "one reload held up every frame");

    // `b` is opened while `a` is still being read: it is read too, at once.
    node.handle(
        4,
        Input::Open {
            doc: DocId::new("b"),
        },
    );
    let (jobs_b, _) = outputs(&mut node);
    let [read_b] = jobs_b.as_slice() else {
        panic!("b waited for a's read: {jobs_b:?}");
    };
    assert_eq!(read_b.op, StoreOp::Load(DocId::new("b")));

    // Answered out of order: b first, and b is ready while a still waits.
    let result = run_job(&mut store, read_b.op.clone());
    node.handle(
        5,
        Input::Store(StoreAnswer {
            id: read_b.id,
            result,
        }),
    );
    let (_, events) = outputs(&mut node);
    assert!(ready(&events, "b"), "b waited for a: {events:?}");
    assert!(!ready(&events, "a"));
    let handle = node.doc_handle(&DocId::new("b")).unwrap();
    assert_eq!(handle.get_text("t").to_string(), "b");

    let result = run_job(&mut store, read_a.op.clone());
    node.handle(
        6,
        Input::Store(StoreAnswer {
            id: read_a.id,
            result,
        }),
    );
    let events = settle(&mut node, &mut store);
    assert!(ready(&events, "a"), "a never became ready: {events:?}");
    let handle = node.doc_handle(&DocId::new("a")).unwrap();
    assert_eq!(handle.get_text("t").to_string(), "a");
    assert_eq!(node.reloads(), 0);
}

/// A node on `store` that knows documents `a` and `b` from it and holds
/// neither in memory.
fn restarted_with_two_documents(store: &mut MemoryStore) -> Node<LoroEngine> {
    let mut first = Node::new(Config::new("laptop"), LoroEngine, options());
    settle(&mut first, store);
    for doc in ["a", "b"] {
        let id = DocId::new(doc);
        first.handle(0, Input::Open { doc: id.clone() });
        settle(&mut first, store);
        let handle = first.doc_handle(&id).unwrap();
        handle.get_text("t").insert(0, doc).unwrap();
        handle.commit();
        first.handle(0, Input::LocalChange { doc: id });
        settle(&mut first, store);
    }
    drop(first);
    let mut node = Node::new(Config::new("laptop"), LoroEngine, options());
    settle(&mut node, store);
    assert_eq!(node.resident(), 0);
    node
}

#[test]
fn a_read_back_that_fails_makes_its_document_unavailable_and_no_other() {
    let mut store = MemoryStore::new();
    let mut node = restarted_with_two_documents(&mut store);
    node.handle(
        1,
        Input::Open {
            doc: DocId::new("a"),
        },
    );
    node.handle(
        1,
        Input::Open {
            doc: DocId::new("b"),
        },
    );
    let (jobs, _) = outputs(&mut node);
    let [read_a, read_b] = jobs.as_slice() else {
        panic!("expected reads of a and b, got {jobs:?}");
    };
    let failed = docweave_shell::StoreResult::Failed(docweave_shell::JobError {
        reason: "disk on fire".into(),
        tombstoned: false,
    });
    node.handle(
        2,
        Input::Store(StoreAnswer {
            id: read_a.id,
            result: failed,
        }),
    );
    let (again, events) = outputs(&mut node);
    assert!(
        again.is_empty(),
        "a failed read was asked again at once: {again:?}"
    );
    let unavailable: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::DocUnavailable { doc } => Some(doc.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(unavailable, ["a"], "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Error { reason, .. } if reason.contains("disk on fire"))),
        "the reason was not told: {events:?}"
    );
    let result = run_job(&mut store, read_b.op.clone());
    node.handle(
        3,
        Input::Store(StoreAnswer {
            id: read_b.id,
            result,
        }),
    );
    let events = settle(&mut node, &mut store);
    assert!(ready(&events, "b"), "b never became ready: {events:?}");
    assert_eq!(node.reloads(), 0);
}

#[test]
fn a_connection_closed_while_its_data_is_read_back_closes_at_once() {
    use docweave_core::{
        encode, Clock, Hello, Message, PeerId, PeerKind, VersionVector, PROTOCOL_VERSION,
    };
    let mut store = MemoryStore::new();
    let mut node = restarted_with_two_documents(&mut store);
    let channel = node.channel_opened(1, None);
    let hello = Message::Hello(Hello {
        peer: PeerId::new("client"),
        name: "client".into(),
        kind: PeerKind::User,
        protocol: PROTOCOL_VERSION,
        token: None,
        clock: Clock(0),
    });
    let ask = Message::SyncRequest {
        doc: DocId::new("a"),
        version: VersionVector::new(),
        bidirectional: false,
    };
    node.handle(
        1,
        Input::Frame {
            channel,
            bytes: encode(&[hello, ask]).unwrap(),
        },
    );
    let (jobs, _) = outputs(&mut node);
    assert!(
        jobs.iter().any(|j| j.op == StoreOp::Load(DocId::new("a"))),
        "the answer did not wait for a's read: {jobs:?}"
    );
    // The operator cuts the client off while the read is out (a revoked
    // token does the same): it must not go on until the read is back.
    node.handle(
        2,
        Input::Disconnect {
            peer: None,
            channel: Some(channel),
            reason: "revoked".into(),
        },
    );
    let mut closed = false;
    while let Some(out) = node.poll_output() {
        closed |= matches!(out, Output::Close { channel: c, .. } if c == channel);
    }
    assert!(closed, "the close waited for the read");
}

#[test]
fn under_a_memory_budget_an_evicted_replica_sleeps_as_bytes_and_wakes_without_a_read() {
    let options = NodeOptions {
        store: true,
        // Each document below is about 100 KB in memory, 500 bytes asleep.
        memory_budget: 250 * 1024,
        ..NodeOptions::default()
    };
    let mut store = MemoryStore::new();
    let mut node = Node::new(Config::new("laptop"), LoroEngine, options);
    settle(&mut node, &mut store);
    let long: String = "abcdefghij".chars().cycle().take(20_000).collect();
    for i in 0..8 {
        let id = DocId::new(&format!("d{i}"));
        node.handle(i, Input::Open { doc: id.clone() });
        settle(&mut node, &mut store);
        let handle = node.doc_handle(&id).unwrap();
        handle.get_text("t").insert(0, &long).unwrap();
        handle.commit();
        node.handle(i, Input::LocalChange { doc: id });
        settle(&mut node, &mut store);
    }
    assert!(
        node.resident() <= 2,
        "{} replicas in memory",
        node.resident()
    );
    assert!(node.dormant() >= 5, "only {} asleep", node.dormant());
    assert!(node.resident_bytes_estimate() <= 250 * 1024);

    node.handle(
        10,
        Input::Open {
            doc: DocId::new("d0"),
        },
    );
    let (jobs, events) = outputs(&mut node);
    assert!(
        !jobs.iter().any(|j| matches!(j.op, StoreOp::Load(_))),
        "a sleeping replica was read from the store: {jobs:?}"
    );
    assert!(ready(&events, "d0"), "{events:?}");
    let handle = node.doc_handle(&DocId::new("d0")).unwrap();
    assert_eq!(handle.get_text("t").to_string(), long);
}

#[test]
fn a_replica_edited_through_its_handle_stays_until_the_node_took_the_edit() {
    let options = NodeOptions {
        store: true,
        // Every clean replica is evicted after every burst.
        memory_budget: 1,
        ..NodeOptions::default()
    };
    let mut store = MemoryStore::new();
    let mut node = Node::new(Config::new("laptop"), LoroEngine, options);
    settle(&mut node, &mut store);
    let id = DocId::new("notes");
    node.handle(1, Input::Open { doc: id.clone() });
    // The application takes its handle as soon as the document is ready
    // (before the node's next burst, after which an idle replica may go).
    let handle = loop {
        match node.poll_output() {
            Some(Output::Store(job)) => {
                let result = run_job(&mut store, job.op);
                node.handle(1, Input::Store(StoreAnswer { id: job.id, result }));
            }
            Some(Output::Event(Event::DocReady { .. })) => break node.doc_handle(&id).unwrap(),
            Some(_) => {}
            None => panic!("the document never became ready"),
        }
    };
    // The application edits on its own thread; the node hears of it later.
    handle.get_text("t").insert(0, "kept").unwrap();
    handle.commit();
    // The node's store work goes on (the document's creation is written,
    // so it is clean) before it takes the edit.
    settle(&mut node, &mut store);
    node.handle(2, Input::LocalChange { doc: id.clone() });
    settle(&mut node, &mut store);
    drop(node);

    let mut again = Node::new(
        Config::new("laptop"),
        LoroEngine,
        NodeOptions {
            store: true,
            ..NodeOptions::default()
        },
    );
    settle(&mut again, &mut store);
    again.handle(3, Input::Open { doc: id.clone() });
    settle(&mut again, &mut store);
    let handle = again.doc_handle(&id).unwrap();
    assert_eq!(
        handle.get_text("t").to_string(),
        "kept",
        "the edit was lost"
    );
}

#[test]
fn a_replica_unused_for_a_while_sleeps_as_bytes_but_not_one_the_application_holds() {
    let options = NodeOptions {
        store: true,
        sleep_after_ms: 60_000,
        ..NodeOptions::default()
    };
    let mut store = MemoryStore::new();
    let mut node = Node::new(Config::new("server"), LoroEngine, options);
    settle(&mut node, &mut store);
    for (i, id) in ["idle", "held"].into_iter().enumerate() {
        let id = DocId::new(id);
        node.handle(i as u64, Input::Open { doc: id.clone() });
        settle(&mut node, &mut store);
        let handle = node.doc_handle(&id).unwrap();
        handle.get_text("t").insert(0, id.as_str()).unwrap();
        handle.commit();
        node.handle(i as u64, Input::LocalChange { doc: id });
        settle(&mut node, &mut store);
    }
    // Restarted: the documents are read back for a client, without handles.
    drop(node);
    let mut node = Node::new(Config::new("server"), LoroEngine, options);
    settle(&mut node, &mut store);
    for id in ["idle", "held"] {
        node.handle(
            1_000,
            Input::Open {
                doc: DocId::new(id),
            },
        );
    }
    let events = settle(&mut node, &mut store);
    assert!(
        ready(&events, "idle") && ready(&events, "held"),
        "{events:?}"
    );
    let held = node.doc_handle(&DocId::new("held")).unwrap();
    assert_eq!(node.resident(), 2);
    let wake = node.poll_timeout();
    assert!(
        wake.is_some_and(|at| (61_000..=70_000).contains(&at)),
        "the node does not wake to put the idle replica to sleep: {wake:?}"
    );

    node.handle(30_000, Input::Timeout);
    settle(&mut node, &mut store);
    assert_eq!(node.dormant(), 0, "asleep before its time");
    node.handle(61_000, Input::Timeout);
    settle(&mut node, &mut store);
    assert_eq!(node.dormant(), 1, "the idle replica did not sleep");
    assert_eq!(node.resident(), 1, "the held replica went too");
    held.get_text("t").insert(0, "still ").unwrap();
    held.commit();

    node.handle(
        62_000,
        Input::Open {
            doc: DocId::new("idle"),
        },
    );
    let (jobs, events) = outputs(&mut node);
    assert!(
        !jobs.iter().any(|j| matches!(j.op, StoreOp::Load(_))),
        "a sleeping replica was read from the store: {jobs:?}"
    );
    assert!(ready(&events, "idle"), "{events:?}");
    let idle = node.doc_handle(&DocId::new("idle")).unwrap();
    assert_eq!(idle.get_text("t").to_string(), "idle");
    assert_eq!(
        node.doc_handle(&DocId::new("held"))
            .unwrap()
            .get_text("t")
            .to_string(),
        "still held",
        "the application's handle no longer edits the node's replica"
    );
}
