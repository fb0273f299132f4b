use super::kit::*;
use crate::{ChannelId, Clock, Config, ErrorCode, Event, Hello, Message, Msg, PeerId, PeerKind};

fn error_code(cmds: &[crate::Cmd], ch: u64) -> Option<ErrorCode> {
    messages(cmds, ch).into_iter().find_map(|m| match m {
        Message::Error { code, .. } => Some(code),
        _ => None,
    })
}

#[test]
fn handshake_is_welcomed_and_the_peer_connected() {
    let mut k = Kit::hub();
    let cmds = k.peer(1, "alice");
    assert!(matches!(messages(&cmds, 1)[..], [Message::Welcome(_)]));
    assert!(events(&cmds).contains(&Event::PeerConnected {
        peer: PeerId::new("alice")
    }));
}

#[test]
fn protocol_mismatch_gets_an_error_and_a_close() {
    let mut k = Kit::hub();
    k.accept(1);
    let bad = Message::Hello(Hello {
        peer: PeerId::new("old"),
        name: String::new(),
        kind: PeerKind::User,
        protocol: crate::MIN_PROTOCOL_VERSION - 1,
        token: None,
        clock: Clock(0),
    });
    let cmds = k.recv(1, bad);
    assert_eq!(error_code(&cmds, 1), Some(ErrorCode::VersionMismatch));
    assert!(closes(&cmds, 1));
}

#[test]
fn a_missing_or_wrong_token_gets_an_error_and_a_close() {
    let mut c = Config::new("hub");
    c.tokens = vec!["secret".into()];
    let mut k = Kit::new(c);
    let cmds = k.peer(1, "mallory");
    assert_eq!(error_code(&cmds, 1), Some(ErrorCode::BadToken));
    assert!(closes(&cmds, 1));
    assert!(k.model.channel_peer(ChannelId(1)).is_none());
}

#[test]
fn messages_before_the_handshake_are_refused_without_closing() {
    let mut k = Kit::hub();
    k.accept(1);
    let cmds = k.recv(1, Message::Delete { doc: doc("x") });
    assert_eq!(error_code(&cmds, 1), Some(ErrorCode::NotEstablished));
    assert!(!closes(&cmds, 1));
    // The handshake still works afterwards.
    assert!(matches!(
        messages(&k.recv(1, hello("alice")), 1)[..],
        [Message::Welcome(_)]
    ));
}

#[test]
fn a_malformed_frame_closes_only_that_channel() {
    let mut k = Kit::hub();
    k.peer(1, "alice");
    k.peer(2, "bob");
    let cmds = k.feed(Msg::FrameRejected {
        channel: ChannelId(2),
        reason: "garbage".into(),
    });
    assert_eq!(error_code(&cmds, 2), Some(ErrorCode::MalformedFrame));
    assert!(closes(&cmds, 2) && !closes(&cmds, 1));
}

#[test]
fn doc_ids_with_control_characters_are_refused_at_the_entry() {
    let mut k = Kit::hub();
    k.peer(1, "alice");
    let cmds = k.recv(
        1,
        Message::SyncRequest {
            doc: doc("tab\there"),
            version: vv(&[]),
            bidirectional: false,
        },
    );
    assert_eq!(error_code(&cmds, 1), Some(ErrorCode::BadDocId));
    assert!(k.model.doc_version(&doc("tab\there")).is_none());
}

#[test]
fn a_peer_that_left_is_forgotten_after_the_linger_time_unless_it_returns() {
    let mut k = Kit::hub();
    k.peer(1, "alice");
    k.peer(2, "bob");
    k.create(&[], "d");
    for ch in [1, 2] {
        k.follow(ch, "d");
    }
    k.feed(Msg::ChannelRemoved {
        channel: ChannelId(1),
    });
    k.feed(Msg::ChannelRemoved {
        channel: ChannelId(2),
    });
    // Bob comes back in time; alice does not.
    k.now = 30_000;
    k.peer(3, "bob");
    k.tick(60_000);
    assert_eq!(k.model.peer_count(), 1, "alice's state outlived the linger");
    assert_eq!(k.model.subscribers(&doc("d")), vec![PeerId::new("bob")]);
}

/// A peer that leaves takes its outstanding requests with it, and only its
/// own: a peer whose id starts with its id keeps its requests.
#[test]
fn a_peer_that_leaves_takes_only_its_own_outstanding_requests() {
    let mut k = Kit::hub();
    k.dial(1, "ws://a", "a");
    k.dial(2, "ws://ab", "ab");
    k.dial(3, "ws://b", "b");
    k.feed(Msg::OpenDoc {
        doc: doc("notes"),
        meta: crate::DocMeta::default(),
    });
    let asked = |k: &Kit| -> Vec<String> {
        k.model
            .requests
            .keys()
            .map(|(p, _)| p.as_str().to_string())
            .collect()
    };
    assert_eq!(asked(&k), ["a", "ab", "b"]);
    k.feed(Msg::ChannelRemoved {
        channel: crate::ChannelId(1),
    });
    assert_eq!(asked(&k), ["ab", "b"]);
}
