//! Rights that change while a Loro client is in a room (the rules file
//! rewritten, as an operator would): the room it may no longer read ends
//! with `RoomError evicted` (a client does not rejoin that in a loop), and
//! the connection's other rooms go on.

mod common;

use common::raw::*;
use common::{data_dir, free_port, Server};
use docweave_adapters::loro_protocol::{Body, Crdt, RoomErrorCode, UpdateStatus};
use std::time::Duration;

const ALL: &str = r#"{"read":true,"write":true,"create":true,"delete":true}"#;
const NONE: &str = r#"{"read":false,"write":false,"create":false,"delete":false}"#;

/// A server whose rules file (everything allowed to everyone) it watches.
fn server_with_rules(name: &str) -> (Server, std::path::PathBuf) {
    let dir = data_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.json");
    std::fs::write(&rules, format!(r#"{{"rules":[],"default":{ALL}}}"#)).unwrap();
    let server = Server::start(
        "server",
        &dir.join("data"),
        free_port(),
        free_port(),
        &["--rules", rules.to_str().unwrap()],
    );
    (server, rules)
}

/// Rewrites the rules: Loro clients without a token (their peers are
/// `loro-...`) may no longer read `room`; everything else stays allowed.
fn forbid_loro_clients(rules: &std::path::Path, room: &str) {
    std::fs::write(
        rules,
        format!(
            r#"{{"rules":[{{"peer":{{"Prefix":"loro-"}},"doc":{{"Exact":"{room}"}},"access":{NONE}}}],"default":{ALL}}}"#
        ),
    )
    .unwrap();
}

#[test]
fn a_room_whose_rights_are_removed_ends_with_evicted_and_the_others_go_on() {
    let (server, rules) = server_with_rules("loro-rights");
    smol::block_on(async {
        let mut c = loro_join(server.ws, "open").await;
        let join = Body::JoinRequest {
            auth: Vec::new(),
            version: Vec::new(),
        };
        c.send(loro(Crdt::Loro, "closing", join)).await.unwrap();
        let (got, _, _) = loro_until(&mut c, Duration::from_secs(10), |m| {
            m.room == "closing" && matches!(m.body, Body::JoinResponseOk { .. })
        })
        .await;
        assert!(
            got.iter()
                .any(|m| m.room == "closing" && matches!(m.body, Body::JoinResponseOk { .. })),
            "{got:?}"
        );
        forbid_loro_clients(&rules, "closing");
        let (got, _, closed) = loro_until(&mut c, Duration::from_secs(10), |m| {
            matches!(m.body, Body::RoomError { .. })
        })
        .await;
        assert!(!closed, "the connection was closed");
        let evicted = got
            .iter()
            .find(|m| matches!(m.body, Body::RoomError { .. }));
        assert!(
            matches!(evicted, Some(m) if m.room == "closing"
                && matches!(m.body, Body::RoomError { code: RoomErrorCode::Evicted, .. })),
            "{got:?}"
        );
        // The other room goes on: an update there is taken.
        let doc = loro::LoroDoc::new();
        doc.get_text("t").insert(0, "still here").unwrap();
        doc.commit();
        let body = Body::DocUpdate {
            updates: vec![doc.export(loro::ExportMode::all_updates()).unwrap()],
            batch: [1; 8],
        };
        c.send(loro(Crdt::Loro, "open", body)).await.unwrap();
        let (got, _, _) = loro_until(&mut c, Duration::from_secs(10), |m| {
            matches!(m.body, Body::Ack { .. })
        })
        .await;
        assert!(
            got.iter().any(|m| m.room == "open"
                && matches!(
                    m.body,
                    Body::Ack {
                        status: UpdateStatus::Ok,
                        ..
                    }
                )),
            "{got:?}"
        );
    });
}

/// A client that never stops talking (a ping sent again as soon as the
/// last is answered: thousands a second) is checked as often as a quiet
/// one. Its session always had another message waiting, which was taken
/// before the session's tick, so the tick never came, and a busy client
/// kept a room it had lost the right to.
#[test]
fn a_client_that_keeps_sending_loses_a_room_it_may_no_longer_read() {
    let (server, rules) = server_with_rules("loro-rights-busy");
    smol::block_on(async {
        let mut c = loro_join(server.ws, "busy").await;
        forbid_loro_clients(&rules, "busy");
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let mut seen = Vec::new();
        let evicted = loop {
            assert!(
                std::time::Instant::now() < deadline,
                "not evicted in 15 s while sending: {seen:?}"
            );
            c.send(async_tungstenite::tungstenite::Message::Text("ping".into()))
                .await
                .unwrap();
            let (got, _, closed) = loro_until(&mut c, Duration::from_millis(100), |m| {
                matches!(m.body, Body::RoomError { .. })
            })
            .await;
            assert!(!closed, "the connection was closed");
            if let Some(m) = got
                .iter()
                .find(|m| matches!(m.body, Body::RoomError { .. }))
            {
                break m.clone();
            }
            seen.extend(got);
        };
        assert_eq!(evicted.room, "busy");
        assert!(
            matches!(
                evicted.body,
                Body::RoomError {
                    code: RoomErrorCode::Evicted,
                    ..
                }
            ),
            "{evicted:?}"
        );
    });
}
