//! `docweave-bench`: runs the benchmark scenarios and prints one JSON line
//! per run, then a summary table (median, min, max over the runs).
//!
//! `cargo run --release -p docweave-bench -- --scenario all`

use clap::Parser;
use docweave_bench::appends::s11;
use docweave_bench::bursts::s10_all;
use docweave_bench::cluster::{database, s6_all, s7};
use docweave_bench::connections::{s9, s9_floor, S9Sizes};
use docweave_bench::doc_api::{s13, S13Sizes};
use docweave_bench::history::{s15, S15Sizes};
use docweave_bench::loaded::{s12, FORMS};
use docweave_bench::metadata::{fill, open, remove, s8};
use docweave_bench::scenarios::{
    s1, s2, s2_on_demand, s3, s3_hooked, s3_quotas, s3_recorded, s4, s5, Transport,
};
use docweave_bench::webhooks::{s14, S14Sizes};
use docweave_bench::Run;
use std::collections::BTreeMap;

/// Counts the heap, so S15 can weigh what a document keeps.
#[global_allocator]
static HEAP: docweave_bench::heap::Counting = docweave_bench::heap::Counting;

#[derive(Parser)]
#[command(about = "docweave benchmark scenarios")]
struct Args {
    /// all, s1 … s15 (s2 also runs s2d, to compare them), s2d alone,
    /// s9-floor (s6 and s7 need PostgreSQL: DOCWEAVE_BENCH_POSTGRES, or
    /// Debian's binaries for a throwaway cluster; s9, s13, s14 and s15 the
    /// `docweave` binary).
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Runs per scenario.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// both, memory or websocket.
    #[arg(long, default_value = "both")]
    transport: String,
    /// Tiny sizes, for a smoke run.
    #[arg(long)]
    quick: bool,
    /// S7's edits per second.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// S7's servers (1: the single-server baseline).
    #[arg(long, default_value_t = 3)]
    servers: usize,
    /// S9's server: the `docweave` binary (default: the one beside this
    /// program, as `cargo build --release -p docweave-cli` leaves it).
    #[arg(long)]
    server_bin: Option<std::path::PathBuf>,
    /// S9's connections (default: what the file-descriptor limit allows).
    #[arg(long)]
    connections: Option<usize>,
    /// Run S5 in this process and print its line (the parent starts a
    /// fresh process for it, so earlier scenarios' memory does not hide its cost).
    #[arg(long, hide = true)]
    s5_child: bool,
    /// Run this form of S12 in this process and print its line (likewise).
    #[arg(long, hide = true)]
    s12_child: Option<String>,
    /// Run this form of S8 in this process on the store `--s8-store`
    /// (likewise).
    #[arg(long, hide = true)]
    s8_child: Option<String>,
    /// The store S8's child runs on (filled by the parent): a SQLite
    /// file or a PostgreSQL URL.
    #[arg(long, hide = true)]
    s8_store: Option<String>,
}

/// Sizes of each scenario.
struct Sizes {
    s1: Vec<u64>,
    s2: (u64, u64),
    s3: (usize, u64),
    s4: Vec<u64>,
    s5: u64,
    /// Documents stored, documents edited.
    s8: (u64, u64),
    s6: Vec<usize>,
    s7: (usize, usize, u64),
    s10: (Vec<u64>, Vec<u64>),
    s11: usize,
    s12: u64,
}

impl Sizes {
    fn full() -> Self {
        Sizes {
            s1: vec![1_000, 10_000, 100_000],
            s2: (10_000, 10),
            s3: (50, 1_000),
            s4: vec![1_000, 100_000, 1_000_000],
            s5: 100_000,
            s8: (1_000_000, 1_000),
            s6: vec![1, 10, 100, 1_000],
            s7: (3, 50, 2_000),
            s10: (vec![1_000, 4_000, 16_000], vec![1_000, 4_000]),
            s11: 3_100_000,
            s12: 20_000,
        }
    }
    fn quick() -> Self {
        Sizes {
            s1: vec![20],
            s2: (50, 3),
            s3: (3, 20),
            s4: vec![1_000],
            s5: 2_000,
            s8: (5_000, 50),
            s6: vec![1, 100],
            s7: (3, 6, 50),
            s10: (vec![200], vec![50]),
            s11: 100_000,
            s12: 500,
        }
    }
}

/// Runs this program again with `child` (a scenario's hidden flag) and
/// returns the run it prints: S5 and S12 measure resident memory, so each
/// runs in a process of its own, where earlier scenarios' memory does not
/// hide its cost. A child that prints no run gives a `failed` one.
fn in_fresh_process(child: &[&str], failed: Run, quick: bool) -> Run {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--runs", "1"]).args(child);
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines().find_map(Run::from_json).unwrap_or(failed)
}

fn s5_in_fresh_process(size: u64, quick: bool) -> Run {
    let failed = Run {
        scenario: "S5".into(),
        size,
        metric: "failed".into(),
        ..Run::default()
    };
    in_fresh_process(&["--scenario", "s5", "--s5-child"], failed, quick)
}

fn s12_in_fresh_process(form: &str, size: u64, quick: bool) -> Run {
    let failed = Run {
        scenario: "S12".into(),
        transport: form.into(),
        size,
        metric: "failed".into(),
        ..Run::default()
    };
    in_fresh_process(&["--scenario", "s12", "--s12-child", form], failed, quick)
}

/// S8's forms, each in a fresh process on one store the parent fills: on
/// SQLite, and on PostgreSQL when there is one.
fn s8_in_fresh_processes(size: (u64, u64), quick: bool) -> Vec<Run> {
    let path = std::env::temp_dir().join(format!("s8-{}-{}.db", size.0, std::process::id()));
    let mut stores = vec![("sqlite", path.display().to_string())];
    match database("s8") {
        Some(url) => stores.push(("postgres", url)),
        None => eprintln!("S8 on PostgreSQL skipped: no PostgreSQL"),
    }
    let mut runs = Vec::new();
    for (kind, at) in stores {
        remove(&path);
        let filled = open(&at).and_then(|mut store| fill(store.as_mut(), size.0));
        if let Err(e) = filled {
            eprintln!("S8 could not fill its {kind} store: {e}");
            continue;
        }
        for form in ["on-demand", "all"] {
            let form = format!("{kind}/{form}");
            let failed = Run {
                scenario: "S8".into(),
                transport: form.clone(),
                size: size.0,
                metric: "failed".into(),
                ..Run::default()
            };
            let child = ["--scenario", "s8", "--s8-child", &form, "--s8-store", &at];
            runs.push(in_fresh_process(&child, failed, quick));
        }
    }
    remove(&path);
    runs
}

fn main() {
    let a = Args::parse();
    if let (Some(form), Some(store)) = (&a.s8_child, &a.s8_store) {
        let (n, active) = if a.quick {
            Sizes::quick().s8
        } else {
            Sizes::full().s8
        };
        println!("{}", s8(form, store, n, active).json());
        return;
    }
    if let Some(form) = &a.s12_child {
        let size = if a.quick {
            Sizes::quick().s12
        } else {
            Sizes::full().s12
        };
        let r = s12(form, size, &std::env::temp_dir());
        println!("{}", r.json());
        return;
    }
    if a.s5_child {
        let size = if a.quick {
            Sizes::quick().s5
        } else {
            Sizes::full().s5
        };
        let r = smol::block_on(s5(size, &std::env::temp_dir()));
        println!("{}", r.json());
        return;
    }
    let want = |s: &str| a.scenario == "all" || a.scenario.eq_ignore_ascii_case(s);
    let transports: Vec<Transport> = match a.transport.as_str() {
        "memory" => vec![Transport::Memory],
        "websocket" => vec![Transport::WebSocket],
        _ => vec![Transport::Memory, Transport::WebSocket],
    };
    let sizes = if a.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    let Sizes {
        s1: s1_sizes,
        s2: s2_size,
        s3: s3_size,
        s4: s4_sizes,
        s5: s5_size,
        s8: s8_size,
        s6: s6_batches,
        s7: s7_size,
        s10: s10_sizes,
        s11: s11_size,
        s12: s12_size,
    } = sizes;
    let mut runs: Vec<Run> = Vec::new();
    let mut record = |r: Run| {
        println!("{}", r.json());
        runs.push(r);
    };
    for _ in 0..a.runs {
        smol::block_on(async {
            for t in &transports {
                if want("s1") {
                    for n in &s1_sizes {
                        record(s1(*n, *t).await);
                    }
                }
                if want("s2") {
                    record(s2(s2_size.0, s2_size.1, *t).await);
                }
                // With S2 (or alone), so the two forms are compared in one run.
                if want("s2") || want("s2d") {
                    record(s2_on_demand(s2_size.0, s2_size.1, *t).await);
                }
                if want("s3") {
                    record(s3(s3_size.0, s3_size.1, *t).await);
                }
                // With S3 (or alone: "s3q", "s3r"), so a comparison
                // alternates them on the same machine state.
                if want("s3") || want("s3q") {
                    record(s3_quotas(s3_size.0, s3_size.1, *t).await);
                }
                if want("s3") || want("s3r") {
                    record(s3_recorded(s3_size.0, s3_size.1, *t).await);
                }
                if want("s3") || want("s3h") {
                    record(s3_hooked(s3_size.0, s3_size.1, *t).await);
                }
            }
            if want("s4") {
                for d in &s4_sizes {
                    for on_demand in [false, true] {
                        record(s4(*d, if a.quick { 1 } else { 100 }, on_demand));
                    }
                }
            }
            if want("s5") {
                record(s5_in_fresh_process(s5_size, a.quick));
            }
            if want("s8") {
                for r in s8_in_fresh_processes(s8_size, a.quick) {
                    record(r);
                }
            }
            if want("s6") {
                for r in s6_all(&s6_batches, a.quick, &std::env::temp_dir()) {
                    record(r);
                }
            }
            if want("s7") {
                match database("s7") {
                    Some(url) => {
                        record(s7(&url, a.servers.max(1), s7_size.1, s7_size.2, a.rate).await)
                    }
                    None => eprintln!("S7 skipped: no PostgreSQL"),
                }
            }
            // `s9-floor` runs the floor alone.
            let floor_only = a.scenario.eq_ignore_ascii_case("s9-floor");
            if want("s9") || floor_only {
                let mut sizes = if a.quick {
                    S9Sizes::quick()
                } else {
                    S9Sizes::full()
                };
                sizes.connections = a.connections.unwrap_or(sizes.connections);
                match server_bin(&a).filter(|_| !floor_only) {
                    Some(bin) => record(s9(&bin, &sizes, &std::env::temp_dir()).await),
                    None if floor_only => {}
                    None => eprintln!(
                        "S9 skipped: no docweave binary (cargo build --release -p docweave-cli, or --server-bin)"
                    ),
                }
                // Its floor: the same idle connections on a server that
                // only answers pings (built beside this program).
                let floor = std::env::current_exe()
                    .map(|e| e.with_file_name("docweave-ping-floor"))
                    .ok()
                    .filter(|f| f.exists());
                match floor {
                    Some(bin) => record(s9_floor(&bin, &sizes).await),
                    None => eprintln!(
                        "S9's floor skipped: no docweave-ping-floor beside this program (cargo build --release -p docweave-bench)"
                    ),
                }
            }
            if want("s13") {
                let sizes = if a.quick {
                    S13Sizes::quick()
                } else {
                    S13Sizes::full()
                };
                match server_bin(&a) {
                    Some(bin) => {
                        for r in s13(&bin, &sizes, &std::env::temp_dir()).await {
                            record(r);
                        }
                    }
                    None => eprintln!(
                        "S13 skipped: no docweave binary (cargo build --release -p docweave-cli, or --server-bin)"
                    ),
                }
            }
            if want("s14") {
                let sizes = if a.quick {
                    S14Sizes::quick()
                } else {
                    S14Sizes::full()
                };
                match server_bin(&a) {
                    Some(bin) => {
                        for r in s14(&bin, &sizes, &std::env::temp_dir()).await {
                            record(r);
                        }
                    }
                    None => eprintln!(
                        "S14 skipped: no docweave binary (cargo build --release -p docweave-cli, or --server-bin)"
                    ),
                }
            }
            if want("s15") {
                let sizes = if a.quick {
                    S15Sizes::quick()
                } else {
                    S15Sizes::full()
                };
                match server_bin(&a) {
                    Some(bin) => {
                        for r in s15(&bin, &sizes, &std::env::temp_dir()).await {
                            record(r);
                        }
                    }
                    None => eprintln!(
                        "S15 skipped: no docweave binary (cargo build --release -p docweave-cli, or --server-bin)"
                    ),
                }
            }
            if want("s10") {
                // Each run is printed as it ends: one by one takes minutes.
                s10_all(
                    &s10_sizes.0,
                    &s10_sizes.1,
                    &std::env::temp_dir(),
                    &mut record,
                );
            }
            if want("s11") {
                record(s11(s11_size, &std::env::temp_dir()).await);
            }
            if want("s12") {
                for form in FORMS {
                    record(s12_in_fresh_process(form, s12_size, a.quick));
                }
            }
        });
    }
    print_table(&runs);
}

/// The `docweave` binary S9 and S13 run: `--server-bin`, else the one beside this program.
fn server_bin(a: &Args) -> Option<std::path::PathBuf> {
    let bin = match &a.server_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().ok()?.with_file_name("docweave"),
    };
    bin.is_file().then_some(bin)
}

fn print_table(runs: &[Run]) {
    let mut groups: BTreeMap<(String, String, u64, String), Vec<&Run>> = BTreeMap::new();
    for r in runs {
        groups
            .entry((
                r.scenario.clone(),
                r.transport.clone(),
                r.size,
                r.metric.clone(),
            ))
            .or_default()
            .push(r);
    }
    println!();
    println!("| scenario | transport | size | metric | median | min | max | messages | bytes | peak RSS MiB | extra (median) |");
    println!("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for ((s, t, size, metric), rs) in groups {
        let mut v: Vec<f64> = rs.iter().map(|r| r.value).collect();
        v.sort_by(f64::total_cmp);
        let med = |mut xs: Vec<f64>| {
            xs.sort_by(f64::total_cmp);
            xs.get(xs.len() / 2).copied().unwrap_or(0.0)
        };
        let messages = med(rs.iter().map(|r| r.messages as f64).collect());
        let bytes = med(rs.iter().map(|r| r.bytes as f64).collect());
        let rss = rs.iter().map(|r| r.peak_rss).max().unwrap_or(0) as f64 / (1024.0 * 1024.0);
        let mut extra = Vec::new();
        if let Some(first) = rs.first() {
            for (k, _) in &first.extra {
                let xs = rs.iter().filter_map(|r| r.figure(k)).collect();
                extra.push(format!("{k}={:.4}", med(xs)));
            }
        }
        println!(
            "| {s} | {t} | {size} | {metric} | {:.4} | {:.4} | {:.4} | {messages:.0} | {bytes:.0} | {rss:.1} | {} |",
            v.get(v.len() / 2).copied().unwrap_or(0.0),
            v.first().copied().unwrap_or(0.0),
            v.last().copied().unwrap_or(0.0),
            extra.join(" ")
        );
    }
}
