//! Runs the Python tests in `tests/python` against this build's `docweave`
//! binary: `pip install ./shell/python` (PyO3, built from source by maturin)
//! and `loro` from PyPI into a virtual environment, then two Python replicas
//! and a native client converge, an offline replica syncs after a
//! restart, and a backend uses the document API through `docweave.http`
//! and checks webhook signatures with it. Python 3 with pip and venv is required: without it this test
//! fails rather than passing silently.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(status.success(), "{what} failed");
}

#[test]
fn python_replicas_sync_through_docweave() {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv (apt-get install python3-venv; tests/run installs what the tests need)",
        );
    }
    // Always the package of this checkout, built from source by the install.
    run(
        Command::new(&python)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .arg(root().join("shell/python"))
            .arg("loro==1.17.1"),
        "pip install ./shell/python loro",
    );
    // A malicious server for the poison test.
    let (listener, poison_port) = docweave_tests::fake_server::bind();
    let fake = std::thread::spawn(move || {
        docweave_tests::fake_server::serve_poison(listener, std::time::Duration::from_secs(120))
    });
    // A CA and a certificate for localhost, for the TLS test.
    let certs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-certs");
    let (ca, cert, key) = common::certs::make_certificates(&certs);
    let out = Command::new(&python)
        .args(["-m", "unittest", "-v", "test_sync.py"])
        .env("DOCWEAVE_TEST_CA", &ca)
        .env("DOCWEAVE_TEST_CERT", &cert)
        .env("DOCWEAVE_TEST_KEY", &key)
        .current_dir(root().join("tests/python"))
        .env("DOCWEAVE_BIN", env!("CARGO_BIN_EXE_docweave"))
        .env("DOCWEAVE_POISON_PORT", poison_port.to_string())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    eprintln!("{report}");
    assert!(out.status.success(), "the Python tests failed");
    assert!(
        report.contains("Ran 9 tests") && report.contains("OK"),
        "the Python tests did not all run"
    );
    let seen = fake.join().unwrap();
    assert_eq!(seen.poison_ack, Some(docweave_core::AckStatus::Invalid));
}
