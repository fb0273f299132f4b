//! Tokens checked elsewhere (`Authenticator::ask`, the app's backend): the
//! node holds the hello and what its connection sends after it, goes on
//! with other connections meanwhile, and gives the core the held messages
//! in order once the answer is in.

use docweave_core::{
    decode, encode, ChannelId, Clock, Config, Credential, Filter, Hello, Limits, Message, PeerId,
    PeerKind, PROTOCOL_VERSION,
};
use docweave_shell::{
    Authenticator, Checked, Input, LoroEngine, Node, NodeOptions, Output, RemoteCheck,
};
use std::sync::Arc;

fn hello(peer: &str, token: &str) -> Message {
    Message::Hello(Hello {
        peer: PeerId::new(peer),
        name: peer.into(),
        kind: PeerKind::User,
        protocol: PROTOCOL_VERSION,
        token: Some(token.into()),
        clock: Clock(0),
    })
}

/// Knows `now` at once; must ask elsewhere about any other token.
struct Backend;

impl Authenticator for Backend {
    fn check(&self, token: &str) -> Option<Checked> {
        (token == "now").then(|| valid("bob"))
    }

    fn ask(&self, token: &str) -> Option<RemoteCheck> {
        let _ = token;
        Some(RemoteCheck::new(async { valid("alice") }))
    }
}

fn valid(peer: &str) -> Checked {
    Checked::Valid {
        credential: Credential {
            peer: PeerId::new(peer),
            rights: None,
            expires: None,
            id: None,
        },
        lifetime_ms: None,
    }
}

/// A frame of `messages` from a connection.
fn send(node: &mut Node<LoroEngine>, now: u64, channel: ChannelId, messages: &[Message]) {
    let bytes = encode(messages).unwrap();
    node.handle(now, Input::Frame { channel, bytes });
}

/// Messages sent, by channel number.
type Sent = Vec<(u64, Message)>;

/// What the node put out: questions to ask, and messages sent.
fn outputs(node: &mut Node<LoroEngine>) -> (Vec<(u64, RemoteCheck)>, Sent) {
    let (mut asks, mut sent) = (Vec::new(), Vec::new());
    while let Some(out) = node.poll_output() {
        match out {
            Output::Authenticate { channel, check } => asks.push((channel.0, check)),
            Output::Transmit { channel, frame } => {
                for m in decode(&frame, &Limits::default()).unwrap() {
                    sent.push((channel.0, m));
                }
            }
            _ => {}
        }
    }
    (asks, sent)
}

#[test]
fn a_hello_checked_elsewhere_waits_with_what_follows_it_and_others_go_on() {
    let mut node = Node::new(Config::new("server"), LoroEngine, NodeOptions::default());
    node.set_authenticator(Arc::new(Backend));
    let alice = node.channel_opened(0, None);
    // Alice's hello and, right behind it, a subscription.
    let subscribe = Message::Subscribe {
        filter: Filter::all(),
    };
    send(&mut node, 0, alice, &[hello("alice", "session"), subscribe]);
    // And in a frame of its own, a question whose answer shows it was taken.
    let question = Message::ChangesSince {
        clock: Clock(0),
        filter: Filter::all(),
    };
    send(&mut node, 0, alice, &[question]);
    let (asks, sent) = outputs(&mut node);
    assert_eq!(asks.len(), 1, "the backend was not asked");
    assert!(
        sent.is_empty(),
        "alice was answered before her token was checked: {sent:?}"
    );
    // Bob, whose token is known at once, is welcomed meanwhile.
    let bob = node.channel_opened(1, None);
    send(&mut node, 1, bob, &[hello("bob", "now")]);
    let (_, sent) = outputs(&mut node);
    assert!(sent
        .iter()
        .any(|(c, m)| *c == bob.0 && matches!(m, Message::Welcome(_))));
    // The answer comes: alice is welcomed, and her subscription was taken
    // after her hello (a message before the hello would have been refused).
    let checked = smol::block_on(asks[0].1.take().unwrap());
    node.handle(
        2,
        Input::Checked {
            channel: alice,
            checked,
        },
    );
    let (_, sent) = outputs(&mut node);
    let to_alice: Vec<&Message> = sent
        .iter()
        .filter(|(c, _)| *c == alice.0)
        .map(|(_, m)| m)
        .collect();
    assert!(
        matches!(to_alice.first(), Some(Message::Welcome(_))),
        "{to_alice:?}"
    );
    assert!(
        to_alice
            .iter()
            .any(|m| matches!(m, Message::Changes { .. })),
        "the held question was dropped: {to_alice:?}"
    );
    assert!(
        !to_alice.iter().any(|m| matches!(m, Message::Error { .. })),
        "a held message reached the core before the hello: {to_alice:?}"
    );
}
