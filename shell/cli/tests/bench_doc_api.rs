//! The benchmark of the document API (S13) in its tiny form, against this
//! crate's `docweave` binary, so it cannot rot.

use docweave_bench::doc_api::{s13, S13Sizes};

#[test]
fn s13_in_tiny_form_reads_the_large_document_and_posts_every_update() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_docweave"));
    let sizes = S13Sizes::quick();
    let runs = smol::block_on(s13(bin, &sizes, &dir));
    let metrics: Vec<&str> = runs.iter().map(|r| r.metric.as_str()).collect();
    assert_eq!(
        metrics,
        [
            "get_json_ms",
            "get_snapshot_ms",
            "post_updates_per_s",
            "post_updates_per_s"
        ]
    );
    let extra = |r: &docweave_bench::Run, k: &str| r.figure(k).unwrap_or(-1.0);
    // The JSON holds the whole text; the snapshot is what Loro exports.
    assert!(
        extra(&runs[0], "answer_bytes") > sizes.doc_chars as f64,
        "{}",
        runs[0].json()
    );
    assert!(extra(&runs[1], "answer_bytes") > 0.0, "{}", runs[1].json());
    // Every update was answered 200 (asserted inside) and the server
    // holds each of them.
    for r in &runs[2..] {
        let edits = extra(r, "first_writers_edits_read_back");
        assert_eq!(edits, sizes.updates as f64, "{}", r.json());
    }
    assert!(runs.iter().all(|r| r.value > 0.0));
}
