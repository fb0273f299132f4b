//! A document past the 16 MiB frame limit, through the commands users run:
//! `doc put --text-file` and `doc get` over WebSocket and HTTP, a `kill -9`
//! and restart, and `docweave compact`, with the server's peak memory.

mod common;

use common::{cli, data_dir, free_port, Server};

/// Text of `bytes` pseudo-random letters: it compresses little, so the
/// document's snapshot is about as large as the text.
fn random_text(bytes: usize) -> String {
    const LETTERS: &[u8; 64] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .";
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..bytes)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            LETTERS[(state >> 58) as usize] as char
        })
        .collect()
}

/// The length of the document's text, from `doc get`'s JSON.
fn text_len(json: &str) -> usize {
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap_or_default();
    v["text"].as_str().map_or(0, str::len)
}

#[test]
fn a_document_past_the_frame_limit_puts_reads_survives_kill_and_compaction() {
    const SIZE: usize = 20_000_000;
    let data = data_dir("large");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("text.txt");
    std::fs::write(&file, random_text(SIZE)).unwrap();
    let file = file.display().to_string();
    let (ws, http) = (free_port(), free_port());
    let mut server = Server::start("server", &data, ws, http, &[]);
    let ws_url = format!("ws://127.0.0.1:{ws}");
    let http_url = format!("http://127.0.0.1:{http}");
    let before = server.rss();

    let (ok, out, err) = cli(&["doc", "put", &ws_url, "big", "--text-file", &file]);
    assert!(ok, "put failed: {err}");
    assert_eq!(text_len(&out), SIZE);
    eprintln!(
        "after put: rss {} peak {}",
        server.rss() / 1_000_000,
        server.peak_rss() / 1_000_000
    );
    for url in [&ws_url, &http_url] {
        let (ok, out, err) = cli(&["doc", "get", url, "big"]);
        assert!(ok, "get over {url} failed: {err}");
        assert_eq!(text_len(&out), SIZE, "over {url}");
        eprintln!(
            "after get {url}: rss {} peak {}",
            server.rss() / 1_000_000,
            server.peak_rss() / 1_000_000
        );
    }
    let peak = server.peak_rss();
    eprintln!(
        "server: {} MB before, peak {} MB serving a {} MB text",
        before / 1_000_000,
        peak / 1_000_000,
        SIZE / 1_000_000
    );

    // Acknowledged means durable: a kill -9 loses nothing.
    server.restart();
    let (ok, out, err) = cli(&["doc", "get", &ws_url, "big"]);
    assert!(ok, "get after kill -9 failed: {err}");
    assert_eq!(text_len(&out), SIZE);

    // Compaction folds it into one snapshot; it still reads whole.
    server.kill9();
    let (ok, out, err) = cli(&["compact", &data.display().to_string()]);
    assert!(ok, "compact failed: {out}{err}");
    server.restart();
    let (ok, out, err) = cli(&["doc", "get", &http_url, "big"]);
    assert!(ok, "get after compaction failed: {err}");
    assert_eq!(text_len(&out), SIZE);
}
