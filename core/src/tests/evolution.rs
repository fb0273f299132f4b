//! How the protocol evolves: the handshake settles on the highest version
//! both sides speak, a message kind a node does not know is answered and
//! the channel goes on, and newer messages go only where they are spoken.

use super::kit::*;
use crate::{
    ChannelId, Clock, Cmd, Config, ErrorCode, Event, Hello, Message, Msg, PeerId, PeerKind,
    PROTOCOL_VERSION,
};

fn hello_v(peer: &str, protocol: u32) -> Message {
    Message::Hello(Hello {
        peer: PeerId::new(peer),
        name: peer.into(),
        kind: PeerKind::User,
        protocol,
        token: None,
        clock: Clock(0),
    })
}

fn welcomed_with(cmds: &[Cmd], ch: u64) -> Option<u32> {
    messages(cmds, ch).iter().find_map(|m| match m {
        Message::Welcome(w) => Some(w.protocol),
        _ => None,
    })
}

#[test]
fn the_handshake_settles_on_the_highest_version_both_speak() {
    let mut k = Kit::hub();
    let older = k.greet(1, hello_v("old", 1));
    assert_eq!(welcomed_with(&older, 1), Some(1));
    let newer = k.greet(2, hello_v("new", PROTOCOL_VERSION + 1));
    assert_eq!(welcomed_with(&newer, 2), Some(PROTOCOL_VERSION));
    let ancient = k.greet(3, hello_v("ancient", 0));
    assert!(closes(&ancient, 3));
}

#[test]
fn a_node_configured_below_the_oldest_protocol_speaks_the_oldest() {
    let mut config = Config::new("hub");
    config.protocol = 0;
    let mut k = Kit::new(config);
    let cmds = k.greet(1, hello_v("new", PROTOCOL_VERSION + 1));
    assert_eq!(welcomed_with(&cmds, 1), Some(1));
    assert!(!closes(&cmds, 1));
}

#[test]
fn an_unknown_message_kind_is_answered_and_the_channel_goes_on() {
    let mut k = Kit::hub();
    k.greet(1, hello_v("new", PROTOCOL_VERSION + 1));
    let cmds = k.feed(Msg::Unsupported {
        channel: ChannelId(1),
        kind: 200,
    });
    assert!(messages(&cmds, 1).iter().any(|m| matches!(
        m,
        Message::Error {
            code: ErrorCode::Unsupported,
            ..
        }
    )));
    assert!(!closes(&cmds, 1));
    // A protocol-1 peer gets an error it can read.
    k.greet(2, hello_v("old", 1));
    let cmds = k.feed(Msg::Unsupported {
        channel: ChannelId(2),
        kind: 200,
    });
    assert!(messages(&cmds, 2).iter().any(|m| matches!(
        m,
        Message::Error {
            code: ErrorCode::MalformedFrame,
            ..
        }
    )));
    assert!(k.model.channel_peer(ChannelId(2)).is_some());
}

#[test]
fn a_listing_is_asked_only_of_peers_that_speak_protocol_2() {
    let mut k = Kit::new(Config::new("client"));
    k.dial(1, "hub", "hub");
    let cmds = k.feed(Msg::ListRemote {
        peer: PeerId::new("hub"),
        after: None,
    });
    assert!(messages(&cmds, 1)
        .iter()
        .any(|m| matches!(m, Message::ListDocs { .. })));
    let mut old = Config::new("client");
    old.protocol = 1;
    let mut k = Kit::new(old);
    k.dial(1, "hub", "hub");
    let cmds = k.feed(Msg::ListRemote {
        peer: PeerId::new("hub"),
        after: None,
    });
    assert!(messages(&cmds, 1).is_empty());
    assert!(events(&cmds)
        .iter()
        .any(|e| matches!(e, Event::Error { reason, .. } if reason.contains("protocol 1"))));
}

#[test]
fn list_docs_answers_what_the_asker_may_read_in_pages() {
    let mut k = Kit::hub();
    for d in ["a", "b", "c"] {
        k.create(&[], d);
    }
    k.greet(1, hello_v("alice", PROTOCOL_VERSION));
    let cmds = k.recv(
        1,
        Message::ListDocs {
            filter: crate::Filter::all(),
            after: Some(doc("a")),
        },
    );
    let listed: Vec<String> = messages(&cmds, 1)
        .iter()
        .flat_map(|m| match m {
            Message::DocList { docs, .. } => docs.iter().map(|d| d.doc.to_string()).collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(listed, vec!["b", "c"]);
}

#[test]
fn a_version_1_channel_is_never_sent_a_version_2_message() {
    let mut k = Kit::hub();
    k.create(&[], "d");
    k.greet(1, hello_v("old", 1));
    // A peer that negotiated version 1 and asks for a listing anyway.
    let cmds = k.recv(
        1,
        Message::ListDocs {
            filter: Default::default(),
            after: None,
        },
    );
    let got = messages(&cmds, 1);
    assert!(
        got.iter().all(|m| m.since_protocol() <= 1),
        "a version-1 channel was sent {got:?}"
    );
    assert!(got.iter().any(|m| matches!(
        m,
        Message::Error {
            code: ErrorCode::MalformedFrame,
            ..
        }
    )));
    // On version 2 the listing is answered.
    k.greet(2, hello_v("new", 2));
    let cmds = k.recv(
        2,
        Message::ListDocs {
            filter: Default::default(),
            after: None,
        },
    );
    assert!(messages(&cmds, 2)
        .iter()
        .any(|m| matches!(m, Message::DocList { .. })));
}
