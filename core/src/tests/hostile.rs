//! What a hostile or careless client can make the core do: identity bound
//! to credentials, one live connection per peer, bounded state, ids that
//! never wrap.

use super::kit::*;
use crate::{
    ChannelId, Clock, Cmd, Config, Ephemeral, ErrorCode, Filter, Grant, Hello, ListenerId, Message,
    Msg, Namespace, Pattern, Payload, PeerId, PeerKind, PROTOCOL_VERSION,
};

fn hello_with(peer: &str, token: Option<&str>, kind: PeerKind) -> Message {
    Message::Hello(Hello {
        peer: PeerId::new(peer),
        name: peer.into(),
        kind,
        protocol: PROTOCOL_VERSION,
        token: token.map(str::to_string),
        clock: Clock(0),
    })
}

#[test]
fn a_token_grants_only_its_peer_ids_and_never_the_nodes_own() {
    let mut c = Config::new("hub");
    c.grants = vec![Grant {
        token: "alice-secret".into(),
        peers: Pattern::Exact("alice".into()),
    }];
    c.tokens = vec!["admin".into()];
    let mut k = Kit::new(c);
    let cmds = k.greet(1, hello_with("alice", Some("alice-secret"), PeerKind::User));
    assert!(k.model.channel_peer(ChannelId(1)).is_some());
    assert!(!closes(&cmds, 1));
    let cmds = k.greet(2, hello_with("bob", Some("alice-secret"), PeerKind::User));
    assert!(refused_with(&cmds, 2, ErrorCode::BadToken) && closes(&cmds, 2));
    let cmds = k.greet(3, hello_with("hub", Some("admin"), PeerKind::Service));
    assert!(refused_with(&cmds, 3, ErrorCode::PermissionDenied) && closes(&cmds, 3));
    let mut open = Kit::hub();
    let cmds = open.greet(1, hello_with("hub", None, PeerKind::Service));
    assert!(
        closes(&cmds, 1),
        "an open node let a client be the node itself"
    );
}

#[test]
fn a_second_connection_of_a_peer_replaces_the_first_and_gets_its_updates() {
    let mut k = Kit::hub();
    k.create(&[], "d");
    k.greet(1, hello("alice"));
    let cmds = k.greet(2, hello("alice"));
    assert!(closes(&cmds, 1), "the older connection was kept");
    assert!(refused_with(&cmds, 1, ErrorCode::AlreadyEstablished));
    assert!(!closes(&cmds, 2));
    // An HTTP request link (a bot) of the same peer neither replaces nor is used.
    let cmds = k.greet(3, hello_with("alice", None, PeerKind::Bot));
    assert!(!closes(&cmds, 2) && !closes(&cmds, 3));
    k.feed(Msg::ChannelRemoved {
        channel: ChannelId(1),
    });
    k.follow(2, "d");
    let cmds = k.feed(Msg::LocalChange {
        doc: doc("d"),
        version: vv(&[(9, 1)]),
    });
    assert_eq!(data(&cmds, 2).len(), 1, "the live update went elsewhere");
    assert!(data(&cmds, 3).is_empty());
}

#[test]
fn presence_speaks_for_its_sender_and_its_ttl_is_capped() {
    let mut k = Kit::hub();
    k.create(&[], "d");
    for (ch, p) in [(1, "mallory"), (2, "bob")] {
        k.greet(ch, hello(p));
        k.follow(ch, "d");
    }
    let cmds = k.recv(
        1,
        Message::Ephemeral(Ephemeral {
            doc: doc("d"),
            namespace: Namespace::new("cursor"),
            origin: PeerId::new("bob"),
            hops: 1,
            ttl_ms: u32::MAX,
            data: Payload::new(vec![1]),
        }),
    );
    let relayed: Vec<Ephemeral> = messages(&cmds, 2)
        .into_iter()
        .filter_map(|m| match m {
            Message::Ephemeral(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(relayed.len(), 1);
    assert_eq!(relayed[0].origin, PeerId::new("mallory"), "a forged origin");
    assert!(
        relayed[0].ttl_ms <= 300_000,
        "ttl {} relayed",
        relayed[0].ttl_ms
    );
}

#[test]
fn listener_ids_come_from_the_node_and_never_wrap() {
    let mut k = Kit::hub();
    k.greet(1, hello("alice"));
    k.greet(2, hello("bob"));
    let ids = |cmds: &[Cmd], ch: u64| -> Vec<ListenerId> {
        messages(cmds, ch)
            .into_iter()
            .filter_map(|m| match m {
                Message::ListenerRegistered { id } => Some(id),
                _ => None,
            })
            .collect()
    };
    let register = |id| Message::ListenerRegister {
        filter: Filter::all(),
        id,
    };
    let a = ids(&k.recv(1, register(Some(ListenerId(u64::MAX)))), 1);
    assert_eq!(a, vec![ListenerId(1)], "a client-chosen id was taken");
    let b = ids(&k.recv(2, register(None)), 2);
    assert_eq!(b, vec![ListenerId(2)]);
    // Alice cannot take over bob's listener by naming it.
    let cmds = k.recv(1, register(Some(ListenerId(2))));
    assert!(refused_with(&cmds, 1, ErrorCode::PermissionDenied));
    for _ in 0..20 {
        k.recv(2, register(None));
    }
    assert!(
        k.model.listener_ids().len() <= 1 + 16,
        "listeners per peer are bounded"
    );
}

#[test]
fn filters_a_peer_holds_are_bounded_in_number_and_entries() {
    let mut k = Kit::hub();
    k.greet(1, hello("alice"));
    let big = Filter::docs((0..2_000).map(|i| doc(&format!("d{i}"))));
    let cmds = k.recv(1, Message::Subscribe { filter: big });
    assert!(refused_with(&cmds, 1, ErrorCode::TooLarge));
    let mut refused = false;
    for i in 0..40 {
        let cmds = k.recv(
            1,
            Message::Subscribe {
                filter: Filter::docs([doc(&format!("x{i}"))]),
            },
        );
        refused |= refused_with(&cmds, 1, ErrorCode::TooLarge);
    }
    assert!(refused, "40 filters were all accepted");
}

#[test]
fn a_connection_that_only_talks_before_hello_is_closed() {
    let mut k = Kit::hub();
    k.accept(1);
    let mut closed = false;
    for _ in 0..3 {
        let cmds = k.follow(1, "d");
        closed |= closes(&cmds, 1);
    }
    assert!(closed);
}

#[test]
fn lookups_of_unknown_documents_are_bounded_per_peer_and_come_after_the_read_check() {
    use crate::{Access, Pattern, Rule, Rules};
    let mut c = Config::new("hub");
    c.bounds.lookups_per_peer = 3;
    c.rules = Rules {
        rules: vec![Rule {
            peer: Pattern::Exact("mallory".into()),
            doc: Pattern::Prefix("secret/".into()),
            access: Access::NONE,
        }],
        default: Access::ALL,
        quotas: None,
    };
    let mut k = Kit::new(c);
    k.store(9);
    k.peer(1, "mallory");
    let asks_store = |cmds: &[Cmd]| {
        sent(cmds, 9)
            .iter()
            .any(|o| matches!(o, crate::Outgoing::Message(Message::SyncRequest { .. })))
    };
    // A document it may not read is not looked up at all.
    let cmds = k.follow(1, "secret/plans");
    assert!(!asks_store(&cmds), "a lookup for a reader without rights");
    assert!(k.model.doc_version(&doc("secret/plans")).is_none());
    // Three lookups at once; the fourth is refused, nothing made for it.
    for d in ["a", "b", "c"] {
        assert!(asks_store(&k.follow(1, d)));
    }
    let cmds = k.follow(1, "d");
    assert!(refused_with(&cmds, 1, ErrorCode::TooLarge) && !asks_store(&cmds));
    assert!(!k.model.docs.contains_key(&doc("d")));
    // Once the store answered one, there is room again.
    k.missing(9, "a");
    assert!(asks_store(&k.follow(1, "d")));
}
