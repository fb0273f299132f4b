//! The benchmark of webhooks (S14) in its tiny form, against this crate's
//! `docweave` binary, so it cannot rot.

use docweave_bench::webhooks::{s14, S14Sizes};

#[test]
fn s14_in_tiny_form_delivers_the_whole_backlog_and_measures_both_write_forms() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_docweave"));
    let sizes = S14Sizes::quick();
    let runs = smol::block_on(s14(bin, &sizes, &dir));
    let metrics: Vec<&str> = runs.iter().map(|r| r.metric.as_str()).collect();
    assert_eq!(
        metrics,
        [
            "webhook_events_per_s",
            "post_updates_per_s_without_hook",
            "post_updates_per_s_with_hook"
        ]
    );
    let extra = |r: &docweave_bench::Run, k: &str| r.figure(k).unwrap_or(-1.0);
    // One event per document of the backlog, each once.
    assert_eq!(extra(&runs[0], "events_taken"), sizes.docs as f64);
    assert!(runs.iter().all(|r| r.value > 0.0), "{:?}", runs[0].json());
}
