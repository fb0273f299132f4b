//! Named protocol scenarios, run through the simulator of real nodes (real
//! core, Loro replicas, memory stores) and kept as readable insta snapshots:
//! one line per message sent, store job, input fed and command out. Each
//! scenario also asserts the behaviour it shows.

use docweave_adapters::{Append, Store};
use docweave_core::{
    encode, Access, Clock, Config, DocId, DocMeta, Event, Hello, ListenerId, Message, Pattern,
    PeerKind, Revision, RevisionStatus, Rules, Strand, VersionVector, PROTOCOL_VERSION,
};
use docweave_shell::{DocEngine, LoroEngine};
use docweave_tests::Sim;

fn hub_config() -> Config {
    let mut c = Config::new("hub");
    c.kind = PeerKind::Service;
    c
}

/// A traced simulation with a hub (with a store) and connected clients.
fn star_with(hub: Config, clients: &[&str]) -> Sim {
    let mut sim: Sim = Sim::new(7).traced();
    sim.add_node(hub, true);
    for c in clients {
        sim.add_node(Config::new(c), false);
        sim.connect(c, "hub", None);
    }
    sim
}

fn star(clients: &[&str]) -> Sim {
    star_with(hub_config(), clients)
}

fn content(sim: &Sim, node: &str, doc: &str) -> Vec<String> {
    sim.content(node, doc).unwrap_or_default()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn events(sim: &Sim, node: &str) -> Vec<Event> {
    sim.nodes
        .get(node)
        .map(|n| n.events.clone())
        .unwrap_or_default()
}

fn sent_by(sim: &Sim, who: &str, what: &str) -> usize {
    sim.trace
        .iter()
        .filter(|l| l.starts_with(&format!("{who} -> ")) && l.contains(what))
        .count()
}

/// A Loro document made elsewhere: its snapshot and version.
fn made_elsewhere(actor: u64, value: &str) -> (Vec<u8>, VersionVector) {
    let e = LoroEngine;
    let d = e.create(actor);
    let _ = d.get_list("items").push(value);
    d.commit();
    (e.export(&d, None).unwrap(), e.version(&d))
}

#[test]
fn first_sync() {
    let mut sim = star(&["alice"]);
    sim.open("alice", "notes");
    sim.edit("alice", "notes", "hello");
    sim.add_node(Config::new("bob"), false);
    sim.connect("bob", "hub", None);
    sim.open("bob", "notes");
    assert_eq!(content(&sim, "bob", "notes"), vec!["hello"]);
    assert_eq!(content(&sim, "hub", "notes"), vec!["hello"]);
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn reconnect_with_changes_on_both_sides() {
    let mut sim = star(&["alice", "bob"]);
    for d in ["notes", "todo", "quiet"] {
        sim.open("alice", d);
        sim.edit("alice", d, &format!("{d}-0"));
    }
    sim.open("bob", "notes");
    // A periodic pull brings alice's cursor up to date.
    sim.advance(1_500);
    sim.partition("alice", "hub");
    sim.trace.clear();
    sim.edit("alice", "notes", "offline-alice");
    sim.edit("bob", "notes", "online-bob");
    sim.edit("bob", "todo", "online-bob-todo");
    sim.heal("alice", "hub");
    sim.advance(2_000);
    assert!(sim.linked("alice", "hub"));
    let notes = content(&sim, "hub", "notes");
    assert_eq!(
        sorted(notes.clone()),
        vec!["notes-0", "offline-alice", "online-bob"]
    );
    for node in ["alice", "bob"] {
        assert_eq!(content(&sim, node, "notes"), notes, "{node}");
    }
    assert_eq!(
        sorted(content(&sim, "alice", "todo")),
        vec!["online-bob-todo", "todo-0"]
    );
    // Only changed documents are exchanged: "quiet" never travels again.
    assert!(
        !sim.trace
            .iter()
            .any(|l| l.contains(" -> ") && l.contains("doc=quiet")),
        "unchanged document was exchanged"
    );
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn storage_first() {
    let mut sim = star(&["alice", "bob"]);
    // Another process writes "shared" into the hub's store; the hub's core
    // has not seen it, so it must ask the store before answering anyone.
    let (data, version) = made_elsewhere(50, "from-disk");
    let written = sim.store_mut("hub").map(|s| {
        s.append(&[Append {
            doc: DocId::new("shared"),
            meta: DocMeta::default(),
            data,
            version,
            authors: Vec::new(),
        }])
    });
    assert!(matches!(written, Some(Ok(_))));
    // A slow store: both requests arrive before it answers; both wait.
    sim.set_store_delay("hub", 50);
    sim.trace.clear();
    for c in ["alice", "bob"] {
        sim.feed(
            c,
            docweave_shell::Input::Open {
                doc: DocId::new("shared"),
            },
        );
    }
    sim.run();
    assert_eq!(content(&sim, "alice", "shared"), vec!["from-disk"]);
    assert_eq!(content(&sim, "bob", "shared"), vec!["from-disk"]);
    assert_eq!(
        sent_by(&sim, "hub", "load shared"),
        1,
        "asked the store once"
    );
    assert!(!sim
        .trace
        .iter()
        .any(|l| l.contains("unavailable") && l.starts_with("hub -> ")));
    insta::assert_snapshot!(sim.trace_text());
}

fn eve_rules(access: Access) -> Config {
    let mut c = hub_config();
    c.rules = Rules::allow_all().with(Pattern::Exact("eve".into()), Pattern::Any, access);
    c
}

#[test]
fn permission_denied_create() {
    let mut sim = star_with(
        eve_rules(Access {
            create: false,
            ..Access::ALL
        }),
        &["eve"],
    );
    sim.open("eve", "eves-doc");
    sim.edit("eve", "eves-doc", "x");
    assert!(
        sim.content("hub", "eves-doc").is_none(),
        "no document was created"
    );
    assert!(sim
        .model("hub")
        .is_some_and(|m| m.doc_version(&DocId::new("eves-doc")).is_none()));
    assert_eq!(sim.node("hub").map(|n| n.resident()), Some(0));
    assert!(sim
        .trace
        .iter()
        .any(|l| l.starts_with("hub -> eve") && l.contains("unavailable")));
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn permission_denied_write() {
    let mut sim = star_with(eve_rules(Access::READ), &["alice", "eve"]);
    sim.open("alice", "notes");
    sim.edit("alice", "notes", "by-alice");
    sim.open("eve", "notes");
    sim.trace.clear();
    sim.edit("eve", "notes", "by-eve");
    assert_eq!(content(&sim, "hub", "notes"), vec!["by-alice"]);
    assert_eq!(content(&sim, "alice", "notes"), vec!["by-alice"]);
    assert!(sim
        .trace
        .iter()
        .any(|l| l.starts_with("hub -> eve") && l.contains("PermissionDenied")));
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn permission_denied_read() {
    let mut sim = star_with(eve_rules(Access::NONE), &["alice", "eve"]);
    sim.open("alice", "secret");
    sim.edit("alice", "secret", "classified");
    sim.trace.clear();
    sim.open("eve", "secret");
    sim.edit("alice", "secret", "more");
    assert!(content(&sim, "eve", "secret").is_empty());
    assert!(
        !sim.trace
            .iter()
            .any(|l| l.starts_with("hub -> eve") && l.contains("B batch")),
        "eve got data"
    );
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn permission_denied_delete() {
    let mut sim = star_with(
        eve_rules(Access {
            delete: false,
            ..Access::ALL
        }),
        &["alice", "eve"],
    );
    sim.open("alice", "notes");
    sim.edit("alice", "notes", "keep me");
    sim.open("eve", "notes");
    sim.trace.clear();
    sim.delete("eve", "notes");
    assert_eq!(content(&sim, "hub", "notes"), vec!["keep me"]);
    assert_eq!(content(&sim, "alice", "notes"), vec!["keep me"]);
    assert!(sim
        .trace
        .iter()
        .any(|l| l.contains("delete-result doc=notes Ignored")));
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn hub_relay_between_three_clients() {
    let mut sim = star(&["alice", "bob", "carol"]);
    for c in ["alice", "bob", "carol"] {
        sim.open(c, "board");
    }
    sim.trace.clear();
    sim.edit("alice", "board", "a1");
    for c in ["alice", "bob", "carol", "hub"] {
        assert_eq!(content(&sim, c, "board"), vec!["a1"], "{c}");
    }
    // No echo: the hub sends alice's change to bob and carol, not back to alice.
    assert_eq!(sent_by(&sim, "hub", "update doc=board"), 2, "bob and carol");
    assert_eq!(sent_by(&sim, "hub", "append [board"), 1, "and its store");
    assert!(!sim
        .trace
        .iter()
        .any(|l| l.starts_with("hub -> alice  update")));
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn presence_relay_and_expiry() {
    let mut sim = star(&["alice", "bob"]);
    sim.open("alice", "doc");
    sim.open("bob", "doc");
    sim.trace.clear();
    sim.presence("alice", "doc", "cursor", b"line 3");
    let at = |sim: &Sim, node: &str| sim.model(node).map(|m| m.presence().len());
    assert_eq!(at(&sim, "bob"), Some(1));
    // A late joiner gets the live presence at once.
    sim.add_node(Config::new("carol"), false);
    sim.connect("carol", "hub", None);
    sim.open("carol", "doc");
    assert_eq!(at(&sim, "carol"), Some(1));
    // Alice vanishes without a word (partition): the hub drops her presence
    // on disconnect; bob's copy expires after its TTL.
    sim.partition("alice", "hub");
    assert_eq!(at(&sim, "hub"), Some(0));
    sim.advance(29_000);
    assert_eq!(at(&sim, "bob"), Some(1), "expired before its TTL");
    sim.advance(2_000);
    assert_eq!(at(&sim, "bob"), Some(0));
    assert!(
        !sim.trace
            .iter()
            .any(|l| l.contains(".store") && l.contains("ephemeral")),
        "presence reached a store"
    );
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn listener_pull_acknowledge_push_with_paging() {
    let mut sim = star(&["alice"]);
    for d in ["a", "b", "c"] {
        sim.open("alice", d);
        sim.edit("alice", d, &format!("{d}1"));
    }
    sim.raw_connect("reader", "hub");
    sim.trace.clear();
    sim.raw_listener("reader");
    let send = |sim: &mut Sim, m: Message| sim.raw_say("reader", m);
    let id = ListenerId(1);
    send(&mut sim, Message::ListenerPull { id, limit: 2 });
    assert!(sim
        .trace
        .iter()
        .any(|l| l.contains("strands id=1") && l.ends_with("more")));
    let rev = |d: &str, v: VersionVector, status| Revision {
        doc: DocId::new(d),
        version: v,
        clock: Clock(0),
        status,
    };
    // "b" failed on the reader: it is not acknowledged and comes back.
    let (va, vb) = (sim.version("hub", "a"), sim.version("hub", "b"));
    send(
        &mut sim,
        Message::ListenerAck {
            id,
            revisions: vec![
                rev("a", va, RevisionStatus::Ok),
                rev("b", vb, RevisionStatus::Invalid),
            ],
        },
    );
    send(&mut sim, Message::ListenerPull { id, limit: 2 });
    let last = sim
        .trace
        .iter()
        .rev()
        .find(|l| l.contains("strands id=1"))
        .cloned()
        .unwrap_or_default();
    assert!(
        last.contains("b{}") && last.contains("c{}") && !last.contains(" a{"),
        "{last}"
    );
    // Push: one strand for a new document.
    let (data, version) = made_elsewhere(77, "pushed");
    let strand = Strand {
        doc: DocId::new("from-reader"),
        meta: DocMeta::default(),
        since: VersionVector::new(),
        data: docweave_core::Payload::new(data),
        version,
        clock: Clock(0),
    };
    send(
        &mut sim,
        Message::Push {
            strands: vec![strand],
        },
    );
    assert_eq!(content(&sim, "hub", "from-reader"), vec!["pushed"]);
    assert!(sim
        .trace
        .iter()
        .any(|l| l.contains("push-result [from-reader{77:1} Ok]")));
    send(
        &mut sim,
        Message::ListenerPull {
            id: ListenerId(9),
            limit: 2,
        },
    );
    assert!(sim.trace.iter().any(|l| l.contains("UnknownListener")));
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn deletion_with_tombstone() {
    let mut sim = star(&["alice", "bob", "carol"]);
    for c in ["alice", "bob", "carol"] {
        sim.open(c, "old");
    }
    sim.edit("alice", "old", "x");
    sim.partition("carol", "hub");
    sim.trace.clear();
    sim.delete("alice", "old");
    assert!(sim.content("hub", "old").is_none() && sim.content("bob", "old").is_none());
    // Carol edited while away; when she comes back, her data is refused.
    sim.edit("carol", "old", "late");
    sim.heal("carol", "hub");
    sim.advance(2_000);
    assert!(
        sim.content("hub", "old").is_none(),
        "resurrected by a late peer"
    );
    // A restart of the hub does not bring it back from storage either.
    sim.restart("hub");
    sim.advance(2_000);
    assert!(
        sim.content("hub", "old").is_none(),
        "resurrected by the store"
    );
    assert!(sim
        .model("hub")
        .is_some_and(|m| m.is_tombstoned(&DocId::new("old"))));
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn concurrent_edits_converge() {
    let mut sim = star(&["alice", "bob"]);
    sim.open("alice", "notes");
    sim.open("bob", "notes");
    sim.trace.clear();
    // Both edit before either hears of the other.
    for (who, what) in [("alice", "A"), ("bob", "B")] {
        sim.edit_now(who, "notes", what);
    }
    sim.run();
    let hub = content(&sim, "hub", "notes");
    assert_eq!(sorted(hub.clone()), vec!["A", "B"]);
    for c in ["alice", "bob"] {
        assert_eq!(content(&sim, c, "notes"), hub, "{c}");
    }
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn bad_auth_token() {
    let mut hub = hub_config();
    hub.tokens = vec!["s3cret".into()];
    let mut sim: Sim = Sim::new(7).traced();
    sim.add_node(hub, true);
    sim.add_node(Config::new("mallory"), false);
    sim.connect("mallory", "hub", Some("guess"));
    assert!(!sim.linked("mallory", "hub"));
    assert!(sim.trace.iter().any(|l| l.contains("BadToken")));
    assert!(events(&sim, "mallory")
        .iter()
        .any(|e| matches!(e, Event::Error { .. })));
    // It keeps trying, with backoff; each try is refused.
    sim.advance(1_500);
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn protocol_version_mismatch() {
    let mut sim: Sim = Sim::new(7).traced();
    sim.add_node(hub_config(), true);
    sim.raw_connect("old-client", "hub");
    let hello = Message::Hello(Hello {
        peer: docweave_core::PeerId::new("old-client"),
        name: "old".into(),
        kind: PeerKind::User,
        protocol: 0,
        token: None,
        clock: Clock(0),
    });
    sim.raw_send("old-client", encode(&[hello]).unwrap_or_default());
    assert!(sim.trace.iter().any(|l| l.contains("VersionMismatch")));
    assert!(sim.channel_of("hub", "old-client").is_none(), "still open");
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn malformed_frame() {
    let mut sim = star(&["alice"]);
    sim.open("alice", "notes");
    sim.raw_connect("fuzzer", "hub");
    sim.trace.clear();
    sim.raw_send("fuzzer", b"\x01\x00\x05\x00\x00\x00garbage".to_vec());
    assert!(sim.channel_of("hub", "fuzzer").is_none(), "still open");
    // Everyone else goes on.
    sim.edit("alice", "notes", "still here");
    assert_eq!(content(&sim, "hub", "notes"), vec!["still here"]);
    // A document id with a control character inside a well-formed frame
    // is refused too (ids are any other text: `../x` is an id like any).
    sim.raw_connect("fuzzer2", "hub");
    let evil = Message::SyncRequest {
        doc: DocId::new("line\nbreak"),
        version: VersionVector::new(),
        bidirectional: false,
    };
    sim.raw_send("fuzzer2", encode(&[evil]).unwrap_or_default());
    assert!(sim
        .trace
        .iter()
        .any(|l| l.contains("a document id was refused")));
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn a_minute_of_quiet_then_a_new_client_connects() {
    let mut sim = star(&["alice"]);
    sim.open("alice", "notes");
    sim.edit("alice", "notes", "before");
    sim.advance(60_000);
    sim.trace.clear();
    sim.add_node(Config::new("bob"), false);
    sim.connect("bob", "hub", None);
    sim.open("bob", "notes");
    sim.advance(15_000);
    assert!(sim.linked("bob", "hub"), "the late client was dropped");
    assert_eq!(content(&sim, "bob", "notes"), vec!["before"]);
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn peers_one_protocol_version_behind_and_one_ahead_still_sync() {
    let mut sim: Sim = Sim::new(7).traced();
    sim.add_node(hub_config(), true);
    let mut behind = Config::new("behind");
    behind.protocol = PROTOCOL_VERSION - 1;
    let mut ahead = Config::new("ahead");
    ahead.protocol = PROTOCOL_VERSION + 1;
    for c in [behind, ahead] {
        let name = c.peer.to_string();
        sim.add_node(c, false);
        sim.connect(&name, "hub", None);
    }
    assert!(sim
        .trace
        .iter()
        .any(|l| l.starts_with("hub -> behind  welcome")
            && l.contains(&format!("protocol={}", PROTOCOL_VERSION - 1))));
    assert!(sim
        .trace
        .iter()
        .any(|l| l.starts_with("hub -> ahead  welcome")
            && l.contains(&format!("protocol={PROTOCOL_VERSION}"))));
    sim.edit("behind", "notes", "from-behind");
    sim.edit("ahead", "notes", "from-ahead");
    sim.advance(3_000);
    let hub = sorted(content(&sim, "hub", "notes"));
    assert_eq!(hub, vec!["from-ahead", "from-behind"]);
    for c in ["behind", "ahead"] {
        assert_eq!(sorted(content(&sim, c, "notes")), hub, "{c}");
    }
    // The newest message (going-away, protocol 4: the hub drains) goes on
    // the newer peer's connection only; the older one learns when its
    // connection closes.
    sim.feed(
        "hub",
        docweave_shell::Input::Drain {
            reason: "restarting".into(),
            retry_after_ms: 0,
        },
    );
    sim.run();
    assert!(sim
        .trace
        .iter()
        .any(|l| l.starts_with("hub -> ahead  going-away")));
    assert!(!sim
        .trace
        .iter()
        .any(|l| l.starts_with("hub -> behind  going-away")));
    insta::assert_snapshot!(sim.trace_text());
}
