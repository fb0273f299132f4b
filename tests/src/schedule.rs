//! Random schedules for the simulator, and the properties every run keeps.
//!
//! A schedule is drawn from one seed: 1 or 2 hubs (with stores, the second
//! syncing with the first, or in half of the two-hub schedules sharing the
//! first one's store as servers on one PostgreSQL do), 2 to 8 clients (some with stores), a few
//! documents, network and store faults, and a list of steps (edits,
//! presence, deletions, partitions, crashes, short visits by peers that then
//! leave for good, time), in a third of them a backend that follows the
//! first hub through a listener, and in a third of those over Loro documents
//! one or two Loro-protocol clients through the real `/loro` session code. After the steps the network heals, faults
//! stop and the run settles; then the properties are checked.

use crate::faulty_store::{Backing, StoreFaults};
use crate::rng::Rng;
use crate::sim::{Coverage, Faults, Sim, SimEngine};
use docweave_core::{Config, DocId, Event, PeerKind};
use std::collections::BTreeSet;

/// One step of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A client appends to a document.
    Edit {
        /// Client index.
        client: usize,
        /// Document index.
        doc: usize,
    },
    /// A client deletes a document.
    Delete {
        /// Client index.
        client: usize,
        /// Document index.
        doc: usize,
    },
    /// A client sets presence on a document.
    Presence {
        /// Client index.
        client: usize,
        /// Document index.
        doc: usize,
    },
    /// A client is cut from its hub.
    Partition {
        /// Client index.
        client: usize,
    },
    /// A client may reach its hub again.
    Heal {
        /// Client index.
        client: usize,
    },
    /// The second hub is cut from the first (with two hubs; on a shared
    /// store, the store's announcements are lost instead).
    PartitionHubs,
    /// The hubs may reach each other again.
    HealHubs,
    /// A node crashes (store jobs not yet run are lost) and restarts.
    Crash {
        /// Node name.
        node: String,
    },
    /// A peer visits: connects to the first hub, edits, and leaves for good.
    Visit {
        /// Document index.
        doc: usize,
    },
    /// Time passes.
    Advance {
        /// Milliseconds.
        ms: u64,
    },
}

/// What a Loro-protocol client does beside a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoroStep {
    /// It appends to a document.
    Edit {
        /// Member index.
        member: usize,
        /// Document index.
        doc: usize,
    },
    /// Its connection drops; it connects again and joins its rooms again.
    Drop {
        /// Member index.
        member: usize,
    },
}

/// A whole schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The seed it was drawn from.
    pub seed: u64,
    /// Hubs (1 or 2).
    pub hubs: usize,
    /// Clients, and whether each has a store.
    pub clients: Vec<bool>,
    /// Documents.
    pub docs: usize,
    /// Network faults during the steps.
    pub net: Faults,
    /// Store faults during the steps.
    pub store: StoreFaults,
    /// Milliseconds each store job takes, per node (hubs first, then clients).
    pub store_delays: Vec<u64>,
    /// The steps.
    pub steps: Vec<Step>,
    /// Frames larger than this cross as chunk frames: small in a third of
    /// the schedules, so chunking meets every fault (drawn from the seed
    /// alone, leaving the other draws of a seed as they were).
    pub chunk_size: usize,
    /// Most documents a node with a store keeps in memory: one in a fifth
    /// of the schedules, so eviction and reloading meet every fault (drawn
    /// from the seed alone, like `chunk_size`).
    pub max_docs: usize,
    /// Milliseconds each read a node lets run beside its other store jobs
    /// takes (a replica read back after eviction), times one to three, so
    /// such answers overtake each other and the writes; 0 in half the
    /// schedules: they run in order (from the seed alone).
    pub read_delay: u64,
    /// The nodes' memory budget for replicas: 64 KiB (three or four small
    /// documents; the others sleep as their bytes or go) in a
    /// quarter of the schedules (from the seed alone).
    pub memory_budget: usize,
    /// How long a node's replica may stay unused before it sleeps as its
    /// bytes: 300 ms to 3 s in a sixth of the schedules, else never (from
    /// the seed alone; each sleep and wake exports and imports the whole
    /// document: in every schedule, the runs took 70% longer).
    pub sleep_after_ms: u64,
    /// Idle documents whose metadata nodes keep in memory: one to three
    /// in a fifth of the schedules (the rest is forgotten and read back
    /// from the store on demand), else all (from the seed alone).
    pub idle_metadata: usize,
    /// Clients that reach their hub by HTTP polling, with their poll
    /// interval in milliseconds (from the seed alone).
    pub polling: Vec<(usize, u64)>,
    /// A backend follows the first hub through a listener, pulling after
    /// every step; its mirror must end equal to the hub (from the seed alone).
    pub listener: bool,
    /// With two hubs: the second shares the first's store (and the hubs
    /// learn of each other's writes through it, not by syncing) (from the
    /// seed alone).
    pub shared_store: bool,
    /// Loro-protocol clients (through the real `/loro` session, under
    /// virtual time), in a third of the schedules over Loro documents, and
    /// what each does beside each step (from the seed alone).
    pub loro_members: usize,
    /// See `loro_members`: one entry per step.
    pub loro_steps: Vec<Option<LoroStep>>,
}

fn hub_name(i: usize) -> String {
    format!("hub{i}")
}

fn client_name(i: usize) -> String {
    format!("c{i}")
}

fn member_name(i: usize) -> String {
    format!("loro{i}")
}

fn doc_name(i: usize) -> String {
    format!("d{i}")
}

impl Schedule {
    /// Draws a schedule from a seed.
    pub fn generate(seed: u64) -> Self {
        let mut r = Rng::new(seed);
        // Knobs added later draw from their own generator, so the draws of
        // `r` (and the schedules of seeds kept as regressions) stay what
        // they were, while neighbouring seeds still differ in them.
        let mut later = Rng::new(seed ^ 0x1a7e_4b0b_5eed_0001);
        let amnesia = later.below(4) == 0;
        let polls = later.below(4) == 0;
        let poll_every = 50 + later.below(450);
        let listener = later.below(3) == 0;
        let shared_store = later.below(2) == 0;
        let hubs = 1 + r.below(2) as usize;
        let n = 2 + r.below(7) as usize;
        let clients: Vec<bool> = (0..n).map(|_| r.below(2) == 0).collect();
        let docs = 1 + r.below(4) as usize;
        let faulty = r.below(3) > 0;
        let net = if faulty {
            Faults {
                drop: r.below(40) as u32,
                duplicate: r.below(40) as u32,
                reorder: r.below(40) as u32,
                jitter_ms: r.below(10),
            }
        } else {
            Faults::default()
        };
        let store = if r.below(2) == 0 {
            StoreFaults {
                append: r.below(60) as u32,
                load: r.below(60) as u32,
                feed: r.below(60) as u32,
                save: r.below(60) as u32,
                purge: r.below(60) as u32,
                // From the seed alone: the draws above stay what they were.
                append_after_commit: (seed >> 16) as u32 % 60,
                compact: 0,
                startup: (seed >> 24) as u32 % 300,
                amnesia: if amnesia { 500 } else { 0 },
            }
        } else {
            StoreFaults::default()
        };
        let slow = r.below(3) == 0;
        let store_delays = (0..hubs + n)
            .map(|_| if slow { 1 + r.below(40) } else { 1 })
            .collect();
        let count = 5 + r.below(30);
        let mut steps = Vec::new();
        let mut deletes = 0;
        for _ in 0..count {
            let client = r.below(n as u64) as usize;
            let doc = r.below(docs as u64) as usize;
            let step = match r.below(100) {
                0..=44 => Step::Edit { client, doc },
                45..=51 => Step::Presence { client, doc },
                52..=59 => Step::Partition { client },
                60..=67 => Step::Heal { client },
                68..=73 => Step::Crash {
                    node: client_name(client),
                },
                74..=76 => Step::Crash {
                    node: hub_name(r.below(hubs as u64) as usize),
                },
                77..=81 => Step::Visit { doc },
                82..=83 if deletes == 0 && docs > 1 => {
                    deletes += 1;
                    Step::Delete { client, doc }
                }
                84..=86 if hubs > 1 => Step::PartitionHubs,
                87..=89 if hubs > 1 => Step::HealHubs,
                _ => Step::Advance {
                    ms: 1 + r.below(3_000),
                },
            };
            steps.push(step);
        }
        // Loro clients draw from a generator of their own, too.
        let mut lr = Rng::new(seed ^ 0x10a0_5e55_0000_0002);
        let loro_members = if lr.below(3) == 0 {
            1 + lr.below(2) as usize
        } else {
            0
        };
        let loro_steps = steps
            .iter()
            .map(|_| {
                if loro_members == 0 {
                    return None;
                }
                let member = lr.below(loro_members as u64) as usize;
                match lr.below(10) {
                    0..=3 => Some(LoroStep::Edit {
                        member,
                        doc: lr.below(docs as u64) as usize,
                    }),
                    4 => Some(LoroStep::Drop { member }),
                    _ => None,
                }
            })
            .collect();
        Self {
            seed,
            hubs,
            clients,
            docs,
            net,
            store,
            store_delays,
            steps,
            chunk_size: if seed % 3 == 0 {
                48 + (seed >> 8) as usize % 400
            } else {
                docweave_shell::NodeOptions::default().chunk_size
            },
            max_docs: if (seed >> 4) % 5 == 0 { 1 } else { usize::MAX },
            memory_budget: if (seed >> 14) % 4 == 0 {
                64 * 1024
            } else {
                usize::MAX
            },
            // Low bits: 400 consecutive seeds (a fixed set) differ only there.
            sleep_after_ms: if (seed / 7) % 6 == 0 {
                300 + (seed % 97) * 28
            } else {
                0
            },
            idle_metadata: if (seed / 11) % 5 == 0 {
                1 + (seed % 3) as usize
            } else {
                0
            },
            read_delay: if (seed >> 11) % 2 == 0 {
                20 + (seed >> 13) % 300
            } else {
                0
            },
            // A quarter of the schedules: every other client polls.
            polling: if polls {
                (0..n)
                    .filter(|i| i % 2 == 0)
                    .map(|i| (i, poll_every))
                    .collect()
            } else {
                Vec::new()
            },
            listener,
            shared_store: shared_store && hubs > 1,
            loro_members,
            loro_steps,
        }
    }
}

/// How a run went.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Every property that did not hold, in words.
    pub failures: Vec<String>,
    /// Properties that did not hold for a document whose store lost a write
    /// it had said was durable: the store's fault, reported, not failed.
    pub store_faults: Vec<String>,
    /// What the nodes were fed.
    pub coverage: Coverage,
    /// Virtual milliseconds the run took.
    pub virtual_ms: u64,
}

/// Runs a schedule over real nodes with documents of `E` and checks every
/// property: convergence, no acknowledged change lost, no echo, no
/// resurrection, bounded memory for departed peers.
pub fn run<E: SimEngine>(s: &Schedule) -> Outcome {
    let mut sim: Sim<E> = Sim::new(s.seed);
    // DOCWEAVE_TRACE=1 prints the whole run of a failing schedule.
    let tracing = std::env::var_os("DOCWEAVE_TRACE").is_some();
    if tracing {
        sim = sim.traced();
    }
    sim.set_faults(s.net);
    sim.store_faults = s.store;
    sim.chunk_size = s.chunk_size;
    sim.max_docs = s.max_docs;
    sim.memory_budget = s.memory_budget;
    sim.sleep_after_ms = s.sleep_after_ms;
    sim.idle_metadata = s.idle_metadata;
    // Tens of thousands of events is a busy run; more is a livelock.
    sim.max_events = std::env::var("DOCWEAVE_MAX_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let delay = |i: usize| s.store_delays.get(i).copied().unwrap_or(1);
    for h in 0..s.hubs {
        let mut c = Config::new(&hub_name(h));
        c.kind = PeerKind::Service;
        if s.shared_store {
            // Servers on one store follow its feed (announced, and polled
            // as a safety net).
            c.timing.feed_poll_ms = 500;
            let store = sim.shared_store(&hub_name(0)).unwrap_or_default();
            sim.add_node_on(c, Some(Backing::Shared(store)));
        } else {
            sim.add_node(c, true);
        }
        sim.set_store_delay(&hub_name(h), delay(h));
        sim.set_read_delay(&hub_name(h), s.read_delay);
    }
    if !s.shared_store {
        for h in 1..s.hubs {
            sim.connect(&hub_name(h), &hub_name(0), None);
        }
    }
    for (i, every) in &s.polling {
        sim.polls(&client_name(*i), *every);
    }
    for (i, store) in s.clients.iter().enumerate() {
        sim.add_node(Config::new(&client_name(i)), *store);
        sim.set_store_delay(&client_name(i), delay(s.hubs + i));
        sim.set_read_delay(&client_name(i), s.read_delay);
        sim.connect(&client_name(i), &hub_name(i % s.hubs), None);
    }
    let members = if E::speaks_loro() { s.loro_members } else { 0 };
    let rooms: Vec<String> = (0..s.docs).map(doc_name).collect();
    for m in 0..members {
        sim.add_loro_member(&member_name(m), &hub_name(m % s.hubs), &rooms);
    }
    let mut mirror = s
        .listener
        .then(|| crate::listener_mirror::Mirror::start(&mut sim, &hub_name(0)));
    let mut visits = 0usize;
    let mut edits = 0usize;
    for (i, step) in s.steps.iter().enumerate() {
        match s.loro_steps.get(i).copied().flatten() {
            Some(LoroStep::Edit { member, doc }) if member < members => {
                edits += 1;
                let name = member_name(member);
                sim.loro_edit(&name, &doc_name(doc), &format!("{name}-{edits}"));
            }
            Some(LoroStep::Drop { member }) if member < members => {
                sim.loro_drop(&member_name(member))
            }
            _ => {}
        }
        match step {
            Step::Edit { client, doc } => {
                edits += 1;
                sim.edit_now(
                    &client_name(*client),
                    &doc_name(*doc),
                    &format!("{}-{edits}", client_name(*client)),
                );
            }
            Step::Delete { client, doc } => sim.delete(&client_name(*client), &doc_name(*doc)),
            Step::Presence { client, doc } => {
                sim.presence(&client_name(*client), &doc_name(*doc), "cursor", b"here")
            }
            Step::Partition { client } => {
                let hub = hub_name(client % s.hubs);
                sim.partition(&client_name(*client), &hub);
            }
            Step::Heal { client } => {
                let hub = hub_name(client % s.hubs);
                sim.heal(&client_name(*client), &hub);
            }
            Step::PartitionHubs if s.shared_store => sim.cut_announcements(true),
            Step::HealHubs if s.shared_store => sim.cut_announcements(false),
            Step::PartitionHubs => sim.partition(&hub_name(1), &hub_name(0)),
            Step::HealHubs => sim.heal(&hub_name(1), &hub_name(0)),
            Step::Crash { node } => sim.crash(node),
            Step::Visit { doc } => {
                let name = format!("v{visits}");
                visits += 1;
                sim.add_node(Config::new(&name), false);
                sim.connect(&name, &hub_name(0), None);
                edits += 1;
                sim.edit(&name, &doc_name(*doc), &format!("{name}-{edits}"));
                sim.advance(200);
                sim.depart(&name);
            }
            Step::Advance { ms } => sim.advance(*ms),
        }
        sim.advance(50);
        if let Some(m) = mirror.as_mut() {
            m.round(&mut sim, 3);
        }
    }
    settle(&mut sim);
    let mirrored = match mirror.as_mut() {
        Some(m) => {
            m.drain(&mut sim);
            m.differences(&sim, &deleted_anywhere(&sim))
        }
        None => Vec::new(),
    };
    let failures = check(&sim, s, mirrored);
    // A store that lost a write it said was durable breaks promises docweave
    // made on its word: what the loss explains (a failure about one of its
    // documents) is the store's fault, reported apart; anything else still
    // fails the run.
    let mut lost: BTreeSet<String> = sim
        .store_losses
        .iter()
        .map(|(_, d)| d.to_string())
        .collect();
    // A document that ended on a clock number the store had given before,
    // to a write it lost, is skipped by a peer that pulled past that number
    // (it cannot tell the two apart once the remote has moved beyond it).
    for (node, first, last) in &sim.reissued {
        if let Some(m) = sim.model(node) {
            for (doc, _, clock) in m.doc_summaries() {
                if (*first..=*last).contains(&clock) {
                    lost.insert(doc.to_string());
                }
            }
        }
    }
    let about_lost = |f: &String| {
        lost.iter().any(|d| {
            f.contains(&format!(" {d} "))
                || f.starts_with(&format!("{d}:"))
                || f.ends_with(&format!(" {d}"))
        })
    };
    let (store_faults, mut failures): (Vec<String>, Vec<String>) = if lost.is_empty() {
        (Vec::new(), failures)
    } else {
        failures.into_iter().partition(|f| about_lost(f))
    };
    if failures.len() == 1 && failures[0].starts_with("schedule ") {
        failures.clear();
    }
    if sim.events_done >= sim.max_events {
        failures.push(format!(
            "livelock: the run did not settle within {} events",
            sim.max_events
        ));
    }
    // Peers that left are forgotten once the linger time has passed.
    sim.advance(61_000);
    for h in 0..s.hubs {
        let name = hub_name(h);
        let dialed: BTreeSet<String> = if s.shared_store {
            BTreeSet::new()
        } else {
            (0..h).map(hub_name).collect()
        };
        if let Some(m) = sim.model(&name) {
            for (peer, connected, _) in m.peer_summaries() {
                if !connected && !dialed.contains(peer.as_str()) {
                    failures.push(format!("{name} still holds state for departed {peer}"));
                }
            }
        }
    }
    if tracing && !failures.is_empty() {
        eprintln!("{}", sim.trace_text());
    }
    Outcome {
        failures,
        store_faults,
        coverage: sim.coverage(),
        virtual_ms: sim.now,
    }
}

/// Heals the network, stops faults, and lets time pass until the nodes agree.
fn settle<E: SimEngine>(sim: &mut Sim<E>) {
    sim.set_faults(Faults::default());
    sim.clear_store_faults();
    sim.heal_all();
    for _ in 0..60 {
        sim.advance(3_000);
        if converged(sim).is_empty() {
            // Once more, for acknowledgements still on the way.
            sim.advance(3_000);
            return;
        }
    }
}

fn deleted_anywhere<E: SimEngine>(sim: &Sim<E>) -> BTreeSet<DocId> {
    sim.nodes
        .values()
        .flat_map(|n| n.events.iter())
        .filter_map(|e| match e {
            Event::DocDeleted { doc } => Some(doc.clone()),
            _ => None,
        })
        .collect()
}

/// Documents whose content differs between live nodes, in words.
fn converged<E: SimEngine>(sim: &Sim<E>) -> Vec<String> {
    let deleted = deleted_anywhere(sim);
    let live: Vec<&String> = sim
        .nodes
        .iter()
        .filter(|(_, n)| n.node.is_some())
        .map(|(k, _)| k)
        .collect();
    let members = sim.loro_members();
    let docs: BTreeSet<DocId> = live
        .iter()
        .filter_map(|n| sim.model(n))
        .flat_map(|m| m.doc_ids().cloned().collect::<Vec<_>>())
        .chain(members.values().flat_map(|m| {
            m.rooms()
                .into_iter()
                .filter(|r| m.values(r).is_some_and(|v| !v.is_empty()))
                .map(|r| DocId::new(&r))
        }))
        .filter(|d| !deleted.contains(d))
        .collect();
    let mut out = Vec::new();
    for doc in docs {
        // A document created but never written need not reach everyone.
        let written = live
            .iter()
            .any(|n| sim.content(n, doc.as_str()).is_some_and(|v| !v.is_empty()));
        let mut seen: Option<(String, Vec<String>)> = None;
        for n in &live {
            let values = sim.content(n, doc.as_str());
            let Some(values) = values else {
                if written {
                    out.push(format!("{n} does not hold {doc}"));
                }
                continue;
            };
            match &seen {
                None => seen = Some(((*n).clone(), values)),
                Some((first, v)) if *v != values => {
                    out.push(format!("{doc}: {first} has {v:?} but {n} has {values:?}"));
                }
                _ => {}
            }
        }
        // Loro clients hold what the nodes hold, in the same order.
        for (name, m) in members {
            if m.gone.contains(doc.as_str()) {
                continue;
            }
            let values = m.values(doc.as_str()).unwrap_or_default();
            match &seen {
                Some((first, v)) if *v != values => {
                    out.push(format!(
                        "{doc}: {first} has {v:?} but {name} has {values:?}"
                    ));
                }
                None if !values.is_empty() => {
                    out.push(format!("{doc}: only {name} holds it ({values:?})"));
                }
                _ => {}
            }
        }
    }
    out
}

fn check<E: SimEngine>(sim: &Sim<E>, s: &Schedule, mirrored: Vec<String>) -> Vec<String> {
    let mut failures = converged(sim);
    failures.extend(mirrored);
    let deleted = deleted_anywhere(sim);
    // No acknowledged change is lost, across crashes and store faults.
    for (name, n) in &sim.nodes {
        for e in &n.edits {
            let Some(by) = &e.acked_by else { continue };
            if deleted.contains(&e.doc) {
                continue;
            }
            let holders: Vec<&String> = sim
                .nodes
                .iter()
                .filter(|(_, x)| x.node.is_some())
                .map(|(k, _)| k)
                .collect();
            for h in holders {
                let has = sim
                    .content(h, e.doc.as_str())
                    .is_some_and(|v| v.contains(&e.value));
                if !has {
                    failures.push(format!(
                        "{}'s edit {} to {} was acknowledged by {by} but {h} lacks it",
                        name, e.value, e.doc
                    ));
                }
            }
        }
    }
    // No change a Loro client was acknowledged is lost either.
    for (name, m) in sim.loro_members() {
        for e in m
            .edits
            .iter()
            .filter(|e| e.acked && !deleted.contains(&e.doc))
        {
            let live = sim.nodes.iter().filter(|(_, x)| x.node.is_some());
            for (h, _) in live {
                let has = sim
                    .content(h, e.doc.as_str())
                    .is_some_and(|v| v.contains(&e.value));
                if !has {
                    failures.push(format!(
                        "{name}'s edit {} to {} was acknowledged but {h} lacks it",
                        e.value, e.doc
                    ));
                }
            }
        }
    }
    // Nothing is echoed to its source.
    failures.extend(sim.echoes.iter().cloned());
    // A deleted document never comes back where it was deleted (with a store).
    for (name, n) in &sim.nodes {
        let Some(model) = n.node.as_ref().map(|x| x.model()) else {
            continue;
        };
        if n.store.is_none() {
            continue;
        }
        for e in &n.events {
            if let Event::DocDeleted { doc } = e {
                if model.doc_version(doc).is_some() {
                    failures.push(format!("{doc} came back on {name} after its deletion"));
                }
            }
        }
    }
    if !failures.is_empty() {
        failures.insert(0, format!("schedule {s:?}"));
    }
    failures
}
