//! A node whose call panicked (a bug, caught by the host that drives it:
//! the C and Python hosts catch panics at their boundary) does not go on
//! with a half-changed model: it says so once, decides nothing more, and
//! asks for no timeout (its host would spin on one already due).

use docweave_core::{encode, Clock, Config, Event, Hello, Message, PeerId, PeerKind};
use docweave_core::{Millis, PROTOCOL_VERSION};
use docweave_shell::{Input, LoroEngine, Node, NodeOptions, Output};
use std::panic::{catch_unwind, AssertUnwindSafe};

fn hello(peer: &str) -> Vec<u8> {
    encode(&[Message::Hello(Hello {
        peer: PeerId::new(peer),
        name: peer.into(),
        kind: PeerKind::User,
        protocol: PROTOCOL_VERSION,
        token: None,
        clock: Clock(0),
    })])
    .unwrap()
}

/// A client connects and says hello; what the node put out.
fn greet(node: &mut Node<LoroEngine>, now: Millis, peer: &str) -> Vec<Output> {
    let channel = node.channel_opened(now, None);
    node.handle(
        now,
        Input::Frame {
            channel,
            bytes: hello(peer),
        },
    );
    std::iter::from_fn(|| node.poll_output()).collect()
}

#[test]
fn a_node_whose_call_panicked_reports_it_once_and_decides_nothing_more() {
    let mut node = Node::new(Config::new("server"), LoroEngine, NodeOptions::default());
    let mut steps = 0;
    node.set_hook(Box::new(move |_, _, _| {
        steps += 1;
        // The hook runs inside the step: a panic there stands for a bug
        // in the core, which never panics by design (it is fuzzed).
        assert!(steps != 3, "the third step panics");
    }));
    let first = greet(&mut node, 0, "alice");
    assert!(first
        .iter()
        .any(|o| matches!(o, Output::Transmit { .. } | Output::TransmitShared { .. })));
    assert!(!node.failed());

    let panicked = catch_unwind(AssertUnwindSafe(|| greet(&mut node, 1, "bob")));
    assert!(panicked.is_err());

    let after = greet(&mut node, 2, "carol");
    let errors: Vec<&String> = after
        .iter()
        .filter_map(|o| match o {
            Output::Event(Event::Error { reason, .. }) => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 1, "{after:?}");
    assert!(errors[0].contains("earlier call"), "{}", errors[0]);
    assert!(
        !after
            .iter()
            .any(|o| matches!(o, Output::Transmit { .. } | Output::TransmitShared { .. })),
        "nothing is sent after the panic: {after:?}"
    );
    assert!(node.failed());
    assert_eq!(node.poll_timeout(), None);
    assert!(greet(&mut node, 3, "dave").is_empty(), "said once");
}
