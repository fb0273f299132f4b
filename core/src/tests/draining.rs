//! A node that drains (a rolling restart) sends its clients elsewhere, and
//! a client that is sent elsewhere dials again when told, not after its
//! backoff.

use super::kit::*;
use crate::{Clock, Cmd, Hello, Message, Msg, PeerId, PeerKind, RemoteAddr};

fn drain(k: &mut Kit) -> Vec<Cmd> {
    k.feed(Msg::Drain {
        reason: "restarting".into(),
        retry_after_ms: 0,
    })
}

fn going_away(m: &Message) -> bool {
    matches!(m, Message::GoingAway { reason, retry_after_ms: 0 } if reason == "restarting")
}

#[test]
fn a_draining_node_tells_each_client_that_knows_how_and_refuses_new_ones() {
    let mut k = Kit::hub();
    k.peer(1, "alice");
    // A client on protocol 3 cannot be told; it learns when it is closed.
    k.greet(
        2,
        Message::Hello(Hello {
            peer: PeerId::new("old"),
            name: "old".into(),
            kind: PeerKind::User,
            protocol: 3,
            token: None,
            clock: Clock(0),
        }),
    );
    let cmds = drain(&mut k);
    assert!(messages(&cmds, 1).iter().any(going_away), "{cmds:?}");
    assert!(messages(&cmds, 2).is_empty(), "{cmds:?}");
    // Nobody is cut off: what they sent is still answered.
    assert!(!closes(&cmds, 1) && !closes(&cmds, 2));
    assert!(k.model.is_draining());
    // A new client is sent away at its hello.
    let cmds = k.peer(3, "bob");
    assert!(messages(&cmds, 3).iter().any(going_away), "{cmds:?}");
    assert!(!messages(&cmds, 3)
        .iter()
        .any(|m| matches!(m, Message::Welcome(_))));
    assert!(closes(&cmds, 3));
}

#[test]
fn a_client_sent_away_dials_again_after_the_asked_delay_not_its_backoff() {
    let mut k = Kit::hub();
    k.dial(1, "ws://a", "server-a");
    // The connection has lasted (one going away at once backs off).
    k.tick(10_000);
    let cmds = k.recv(
        1,
        Message::GoingAway {
            reason: "restarting".into(),
            retry_after_ms: 250,
        },
    );
    assert!(closes(&cmds, 1), "{cmds:?}");
    k.feed(Msg::ChannelRemoved {
        channel: crate::ChannelId(1),
    });
    let dial = |cmds: &[Cmd]| {
        cmds.iter()
            .any(|c| matches!(c, Cmd::Dial { remote } if *remote == RemoteAddr::new("ws://a")))
    };
    assert!(!dial(&k.tick(10_249)));
    assert!(dial(&k.tick(10_250)));
    // Only that once: a dial that fails again waits for the backoff.
    k.feed(Msg::ConnectFailed {
        remote: RemoteAddr::new("ws://a"),
    });
    assert!(!dial(&k.tick(10_251)));
}

#[test]
fn a_server_that_sends_going_away_right_after_welcome_gets_the_backoff_not_a_loop() {
    let mut k = Kit::hub();
    k.dial(1, "ws://a", "server-a");
    k.recv(
        1,
        Message::GoingAway {
            reason: "again".into(),
            retry_after_ms: 0,
        },
    );
    k.feed(Msg::ChannelRemoved {
        channel: crate::ChannelId(1),
    });
    let dialed = k.tick(1).iter().any(|c| matches!(c, Cmd::Dial { .. }));
    assert!(!dialed, "dialed again at once");
}

#[test]
fn going_away_from_a_client_that_we_did_not_dial_changes_nothing() {
    let mut k = Kit::hub();
    k.peer(1, "alice");
    let cmds = k.recv(
        1,
        Message::GoingAway {
            reason: "bye".into(),
            retry_after_ms: 0,
        },
    );
    assert!(!closes(&cmds, 1), "{cmds:?}");
}
