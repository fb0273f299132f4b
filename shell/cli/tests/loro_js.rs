//! Runs the Node test suite in `tests/loro-js` (real `loro-websocket`
//! clients, and the pad in two headless Chromium pages) against this
//! build's `docweave` binary. Node, npm and Chromium (`/usr/bin/chromium`,
//! or `CHROMIUM=...`) are required: without them this test fails rather
//! than passing silently.
//! `node_modules` is installed from the committed lockfile when missing.
//! The suite's TLS test gets a CA and certificate made here. The status
//! page's screenshot is written to `target/tmp/artifacts/status-page.png`.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn suite() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/loro-js")
}

#[test]
fn loro_websocket_clients_sync_through_docweave() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium is missing at {chromium}: apt-get install chromium (tests/run installs what the tests need)"
    );
    let dir = suite();
    if !dir.join("node_modules").is_dir() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .unwrap_or_else(|e| {
                panic!("npm is missing ({e}): apt-get install npm (tests/run installs what the tests need)")
            });
        assert!(status.success(), "npm ci failed in {}", dir.display());
    }
    // A CA and a certificate for `localhost`, for the suite's `wss://`
    // test; Node trusts the CA through NODE_EXTRA_CA_CERTS.
    let certs = common::data_dir("loro-js-certs");
    let (ca, _, _) = common::certs::make_certificates(&certs);
    let out = Command::new("node")
        .args([
            "--test",
            "--test-concurrency=1",
            "test/sync.test.mjs",
            "test/browser.test.mjs",
        ])
        .current_dir(&dir)
        .env("DOCWEAVE_BIN", env!("CARGO_BIN_EXE_docweave"))
        .env("DOCWEAVE_TLS_DIR", &certs)
        .env("NODE_EXTRA_CA_CERTS", &ca)
        .env("DOCWEAVE_ARTIFACTS", artifacts())
        .output()
        .unwrap_or_else(|e| {
            panic!("Node.js is missing ({e}): apt-get install nodejs (tests/run installs what the tests need)")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the loro-websocket suite failed");
    assert!(
        stdout.contains("# fail 0") && !stdout.contains("# pass 0"),
        "the suite ran no passing tests"
    );
    let shot = artifacts().join("status-page.png");
    assert!(
        shot.exists(),
        "the status page's screenshot is not at {}",
        shot.display()
    );
}

/// Where the suite writes what a person may want to look at (the status
/// page's screenshot).
fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts")
}
