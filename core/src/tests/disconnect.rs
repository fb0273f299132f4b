//! The operator cuts connections off: every one of an identity, or one by
//! its channel. Each is told why and closed; nobody else is touched.

use super::kit::*;
use crate::{ChannelId, ErrorCode, Message, Msg, PeerId};

fn told_and_closed(cmds: &[crate::Cmd], ch: u64) -> bool {
    let told = messages(cmds, ch).iter().any(|m| {
        matches!(m, Message::Error { code: ErrorCode::PermissionDenied, message } if message.contains("spam"))
    });
    told && closes(cmds, ch)
}

#[test]
fn every_connection_of_an_identity_is_told_and_closed_and_others_stay() {
    let mut k = Kit::hub();
    k.peer(1, "alice");
    k.peer(2, "bob");
    let cmds = k.feed(Msg::Disconnect {
        peer: Some(PeerId::new("alice")),
        channel: None,
        reason: "spam".into(),
    });
    assert!(told_and_closed(&cmds, 1), "{cmds:?}");
    assert!(
        !closes(&cmds, 2) && messages(&cmds, 2).is_empty(),
        "{cmds:?}"
    );
    let listed: Vec<_> = k.model.connections().into_iter().map(|c| c.peer).collect();
    assert!(listed.contains(&Some(PeerId::new("bob"))), "{listed:?}");
}

#[test]
fn one_connection_is_closed_by_its_channel_and_a_store_never_is() {
    let mut k = Kit::hub();
    k.store(9);
    k.peer(1, "alice");
    k.peer(2, "bob");
    let cmds = k.feed(Msg::Disconnect {
        peer: None,
        channel: Some(ChannelId(2)),
        reason: "spam".into(),
    });
    assert!(told_and_closed(&cmds, 2), "{cmds:?}");
    assert!(!closes(&cmds, 1));
    let cmds = k.feed(Msg::Disconnect {
        peer: None,
        channel: Some(ChannelId(9)),
        reason: "spam".into(),
    });
    assert!(!closes(&cmds, 9), "{cmds:?}");
    // A store is not a connection an operator lists.
    assert!(k
        .model
        .connections()
        .iter()
        .all(|c| c.channel != ChannelId(9)));
}
