//! Properties of the core and of the simulator, checked with quickcheck on
//! fixed seeds: update is total and deterministic, decoding never panics,
//! simulated runs are reproducible, and listeners lose no strand when
//! responses are lost. (The random schedules over real nodes are in
//! `simulation.rs`.)

use docweave_core::{
    decode, update, Access, AckStatus, BatchId, ChannelId, ChannelKind, Clock, Cmd, Config, DocId,
    DocMeta, Ephemeral, Filter, Hello, ImportId, ImportOutcome, Limits, ListenerId, Message, Model,
    Msg, Namespace, Pattern, Payload, PeerId, PeerKind, RemoteAddr, Reply, Revision,
    RevisionStatus, Rules, Strand, VersionVector, Welcome, PROTOCOL_VERSION,
};
use docweave_shell::{DocEngine, LoroEngine};
use docweave_tests::schedule::{run, Schedule};
use docweave_tests::Sim;
use quickcheck::{Arbitrary, Gen, QuickCheck};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

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
    // The core never reads document bytes: any bytes do.
    Payload::new(Vec::<u8>::arbitrary(g))
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
        8 => Msg::Tick,
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

/// A run of arbitrary inputs, each with the time it arrives; shrinks by
/// dropping inputs. Most runs open channels and complete handshakes
/// first, so the handlers behind the handshake are reached.
#[derive(Clone, Debug)]
struct Inputs(Vec<(u64, Msg)>);

fn opening(g: &mut Gen) -> Vec<Msg> {
    let mut out = vec![Msg::ChannelAdded {
        channel: ChannelId(0),
        kind: ChannelKind::Storage,
        remote: None,
    }];
    for ch in 1..=3 {
        out.push(Msg::ChannelAdded {
            channel: ChannelId(ch),
            kind: ChannelKind::Network,
            remote: None,
        });
        out.push(Msg::Received {
            channel: ChannelId(ch),
            message: Message::Hello(Hello {
                peer: PeerId::new(pick(g, &["p1", "p2", "p3"])),
                name: "n".into(),
                kind: PeerKind::User,
                protocol: PROTOCOL_VERSION,
                token: Some("t".into()),
                clock: Clock(0),
            }),
        });
    }
    out
}

impl Arbitrary for Inputs {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = g.size();
        let mut msgs = if small(g, 9) < 8 {
            opening(g)
        } else {
            Vec::new()
        };
        msgs.extend((0..n).map(|_| msg(g)));
        let mut now = 0u64;
        let timed = msgs
            .into_iter()
            .map(|m| {
                // Mostly close together, sometimes after a long quiet spell.
                now += if small(g, 20) == 0 {
                    small(g, 120_000)
                } else {
                    small(g, 50)
                };
                (now, m)
            })
            .collect();
        Inputs(timed)
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

/// Feeds the inputs; returns every command and whether a network channel
/// was established at some point.
fn run_inputs(inputs: &[(u64, Msg)]) -> (Vec<Cmd>, bool) {
    let mut model = Model::new(config());
    let mut all = Vec::new();
    let mut established = false;
    for (now, m) in inputs {
        let (next, cmds) = update(model, *now, m.clone());
        model = next;
        if let Err(e) = model.check_indexes() {
            panic!("after {m:?}: {e}");
        }
        all.extend(cmds);
        established |= (1..=3).any(|c| model.channel_peer(ChannelId(c)).is_some());
    }
    (all, established)
}

static RUNS: AtomicU64 = AtomicU64::new(0);
static ESTABLISHED: AtomicU64 = AtomicU64::new(0);

fn prop_update_never_panics_on_arbitrary_inputs(inputs: Inputs) -> bool {
    let (_, established) = run_inputs(&inputs.0);
    RUNS.fetch_add(1, Ordering::Relaxed);
    if established {
        ESTABLISHED.fetch_add(1, Ordering::Relaxed);
    }
    true
}

#[test]
fn update_never_panics_on_arbitrary_inputs() {
    check(
        1,
        1000,
        prop_update_never_panics_on_arbitrary_inputs as fn(Inputs) -> bool,
    );
    let (runs, established) = (
        RUNS.load(Ordering::Relaxed),
        ESTABLISHED.load(Ordering::Relaxed),
    );
    println!("{established} of {runs} random runs reached an established channel");
    assert!(
        established * 2 > runs,
        "only {established} of {runs} runs got past the handshake"
    );
}

fn prop_decode_never_panics_on_arbitrary_bytes(bytes: Vec<u8>, header: bool) -> bool {
    let mut framed = bytes.clone();
    if header {
        let mut h = vec![docweave_core::FRAME_VERSION, 0];
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
    // Outputs that do not serialize fail the property, not compare equal.
    let a = serde_json::to_vec(&run_inputs(&inputs.0).0).unwrap();
    let b = serde_json::to_vec(&run_inputs(&inputs.0).0).unwrap();
    !a.is_empty() && a == b
}

#[test]
fn same_inputs_give_byte_identical_outputs() {
    check(
        3,
        200,
        prop_same_inputs_give_byte_identical_outputs as fn(Inputs) -> bool,
    );
}

#[test]
fn a_simulated_run_is_identical_each_time_for_its_seed() {
    for seed in 0..20u64 {
        let s = Schedule::generate(0xd00d_0000 + seed);
        let trace = |s: &Schedule| {
            let mut sim: Sim = Sim::new(s.seed).traced();
            sim.add_node(Config::new("hub0"), true);
            sim.add_node(Config::new("c0"), false);
            sim.connect("c0", "hub0", None);
            sim.edit("c0", "d0", "x");
            sim.advance(5_000);
            let outcome = run::<LoroEngine>(s);
            (
                sim.trace_text(),
                outcome.virtual_ms,
                format!("{:?}", outcome.failures),
            )
        };
        let (first, again) = (trace(&s), trace(&s));
        assert!(
            first.0.lines().count() > 10,
            "an empty trace proves nothing"
        );
        assert_eq!(first, again, "seed {}", s.seed);
    }
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
        let n = g.size() / 4;
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
    let mut sim: Sim = Sim::new(s.seed);
    sim.add_node(Config::new("hub"), true);
    sim.add_node(Config::new("writer"), false);
    sim.connect("writer", "hub", None);
    sim.raw_connect("reader", "hub");
    sim.raw_listener("reader");
    let send = |sim: &mut Sim, m: Message| sim.raw_say("reader", m);
    let engine = LoroEngine;
    let mut mirror: BTreeMap<DocId, loro::LoroDoc> = BTreeMap::new();
    let mut rng = docweave_tests::rng::Rng::new(s.seed | 1);
    let mut round = |sim: &mut Sim, mirror: &mut BTreeMap<DocId, loro::LoroDoc>, lossy: bool| {
        sim.raw_inbox.clear();
        send(
            sim,
            Message::ListenerPull {
                id: ListenerId(1),
                limit: u32::from(s.limit),
            },
        );
        let got: Vec<Message> = sim.raw_inbox.remove("reader").unwrap_or_default();
        if lossy && rng.below(100) < u64::from(s.loss) {
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
            let d = mirror
                .entry(st.doc.clone())
                .or_insert_with(|| engine.create(9));
            let status = match engine.import(d, st.data.as_bytes()) {
                Ok(ImportOutcome::Applied { .. }) => RevisionStatus::Ok,
                Ok(ImportOutcome::Pending { .. }) => RevisionStatus::MissingDependencies,
                _ => RevisionStatus::Invalid,
            };
            revisions.push(Revision {
                doc: st.doc.clone(),
                version: engine.version(d),
                clock: st.clock,
                status,
            });
        }
        if !(lossy && rng.below(100) < u64::from(s.loss)) {
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
    let ids: Vec<DocId> = sim
        .model("hub")
        .map(|m| m.doc_ids().cloned().collect())
        .unwrap_or_default();
    ids.iter().all(|id| {
        let hub = sim.content("hub", id.as_str()).unwrap_or_default();
        let mirrored = mirror
            .get(id)
            .map(<LoroEngine as docweave_tests::SimEngine>::values)
            .unwrap_or_default();
        hub.is_empty() || hub == mirrored
    })
}

#[test]
fn listeners_lose_no_strand_across_lost_responses() {
    check(
        8,
        100,
        prop_listeners_lose_no_strand_across_lost_responses as fn(ListenerScript) -> bool,
    );
}
