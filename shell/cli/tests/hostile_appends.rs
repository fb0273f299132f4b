//! A large append to a large document, against the real binary: 3.1 MB of
//! text appended to a 3.1 MB text by another writer (the CLI, which reads
//! the document and then appends from a peer of its own). Before, Loro's
//! rich text merge re-indexed the rest of the insert at every one of its
//! 256-character pieces (quadratic): the append was never acknowledged, the
//! server went to 4.2 GB (8.7 GB in benchmark S11) and every other client
//! timed out. The fix is a patch to Loro (`shell/vendor/README.md`);
//! benchmark S11 (`cargo run --release -p docweave-bench -- --scenario
//! s11`) measures the append against Loro's own import and a good
//! client's round trips during it.

mod common;

use common::raw::GoodClient;
use common::{cli, data_dir, free_port, Server};
use std::time::{Duration, Instant};

const SIZE: usize = 3_100_000;

fn text_file(name: &str, salt: usize) -> std::path::PathBuf {
    let path = data_dir(name).join("text.txt");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text: String = (0..SIZE)
        .map(|i| (b'a' + ((i * 7919 + salt) % 26) as u8) as char)
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn append(server: &Server, doc: &str, file: &std::path::Path) -> Duration {
    let started = Instant::now();
    let ws = format!("ws://127.0.0.1:{}", server.ws);
    let (ok, _, err) = cli(&[
        "doc",
        "put",
        &ws,
        doc,
        "--text-file",
        &file.display().to_string(),
        "--timeout",
        "120",
    ]);
    assert!(ok, "the append failed: {err}");
    started.elapsed()
}

#[test]
fn a_three_megabyte_append_to_a_three_megabyte_text_is_acknowledged_while_others_are_served() {
    let server = Server::start(
        "server",
        &data_dir("append-large"),
        free_port(),
        free_port(),
        &[],
    );
    let doc = "big";
    let base = text_file("append-large-base", 0);
    let more = text_file("append-large-more", 1);
    let first = append(&server, doc, &base);
    let rss_before = server.rss();

    // A good client writes and reads another document throughout.
    let good = GoodClient::start(&server, "other");
    let took = append(&server, doc, &more);
    let (slowest, rounds) = good.stop();
    let peak = server.peak_rss();
    eprintln!(
        "a {SIZE}-byte text written in {first:?}; {SIZE} bytes more appended and acknowledged \
         in {took:?}; RSS {} -> {} MiB (peak {} MiB); a good client's slowest put and get \
         {slowest:?} over {rounds} rounds",
        rss_before >> 20,
        server.rss() >> 20,
        peak >> 20
    );
    // The whole text is there, in order.
    let (ok, out, err) = cli(&[
        "doc",
        "get",
        &format!("http://127.0.0.1:{}", server.http),
        doc,
        "--timeout",
        "600",
    ]);
    assert!(ok, "{err}");
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    let text = value["text"].as_str().unwrap();
    assert_eq!(text.len(), 2 * SIZE);
    assert_eq!(
        text[SIZE..SIZE + 20],
        std::fs::read_to_string(&more).unwrap()[..20]
    );
    // Bounds with room for a debug build on a shared machine; before, the
    // append never finished and the server held gigabytes.
    assert!(peak < 1 << 30, "peak RSS {} MiB", peak >> 20);
    assert!(
        slowest < Duration::from_secs(30),
        "a good client waited {slowest:?}"
    );
}
