//! Properties of the core, checked with quickcheck on fixed seeds so CI is
//! reproducible: totality, determinism, convergence under faults, durability
//! across restarts, no echo, and at-least-once listener delivery.

use docweave_core::{
    decode, update, Access, AckStatus, BatchId, ChannelId, ChannelKind, Clock, Cmd, Config, DocId,
    DocMeta, Ephemeral, Filter, Hello, ImportId, ImportOutcome, Limits, ListenerId, Message, Model,
    Msg, Namespace, Pattern, Payload, PeerId, PeerKind, RemoteAddr, Reply, Revision,
    RevisionStatus, Rules, Strand, VersionVector, Welcome, PROTOCOL_VERSION,
};
use docweave_tests::script::{build, Script, NODES};
use docweave_tests::{Faults, Sim, ToyDoc};
use quickcheck::{Arbitrary, Gen, QuickCheck};
use std::collections::BTreeMap;

fn check<A: quickcheck::Testable>(seed: u64, tests: u64, prop: A) {
    QuickCheck::new()
        .rng(Gen::from_size_and_seed(40, seed))
        .tests(tests)
        .max_tests(tests * 10)
        .quickcheck(prop);
}

// ---------- arbitrary inputs for the core ----------

fn pick<T: Clone>(g: &mut Gen, items: &[T]) -> T {
    g.choose(items).cloned().unwrap_or_else(|| items[0].clone())
}

fn small(g: &mut Gen, max: u64) -> u64 {
    u64::arbitrary(g) % (max + 1)
}

fn doc(g: &mut Gen) -> DocId {
    DocId::new(pick(g, &["a", "b", "c", "../x", "", "d/e", "*"]))
}

fn peer(g: &mut Gen) -> PeerId {
    PeerId::new(pick(g, &["p1", "p2", "p3", "store", ""]))
}

fn version(g: &mut Gen) -> VersionVector {
    let n = small(g, 3);
    VersionVector::from_entries((0..n).map(|_| (small(g, 3), small(g, 5))))
}

fn payload(g: &mut Gen) -> Payload {
    let mut d = ToyDoc::default();
    for _ in 0..small(g, 3) {
        d.edit(small(g, 3), "v");
    }
    if bool::arbitrary(g) {
        d.export(None)
    } else {
        Payload::new(Vec::<u8>::arbitrary(g))
    }
}

fn filter(g: &mut Gen) -> Filter {
    if bool::arbitrary(g) {
        Filter::all()
    } else {
        Filter::docs((0..small(g, 2)).map(|_| doc(g)))
    }
}

fn message(g: &mut Gen) -> Message {
    let protocol = if small(g, 4) == 0 {
        PROTOCOL_VERSION + 1
    } else {
        PROTOCOL_VERSION
    };
    let token = pick(g, &[None, Some("t".to_string()), Some("bad".to_string())]);
    match small(g, 20) {
        0 => Message::Hello(Hello {
            peer: peer(g),
            name: "n".into(),
            kind: PeerKind::User,
            protocol,
            token,
            clock: Clock(small(g, 9)),
        }),
        1 => Message::Welcome(Welcome {
            peer: peer(g),
            name: "n".into(),
            kind: PeerKind::Service,
            protocol,
            clock: Clock(small(g, 9)),
        }),
        2 | 3 => Message::SyncRequest {
            doc: doc(g),
            version: version(g),
            bidirectional: bool::arbitrary(g),
        },
        4 | 5 => {
            let reply = match small(g, 3) {
                0 => Reply::UpToDate,
                1 => Reply::Snapshot(payload(g)),
                2 => Reply::Delta(payload(g)),
                _ => Reply::Unavailable,
            };
            Message::SyncResponse {
                doc: doc(g),
                batch: BatchId(small(g, 9)),
                reply,
                version: version(g),
            }
        }
        6 | 7 => Message::Update {
            doc: doc(g),
            batch: BatchId(small(g, 9)),
            data: payload(g),
            version: version(g),
        },
        8 => Message::Ack {
            batch: BatchId(small(g, 12)),
            status: pick(
                g,
                &[
                    AckStatus::Ok,
                    AckStatus::Invalid,
                    AckStatus::MissingDependencies,
                ],
            ),
            clock: Some(Clock(small(g, 9))),
        },
        9 => Message::Subscribe { filter: filter(g) },
        10 => Message::ChangesSince {
            clock: Clock(small(g, 9)),
            filter: filter(g),
        },
        11 => Message::Changes {
            docs: (0..small(g, 2))
                .map(|_| docweave_core::ChangedDoc {
                    doc: doc(g),
                    version: version(g),
                    clock: Clock(small(g, 9)),
                })
                .collect(),
            up_to: Clock(small(g, 9)),
            more: bool::arbitrary(g),
        },
        12 => Message::Delete { doc: doc(g) },
        13 => Message::Ephemeral(Ephemeral {
            doc: doc(g),
            namespace: Namespace::new("cursor"),
            origin: peer(g),
            hops: u8::arbitrary(g) % 3,
            ttl_ms: u32::arbitrary(g),
            data: payload(g),
        }),
        14 => Message::ListenerRegister {
            filter: filter(g),
            id: pick(g, &[None, Some(ListenerId(1)), Some(ListenerId(0))]),
        },
        15 => Message::ListenerPull {
            id: ListenerId(small(g, 2)),
            limit: u32::arbitrary(g),
        },
        16 => Message::ListenerAck {
            id: ListenerId(small(g, 2)),
            revisions: vec![Revision {
                doc: doc(g),
                version: version(g),
                clock: Clock(0),
                status: RevisionStatus::Ok,
            }],
        },
        17 => Message::Push {
            strands: (0..small(g, 2))
                .map(|_| Strand {
                    doc: doc(g),
                    meta: DocMeta::default(),
                    since: version(g),
                    data: payload(g),
                    version: version(g),
                    clock: Clock(0),
                })
                .collect(),
        },
        18 => Message::DirectoryRequest { filter: filter(g) },
        19 => Message::NewDocs {
            docs: vec![docweave_core::DocInfo {
                doc: doc(g),
                meta: DocMeta::default(),
            }],
        },
        _ => Message::Error {
            code: docweave_core::ErrorCode::TooLarge,
            message: "x".into(),
        },
    }
}

fn msg(g: &mut Gen) -> Msg {
    let channel = ChannelId(small(g, 4));
    match small(g, 16) {
        0..=5 => Msg::Received {
            channel,
            message: message(g),
        },
        6 => Msg::ChannelAdded {
            channel,
            kind: pick(g, &[ChannelKind::Network, ChannelKind::Storage]),
            remote: pick(g, &[None, Some(RemoteAddr::new("hub"))]),
        },
        7 => Msg::ChannelRemoved { channel },
        8 => Msg::Tick {
            now: small(g, 120_000),
        },
        9 => Msg::Imported {
            id: ImportId(small(g, 6)),
            outcome: match small(g, 2) {
                0 => ImportOutcome::Applied {
                    version: version(g),
                },
                1 => ImportOutcome::Pending {
                    version: version(g),
                },
                _ => ImportOutcome::Failed {
                    reason: "bad".into(),
                },
            },
        },
        10 => Msg::LocalChange {
            doc: doc(g),
            version: version(g),
        },
        11 => Msg::OpenDoc {
            doc: doc(g),
            meta: DocMeta::default(),
        },
        12 => Msg::DeleteDoc { doc: doc(g) },
        13 => Msg::SetPresence {
            doc: doc(g),
            namespace: Namespace::new("cursor"),
            data: payload(g),
        },
        14 => Msg::Connect {
            remote: RemoteAddr::new("hub"),
            token: None,
            filter: filter(g),
        },
        15 => Msg::FrameRejected {
            channel,
            reason: "garbage".into(),
        },
        _ => Msg::ConnectFailed {
            remote: RemoteAddr::new("hub"),
        },
    }
}

/// A run of arbitrary inputs; shrinks by dropping inputs.
#[derive(Clone, Debug)]
struct Inputs(Vec<Msg>);

impl Arbitrary for Inputs {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = g.size();
        Inputs((0..n).map(|_| msg(g)).collect())
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let v = self.0.clone();
        Box::new((0..v.len()).rev().map(move |i| {
            let mut w = v.clone();
            w.remove(i);
            Inputs(w)
        }))
    }
}

fn config() -> Config {
    let mut c = Config::new("node");
    c.tokens = vec!["t".into()];
    c.rules = Rules::allow_all().with(
        Pattern::Exact("p3".into()),
        Pattern::Prefix("a".into()),
        Access::READ,
    );
    c
}

fn run_inputs(inputs: &[Msg]) -> Vec<Cmd> {
    let mut model = Model::new(config());
    let mut all = Vec::new();
    for m in inputs {
        let (next, cmds) = update(model, m.clone());
        model = next;
        all.extend(cmds);
    }
    all
}

fn prop_update_never_panics_on_arbitrary_inputs(inputs: Inputs) -> bool {
    run_inputs(&inputs.0);
    true
}

#[test]
fn update_never_panics_on_arbitrary_inputs() {
    check(
        1,
        1000,
        prop_update_never_panics_on_arbitrary_inputs as fn(Inputs) -> bool,
    );
}

fn prop_decode_never_panics_on_arbitrary_bytes(bytes: Vec<u8>, header: bool) -> bool {
    let mut framed = bytes.clone();
    if header {
        let mut h = vec![1u8, 0];
        h.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        h.extend_from_slice(&bytes);
        framed = h;
    }
    let _ = decode(&framed, &Limits::default());
    true
}

#[test]
fn decode_never_panics_on_arbitrary_bytes() {
    check(
        2,
        1000,
        prop_decode_never_panics_on_arbitrary_bytes as fn(Vec<u8>, bool) -> bool,
    );
}

fn prop_same_inputs_give_byte_identical_outputs(inputs: Inputs) -> bool {
    let a = serde_json::to_vec(&run_inputs(&inputs.0)).unwrap_or_default();
    let b = serde_json::to_vec(&run_inputs(&inputs.0)).unwrap_or_default();
    a == b
}

#[test]
fn same_inputs_give_byte_identical_outputs() {
    check(
        3,
        200,
        prop_same_inputs_give_byte_identical_outputs as fn(Inputs) -> bool,
    );
}

// ---------- scripted simulations with faults ----------

fn contents(sim: &Sim, node: &str) -> BTreeMap<String, Vec<String>> {
    sim.nodes[node]
        .docs
        .iter()
        .filter(|(_, d)| !d.is_empty())
        .map(|(k, d)| (k.to_string(), d.content()))
        .collect()
}

/// Heals everything, stops the faults and lets time pass until every node
/// holds the same content (or gives up after ten simulated minutes).
fn heal_and_settle(sim: &mut Sim) -> bool {
    sim.heal_all();
    sim.faults = Faults::default();
    for _ in 0..40 {
        sim.advance(5_000);
        if std::env::var("SIM_DEBUG").is_ok() {
            eprintln!(
                "t={} frames={} trace={}",
                sim.now,
                sim.frames,
                sim.trace.len()
            );
        }
        let hub = contents(sim, "hub");
        if NODES.iter().all(|n| contents(sim, n) == hub) {
            return true;
        }
    }
    false
}

fn prop_nodes_converge_after_faults_and_heal(script: Script) -> bool {
    let mut sim = build(&script);
    let ok = heal_and_settle(&mut sim);
    if !ok {
        for n in NODES {
            eprintln!("{n}: {:?}", contents(&sim, n));
        }
    }
    ok
}

#[test]
fn nodes_converge_after_faults_and_heal() {
    check(
        4,
        400,
        prop_nodes_converge_after_faults_and_heal as fn(Script) -> bool,
    );
}

fn prop_acknowledged_changes_survive_restarts(script: Script) -> bool {
    let mut sim = build(&script);
    if !heal_and_settle(&mut sim) {
        return false;
    }
    NODES.iter().all(|n| {
        sim.nodes[*n].durable_ops.iter().all(|(doc, op)| {
            NODES
                .iter()
                .all(|m| sim.nodes[*m].docs.get(doc).is_some_and(|d| d.has(*op)))
        })
    })
}

#[test]
fn acknowledged_changes_survive_restarts() {
    check(
        5,
        200,
        prop_acknowledged_changes_survive_restarts as fn(Script) -> bool,
    );
}

fn prop_nothing_is_echoed_to_its_source(script: Script) -> bool {
    let mut sim = build(&script);
    heal_and_settle(&mut sim);
    sim.echoes.is_empty()
}

#[test]
fn nothing_is_echoed_to_its_source() {
    check(
        6,
        200,
        prop_nothing_is_echoed_to_its_source as fn(Script) -> bool,
    );
}

fn prop_simulation_runs_are_reproducible(script: Script) -> bool {
    let mut a = build(&script);
    let mut b = build(&script);
    heal_and_settle(&mut a);
    heal_and_settle(&mut b);
    NODES.iter().all(|n| contents(&a, n) == contents(&b, n)) && a.frames == b.frames
}

#[test]
fn simulation_runs_are_reproducible() {
    check(
        7,
        50,
        prop_simulation_runs_are_reproducible as fn(Script) -> bool,
    );
}

// ---------- listeners under lost responses ----------

#[derive(Clone, Debug)]
struct ListenerScript {
    edits: Vec<(u8, u8)>,
    limit: u8,
    loss: u8,
    seed: u64,
}

impl Arbitrary for ListenerScript {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = g.size();
        ListenerScript {
            edits: (0..n)
                .map(|_| (small(g, 3) as u8, small(g, 4) as u8))
                .collect(),
            limit: 1 + small(g, 3) as u8,
            loss: small(g, 60) as u8,
            seed: u64::arbitrary(g),
        }
    }
}

fn prop_listeners_lose_no_strand_across_lost_responses(s: ListenerScript) -> bool {
    let mut sim = Sim::new(s.seed);
    sim.add_node(Config::new("hub"), 100, true);
    sim.add_node(Config::new("writer"), 1, false);
    sim.connect("writer", "hub", None);
    sim.raw_connect("reader", "hub");
    let ch = sim.channel_of("hub", "reader").unwrap_or_default();
    let hello = Hello {
        peer: PeerId::new("reader"),
        name: "r".into(),
        kind: PeerKind::Bot,
        protocol: PROTOCOL_VERSION,
        token: None,
        clock: Clock(0),
    };
    let send = |sim: &mut Sim, m: Message| {
        sim.feed(
            "hub",
            Msg::Received {
                channel: ch,
                message: m,
            },
        );
        sim.run();
    };
    send(&mut sim, Message::Hello(hello));
    send(
        &mut sim,
        Message::ListenerRegister {
            filter: Filter::all(),
            id: None,
        },
    );
    let mut mirror: BTreeMap<DocId, ToyDoc> = BTreeMap::new();
    let mut rng = s.seed | 1;
    let mut lose = |p: u8| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % 100) < u64::from(p)
    };
    let mut round = |sim: &mut Sim, mirror: &mut BTreeMap<DocId, ToyDoc>, lossy: bool| -> bool {
        sim.raw_inbox.clear();
        send(
            sim,
            Message::ListenerPull {
                id: ListenerId(1),
                limit: u32::from(s.limit),
            },
        );
        let got: Vec<Message> = sim.raw_inbox.remove("reader").unwrap_or_default();
        if lossy && lose(s.loss) {
            return true; // the response was lost
        }
        let Some((strands, more)) = got.into_iter().find_map(|m| match m {
            Message::Strands { strands, more, .. } => Some((strands, more)),
            _ => None,
        }) else {
            return true;
        };
        let mut revisions = Vec::new();
        for st in &strands {
            let d = mirror.entry(st.doc.clone()).or_default();
            let status = match d.import(st.data.as_bytes()) {
                ImportOutcome::Applied { .. } => RevisionStatus::Ok,
                ImportOutcome::Pending { .. } => RevisionStatus::MissingDependencies,
                ImportOutcome::Failed { .. } => RevisionStatus::Invalid,
            };
            revisions.push(Revision {
                doc: st.doc.clone(),
                version: d.version(),
                clock: st.clock,
                status,
            });
        }
        if !(lossy && lose(s.loss)) {
            send(
                sim,
                Message::ListenerAck {
                    id: ListenerId(1),
                    revisions,
                },
            );
        }
        !strands.is_empty() || more
    };
    for (i, (d, n)) in s.edits.iter().enumerate() {
        let doc = format!("doc{d}");
        for k in 0..=*n {
            sim.edit("writer", &doc, &format!("{i}.{k}"));
        }
        round(&mut sim, &mut mirror, true);
    }
    // Lossless rounds until the listener has nothing more to pull.
    for _ in 0..200 {
        if !round(&mut sim, &mut mirror, false) {
            break;
        }
    }
    sim.nodes["hub"]
        .docs
        .iter()
        .all(|(id, d)| d.is_empty() || mirror.get(id).is_some_and(|m| m == d))
}

#[test]
fn listeners_lose_no_strand_across_lost_responses() {
    check(
        8,
        300,
        prop_listeners_lose_no_strand_across_lost_responses as fn(ListenerScript) -> bool,
    );
}
