use super::kit::*;
use crate::{ChannelId, Ephemeral, Event, Message, Msg, Namespace, Payload, PeerId};

fn ephemeral(origin: &str, hops: u8) -> Message {
    ephemeral_in("cursor", origin, hops)
}

fn ephemeral_in(namespace: &str, origin: &str, hops: u8) -> Message {
    Message::Ephemeral(Ephemeral {
        doc: doc("d"),
        namespace: Namespace::new(namespace),
        origin: PeerId::new(origin),
        hops,
        ttl_ms: 1_000,
        data: Payload::new(vec![1, 2]),
    })
}

fn hub_with_three() -> Kit {
    let mut k = Kit::hub();
    k.store(10);
    for (ch, p) in [(1, "alice"), (2, "bob"), (3, "carol")] {
        k.peer(ch, p);
    }
    k.create(&[10], "d");
    for ch in [1, 2, 3] {
        k.follow(ch, "d");
    }
    k
}

#[test]
fn presence_is_relayed_with_one_hop_less_never_back_and_never_to_stores() {
    let mut k = hub_with_three();
    let cmds = k.recv(1, ephemeral("alice", 1));
    for ch in [2, 3] {
        assert!(messages(&cmds, ch)
            .iter()
            .any(|m| matches!(m, Message::Ephemeral(e) if e.hops == 0)));
    }
    assert!(messages(&cmds, 1).is_empty() && sent(&cmds, 10).is_empty());
    // Hops exhausted: stored but not relayed.
    let cmds = k.recv(2, ephemeral("bob", 0));
    assert!(messages(&cmds, 1).is_empty() && messages(&cmds, 3).is_empty());
}

#[test]
fn presence_expires_after_its_ttl_and_goes_when_the_last_channel_closes() {
    let mut k = hub_with_three();
    k.recv(1, ephemeral("alice", 0));
    k.recv(2, ephemeral("bob", 0));
    let cmds = k.tick(1_000);
    assert_eq!(
        events(&cmds)
            .iter()
            .filter(|e| matches!(e, Event::Presence { data: None, .. }))
            .count(),
        2
    );
    k.recv(1, ephemeral("alice", 0));
    // A second channel for alice: closing one keeps her presence.
    k.accept(4);
    k.recv(4, hello("alice"));
    k.feed(Msg::ChannelRemoved {
        channel: ChannelId(1),
    });
    assert_eq!(k.model.presence().len(), 1);
    k.feed(Msg::ChannelRemoved {
        channel: ChannelId(4),
    });
    assert!(k.model.presence().is_empty());
}

#[test]
fn a_late_subscriber_gets_existing_presence() {
    let mut k = hub_with_three();
    k.recv(1, ephemeral("alice", 0));
    k.peer(5, "dave");
    let cmds = k.follow(5, "d");
    assert!(messages(&cmds, 5)
        .iter()
        .any(|m| matches!(m, Message::Ephemeral(e) if e.origin.as_str() == "alice")));
}

#[test]
fn presence_set_before_connecting_arrives_once_connected() {
    let mut k = Kit::new(crate::Config::new("client"));
    k.feed(Msg::SetPresence {
        doc: doc("d"),
        namespace: Namespace::new("cursor"),
        data: Payload::new(vec![9]),
    });
    let cmds = k.dial(1, "hub", "hub");
    assert!(messages(&cmds, 1)
        .iter()
        .any(|m| matches!(m, Message::Ephemeral(e) if e.origin.as_str() == "client")));
}

#[test]
fn subscriptions_survive_a_disconnect_for_the_reconnect() {
    let mut k = hub_with_three();
    k.feed(Msg::ChannelRemoved {
        channel: ChannelId(1),
    });
    assert!(k
        .model
        .subscribers(&doc("d"))
        .contains(&PeerId::new("alice")));
}

#[test]
fn a_peer_following_a_document_by_filter_gets_its_presence_at_once() {
    let mut k = hub_with_three();
    k.recv(1, ephemeral("alice", 1));
    k.accept(5);
    k.recv(5, hello("dave"));
    let cmds = k.recv(
        5,
        Message::Subscribe {
            filter: crate::Filter::docs([doc("d")]),
        },
    );
    assert!(messages(&cmds, 5)
        .iter()
        .any(|m| matches!(m, Message::Ephemeral(e) if e.origin.as_str() == "alice")));
}

#[test]
fn lasting_presence_outlives_its_peer_until_its_ttl_and_reaches_a_later_subscriber() {
    let mut config = crate::Config::new("hub");
    config.kind = crate::PeerKind::Service;
    config.lasting_presence = vec![Namespace::new("state")];
    let mut k = Kit::new(config);
    k.store(10);
    k.create(&[10], "d");
    k.peer(1, "alice");
    k.recv(1, ephemeral_in("state", "alice", 0));
    k.recv(1, ephemeral("alice", 0));
    k.feed(Msg::ChannelRemoved {
        channel: ChannelId(1),
    });
    // The cursor went with alice; the lasting state stays.
    let left: Vec<String> = k
        .model
        .presence()
        .into_iter()
        .map(|p| p.1.as_str().to_string())
        .collect();
    assert_eq!(left, vec!["state".to_string()]);
    k.peer(2, "bob");
    let cmds = k.follow(2, "d");
    assert!(messages(&cmds, 2).iter().any(
        |m| matches!(m, Message::Ephemeral(e) if e.origin.as_str() == "alice" && e.namespace.as_str() == "state")
    ));
    // Its TTL still ends it.
    k.tick(1_000);
    assert!(k.model.presence().is_empty());
}

/// A hub that keeps "state" entries of peers that left, at most one.
fn hub_keeping_one_lasting_entry() -> Kit {
    let mut config = crate::Config::new("hub");
    config.lasting_presence = vec![Namespace::new("state")];
    config.bounds.lasting_presence = 1;
    let mut k = Kit::new(config);
    k.create(&[], "d");
    k
}

#[test]
fn past_the_bound_a_leaving_peers_lasting_presence_goes_with_it() {
    let mut k = hub_keeping_one_lasting_entry();
    for (ch, who) in [(1, "alice"), (2, "bob")] {
        k.peer(ch, who);
        k.recv(ch, ephemeral_in("state", who, 0));
    }
    // Only entries of peers that left count against the bound.
    k.feed(Msg::ChannelRemoved {
        channel: ChannelId(1),
    });
    assert_eq!(origins(&k), vec!["alice".to_string(), "bob".to_string()]);
    // The bound of one is taken by alice's: bob's goes with him.
    k.feed(Msg::ChannelRemoved {
        channel: ChannelId(2),
    });
    assert_eq!(origins(&k), vec!["alice".to_string()]);
    k.model.check_indexes().unwrap();
}

#[test]
fn a_held_entry_that_expires_gives_its_place_under_the_bound_to_the_next_peer_that_leaves() {
    let mut k = hub_keeping_one_lasting_entry();
    k.peer(1, "alice");
    k.recv(1, ephemeral_in("state", "alice", 0));
    k.feed(Msg::ChannelRemoved {
        channel: ChannelId(1),
    });
    assert_eq!(k.model.presence().len(), 1);
    // Alice's held entry ends with its TTL; the place it took is free again.
    k.tick(1_000);
    assert!(k.model.presence().is_empty());
    k.peer(2, "bob");
    k.recv(2, ephemeral_in("state", "bob", 0));
    k.feed(Msg::ChannelRemoved {
        channel: ChannelId(2),
    });
    assert_eq!(origins(&k), vec!["bob".to_string()]);
    k.model.check_indexes().unwrap();
}

#[test]
fn presence_larger_than_the_bound_is_dropped() {
    let mut config = crate::Config::new("hub");
    config.bounds.presence_bytes = 4;
    let mut k = Kit::new(config);
    k.create(&[], "d");
    k.peer(1, "alice");
    let mut big = ephemeral("alice", 1);
    if let Message::Ephemeral(e) = &mut big {
        e.data = Payload::new(vec![0; 5]);
    }
    k.recv(1, big);
    assert!(k.model.presence().is_empty());
    k.recv(1, ephemeral("alice", 1));
    assert_eq!(k.model.presence().len(), 1);
}

fn ephemeral_with(origin: &str, data: Vec<u8>) -> Message {
    let mut m = ephemeral(origin, 1);
    if let Message::Ephemeral(e) = &mut m {
        e.data = Payload::new(data);
    }
    m
}

/// The presence payloads `ch` was sent.
fn relayed(cmds: &[crate::Cmd], ch: u64) -> Vec<Vec<u8>> {
    messages(cmds, ch)
        .into_iter()
        .filter_map(|m| match m {
            Message::Ephemeral(e) => Some(e.data.as_bytes().to_vec()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_room_keeps_presence_up_to_its_bound_and_takes_more_once_a_member_leaves() {
    let mut config = crate::Config::new("hub");
    config.bounds.presence_room_bytes = 10;
    let mut k = Kit::new(config);
    k.store(10);
    for (ch, p) in [(1, "alice"), (2, "bob"), (3, "carol")] {
        k.peer(ch, p);
    }
    k.create(&[10], "d");
    for ch in [1, 2, 3] {
        k.follow(ch, "d");
    }
    k.recv(1, ephemeral_with("alice", vec![1; 4]));
    k.recv(2, ephemeral_with("bob", vec![2; 4]));
    // Carol's 4 bytes would make 12: dropped, and relayed to nobody.
    let cmds = k.recv(3, ephemeral_with("carol", vec![3; 4]));
    assert!(relayed(&cmds, 1).is_empty() && relayed(&cmds, 2).is_empty());
    assert_eq!(origins(&k), vec!["alice".to_string(), "bob".to_string()]);
    // Bob replaces his entry with a smaller one: his old bytes do not count.
    k.recv(2, ephemeral_with("bob", vec![2; 6]));
    assert_eq!(origins(&k).len(), 2);
    // Alice leaves: carol's entry fits now.
    k.feed(Msg::ChannelRemoved {
        channel: ChannelId(1),
    });
    k.recv(3, ephemeral_with("carol", vec![3; 4]));
    assert_eq!(origins(&k), vec!["bob".to_string(), "carol".to_string()]);
}

#[test]
fn changes_of_one_member_within_the_window_reach_the_others_once_more_at_its_end() {
    let mut k = hub_with_three();
    let window = k.model.config.timing.presence_window_ms;
    // The first change goes at once.
    let cmds = k.recv(1, ephemeral_with("alice", vec![1]));
    assert_eq!(relayed(&cmds, 2), vec![vec![1]]);
    // Four more within the window are held; another member's is not.
    for v in 2..=5 {
        let cmds = k.recv(1, ephemeral_with("alice", vec![v]));
        assert!(relayed(&cmds, 2).is_empty() && relayed(&cmds, 3).is_empty());
    }
    let cmds = k.recv(2, ephemeral_with("bob", vec![9]));
    assert_eq!(relayed(&cmds, 3), vec![vec![9]]);
    // At the window's end only the latest goes, once to each other member.
    let cmds = k.tick(window);
    for ch in [2, 3] {
        assert_eq!(relayed(&cmds, ch), vec![vec![5]], "channel {ch}");
    }
    assert!(relayed(&cmds, 1).is_empty());
    // A quiet window later a change goes at once again.
    k.tick(3 * window);
    let cmds = k.recv(1, ephemeral_with("alice", vec![6]));
    assert_eq!(relayed(&cmds, 2), vec![vec![6]]);
}

#[test]
fn a_change_held_for_a_member_who_left_is_never_relayed() {
    let mut k = hub_with_three();
    let window = k.model.config.timing.presence_window_ms;
    k.recv(1, ephemeral_with("alice", vec![1]));
    k.recv(1, ephemeral_with("alice", vec![2]));
    k.feed(Msg::ChannelRemoved {
        channel: ChannelId(1),
    });
    let cmds = k.tick(window);
    assert!(relayed(&cmds, 2).is_empty() && relayed(&cmds, 3).is_empty());
    assert!(k.model.presence().is_empty());
}

/// The origins of the live entries, in key order.
fn origins(k: &Kit) -> Vec<String> {
    k.model
        .presence()
        .into_iter()
        .map(|p| p.2.as_str().to_string())
        .collect()
}

#[test]
fn a_removal_within_the_window_sends_what_was_held_first_and_then_itself() {
    let mut k = hub_with_three();
    k.recv(1, ephemeral_with("alice", vec![1]));
    // A Loro member leaving: its keys' tombstones, then the removal.
    let mut cmds = k.recv(1, ephemeral_with("alice", vec![7, 7]));
    cmds.extend(k.recv(1, ephemeral_with("alice", vec![])));
    for ch in [2, 3] {
        assert_eq!(relayed(&cmds, ch), vec![vec![7, 7], vec![]], "channel {ch}");
    }
    assert!(k.model.presence().is_empty());
}
