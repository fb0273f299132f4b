//! The benchmark scenarios with tiny sizes, so they cannot rot.

use docweave_bench::scenarios::{
    s1, s2, s2_on_demand, s3, s3_hooked, s3_quotas, s3_recorded, s4, s5, Transport,
};

#[test]
fn a_warm_reconnect_takes_as_few_frames_when_the_server_forgot_idle_metadata() {
    smol::block_on(async {
        // 1,000 documents: the server's pages of changes list 500, more
        // than the 256 lookups a server that holds few documents takes per
        // peer, so the first sync goes through its refusals too.
        let (n, k) = (1_000u64, 5u64);
        let all = s2(n, k, Transport::Memory).await;
        let on_demand = s2_on_demand(n, k, Transport::Memory).await;
        let extra = |r: &docweave_bench::Run, name: &str| r.figure(name).unwrap_or(-1.0);
        // Before the client came back, the server held about 1% of the
        // documents' metadata (up to an eighth more) and the k it changed:
        // the rest were only in its store.
        let kept = n / 100;
        let most = (kept + kept / 8 + k) as f64;
        let held = extra(&on_demand, "metadata_in_memory");
        assert!((k as f64..=most).contains(&held), "{}", on_demand.json());
        assert_eq!(
            extra(&all, "metadata_in_memory"),
            n as f64,
            "{}",
            all.json()
        );
        // As small a reconnect as with every document's metadata in
        // memory: within the budget of 2k + 4 frames, and about S2's
        // bytes (walking the changes again from a lagging cursor costs
        // 4 to 8 KB a page, against about 1 KB for the whole reconnect).
        assert!(
            on_demand.messages <= 2 * k + 4 && on_demand.bytes <= all.bytes * 5 / 4,
            "{}\n{}",
            all.json(),
            on_demand.json()
        );
    });
}

#[test]
fn every_scenario_runs_with_tiny_sizes() {
    smol::block_on(async {
        for t in [Transport::Memory, Transport::WebSocket] {
            let r = s1(10, t).await;
            assert!(r.value > 0.0 && r.messages > 0, "{}", r.json());
            let kept = r.figure("floor_kept_seconds");
            assert!(kept.is_some_and(|k| k > 0.0), "{}", r.json());
            let r = s2(20, 2, t).await;
            assert!(r.messages > 0, "{}", r.json());
            let r = s3(3, 10, t).await;
            assert!(r.value > 0.0, "{}", r.json());
            let r = s3_quotas(3, 10, t).await;
            assert!(r.value > 0.0 && r.scenario == "S3q", "{}", r.json());
            // A hook's listener followed the edits: pulled, and told of
            // the edited document.
            let r = s3_hooked(3, 10, t).await;
            let hooked = |k: &str| r.figure(k).unwrap_or(0.0);
            assert!(
                r.scenario == "S3h" && hooked("hook_strands_acked") >= 1.0 && r.value > 0.0,
                "{}",
                r.json()
            );
            let r = s3_recorded(3, 10, t).await;
            let recorded = r.figure("recorded_bytes");
            assert!(recorded.is_some_and(|b| b > 0.0), "{}", r.json());
        }
        assert!(s4(1_000, 1, false).value > 0.0);
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let r = s5(500, &dir).await;
        assert_eq!(r.size, 500, "{}", r.json());
        // Bursts: every update acknowledged (asserted inside), a few
        // changes stored for the burst, one per update one by one.
        let mut runs = Vec::new();
        docweave_bench::bursts::s10_all(&[50], &[50], &dir, |r| runs.push(r));
        let changes = |r: &docweave_bench::Run| r.extra[0].1;
        assert!(changes(&runs[0]) <= 4.0, "{}", runs[0].json());
        assert!(changes(&runs[1]) >= 50.0, "{}", runs[1].json());
        // A large append: acknowledged (asserted inside), the good client
        // made round trips meanwhile, Loro's floor measured.
        let r = docweave_bench::appends::s11(20_000, &dir).await;
        let extra = |k: &str| r.figure(k).unwrap_or(0.0);
        assert!(
            r.value > 0.0 && extra("loro_import_s") > 0.0,
            "{}",
            r.json()
        );
        assert!(extra("good_round_trips") >= 1.0, "{}", r.json());
        // Loaded documents: every form loads them all; asleep, none stays
        // awake once idle (memory is measured, not asserted: these share
        // one process).
        for form in docweave_bench::loaded::FORMS {
            let r = docweave_bench::loaded::s12(form, 200, &dir);
            assert_eq!(r.size, 200, "{}", r.json());
            let awake = r.figure("replicas_resident");
            let ready = r.figure("ready");
            if form != "loro" {
                assert_eq!(ready, Some(200.0), "{}", r.json());
            }
            match form {
                "node" => assert_eq!(awake, Some(200.0), "{}", r.json()),
                "asleep" => assert_eq!(awake, Some(0.0), "{}", r.json()),
                "woken" => assert_eq!(awake, Some(200.0), "{}", r.json()),
                _ => {}
            }
        }
    });
}

#[test]
fn a_server_holding_many_documents_keeps_only_the_idle_bound_of_their_metadata() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("s8-smoke-{}.db", std::process::id()));
    let n = docweave_bench::metadata::ON_DEMAND_IDLE_METADATA as u64 + 5_000;
    let at = path.display().to_string();
    let mut store = docweave_bench::metadata::open(&at).unwrap();
    docweave_bench::metadata::fill(store.as_mut(), n).unwrap();
    drop(store);
    let extra = |r: &docweave_bench::Run, k: &str| r.figure(k).unwrap_or(-1.0);
    let lazy = docweave_bench::metadata::s8("sqlite/on-demand", &at, n, 50);
    let eager = docweave_bench::metadata::s8("sqlite/all", &at, n, 50);
    docweave_bench::metadata::remove(&path);
    for r in [&lazy, &eager] {
        assert_eq!(extra(r, "edited"), 50.0, "{}", r.json());
        assert_eq!(extra(r, "ready"), 1.0, "{}", r.json());
    }
    // Started with none of them (edited ones came in); all kept with 0.
    assert_eq!(extra(&lazy, "metadata_in_memory"), 50.0, "{}", lazy.json());
    assert_eq!(
        extra(&eager, "metadata_in_memory"),
        n as f64,
        "{}",
        eager.json()
    );
}

#[test]
fn the_postgresql_scenarios_run_with_tiny_sizes() {
    use docweave_bench::cluster::{database, s6_all, s7};
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let runs = s6_all(&[1, 10], true, &dir);
    assert!(runs.iter().all(|r| r.value > 0.0), "{runs:?}");
    let Some(url) = database("s7_smoke") else {
        return;
    };
    let r = smol::block_on(s7(&url, 3, 6, 30, 200.0));
    assert_eq!(r.metric, "p99_ms", "not every edit arrived: {}", r.json());
}

/// S4's on-demand form keeps only the documents its workload uses in the
/// core, however many the store holds, and does the same work as the form
/// holding every document's metadata.
#[test]
fn the_core_on_demand_holds_only_the_documents_in_use_however_many_are_stored() {
    let in_memory = |r: &docweave_bench::Run| {
        r.extra
            .iter()
            .find(|(k, _)| k == "documents_in_memory")
            .map_or(-1.0, |e| e.1)
    };
    let all = s4(100_000, 1, false);
    let on_demand = s4(100_000, 1, true);
    assert_eq!(in_memory(&all), 100_000.0, "{}", all.json());
    assert_eq!(in_memory(&on_demand), 1_000.0, "{}", on_demand.json());
    assert_eq!(all.messages, on_demand.messages, "the same workload");
}

/// S9's floor in its tiny form: every connection is made to the server
/// that only answers pings, stays open through the idle window, and the
/// server's CPU and memory are measured.
#[test]
fn s9_floor_in_tiny_form_keeps_every_connection_open() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_docweave-ping-floor"));
    let sizes = docweave_bench::connections::S9Sizes::quick();
    let r = smol::block_on(docweave_bench::connections::s9_floor(bin, &sizes));
    let extra = |k: &str| r.figure(k).unwrap_or(-1.0);
    assert_eq!(extra("connected"), sizes.connections as f64, "{}", r.json());
    assert_eq!(extra("failed"), 0.0, "{}", r.json());
    assert_eq!(
        extra("open_after_idle"),
        sizes.connections as f64,
        "{}",
        r.json()
    );
    assert!(extra("idle_cpu_percent") >= 0.0, "{}", r.json());
    assert!(extra("server_rss_idle_mib") > 0.0, "{}", r.json());
}
