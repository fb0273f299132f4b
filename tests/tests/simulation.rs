//! Random schedules over real nodes (see `docweave_tests::schedule`):
//! every run must converge, lose no acknowledged change, echo nothing,
//! resurrect nothing and forget departed peers, and a listener's mirror
//! must end equal to its hub.
//!
//! Each CI run checks a fixed set of seeds plus one fresh seed, printed;
//! `DOCWEAVE_SEED=<seed>` runs that one schedule (add `DOCWEAVE_SCHEDULES=n`
//! for n schedules from it, `DOCWEAVE_ENGINE=oplog` for operation logs,
//! `DOCWEAVE_TRACE=1` to print the run of a failing one).

use docweave_shell::{LoroEngine, OpLogEngine};
use docweave_tests::schedule::{run, Schedule};
use docweave_tests::{Coverage, Lines};

/// Prints past the test harness's capture (straight to stderr), so every
/// `cargo test` run shows its seeds, speed and coverage table.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}

fn env_u64(key: &str) -> Option<u64> {
    let v = std::env::var(key).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Runs `count` schedules from seeds `base, base+1, ...` and fails with the
/// first seed whose run broke a property.
fn schedules(label: &str, base: u64, count: u64, oplog: bool) -> Coverage {
    let started = std::time::Instant::now();
    let mut coverage = Coverage::default();
    let mut virtual_ms = 0u64;
    let (mut lying, mut explained) = (0u64, 0usize);
    for i in 0..count {
        let seed = base.wrapping_add(i);
        let s = Schedule::generate(seed);
        if std::env::var_os("DOCWEAVE_PROGRESS").is_some() {
            eprintln!("schedule {seed:#x}");
        }
        let outcome = if oplog {
            run::<OpLogEngine<Lines>>(&s)
        } else {
            run::<LoroEngine>(&s)
        };
        assert!(
            outcome.failures.is_empty(),
            "{label}: seed {seed:#x} broke a property (DOCWEAVE_SEED={seed:#x} reproduces it):\n{}",
            outcome.failures.join("\n")
        );
        coverage.add(&outcome.coverage);
        virtual_ms += outcome.virtual_ms;
        if !outcome.store_faults.is_empty() {
            lying += 1;
            explained += outcome.store_faults.len();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    report!(
        "{label}: {count} schedules from seed {base:#x} in {secs:.1} s ({:.0} schedules/s, {:.0} virtual s)",
        count as f64 / secs.max(1e-9),
        virtual_ms as f64 / 1000.0
    );
    if lying > 0 {
        report!(
            "  {lying} runs where a store lost a write it had called durable: {explained} broken promises, the store's fault"
        );
    }
    coverage
}

fn print_table(coverage: &Coverage) {
    report!("inputs to update, by kind:");
    for (k, v) in &coverage.inputs {
        report!("  {k:<18} {v:>9}");
    }
    report!("protocol messages received, by kind:");
    for (k, v) in &coverage.messages {
        report!("  {k:<18} {v:>9}");
    }
    report!("Loro-protocol messages of Loro clients, by kind:");
    for (k, v) in &coverage.loro {
        report!("  {k:<32} {v:>9}");
    }
}

/// Fresh seeds that once broke a property, kept as regressions: each is
/// run on every CI run.
const FOUND: &[u64] = &[
    // A node whose import failed (its store could not read the document
    // back) forgot what the sender had, and later sent the sender its own data.
    0x427a_6f1d_d06a_4cfd,
    // A client that held a pulled change in memory, its write to its store
    // still failing, advanced its pulled cursor past it, then crashed: on
    // restart the cursor said it had the change, so it never asked again.
    0x8d35_28ef_b6f6_d0c3,
    // A Loro client joining a room while it was edited: its join request
    // crossed a live update and was never answered.
    0x07a1_10e1,
    // A Loro client's update the node could not take (its store failed a
    // load) was neither acknowledged nor ever sent again.
    0x03c4_40c4,
    // A document a client created by writing was not announced to a peer
    // that followed no filter (two hubs on one store).
    0x03c4_4691,
    // A request answered up to date on the strength of a live update that
    // was then lost.
    0x03c4_402d,
    // A Loro join whose answer's data could not be read back from the
    // store (the answer was dropped) waited for ever.
    0x4444_0309,
    // Not the node: the simulator delivered the close of a connection to a
    // hub that had crashed since, and the new process took it for the close
    // of its own channel of that number (a Loro client's new connection),
    // so the client's hello was dropped and it was never welcomed.
    0x8d74_a8fb_71a0_17e5,
    // A hub's write whose answer failed though it had committed: before it
    // was written again, a client pulling from scratch got a changes answer
    // up to a later clock without that document, moved its cursor past it,
    // and never asked for it again.
    0x30e9_1f9b_2d4e_18e9,
    // Not the node: the listener's mirror stopped reading answers while
    // messages that had lost a chunk filled its reader's slots, and its
    // final pulls gave up before the reader let go of them.
    0x0007_e57a_11ce_01a5,
    // The hold of 0x30e9_1f9b_2d4e_18e9 never lifted when another hub's
    // write gave the document its next clock (two hubs on one store): the
    // write in doubt was not written again, and a client restarting from
    // scratch was listed nothing.
    0x0007_e57a_11ce_05db,
    // A request that crossed a live update was answered up to date though it
    // lacked the base that update was built on (the update that made the
    // base was lost to the peer's crash): the peer never got the change.
    0xf3d1_2d41_5621_d604,
    // Another server wrote again a document a hub held (its first write's
    // answer was lost): the store moved the document's row up, the hub kept
    // its old clock below its memory floor, and a client pulling from
    // scratch was listed it by neither the store's index nor memory.
    0x6c3f_8ff4_eead_086f,
    // A hub crashed before writing a change it had passed on; every client
    // sent it back, and with writers bound to their first sender the first
    // of them owned the author's writer, so the author's next edits were
    // refused for good (binding writers is off by default since).
    0x7c72_e17b_401b_1d4f,
    // Two imports into one evicted document waited for its reload, with a
    // send between them: the first ran alone and its answer was queued,
    // the second ran after the commands and its answer was put in front
    // of the first's, so the core took the first's older version for the
    // replica's and told a returning client it was up to date without the
    // second's change.
    0x553c_0e4d_f9e8_df04,
    // Two hubs on one store: a hub forgot an idle document's metadata but
    // kept its replica; the other hub wrote the document, and the first,
    // finding it in the store's feed, took it at the store's version
    // without reading it, sent its old replica's data for that version,
    // and its peers' acknowledgements said they held the other's change.
    0xd832_5ab8_5e95_1ced,
];

/// Seeds kept because they reach a path the coverage check below asks for
/// and few schedules reach (about one in a thousand). Which seeds reach it
/// moves whenever the node's work changes (the order of its engine calls
/// draws the faults), so when one stops reaching it, find another
/// (`DOCWEAVE_SEED=BASE DOCWEAVE_SCHEDULES=N` prints what N schedules reached).
const RARE: &[u64] = &[
    // A Loro client is asked to rejoin: its update was owed an ack the node
    // never gave (0x03c4_40c4 reached it until the node shared large exports,
    // 0x03c4_434a until the document API's stop).
    0x03c6_01bf,
];

#[test]
fn random_schedules_over_real_loro_nodes_keep_every_property() {
    if let Some(seed) = env_u64("DOCWEAVE_SEED") {
        let n = env_u64("DOCWEAVE_SCHEDULES").unwrap_or(1);
        let oplog = std::env::var("DOCWEAVE_ENGINE").is_ok_and(|e| e == "oplog");
        let c = schedules("DOCWEAVE_SEED", seed, n, oplog);
        print_table(&c);
        return;
    }
    let mut fixed = schedules("fixed Loro set", 0x5eed_0000, 400, false);
    for seed in FOUND {
        fixed.add(&schedules(
            "seed that once broke a property",
            *seed,
            1,
            false,
        ));
    }
    for seed in RARE {
        fixed.add(&schedules("seed that reaches a rare path", *seed, 1, false));
    }
    let fresh = fresh_seed();
    report!("fresh seed {fresh:#x}");
    let mut c = schedules("fresh Loro set", fresh, 400, false);
    c.add(&fixed);
    report!("800 schedules");
    print_table(&c);
    for kind in [
        "hello",
        "welcome",
        "sync-request",
        "sync-response",
        "update",
        "ack",
        "changes-since",
        "changes",
        "ephemeral",
        "delete",
        "listener-register",
        "listener-pull",
        "listener-ack",
    ] {
        assert!(
            c.messages.get(kind).copied().unwrap_or(0) > 0,
            "no schedule reached {kind}"
        );
    }
    // Inputs of a kind (or counted by the simulator) some schedule reached.
    let reached = |kind: &str| c.inputs.get(kind).copied().unwrap_or(0) > 0;
    // Hubs on one shared store heard of each other's writes through it.
    assert!(
        reached("store-announced"),
        "no schedule ran two hubs on one shared store"
    );
    // Nodes that keep few documents' metadata in memory read the rest from
    // their store's index (answers below the floor, the floor brought down).
    assert!(
        reached("store-read"),
        "no node read its store's index of documents"
    );
    // A node reading an evicted replica back went on taking other inputs.
    assert!(
        reached(docweave_tests::sim::TAKEN_DURING_RELOAD),
        "no node took an input while a replica was read back"
    );
    // A node put out what it sent before importing the data that came
    // after it in the same input (a cold sync's next requests).
    assert!(
        reached(docweave_tests::sim::STOPPED_BEFORE_DATA),
        "no node stopped an input to send before data"
    );
    // Replicas evicted under a memory budget slept as bytes meanwhile.
    assert!(
        reached(docweave_tests::sim::TAKEN_WITH_REPLICAS_ASLEEP),
        "no replica slept under a memory budget"
    );
    // Loro clients joined, wrote, were acknowledged and were asked to rejoin.
    for kind in [
        "client: join",
        "client: doc-update",
        "server: joined",
        "server: doc-update",
        "server: ack Ok",
        "server: room-error RejoinSuggested",
    ] {
        assert!(
            c.loro.get(kind).copied().unwrap_or(0) > 0,
            "no Loro client reached {kind}"
        );
    }
}

#[test]
fn random_schedules_over_operation_logs_keep_every_property() {
    if env_u64("DOCWEAVE_SEED").is_some() {
        return;
    }
    let c = schedules("fixed op-log set", 0x0b10_0000, 200, true);
    report!("200 schedules");
    print_table(&c);
}
