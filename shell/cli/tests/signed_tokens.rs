//! Signed tokens (JWTs) against the real `docweave serve`: what each kind
//! of token gets at each entry point, rights per document, a connection
//! closed when its token expires, public keys and JWKS, and no token in a
//! recording.

mod common;

use base64::Engine;
use common::raw::*;
use common::{cli, data_dir, free_port, Server};
use docweave_adapters::loro_protocol;
use docweave_core::{ErrorCode, Message};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The HMAC secret the servers here take (through the environment).
const SECRET: &str = "docweave-test-secret-0123456789abcdef";

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A token for `sub` signed with `secret`, valid from `nbf_in` to `exp_in`
/// seconds from now, with more claims merged in.
fn signed_with(secret: &str, sub: &str, exp_in: i64, more: Value) -> String {
    let mut claims = json!({ "sub": sub, "exp": now_s() + exp_in, "jti": format!("{sub}-1") });
    if let (Some(c), Some(m)) = (claims.as_object_mut(), more.as_object()) {
        c.extend(m.clone());
    }
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn signed(sub: &str, exp_in: i64, more: Value) -> String {
    signed_with(SECRET, sub, exp_in, more)
}

/// A token for `sub` granting `access` (letters of `rwcd`) to documents
/// matching `doc`, and nothing else.
fn signed_for(sub: &str, exp_in: i64, doc: &str, access: &str) -> String {
    signed(
        sub,
        exp_in,
        json!({ "docs": [{ "doc": doc, "access": access }] }),
    )
}

/// A server taking HS256 tokens signed with [`SECRET`].
fn start(name: &str, extra: &[&str]) -> Server {
    let (ws, http) = (free_port(), free_port());
    Server::start_env(
        "server",
        &data_dir(name),
        ws,
        http,
        extra,
        None,
        &[("DOCWEAVE_JWT_SECRET", SECRET)],
    )
}

/// What the server answers a native hello with this token: whether it
/// welcomed the connection, and the error message it sent, if any.
fn native_answer(server: &Server, peer: &str, token: Option<&str>) -> (bool, Option<String>) {
    smol::block_on(async {
        let mut ws = raw_ws(server.ws).await;
        send(&mut ws, &[hello(peer, token)]).await;
        let (got, _) = receive_until(&mut ws, Duration::from_secs(5), |ms| {
            ms.iter()
                .any(|m| matches!(m, Message::Welcome(_) | Message::Error { .. }))
        })
        .await;
        let welcomed = got.iter().any(|m| matches!(m, Message::Welcome(_)));
        let error = got.iter().find_map(|m| match m {
            Message::Error { code, message } => Some(format!("{code:?}: {message}")),
            _ => None,
        });
        (welcomed, error)
    })
}

fn ws_url(server: &Server) -> String {
    format!("ws://127.0.0.1:{}", server.ws)
}

/// The server's answer to a Loro join of `room` with `token` on `ws`
/// (`JoinResponseOk` or `JoinError`), and whether the socket closed.
async fn loro_join(
    ws: &mut Socket,
    room: &str,
    token: &str,
) -> (Option<loro_protocol::Body>, bool) {
    use loro_protocol::{Body, Crdt};
    let join = Body::JoinRequest {
        auth: token.as_bytes().to_vec(),
        version: Vec::new(),
    };
    ws.send(loro(Crdt::Loro, room, join)).await.unwrap();
    let (mut got, _, closed) = loro_until(ws, Duration::from_secs(5), |m| {
        matches!(m.body, Body::JoinResponseOk { .. } | Body::JoinError { .. })
    })
    .await;
    (got.pop().map(|m| m.body), closed)
}

/// Whether a join answer grants `permission`.
fn joined_with(answer: &Option<loro_protocol::Body>, permission: &str) -> bool {
    matches!(answer, Some(loro_protocol::Body::JoinResponseOk { permission: p, .. }) if p == permission)
}

/// Whether a join answer refuses the token, saying `says`.
fn refused_saying(answer: &Option<loro_protocol::Body>, says: &str) -> bool {
    matches!(answer, Some(loro_protocol::Body::JoinError {
        code: loro_protocol::JoinErrorCode::AuthFailed,
        message,
        ..
    }) if message.contains(says))
}

#[test]
fn each_kind_of_token_gets_its_answer_on_the_native_socket() {
    let server = start("jwt-native", &["--jwt-audience", "docweave"]);
    let aud = json!({ "aud": "docweave" });
    let none_alg = {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = b64.encode(
            json!({ "sub": "alice", "exp": now_s() + 600, "aud": "docweave" })
                .to_string()
                .as_bytes(),
        );
        format!("{header}.{claims}.")
    };
    let huge = format!("{}.{}.{}", "a".repeat(400_000), "b".repeat(400_000), "c");
    let long = format!("{}.{}.{}", "a".repeat(50_000), "b".repeat(50_000), "c");
    let refused: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "requires a token"),
        (
            "wrong signature",
            Some(signed_with(
                "another-secret-another-secret-another",
                "alice",
                600,
                aud.clone(),
            )),
            "signature",
        ),
        (
            "expired",
            Some(signed("alice", -600, aud.clone())),
            "token-expired",
        ),
        (
            "not yet valid",
            Some(signed(
                "alice",
                1200,
                json!({ "aud": "docweave", "nbf": now_s() + 600 }),
            )),
            "not valid yet",
        ),
        (
            "wrong audience",
            Some(signed("alice", 600, json!({ "aud": "another-app" }))),
            "audience",
        ),
        ("alg none", Some(none_alg), "algorithm"),
        ("not a JWT", Some("just-some-text".into()), "not accepted"),
        ("1 MB token", Some(huge), "TooLarge"),
        ("100 KB token", Some(long), "at most 4096"),
        (
            "for another peer",
            Some(signed("bob", 600, aud.clone())),
            "for peer \"bob\"",
        ),
        (
            "malformed rights",
            Some(signed(
                "alice",
                600,
                json!({ "aud": "docweave", "docs": [{ "doc": "x", "access": "rwz" }] }),
            )),
            "rwcd",
        ),
    ];
    for (case, token, says) in refused {
        let (welcomed, error) = native_answer(&server, "alice", token.as_deref());
        assert!(!welcomed, "{case}: welcomed");
        assert!(
            error.as_deref().is_some_and(|e| e.contains(says)),
            "{case}: answered {error:?}, expected it to say {says:?}"
        );
    }
    let valid = signed("alice", 600, aud);
    assert_eq!(native_answer(&server, "alice", Some(&valid)), (true, None));
    // The server went on for everyone.
    let (ok, _, err) = cli(&[
        "doc",
        "put",
        &ws_url(&server),
        "after-attacks",
        "k",
        "v",
        "--token",
        &valid,
    ]);
    assert!(ok, "{err}");
}

#[test]
fn a_tokens_rights_decide_what_its_holder_may_read_and_write() {
    let server = start("jwt-rights", &[]);
    let writer = signed_for("writer", 600, "team/*", "rwc");
    let reader = signed_for("reader", 600, "team/*", "r");
    let url = ws_url(&server);
    let (ok, _, err) = cli(&[
        "doc",
        "put",
        &url,
        "team/plan",
        "k",
        "v",
        "--token",
        &writer,
    ]);
    assert!(ok, "the writer could not write: {err}");
    let (ok, _, err) = cli(&["doc", "put", &url, "other/x", "k", "v", "--token", &writer]);
    assert!(!ok, "the writer created a document outside its rights");
    assert!(!err.is_empty());
    let (ok, out, err) = cli(&["doc", "get", &url, "team/plan", "--token", &reader]);
    assert!(
        ok && out.contains("\"k\""),
        "the reader could not read: {out} {err}"
    );
    let (ok, _, _) = cli(&[
        "doc",
        "put",
        &url,
        "team/plan",
        "k",
        "w",
        "--token",
        &reader,
    ]);
    assert!(!ok, "a read-only token wrote");
    let (_, out, _) = cli(&["doc", "get", &url, "team/plan", "--token", &writer]);
    assert!(
        out.contains("\"v\""),
        "the read-only token's write landed: {out}"
    );
}

#[test]
fn a_connection_is_closed_when_its_token_expires() {
    let server = start("jwt-expiry", &["--jwt-leeway-s", "0"]);
    let token = signed("alice", 3, json!({}));
    smol::block_on(async {
        let mut ws = raw_ws(server.ws).await;
        send(&mut ws, &[hello("alice", Some(&token))]).await;
        let (got, closed) = receive_until(&mut ws, Duration::from_secs(2), |ms| {
            ms.iter().any(|m| matches!(m, Message::Welcome(_)))
        })
        .await;
        assert!(
            !closed && got.iter().any(|m| matches!(m, Message::Welcome(_))),
            "{got:?}"
        );
        let (got, closed) = receive(&mut ws, Duration::from_secs(8)).await;
        assert!(closed, "still open after its token expired: {got:?}");
        assert!(
            got.iter().any(|m| matches!(m, Message::Error { code: ErrorCode::BadToken, message } if message.starts_with("token-expired"))),
            "{got:?}"
        );
    });
}

/// An EC key made from fixed bytes (test only): its private key in PEM,
/// its public key in PEM, and its public key as a JWK with `kid`.
fn ec_key(seed: u8, kid: &str) -> (String, String, Value) {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let secret = p256::SecretKey::from_slice(&[seed; 32]).unwrap();
    let private = secret.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public = secret.public_key();
    let public_pem = public.to_public_key_pem(LineEnding::LF).unwrap();
    // Uncompressed SEC1: 0x04, then x and y.
    let point = public.to_sec1_bytes();
    assert_eq!(point.len(), 65);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": b64.encode(&point[1..33]),
        "y": b64.encode(&point[33..]),
    });
    (private, public_pem, jwk)
}

fn es256(private_pem: &str, kid: Option<&str>, sub: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_string);
    let claims = json!({ "sub": sub, "exp": now_s() + 600 });
    encode(
        &header,
        &claims,
        &EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[test]
fn tokens_signed_with_public_keys_and_jwks_keys_are_picked_by_kid() {
    let dir = data_dir("jwt-keys-files");
    std::fs::create_dir_all(&dir).unwrap();
    let (old_private, old_public, _) = ec_key(7, "old");
    let (new_private, _, new_jwk) = ec_key(9, "new");
    let (stranger_private, _, _) = ec_key(11, "stranger");
    let pem = dir.join("old.pem");
    std::fs::write(&pem, old_public).unwrap();
    let jwks = dir.join("keys.json");
    std::fs::write(&jwks, json!({ "keys": [new_jwk] }).to_string()).unwrap();
    // Public keys only: no HMAC secret.
    let server = Server::start(
        "server",
        &data_dir("jwt-keys"),
        free_port(),
        free_port(),
        &[
            "--jwt-public-key",
            &format!("old={}", pem.display()),
            "--jwks-file",
            &jwks.display().to_string(),
        ],
    );
    let cases = [
        (
            "old key, its kid",
            es256(&old_private, Some("old"), "alice"),
            true,
        ),
        (
            "new key from the JWKS",
            es256(&new_private, Some("new"), "alice"),
            true,
        ),
        (
            "new key named as the old",
            es256(&new_private, Some("old"), "alice"),
            false,
        ),
        (
            "a key the server does not know",
            es256(&stranger_private, None, "alice"),
            false,
        ),
        // An HS256 token signed with the server's public key as its secret
        // (the classic algorithm confusion) finds no HMAC key here.
        (
            "HS256 in an EC server",
            signed("alice", 600, json!({})),
            false,
        ),
    ];
    for (case, token, welcome) in cases {
        let (welcomed, error) = native_answer(&server, "alice", Some(&token));
        assert_eq!(welcomed, welcome, "{case}: {error:?}");
    }
    // A JWKS that is not JSON stops the server at start with a clear word.
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "not json").unwrap();
    let (ok, _, err) = cli(&[
        "serve",
        "--data",
        &dir.join("d").display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--jwks-file",
        &broken.display().to_string(),
    ]);
    assert!(!ok && err.contains("is not a JWKS"), "{err}");
}

#[test]
fn a_loro_join_gets_the_rights_of_its_token_and_a_refused_one_fails_alone() {
    let server = start("jwt-loro", &[]);
    let reader = signed_for("reader", 600, "room-*", "r");
    let expired = signed("reader", -600, json!({}));
    smol::block_on(async {
        let mut ws = raw_ws_at(server.ws, "/loro").await;
        let (answer, closed) = loro_join(&mut ws, "room-a", &expired).await;
        assert!(!closed, "the connection was closed: {answer:?}");
        assert!(refused_saying(&answer, "token-expired"), "{answer:?}");
        let (answer, _) = loro_join(&mut ws, "room-a", &reader).await;
        assert!(joined_with(&answer, "read"), "{answer:?}");
        let (answer, closed) = loro_join(&mut ws, "secret", &reader).await;
        assert!(
            !closed && matches!(answer, Some(loro_protocol::Body::JoinError { .. })),
            "{answer:?}"
        );
    });
}

#[test]
fn the_status_page_shows_a_token_holder_only_what_its_rights_let_it_read() {
    let server = start("jwt-status", &[]);
    let admin = signed("admin", 600, json!({}));
    let url = ws_url(&server);
    for doc in ["public/notes", "secret/plans"] {
        let (ok, _, err) = cli(&["doc", "put", &url, doc, "k", "v", "--token", &admin]);
        assert!(ok, "{err}");
    }
    let reader = signed_for("reader", 600, "public/*", "r");
    let page = |token: &str| {
        http_raw(
            server.http,
            &format!(
                "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {token}\r\n\r\n"
            ),
            Duration::from_secs(5),
        )
    };
    let seen = page(&reader);
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(
        seen.contains("public/notes") && !seen.contains("secret/plans"),
        "{seen}"
    );
    assert!(page(&signed("reader", -600, json!({}))).starts_with("HTTP/1.1 401"));
}

#[test]
fn a_recording_and_the_logs_hold_no_token_or_secret() {
    let dir = data_dir("jwt-recorded");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("recording");
    let data = data_dir("jwt-recording");
    let mut server = Server::start_env(
        "server",
        &data,
        free_port(),
        free_port(),
        &["--record", &log.display().to_string()],
        None,
        &[("DOCWEAVE_JWT_SECRET", SECRET), ("DOCWEAVE_TEST_LOG", "1")],
    );
    let token = signed_for("alice", 600, "*", "rwc");
    let (ok, _, err) = cli(&[
        "doc",
        "put",
        &ws_url(&server),
        "d",
        "k",
        "v",
        "--token",
        &token,
    ]);
    assert!(ok, "{err}");
    let _ = native_answer(
        &server,
        "alice",
        Some(&signed_with(
            "wrong-wrong-wrong-wrong-wrong-wrong",
            "alice",
            600,
            json!({}),
        )),
    );
    server.kill9();
    let bytes: Vec<u8> = docweave_shell::files_in(&log)
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    let recorded = String::from_utf8_lossy(&bytes);
    let (ok, trace, err) = cli(&["trace", &log.display().to_string()]);
    assert!(ok, "{err}");
    assert!(
        trace.contains("with a signed token: valid") && trace.contains("refused"),
        "no verdict recorded: {trace}"
    );
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !recorded.contains(signature),
        "the token is in the recording"
    );
    assert!(!recorded.contains(SECRET), "the secret is in the recording");
    let logs = std::fs::read_to_string(data.join("serve.log")).unwrap();
    assert!(logs.contains("docweave"), "no log: {logs}");
    assert!(
        !logs.contains(signature) && !logs.contains(SECRET),
        "{logs}"
    );
    // The recording replays exactly: the verdicts are in it, not the keys.
    let (ok, _, err) = cli(&["replay", &log.display().to_string()]);
    assert!(ok, "{err}");
}

#[test]
fn revoking_a_token_cuts_its_connections_within_a_second_and_keeps_others() {
    let dir = data_dir("jwt-revoked-file");
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("revoked.txt");
    std::fs::write(&list, "# nobody yet\n").unwrap();
    let mut server = start(
        "jwt-revocation",
        &["--revoked-file", &list.display().to_string()],
    );
    let alice = signed("alice", 600, json!({}));
    let bob = signed("bob", 600, json!({}));
    smol::block_on(async {
        let mut a = raw_ws(server.ws).await;
        let mut b = raw_ws(server.ws).await;
        send(&mut a, &[hello("alice", Some(&alice))]).await;
        send(&mut b, &[hello("bob", Some(&bob))]).await;
        for ws in [&mut a, &mut b] {
            let (got, _) = receive_until(ws, Duration::from_secs(5), |ms| {
                ms.iter().any(|m| matches!(m, Message::Welcome(_)))
            })
            .await;
            assert!(got.iter().any(|m| matches!(m, Message::Welcome(_))));
        }
        // The jti of alice's token (see `signed`).
        std::fs::write(&list, "alice-1\n").unwrap();
        let asked = std::time::Instant::now();
        let (got, closed) = receive(&mut a, Duration::from_secs(5)).await;
        let took = asked.elapsed();
        assert!(
            closed,
            "alice's connection outlived its revocation: {got:?}"
        );
        assert!(
            got.iter().any(|m| matches!(m, Message::Error { message, .. } if message.starts_with("token-revoked"))),
            "{got:?}"
        );
        eprintln!("revocation reached the connection in {took:?}");
        let (_, closed) = receive(&mut b, Duration::from_millis(500)).await;
        assert!(!closed, "bob's connection was cut too");
    });
    let (welcomed, error) = native_answer(&server, "alice", Some(&alice));
    assert!(!welcomed && error.is_some_and(|e| e.contains("revoked")));
    // A vanished file leaves the last list in force.
    std::fs::remove_file(&list).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(!native_answer(&server, "alice", Some(&alice)).0);
    // An emptied list, read on SIGHUP, lets alice in again; the server goes on.
    std::fs::write(&list, "").unwrap();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(1200));
    assert!(server.alive(), "SIGHUP stopped the server");
    assert!(native_answer(&server, "alice", Some(&alice)).0);
}

/// Waits until the server closes `ws` with a `token-revoked` error (5 s at
/// most): how long that took, or what came instead.
async fn cut_off(ws: &mut Socket) -> Result<Duration, String> {
    let asked = std::time::Instant::now();
    let (got, closed) = receive(ws, Duration::from_secs(5)).await;
    let revoked = got.iter().any(
        |m| matches!(m, Message::Error { message, .. } if message.starts_with("token-revoked")),
    );
    match closed && revoked {
        true => Ok(asked.elapsed()),
        false => Err(format!("closed: {closed}, got {got:?}")),
    }
}

async fn welcomed(server: &Server, peer: &str, token: &str) -> Socket {
    let mut ws = raw_ws(server.ws).await;
    send(&mut ws, &[hello(peer, Some(token))]).await;
    let (got, _) = receive_until(&mut ws, Duration::from_secs(5), |ms| {
        ms.iter().any(|m| matches!(m, Message::Welcome(_)))
    })
    .await;
    assert!(
        got.iter().any(|m| matches!(m, Message::Welcome(_))),
        "{got:?}"
    );
    ws
}

#[test]
fn a_revocation_on_one_server_cuts_the_identity_off_on_another_on_one_database() {
    let db = docweave_tests::postgres::fresh_database("shared_revocations");
    let dir = data_dir("jwt-shared-revocations");
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("revoked.txt");
    std::fs::write(&list, "").unwrap();
    let start_on = |name: &str, extra: &[&str]| {
        let mut args = vec!["--store", db.as_str()];
        args.extend_from_slice(extra);
        Server::start_env(
            name,
            &data_dir(&format!("jwt-shared-{name}")),
            free_port(),
            free_port(),
            &args,
            None,
            &[("DOCWEAVE_JWT_SECRET", SECRET)],
        )
    };
    let revoking = start_on(
        "pg-revoking",
        &["--revoked-file", &list.display().to_string()],
    );
    // The other server has no list of its own: it follows the store's.
    let following = start_on("pg-following", &[]);
    let (alice, bob) = (
        signed("alice", 600, json!({})),
        signed("bob", 600, json!({})),
    );
    smol::block_on(async {
        let mut a = welcomed(&following, "alice", &alice).await;
        let mut b = welcomed(&following, "bob", &bob).await;
        std::fs::write(&list, "sub:alice\n").unwrap();
        let took = cut_off(&mut a).await.expect("alice kept her connection");
        eprintln!("a revocation on one server reached a connection on the other in {took:?}");
        let (_, closed) = receive(&mut b, Duration::from_millis(500)).await;
        assert!(!closed, "bob's connection was cut too");
    });
    let (welcomed_again, error) = native_answer(&following, "alice", Some(&alice));
    assert!(!welcomed_again && error.is_some_and(|e| e.contains("revoked")));
    // Lifted on the server that made it: alice is let in everywhere again.
    std::fs::write(&list, "").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !native_answer(&following, "alice", Some(&alice)).0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the lifted revocation stayed in force"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(native_answer(&revoking, "alice", Some(&alice)).0);
}

#[test]
fn a_tokens_file_read_again_cuts_withdrawn_tokens_and_admits_new_ones() {
    let dir = data_dir("tokens-file-list");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens.txt");
    let first = "# who may connect\nalice=alice-key\nbob=bob-key\ndana=dana-key\n";
    std::fs::write(&file, first).unwrap();
    // No signing keys: static tokens alone guard this server.
    let server = Server::start(
        "server",
        &data_dir("tokens-file"),
        free_port(),
        free_port(),
        &["--tokens-file", &file.display().to_string()],
    );
    smol::block_on(async {
        let mut a = welcomed(&server, "alice", "alice-key").await;
        let mut b = welcomed(&server, "bob", "bob-key").await;
        // Dana in a Loro room.
        let mut room = raw_ws_at(server.ws, "/loro").await;
        let (answer, _) = loro_join(&mut room, "notes", "dana-key").await;
        assert!(joined_with(&answer, "write"), "{answer:?}");
        std::fs::write(&file, "bob=bob-key\ncarol=carol-key\n").unwrap();
        let took = cut_off(&mut a)
            .await
            .expect("alice kept a connection her withdrawn token let in");
        eprintln!("a withdrawn static token was cut off in {took:?}");
        let (_, closed) = receive(&mut b, Duration::from_millis(500)).await;
        assert!(!closed, "bob's connection was cut though his token stays");
        let (got, _, closed) = loro_until(&mut room, Duration::from_secs(3), |m| {
            matches!(m.body, loro_protocol::Body::RoomError { .. })
        })
        .await;
        // The node closes the connection her token let in; the bridge's
        // socket ends with it (or her room ends, had it outlived it).
        let ended = closed
            || got
                .iter()
                .any(|m| matches!(m.body, loro_protocol::Body::RoomError { .. }));
        assert!(ended, "dana's Loro room outlived her token: {got:?}");
        let mut again = raw_ws_at(server.ws, "/loro").await;
        let (answer, _) = loro_join(&mut again, "notes", "dana-key").await;
        assert!(refused_saying(&answer, "not accepted"), "{answer:?}");
    });
    assert!(
        native_answer(&server, "carol", Some("carol-key")).0,
        "a new token was not taken"
    );
    let (welcomed_again, error) = native_answer(&server, "alice", Some("alice-key"));
    assert!(
        !welcomed_again && error.is_some(),
        "a withdrawn token let alice in"
    );
    // A vanished file leaves the last tokens in force.
    std::fs::remove_file(&file).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(native_answer(&server, "bob", Some("bob-key")).0);
    assert!(!native_answer(&server, "alice", Some("alice-key")).0);
    // So does an empty one (being written, most likely).
    std::fs::write(&file, "").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(native_answer(&server, "bob", Some("bob-key")).0);
    // A list of nobody lets nobody in, with or without a token: the server
    // does not fall open.
    std::fs::write(&file, "# nobody\n").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while native_answer(&server, "bob", Some("bob-key")).0 {
        assert!(
            std::time::Instant::now() < deadline,
            "bob's token outlived the list"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !native_answer(&server, "anyone", None).0,
        "an emptied list opened the server"
    );
}

/// The app's backend for `--auth-url`: vouches for `session-alice`
/// (alice, any document), `session-rita` (rita, read-only), refuses
/// `session-gone`, answers `session-slow` after 6 s; counts its requests.
fn app_backend() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let count = count.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let asked: Value = serde_json::from_slice(&body).unwrap();
                let (status, answer) = match asked["token"].as_str().unwrap_or("") {
                    "session-alice" => (200, json!({"sub": "alice", "ttl_s": 60})),
                    "session-rita" => (
                        200,
                        json!({"sub": "rita", "docs": [{"doc": "*", "access": "r"}]}),
                    ),
                    "session-gone" => (403, json!({"message": "signed out"})),
                    "session-slow" => {
                        std::thread::sleep(Duration::from_secs(6));
                        (200, json!({"sub": "sloane"}))
                    }
                    _ => (401, json!({"message": "no such session"})),
                };
                let answer = answer.to_string();
                let mut stream = stream;
                // A client that hung up misses its answer; the test sees that.
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            });
        }
    });
    (port, asked)
}

#[test]
fn session_tokens_are_vouched_for_by_the_apps_backend_without_stalling_anyone() {
    let (port, asked) = app_backend();
    let url = format!("http://127.0.0.1:{port}/docweave/auth");
    let server = start(
        "auth-url",
        &["--auth-url", &url, "--auth-timeout-ms", "2500"],
    );
    let count = || asked.load(std::sync::atomic::Ordering::SeqCst);
    assert!(native_answer(&server, "alice", Some("session-alice")).0);
    assert!(native_answer(&server, "alice", Some("session-alice")).0);
    assert_eq!(count(), 1, "a kept answer was asked for again");
    let (welcomed, error) = native_answer(&server, "mallory", Some("session-gone"));
    assert!(!welcomed && error.is_some_and(|e| e.contains("signed out")));
    // The identity is the backend's, not the hello's.
    let (welcomed, _) = native_answer(&server, "mallory", Some("session-alice"));
    assert!(!welcomed, "a session of alice spoke as mallory");
    // A slow backend costs its own client a bounded wait and a refusal;
    // others are let in meanwhile.
    let slow = std::thread::spawn({
        let ws = server.ws;
        move || {
            smol::block_on(async {
                let mut c = raw_ws(ws).await;
                let started = std::time::Instant::now();
                send(&mut c, &[hello("sloane", Some("session-slow"))]).await;
                let (got, _) = receive_until(&mut c, Duration::from_secs(5), |ms| {
                    ms.iter()
                        .any(|m| matches!(m, Message::Welcome(_) | Message::Error { .. }))
                })
                .await;
                (started.elapsed(), got)
            })
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let started = std::time::Instant::now();
    assert!(native_answer(&server, "alice", Some("session-alice")).0);
    let others_waited = started.elapsed();
    let (took, got) = slow.join().unwrap();
    assert!(
        got.iter()
            .any(|m| matches!(m, Message::Error { message, .. } if message.contains("try again"))),
        "{got:?}"
    );
    assert!(
        took < Duration::from_millis(4500),
        "the slow check took {took:?}"
    );
    assert!(
        others_waited < Duration::from_millis(1500),
        "alice waited {others_waited:?} behind the slow check"
    );
    // A Loro join: a session not asked about yet is refused as pending
    // (and asked about meanwhile); the next try joins with its rights.
    smol::block_on(async {
        let mut room = raw_ws_at(server.ws, "/loro").await;
        let (answer, _) = loro_join(&mut room, "notes", "session-rita").await;
        assert!(refused_saying(&answer, "auth-pending"), "{answer:?}");
        // Tried again until the answer is in (10 s at most).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut room = raw_ws_at(server.ws, "/loro").await;
            let (answer, _) = loro_join(&mut room, "notes", "session-rita").await;
            if joined_with(&answer, "read") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never let in: {answer:?}"
            );
            smol::Timer::after(Duration::from_millis(100)).await;
        }
    });
}

#[test]
fn the_listener_api_and_polling_sessions_take_signed_tokens() {
    let server = start("jwt-http", &[]);
    let register = |token: &str| -> String {
        let body = "{}";
        let req = format!(
            "POST /listeners HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        http_raw(server.http, &req, Duration::from_secs(5))
    };
    // No `x-docweave-peer`: the request speaks as the token's `sub`.
    let ok = register(&signed("indexer", 600, json!({})));
    assert!(
        ok.starts_with("HTTP/1.1 200") && ok.contains("\"id\""),
        "{ok}"
    );
    let expired = register(&signed("indexer", -600, json!({})));
    assert!(
        !expired.starts_with("HTTP/1.1 200") && expired.contains("token-expired"),
        "{expired}"
    );
    let forged = register(&signed_with(
        "forged-forged-forged-forged-forged-forged",
        "indexer",
        600,
        json!({}),
    ));
    assert!(!forged.starts_with("HTTP/1.1 200"), "{forged}");
    // A polling client (`http://`) with a signed token reads and writes.
    let url = format!("http://127.0.0.1:{}", server.http);
    let token = signed("poller", 600, json!({}));
    let (ok, _, err) = cli(&["doc", "put", &url, "polled", "k", "v", "--token", &token]);
    assert!(ok, "{err}");
    let (ok, _, _) = cli(&[
        "doc",
        "get",
        &url,
        "polled",
        "--token",
        &signed("poller", -600, json!({})),
    ]);
    assert!(!ok, "an expired token read over HTTP polling");
}

/// Connected and disconnected events about `peer` seen within `within`.
async fn link_events(
    events: &async_channel::Receiver<docweave_core::Event>,
    peer: &str,
    within: Duration,
) -> (usize, usize) {
    use docweave_core::Event;
    let deadline = std::time::Instant::now() + within;
    let (mut up, mut down) = (0, 0);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return (up, down);
        }
        let next = futures_lite::future::or(async { events.recv().await.ok() }, async {
            smol::Timer::after(left).await;
            None
        })
        .await;
        match next {
            Some(Event::PeerConnected { peer: p }) if p.as_str() == peer => up += 1,
            Some(Event::PeerDisconnected { peer: p, .. }) if p.as_str() == peer => down += 1,
            _ => {}
        }
    }
}

#[test]
fn a_native_client_refreshes_its_token_on_the_live_connection() {
    use docweave_adapters::transport::{ws_connect, WsOptions};
    let server = start("jwt-refresh", &["--jwt-leeway-s", "0"]);
    let url = format!("ws://127.0.0.1:{}/", server.ws);
    let dialer: docweave_shell::Dialer = std::sync::Arc::new(move |_| {
        let u = url.clone();
        Box::pin(async move { ws_connect(&u, WsOptions::default()).await })
    });
    let repo = docweave_shell::Repo::builder("alice").build().unwrap();
    // The app's provider: three fresh tokens living three seconds each,
    // then its backend is down.
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let provider = {
        let asked = asked.clone();
        move || match asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0..3 => Ok(signed("alice", 3, json!({}))),
            _ => Err("the app's backend is down".to_string()),
        }
    };
    smol::block_on(async {
        let events = repo.events().await.unwrap();
        let first = signed("alice", 3, json!({}));
        repo.connect_with("server", Some(&first), dialer).unwrap();
        repo.keep_token_fresh("server", &first, provider).unwrap();
        let (up, down) = link_events(&events, "server", Duration::from_secs(1)).await;
        assert_eq!((up, down), (1, 0), "did not connect");
        // Six seconds on tokens that live three: refreshed before each expires.
        for _ in 0..5 {
            let (up, down) = link_events(&events, "server", Duration::from_secs(1)).await;
            assert_eq!(
                (up, down),
                (0, 0),
                "the connection dropped despite refreshes"
            );
        }
        assert!(asked.load(std::sync::atomic::Ordering::SeqCst) >= 2);
        // Once the provider fails, the server closes it when the last token expires.
        let (_, down) = link_events(&events, "server", Duration::from_secs(8)).await;
        assert!(down >= 1, "the connection outlived its token");
    });
    smol::block_on(repo.close());
}

#[test]
fn a_loro_client_refreshes_by_joining_with_a_new_token_of_its_identity() {
    let server = start("jwt-loro-rejoin", &[]);
    let first = signed_for("carol", 600, "room-*", "r");
    let wider = signed_for("carol", 1200, "room-*", "rwc");
    let someone_else = signed("dave", 600, json!({}));
    smol::block_on(async {
        let mut ws = raw_ws_at(server.ws, "/loro").await;
        let (answer, _) = loro_join(&mut ws, "room-a", &first).await;
        assert!(joined_with(&answer, "read"), "{answer:?}");
        // A new token of the same identity, with more rights: taken.
        let (answer, _) = loro_join(&mut ws, "room-b", &wider).await;
        assert!(joined_with(&answer, "write"), "{answer:?}");
        // Another identity's token fails for its room; the connection goes on.
        let (answer, closed) = loro_join(&mut ws, "room-c", &someone_else).await;
        assert!(!closed);
        assert!(refused_saying(&answer, "another identity"), "{answer:?}");
        let (answer, _) = loro_join(&mut ws, "room-d", &wider).await;
        assert!(joined_with(&answer, "write"), "{answer:?}");
    });
}

#[test]
fn rules_read_again_decide_at_once_and_a_broken_file_changes_nothing() {
    let dir = data_dir("jwt-rules-file");
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.json");
    let all = r#"{"read":true,"write":true,"create":true,"delete":true}"#;
    let none = r#"{"read":false,"write":false,"create":false,"delete":false}"#;
    std::fs::write(&rules, format!(r#"{{"rules":[],"default":{all}}}"#)).unwrap();
    let server = start("jwt-rules", &["--rules", &rules.display().to_string()]);
    let url = ws_url(&server);
    // No `docs` claim: the rules decide for these tokens.
    let writer = signed("writer", 600, json!({}));
    let eve = signed("eve", 600, json!({}));
    let (ok, _, err) = cli(&["doc", "put", &url, "plan", "k", "v", "--token", &writer]);
    assert!(ok, "{err}");
    let (ok, _, _) = cli(&["doc", "get", &url, "plan", "--token", &eve]);
    assert!(ok, "eve could not read under the first rules");
    std::fs::write(
        &rules,
        format!(r#"{{"rules":[{{"peer":{{"Exact":"eve"}},"doc":"Any","access":{none}}}],"default":{all}}}"#),
    )
    .unwrap();
    let eve_reads = || {
        cli(&[
            "doc",
            "get",
            &url,
            "plan",
            "--token",
            &eve,
            "--timeout",
            "5",
        ])
    };
    std::thread::sleep(Duration::from_millis(1500));
    let (ok, out, _) = eve_reads();
    assert!(!ok && !out.contains("\"v\""), "eve still reads: {out}");
    // A rules file that stops parsing leaves the last rules in force.
    std::fs::write(&rules, "not json").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let (ok, _, _) = eve_reads();
    assert!(!ok, "a broken rules file let eve back in");
    let (ok, _, _) = cli(&["doc", "get", &url, "plan", "--token", &writer]);
    assert!(ok, "the writer lost its rights to a broken rules file");
}

/// The bad tokens of the table in the closing note, for a server that
/// wants `aud: docweave`.
fn bad_tokens() -> Vec<(&'static str, Option<String>)> {
    let aud = json!({ "aud": "docweave" });
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none_alg = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(
            json!({ "sub": "alice", "exp": now_s() + 600, "aud": "docweave" })
                .to_string()
                .as_bytes()
        )
    );
    vec![
        ("no token", None),
        (
            "wrong signature",
            Some(signed_with(
                "another-secret-another-secret-another",
                "alice",
                600,
                aud.clone(),
            )),
        ),
        ("expired", Some(signed("alice", -600, aud.clone()))),
        (
            "not yet valid",
            Some(signed(
                "alice",
                1200,
                json!({ "aud": "docweave", "nbf": now_s() + 600 }),
            )),
        ),
        (
            "wrong audience",
            Some(signed("alice", 600, json!({ "aud": "another-app" }))),
        ),
        ("alg none", Some(none_alg)),
    ]
}

#[test]
fn every_entry_point_refuses_each_bad_token_and_takes_a_good_one() {
    let dir = data_dir("jwt-entry-points-revoked");
    std::fs::create_dir_all(&dir).unwrap();
    let revoked = dir.join("revoked.txt");
    std::fs::write(&revoked, "revoked-1\n").unwrap();
    let server = start(
        "jwt-entry-points",
        &[
            "--jwt-audience",
            "docweave",
            "--revoked-file",
            &revoked.display().to_string(),
        ],
    );
    let good = signed("alice", 600, json!({ "aud": "docweave" }));
    let url = ws_url(&server);
    let (ok, _, err) = cli(&["doc", "put", &url, "doc", "k", "v", "--token", &good]);
    assert!(ok, "{err}");
    let http = format!("http://127.0.0.1:{}", server.http);
    let listener = |token: Option<&str>| {
        let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        let req = format!(
            "POST /listeners HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-docweave-peer: alice\r\n{auth}content-length: 2\r\n\r\n{{}}"
        );
        http_raw(server.http, &req, Duration::from_secs(5))
    };
    let page = |token: Option<&str>| {
        let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        http_raw(
            server.http,
            &format!("GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{auth}\r\n"),
            Duration::from_secs(5),
        )
    };
    let mut cases = bad_tokens();
    cases.push((
        "revoked",
        Some(signed(
            "alice",
            600,
            json!({ "aud": "docweave", "jti": "revoked-1" }),
        )),
    ));
    cases.push(("good", Some(good.clone())));
    for (case, token) in cases {
        let good = case == "good";
        let t = token.as_deref();
        let mut args = vec!["doc", "get", url.as_str(), "doc", "--timeout", "5"];
        if let Some(t) = t {
            args.extend(["--token", t, "--as", "alice"]);
        }
        assert_eq!(cli(&args).0, good, "{case}: CLI over ws");
        args[2] = http.as_str();
        assert_eq!(cli(&args).0, good, "{case}: CLI over http polling");
        assert_eq!(
            listener(t).starts_with("HTTP/1.1 200"),
            good,
            "{case}: listener API"
        );
        assert_eq!(
            page(t).starts_with("HTTP/1.1 200"),
            good,
            "{case}: status page"
        );
        smol::block_on(async {
            let mut ws = raw_ws_at(server.ws, "/loro").await;
            let (answer, closed) = loro_join(&mut ws, "doc", t.unwrap_or("")).await;
            assert!(!closed, "{case}: the Loro socket was closed");
            let right = match good {
                true => joined_with(&answer, "write"),
                false => refused_saying(&answer, ""),
            };
            assert!(right, "{case}: Loro join: {answer:?}");
        });
    }
    // A read-only token reads everywhere and writes nowhere.
    let reader = signed(
        "rita",
        600,
        json!({ "aud": "docweave", "docs": [{ "doc": "*", "access": "r" }] }),
    );
    for at in [url.as_str(), http.as_str()] {
        let get = ["doc", "get", at, "doc", "--token", &reader, "--as", "rita"];
        assert!(cli(&get).0, "read-only: get over {at}");
        let put = [
            "doc",
            "put",
            at,
            "doc",
            "k",
            "w",
            "--token",
            &reader,
            "--as",
            "rita",
            "--timeout",
            "5",
        ];
        assert!(!cli(&put).0, "read-only: put over {at} was taken");
    }
    smol::block_on(async {
        let mut ws = raw_ws_at(server.ws, "/loro").await;
        let (answer, _) = loro_join(&mut ws, "doc", &reader).await;
        assert!(
            joined_with(&answer, "read"),
            "read-only Loro join: {answer:?}"
        );
    });
}
