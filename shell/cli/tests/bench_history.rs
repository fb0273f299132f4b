//! The benchmark of history (S15) in its tiny form, against this crate's
//! `docweave` binary, so it cannot rot.

use docweave_bench::history::{s15, S15Sizes};

#[test]
fn s15_in_tiny_form_pages_every_entry_reads_a_past_state_and_weighs_history() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_docweave"));
    let sizes = S15Sizes::quick();
    let runs = smol::block_on(s15(bin, &sizes, &dir));
    let metrics: Vec<&str> = runs.iter().map(|r| r.metric.as_str()).collect();
    assert_eq!(
        metrics,
        [
            "history_page_ms_p99",
            "state_at_version_s",
            "history_bytes_per_entry"
        ]
    );
    let extra = |r: &docweave_bench::Run, k: &str| r.figure(k).unwrap_or(-1.0);
    // Every update was one entry, listed once across the pages.
    assert_eq!(runs[0].size, sizes.edits as u64);
    assert!(extra(&runs[0], "pages") >= (sizes.edits / sizes.page) as f64);
    // The middle version holds about half the large document's text.
    let (at, now) = (
        extra(&runs[1], "state_at_bytes"),
        extra(&runs[1], "state_now_bytes"),
    );
    assert!(at > 0.0 && at < now, "{at} of {now}");
    // Entries cost bytes; a trimmed history is smaller than the whole.
    assert_eq!(runs[2].size, (sizes.edits + sizes.appends) as u64);
    assert!(runs[2].value > 0.0);
    assert!(
        extra(&runs[2], "snapshot_trimmed_bytes") < extra(&runs[2], "snapshot_whole_history_bytes"),
        "{:?}",
        runs[2].json()
    );
}
