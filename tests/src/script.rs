//! Random scripts for the simulator: edits, opens, partitions, heals,
//! restarts, time and presence over a hub and three clients, with faults.

use crate::{Faults, Sim};
use docweave_core::{Config, PeerKind};
use quickcheck::{Arbitrary, Gen};

fn small(g: &mut Gen, max: u64) -> u64 {
    u64::arbitrary(g) % (max + 1)
}

/// One step of a script.
#[derive(Clone, Debug)]
pub enum Step {
    /// Node edits document.
    Edit(u8, u8),
    /// Node opens document.
    Open(u8, u8),
    /// Node is cut from the hub.
    Partition(u8),
    /// Node may reach the hub again.
    Heal(u8),
    /// Node is killed and restarted from its store.
    Restart(u8),
    /// Time passes (ms).
    Advance(u16),
    /// Node sets presence on document.
    Presence(u8, u8),
}

/// The nodes: a hub with a store, two clients with stores, one without.
pub const NODES: [&str; 4] = ["hub", "c1", "c2", "c3"];
/// The documents.
pub const DOCS: [&str; 3] = ["d0", "d1", "d2"];

impl Arbitrary for Step {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = (small(g, 3)) as u8;
        let d = (small(g, 2)) as u8;
        match small(g, 12) {
            0..=4 => Step::Edit(n, d),
            5 => Step::Open(n, d),
            6 => Step::Partition(n),
            7 => Step::Heal(n),
            8 => Step::Restart(n),
            9 | 10 => Step::Advance(u16::arbitrary(g) % 5_000),
            _ => Step::Presence(n, d),
        }
    }
}

/// Faults (drop, duplicate, reorder per mille), steps and a seed.
#[derive(Clone, Debug)]
pub struct Script {
    /// Drop, duplicate, reorder, per mille.
    pub faults: (u32, u32, u32),
    /// The steps.
    pub steps: Vec<Step>,
    /// Seed of the simulator's faults.
    pub seed: u64,
}

impl Arbitrary for Script {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = g.size();
        Script {
            faults: (
                small(g, 150) as u32,
                small(g, 100) as u32,
                small(g, 300) as u32,
            ),
            steps: (0..n).map(|_| Step::arbitrary(g)).collect(),
            seed: u64::arbitrary(g),
        }
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let me = self.clone();
        let faulty = me.faults != (0, 0, 0);
        let no_faults = Script {
            faults: (0, 0, 0),
            ..me.clone()
        };
        let shorter = (0..me.steps.len()).rev().map(move |i| {
            let mut s = me.clone();
            s.steps.remove(i);
            s
        });
        Box::new(
            std::iter::once(no_faults)
                .filter(move |_| faulty)
                .chain(shorter),
        )
    }
}

/// Runs a script on a fresh simulation (faults still on at the end).
pub fn build(script: &Script) -> Sim {
    run(Sim::new(script.seed), script)
}

/// Runs a script on the given simulation (traced, for instance).
pub fn run(mut sim: Sim, script: &Script) -> Sim {
    let mut hub = Config::new("hub");
    hub.kind = PeerKind::Service;
    sim.add_node(hub, 100, true);
    for (i, c) in NODES.iter().enumerate().skip(1) {
        // c3 keeps nothing on disk: a restart forgets all it had not pushed.
        sim.add_node(Config::new(c), i as u64, *c != "c3");
        sim.connect(c, "hub", None);
    }
    sim.faults = Faults {
        drop: script.faults.0,
        duplicate: script.faults.1,
        reorder: script.faults.2,
    };
    for step in &script.steps {
        match step {
            Step::Edit(n, d) => {
                sim.edit(NODES[*n as usize], DOCS[*d as usize], &format!("{n}{d}"));
            }
            Step::Open(n, d) => sim.open(NODES[*n as usize], DOCS[*d as usize]),
            Step::Partition(n) if *n > 0 => sim.partition(NODES[*n as usize], "hub"),
            Step::Heal(n) if *n > 0 => sim.heal(NODES[*n as usize], "hub"),
            Step::Restart(n) => sim.restart(NODES[*n as usize]),
            Step::Advance(ms) => sim.advance(u64::from(*ms)),
            Step::Presence(n, d) => {
                sim.presence(NODES[*n as usize], DOCS[*d as usize], "cursor", b"here")
            }
            _ => {}
        }
    }
    sim
}
