//! The document API of the real binary (`/docs` on the HTTP port), as an
//! app's backend uses it: a Loro update posted with a token is answered
//! once durable and reaches a live client as an ordinary update; the state
//! reads back as JSON, as a snapshot and as the update a version lacks,
//! with the version as its ETag (304 when unchanged); documents list by
//! prefix a page at a time; JSON edits become one ordinary change. Rights are the node's: a reader may not write,
//! no token is no access, and bad input gets a clear error.

mod common;

use common::http::{call, header, json};
use common::raw::*;
use common::{cli, cli_status, data_dir, free_port, Server};
use docweave_core::{DocId, Message};
use std::time::Duration;

/// A header, name and value.
type Header = (&'static str, &'static str);

const ALICE: Header = ("authorization", "Bearer sa");
const BOB: Header = ("authorization", "Bearer sb");

/// A Loro update of a fresh document: text `t` holding `text`.
fn update_with(doc: &loro::LoroDoc, text: &str) -> Vec<u8> {
    let before = doc.oplog_vv();
    let t = doc.get_text("t");
    t.insert(t.len_unicode(), text).unwrap();
    doc.commit();
    doc.export(loro::ExportMode::updates(&before)).unwrap()
}

#[test]
fn a_backend_writes_reads_and_lists_documents_over_http_with_the_nodes_rights() {
    let dir = data_dir("doc-api");
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.json");
    let all = r#"{"read":true,"write":true,"create":true,"delete":true}"#;
    let read = r#"{"read":true,"write":false,"create":false,"delete":false}"#;
    std::fs::write(
        &rules,
        format!(r#"{{"rules":[{{"peer":{{"Exact":"bob"}},"doc":"Any","access":{read}}}],"default":{all}}}"#),
    )
    .unwrap();
    let server = Server::start(
        "server",
        &dir.join("data"),
        free_port(),
        free_port(),
        &[
            "--token",
            "alice=sa",
            "--token",
            "bob=sb",
            "--rules",
            rules.to_str().unwrap(),
        ],
    );
    let http = server.http;
    let writer = loro::LoroDoc::new();
    writer.set_peer_id(7).unwrap();

    // Alice posts the first update: answered once durable, with the version.
    let first = update_with(&writer, "hello");
    let (status, headers, body) = call(http, "POST", "/docs/notes/updates", &[ALICE], &first);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v1 = json(&body)["version"].as_str().unwrap().to_string();
    assert_eq!(v1, "7:5");
    assert_eq!(header(&headers, "etag"), Some("\"7:5\""));

    // Alice's own live client, following the document, gets the update she
    // posts from her backend as an ordinary update (a request is not her
    // connection: nothing of it is recorded as hers).
    smol::block_on(async {
        let mut live = raw_ws(server.ws).await;
        send(
            &mut live,
            &[hello("alice", Some("sa")), sync_request("notes")],
        )
        .await;
        let (got, _) = receive_until(&mut live, Duration::from_secs(10), |ms| {
            ms.iter().any(|m| matches!(m, Message::SyncResponse { .. }))
        })
        .await;
        assert!(
            got.iter()
                .any(|m| matches!(m, Message::SyncResponse { .. })),
            "{got:?}"
        );
        let second = update_with(&writer, " world");
        let (status, _, body) = call(http, "POST", "/docs/notes/updates", &[ALICE], &second);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(json(&body)["version"], "7:11");
        let (got, _) = receive_until(&mut live, Duration::from_secs(10), |ms| {
            ms.iter().any(|m| matches!(m, Message::Update { .. }))
        })
        .await;
        let update = got.iter().find_map(|m| match m {
            Message::Update { doc, data, .. } if *doc == DocId::new("notes") => Some(data.clone()),
            _ => None,
        });
        let mirror = loro::LoroDoc::new();
        mirror.import(&first).unwrap();
        mirror
            .import(update.expect("an update").as_bytes())
            .unwrap();
        assert_eq!(mirror.get_text("t").to_string(), "hello world");
    });

    // The state as JSON, its version the ETag; unchanged, 304.
    let (status, headers, body) = call(http, "GET", "/docs/notes", &[BOB], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body), serde_json::json!({ "t": "hello world" }));
    let tag = header(&headers, "etag").unwrap().to_string();
    assert_eq!(tag, "\"7:11\"");
    let (status, _, body) = call(
        http,
        "GET",
        "/docs/notes",
        &[BOB, ("if-none-match", &tag)],
        b"",
    );
    assert_eq!((status, body.len()), (304, 0));
    let old = format!("\"{v1}\"");
    let (status, _, _) = call(
        http,
        "GET",
        "/docs/notes",
        &[BOB, ("if-none-match", &old)],
        b"",
    );
    assert_eq!(status, 200, "an older version is not the current one");

    // A snapshot, and the update the first version lacks.
    let (status, _, snapshot) = call(http, "GET", "/docs/notes?format=snapshot", &[BOB], b"");
    assert_eq!(status, 200);
    // A Loro snapshot, though the node sends one writer's document to its
    // peers as its updates.
    let form = |bytes: &[u8]| {
        loro::LoroDoc::decode_import_blob_meta(bytes, false)
            .unwrap()
            .mode
    };
    assert_eq!(form(&snapshot), loro::EncodedBlobMode::Snapshot);
    let copy = loro::LoroDoc::new();
    copy.import(&snapshot).unwrap();
    assert_eq!(copy.get_text("t").to_string(), "hello world");
    let accept = ("accept", "application/octet-stream");
    let (status, _, same) = call(http, "GET", "/docs/notes", &[BOB, accept], b"");
    assert_eq!((status, same.is_empty()), (200, false));
    assert_eq!(form(&same), loro::EncodedBlobMode::Snapshot);
    let (status, _, gap) = call(http, "GET", &format!("/docs/notes?since={v1}"), &[BOB], b"");
    assert_eq!(status, 200);
    let caught_up = loro::LoroDoc::new();
    caught_up.import(&first).unwrap();
    caught_up.import(&gap).unwrap();
    assert_eq!(caught_up.get_text("t").to_string(), "hello world");
    let (status, _, _) = call(http, "GET", "/docs/notes?since=7:11", &[BOB], b"");
    assert_eq!(status, 204, "nothing is lacking");

    // A document larger than the node's frames (sent in chunks) reads whole.
    let large = loro::LoroDoc::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let text: String = (0..2_000_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    large.get_text("t").insert(0, &text).unwrap();
    large.commit();
    let snapshot = large.export(loro::ExportMode::Snapshot).unwrap();
    assert!(snapshot.len() > 1 << 20, "{} bytes", snapshot.len());
    let (status, _, _) = call(http, "POST", "/docs/large/updates", &[ALICE], &snapshot);
    assert_eq!(status, 200);
    let (status, _, body) = call(http, "GET", "/docs/large", &[BOB], b"");
    assert_eq!(
        status,
        200,
        "{}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    assert_eq!(json(&body)["t"].as_str().map(str::len), Some(text.len()));

    // Without a token the body is not even read.
    let (status, _, body) = call(http, "POST", "/docs/notes/updates", &[], &snapshot);
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));

    // Bob may read, not write: refused, and nothing of it is stored.
    let refused = update_with(&loro::LoroDoc::new(), "bob was here");
    let (status, _, body) = call(http, "POST", "/docs/notes/updates", &[BOB], &refused);
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["code"], "PermissionDenied");
    let (_, _, body) = call(http, "GET", "/docs/notes", &[ALICE], b"");
    assert_eq!(json(&body), serde_json::json!({ "t": "hello world" }));

    // No token, a wrong token: nothing is read.
    let (status, _, body) = call(http, "GET", "/docs/notes", &[], b"");
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = call(
        http,
        "GET",
        "/docs/notes",
        &[("authorization", "Bearer guess")],
        b"",
    );
    assert_eq!(status, 401);

    // Bad input: each a clear error.
    let cases: [(&str, &str, &[u8], u16, &str); 7] = [
        ("GET", "/docs/nothing-here", b"", 404, "NotFound"),
        ("GET", "/docs/a%FF", b"", 400, "BadRequest"),
        ("GET", "/docs/notes?since=7", b"", 400, "BadVersion"),
        ("GET", "/docs/notes?format=xml", b"", 400, "BadRequest"),
        ("POST", "/docs/notes/updates", b"not loro", 400, "Invalid"),
        ("DELETE", "/docs/notes", b"", 405, "MethodNotAllowed"),
        ("GET", "/docs?limit=0", b"", 400, "BadRequest"),
    ];
    for (method, path, body, want, code) in cases {
        let (status, _, answer) = call(http, method, path, &[ALICE], body);
        assert_eq!(
            status,
            want,
            "{method} {path}: {}",
            String::from_utf8_lossy(&answer)
        );
        assert_eq!(json(&answer)["code"], code, "{method} {path}");
    }

    // JSON edits for a backend without Loro: one ordinary change.
    let edits = serde_json::json!({"message": "from the backend", "edits": [
        {"op": "insert_text", "path": ["t"], "text": "!"},
        {"op": "set", "path": ["meta"], "values": {"title": "Notes", "pages": 2}},
    ]});
    let edits = edits.to_string();
    let (status, _, body) = call(http, "PATCH", "/docs/notes", &[ALICE], edits.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (_, _, body) = call(http, "GET", "/docs/notes", &[BOB], b"");
    assert_eq!(
        json(&body),
        serde_json::json!({ "t": "hello world!", "meta": {"title": "Notes", "pages": 2} })
    );
    let huge = vec![b' '; 128 * 1024];
    let patches: [(&[u8], Header, u16, &str); 5] = [
        (b"{not json", ALICE, 400, "BadEdit"),
        (
            br#"{"edits":[{"op":"set","path":["meta","nope"],"values":{}}]}"#,
            ALICE,
            400,
            "BadPath",
        ),
        (
            br#"{"edits":[{"op":"insert_text","path":["t"],"index":999,"text":"x"}]}"#,
            ALICE,
            400,
            "BadEdit",
        ),
        (
            br#"{"edits":[{"op":"insert_text","path":["t"],"text":"x"}]}"#,
            BOB,
            403,
            "PermissionDenied",
        ),
        (&huge, ALICE, 413, "TooLarge"),
    ];
    for (body, who, want, code) in patches {
        let (status, _, answer) = call(http, "PATCH", "/docs/notes", &[who], body);
        assert_eq!(status, want, "{}", String::from_utf8_lossy(&answer));
        assert_eq!(
            json(&answer)["code"],
            code,
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    let (_, _, body) = call(http, "GET", "/docs/notes", &[BOB], b"");
    assert_eq!(
        json(&body)["t"],
        "hello world!",
        "nothing of a refused edit is kept"
    );

    // Listing by prefix, a page at a time (ids percent-encoded in paths).
    for id in ["team%2Fb", "team%2Fa", "teal", "zeta"] {
        let body = update_with(&loro::LoroDoc::new(), id);
        let (status, _, _) = call(
            http,
            "POST",
            &format!("/docs/{id}/updates"),
            &[ALICE],
            &body,
        );
        assert_eq!(status, 200, "{id}");
    }
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["docs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, _, body) = call(http, "GET", "/docs?prefix=team%2F", &[BOB], b"");
    let page = json(&body);
    assert_eq!(ids(&page), ["team/a", "team/b"], "{page}");
    assert!(page["next"].is_null(), "{page}");
    let (_, _, body) = call(http, "GET", "/docs?prefix=team%2F&limit=1", &[BOB], b"");
    let page = json(&body);
    assert_eq!(
        (ids(&page), page["next"].as_str()),
        (vec!["team/a".to_string()], Some("team/a"))
    );
    let (_, _, body) = call(
        http,
        "GET",
        "/docs?prefix=team%2F&after=team%2Fa",
        &[BOB],
        b"",
    );
    assert_eq!(ids(&json(&body)), ["team/b"]);
    let (_, _, body) = call(http, "GET", "/docs", &[BOB], b"");
    let page = json(&body);
    assert_eq!(
        ids(&page),
        ["large", "notes", "teal", "team/a", "team/b", "zeta"],
        "{page}"
    );
    assert_eq!(page["docs"][1]["id"], "notes", "{page}");

    // `doc get` of an http:// server is one request to this API.
    let url = format!("http://127.0.0.1:{http}");
    let (ok, out, err) = cli(&["doc", "get", &url, "team/a", "--token", "sb"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), r#"{"t":"team%2Fa"}"#);
    let (status, _, err) = cli_status(&["doc", "get", &url, "missing", "--token", "sb"]);
    assert_eq!(status, Some(3), "{err}");
    let (ok, _, err) = cli(&["doc", "get", &url, "notes"]);
    assert!(!ok && err.contains("401"), "{err}");
}

/// Each call of the document API is a connection of its own: the calls of
/// one identity share one update-rate bucket, or every call would start
/// with a full one and a backend would not be limited at all.
#[test]
fn the_calls_of_one_identity_share_its_update_rate_and_another_identity_has_its_own() {
    let dir = data_dir("doc-api-rate");
    let server = Server::start(
        "server",
        &dir.join("data"),
        free_port(),
        free_port(),
        &[
            "--token",
            "alice=sa",
            "--token",
            "bob=sb",
            "--max-updates-per-s",
            "1",
        ],
    );
    // Each update is a writer of its own, so none depends on one refused.
    let post = |who: Header| {
        let update = update_with(&loro::LoroDoc::new(), "x");
        call(server.http, "POST", "/docs/rated/updates", &[who], &update)
    };
    let answers: Vec<(u16, Vec<u8>)> = (0..10)
        .map(|_| {
            let (status, _, body) = post(ALICE);
            (status, body)
        })
        .collect();
    let taken = answers.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<&Vec<u8>> = answers
        .iter()
        .filter(|(s, _)| *s == 429)
        .map(|(_, b)| b)
        .collect();
    // One a second (the bucket starts full): ten calls in well under
    // nine seconds cannot all go.
    assert!(taken >= 1, "{answers:?}");
    assert!(!refused.is_empty(), "no call was refused: {answers:?}");
    assert_eq!(taken + refused.len(), answers.len(), "{answers:?}");
    assert!(
        String::from_utf8_lossy(refused[0]).contains("RateLimited"),
        "{}",
        String::from_utf8_lossy(refused[0])
    );
    // Bob's calls have a bucket of their own.
    let (status, _, body) = post(BOB);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

/// The README's Python snippet for the document API, run as it is
/// (standard library only) against the real binary: it patches a new
/// document and reads it back. Python 3 is required: without it this test
/// fails rather than passing silently.
#[test]
fn the_readmes_python_snippet_patches_and_reads_a_document() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .unwrap();
    let section = &readme[readme
        .find("## Document API")
        .expect("the README's section")..];
    let start = section.find("```python\n").expect("a Python block") + "```python\n".len();
    let snippet = &section[start..start + section[start..].find("```").unwrap()];
    let server = Server::start(
        "server",
        &data_dir("doc-api-python"),
        free_port(),
        free_port(),
        &["--token", "s3cret"],
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(snippet)
        .env("DOCWEAVE_URL", format!("http://127.0.0.1:{}", server.http))
        .env("DOCWEAVE_TOKEN", "s3cret")
        .output()
        .expect("python3 runs");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = printed.lines().last().unwrap_or_default();
    assert!(
        last.ends_with("Hello from the backend draft") && last.starts_with('"'),
        "{printed}"
    );
}
