//! The benchmark of many WebSocket connections (S9) in its tiny form,
//! against this crate's `docweave` binary, so it cannot rot.

use docweave_bench::connections::{s9, S9Sizes};

#[test]
fn s9_in_tiny_form_connects_everyone_and_every_edit_reaches_every_subscriber() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_docweave"));
    let sizes = S9Sizes::quick();
    let r = smol::block_on(s9(bin, &sizes, &dir));
    let extra = |k: &str| r.figure(k).unwrap_or(-1.0);
    assert_eq!(extra("connected"), sizes.connections as f64, "{}", r.json());
    assert_eq!(extra("failed"), 0.0, "{}", r.json());
    assert_eq!(extra("errors"), 0.0, "{}", r.json());
    let expected = (sizes.rate * sizes.seconds).round() * sizes.subscribers as f64;
    assert_eq!(extra("arrivals_expected"), expected, "{}", r.json());
    assert_eq!(
        r.messages as f64,
        expected,
        "an edit did not reach every subscriber: {}",
        r.json()
    );
    assert_eq!(extra("edits_acked"), extra("edits"), "{}", r.json());
    // Measured (a few connections may not move the resident set by a page
    // while other tests run beside: only its presence is asserted).
    assert!(extra("bytes_per_connection") >= 0.0, "{}", r.json());
    assert!(extra("idle_cpu_percent") >= 0.0, "{}", r.json());
    assert!(extra("settle_cpu_percent") >= 0.0, "{}", r.json());
    assert!(extra("server_rss_idle_mib") > 0.0, "{}", r.json());
    // The tiny form edits for 2 seconds: the second one is timed apart.
    assert!(extra("p99_after_first_second_ms") > 0.0, "{}", r.json());
}
