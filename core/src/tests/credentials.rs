//! Signed tokens as the core sees them: a verdict the shell reached, whose
//! identity, rights and expiry the core enforces with the time it is given.

use super::kit::*;
use crate::{
    Access, AckStatus, BatchId, ChannelId, ChannelKind, Clock, Cmd, Config, Credential, DocMeta,
    DocRight, ErrorCode, Hello, Message, Msg, Pattern, Payload, PeerId, PeerKind, Reply,
    Revocations, Verdict, PROTOCOL_VERSION,
};

fn hello_of(peer: &str, token: &str) -> Hello {
    Hello {
        peer: PeerId::new(peer),
        name: peer.into(),
        kind: PeerKind::User,
        protocol: PROTOCOL_VERSION,
        token: Some(token.into()),
        clock: Clock(0),
    }
}

fn credential(peer: &str, rights: Option<Vec<DocRight>>, expires: Option<u64>) -> Credential {
    Credential {
        peer: PeerId::new(peer),
        rights,
        expires,
        id: Some("t-1".into()),
    }
}

/// A hub that verifies signed tokens, holding document `d` (and `public/p`).
fn signed_hub() -> Kit {
    let mut c = Config::new("hub");
    c.signed_tokens = true;
    let mut k = Kit::new(c);
    for d in ["d", "public/p"] {
        k.feed(Msg::OpenDoc {
            doc: doc(d),
            meta: DocMeta::default(),
        });
        k.feed(Msg::LocalChange {
            doc: doc(d),
            version: vv(&[(1, 1)]),
        });
    }
    k
}

fn authenticate(k: &mut Kit, ch: u64, peer: &str, verdict: Verdict) -> Vec<Cmd> {
    k.feed(Msg::ChannelAdded {
        channel: ChannelId(ch),
        kind: ChannelKind::Network,
        remote: None,
    });
    k.feed(Msg::Authenticated {
        channel: ChannelId(ch),
        message: Message::Hello(hello_of(peer, "a.b.c")),
        verdict,
    })
}

fn bad_token(cmds: &[Cmd], ch: u64) -> Option<String> {
    messages(cmds, ch).into_iter().find_map(|m| match m {
        Message::Error {
            code: ErrorCode::BadToken,
            message,
        } => Some(message),
        _ => None,
    })
}

fn write(k: &mut Kit, ch: u64, d: &str) -> Vec<Message> {
    let cmds = k.recv(
        ch,
        Message::Update {
            doc: doc(d),
            batch: BatchId(7),
            data: Payload::new(vec![1]),
            version: vv(&[(6, 1)]),
        },
    );
    messages(&cmds, ch)
}

fn readable(k: &mut Kit, ch: u64, d: &str) -> bool {
    let cmds = k.recv(
        ch,
        Message::SyncRequest {
            doc: doc(d),
            version: vv(&[]),
            bidirectional: false,
        },
    );
    !messages(&cmds, ch).iter().any(|m| {
        matches!(
            m,
            Message::SyncResponse {
                reply: Reply::Unavailable,
                ..
            }
        )
    })
}

#[test]
fn a_refused_verdict_closes_the_channel_with_its_reason() {
    let mut k = signed_hub();
    let cmds = authenticate(&mut k, 1, "alice", Verdict::Refused("bad signature".into()));
    assert!(bad_token(&cmds, 1).is_some_and(|m| m.contains("bad signature")));
    assert!(closes(&cmds, 1));
    assert!(k.model.channel_peer(ChannelId(1)).is_none());
}

#[test]
fn a_token_for_another_identity_is_refused() {
    let mut k = signed_hub();
    let cmds = authenticate(
        &mut k,
        1,
        "mallory",
        Verdict::Valid(credential("alice", None, None)),
    );
    assert!(bad_token(&cmds, 1).is_some_and(|m| m.contains("\"alice\"")));
    assert!(closes(&cmds, 1));
}

#[test]
fn a_node_verifying_signed_tokens_refuses_a_hello_without_one() {
    let mut k = signed_hub();
    let cmds = k.greet(1, hello("alice"));
    assert!(bad_token(&cmds, 1).is_some());
    assert!(closes(&cmds, 1));
}

#[test]
fn the_rights_of_a_token_replace_the_rules_for_its_holder() {
    let mut k = signed_hub();
    let rights = vec![DocRight {
        doc: Pattern::Prefix("public/".into()),
        access: Access::READ,
    }];
    let cmds = authenticate(
        &mut k,
        1,
        "alice",
        Verdict::Valid(credential("alice", Some(rights), None)),
    );
    assert!(!closes(&cmds, 1));
    assert!(readable(&mut k, 1, "public/p"));
    assert!(
        !readable(&mut k, 1, "d"),
        "a document the token does not list was readable"
    );
    let answer = write(&mut k, 1, "public/p");
    assert!(answer.contains(&Message::Ack {
        batch: BatchId(7),
        status: AckStatus::PermissionDenied,
        clock: None
    }));
    // A token without rights leaves them to the node's rules (allow all here).
    let cmds = authenticate(
        &mut k,
        2,
        "bob",
        Verdict::Valid(credential("bob", None, None)),
    );
    assert!(!closes(&cmds, 2));
    assert!(readable(&mut k, 2, "d"));
}

#[test]
fn a_connection_is_closed_when_its_token_expires_and_not_before() {
    let mut k = signed_hub();
    let cmds = authenticate(
        &mut k,
        1,
        "alice",
        Verdict::Valid(credential("alice", None, Some(5_000))),
    );
    assert!(!closes(&cmds, 1));
    let cmds = k.tick(4_999);
    assert!(!closes(&cmds, 1), "closed before its token expired");
    let cmds = k.tick(5_000);
    assert!(bad_token(&cmds, 1).is_some_and(|m| m.starts_with("token-expired")));
    assert!(closes(&cmds, 1));
}

#[test]
fn a_token_already_expired_when_its_hello_arrives_is_refused() {
    let mut k = signed_hub();
    k.now = 10_000;
    let cmds = authenticate(
        &mut k,
        1,
        "alice",
        Verdict::Valid(credential("alice", None, Some(9_000))),
    );
    assert!(bad_token(&cmds, 1).is_some_and(|m| m.starts_with("token-expired")));
    assert!(closes(&cmds, 1));
}

#[test]
fn a_closed_connection_leaves_no_expiry_behind() {
    let mut k = signed_hub();
    authenticate(
        &mut k,
        1,
        "alice",
        Verdict::Valid(credential("alice", None, Some(5_000))),
    );
    k.feed(Msg::ChannelRemoved {
        channel: ChannelId(1),
    });
    // A new connection of the same peer with a fresh token is not closed
    // at the old token's expiry.
    let cmds = authenticate(
        &mut k,
        2,
        "alice",
        Verdict::Valid(credential("alice", None, Some(50_000))),
    );
    assert!(!closes(&cmds, 2));
    let cmds = k.tick(5_000);
    assert!(!closes(&cmds, 2) && bad_token(&cmds, 2).is_none());
}

fn revoke(k: &mut Kit, tokens: &[&str], peers: &[&str]) -> Vec<Cmd> {
    k.feed(Msg::Revoked(Revocations {
        tokens: tokens.iter().map(|t| t.to_string()).collect(),
        peers: peers.iter().map(|p| PeerId::new(p)).collect(),
    }))
}

#[test]
fn revoking_a_token_closes_its_connections_and_refuses_it_later() {
    let mut k = signed_hub();
    authenticate(
        &mut k,
        1,
        "alice",
        Verdict::Valid(credential("alice", None, None)),
    );
    let mut bob = credential("bob", None, None);
    bob.id = Some("bob-token".into());
    authenticate(&mut k, 2, "bob", Verdict::Valid(bob.clone()));
    let cmds = revoke(&mut k, &["t-1"], &[]);
    assert!(bad_token(&cmds, 1).is_some_and(|m| m.starts_with("token-revoked")));
    assert!(closes(&cmds, 1));
    assert!(!closes(&cmds, 2), "a connection with another token was cut");
    let cmds = authenticate(
        &mut k,
        3,
        "alice",
        Verdict::Valid(credential("alice", None, None)),
    );
    assert!(closes(&cmds, 3), "a revoked token was welcomed again");
    // Lifting the revocation lets it in again.
    revoke(&mut k, &[], &[]);
    let cmds = authenticate(
        &mut k,
        4,
        "alice",
        Verdict::Valid(credential("alice", None, None)),
    );
    assert!(!closes(&cmds, 4));
}

#[test]
fn revoking_an_identity_cuts_it_whatever_token_it_holds() {
    let mut c = Config::new("hub");
    c.tokens = vec!["static".into()];
    let mut k = Kit::new(c);
    k.greet(
        1,
        Message::Hello(Hello {
            token: Some("static".into()),
            ..hello_of("carol", "static")
        }),
    );
    assert!(k.model.channel_peer(ChannelId(1)).is_some());
    let cmds = revoke(&mut k, &[], &["carol"]);
    assert!(closes(&cmds, 1) && bad_token(&cmds, 1).is_some());
    let cmds = k.greet(2, Message::Hello(hello_of("carol", "static")));
    assert!(
        closes(&cmds, 2),
        "a revoked identity came back with a static token"
    );
}

#[test]
fn static_tokens_replaced_cut_exactly_the_connections_they_no_longer_admit() {
    let mut c = Config::new("hub");
    c.tokens = vec!["shared".into()];
    c.grants = vec![crate::Grant {
        token: "dave-key".into(),
        peers: Pattern::Exact("dave".into()),
    }];
    let mut k = Kit::new(c);
    k.greet(1, Message::Hello(hello_of("carol", "shared")));
    k.greet(2, Message::Hello(hello_of("dave", "dave-key")));
    assert!(k.model.channel_peer(ChannelId(2)).is_some());
    // "shared" is withdrawn; dave's grant stays.
    let cmds = k.feed(Msg::Tokens {
        tokens: vec!["other".into()],
        grants: vec![crate::Grant {
            token: "dave-key".into(),
            peers: Pattern::Exact("dave".into()),
        }],
    });
    assert!(
        closes(&cmds, 1),
        "carol kept a connection her token no longer opens"
    );
    assert!(bad_token(&cmds, 1).is_some_and(|m| m.starts_with("token-revoked")));
    assert!(
        !closes(&cmds, 2),
        "dave's connection was cut though his grant stays"
    );
    let cmds = k.greet(3, Message::Hello(hello_of("carol", "shared")));
    assert!(closes(&cmds, 3), "a withdrawn token let a hello in");
    let cmds = k.greet(4, Message::Hello(hello_of("erin", "other")));
    assert!(!closes(&cmds, 4), "a new token was not taken");
}

fn reauth(k: &mut Kit, ch: u64, verdict: Option<Verdict>) -> Vec<Cmd> {
    let message = Message::Reauth {
        token: "n.e.w".into(),
    };
    match verdict {
        Some(verdict) => k.feed(Msg::Authenticated {
            channel: ChannelId(ch),
            message,
            verdict,
        }),
        None => k.recv(ch, message),
    }
}

#[test]
fn a_new_token_on_a_live_connection_moves_its_expiry_and_rights_at_once() {
    let mut k = signed_hub();
    let reader = vec![DocRight {
        doc: Pattern::Any,
        access: Access::READ,
    }];
    authenticate(
        &mut k,
        1,
        "alice",
        Verdict::Valid(credential("alice", Some(reader), Some(5_000))),
    );
    assert_eq!(
        write(&mut k, 1, "d").last(),
        Some(&Message::Ack {
            batch: BatchId(7),
            status: AckStatus::PermissionDenied,
            clock: None
        })
    );
    k.now = 4_000;
    let cmds = reauth(
        &mut k,
        1,
        Some(Verdict::Valid(credential("alice", None, Some(60_000)))),
    );
    assert!(
        !closes(&cmds, 1) && bad_token(&cmds, 1).is_none(),
        "{cmds:?}"
    );
    let cmds = k.tick(5_000);
    assert!(!closes(&cmds, 1), "closed at the old token's expiry");
    // The rules (allow all) now decide: the write is taken.
    let cmds = k.recv(
        1,
        Message::Update {
            doc: doc("d"),
            batch: BatchId(8),
            data: Payload::new(vec![1]),
            version: vv(&[(6, 1)]),
        },
    );
    assert!(!imports(&cmds).is_empty(), "the new rights did not apply");
    let cmds = k.tick(60_000);
    assert!(closes(&cmds, 1), "the new token's expiry was not kept");
}

#[test]
fn a_refused_new_token_leaves_the_connection_as_it_was() {
    let mut k = signed_hub();
    authenticate(
        &mut k,
        1,
        "alice",
        Verdict::Valid(credential("alice", None, Some(5_000))),
    );
    for verdict in [
        Verdict::Refused("bad signature".into()),
        Verdict::Valid(credential("mallory", None, None)),
    ] {
        let cmds = reauth(&mut k, 1, Some(verdict));
        assert!(bad_token(&cmds, 1).is_some_and(|m| m.contains("keeps its current")));
        assert!(!closes(&cmds, 1));
    }
    // A token that is not signed must be one of the static ones (none here).
    let cmds = reauth(&mut k, 1, None);
    assert!(bad_token(&cmds, 1).is_some() && !closes(&cmds, 1));
    let cmds = k.tick(5_000);
    assert!(closes(&cmds, 1), "the old token's expiry was lost");
}

#[test]
fn a_client_presents_a_new_token_at_once_on_a_protocol_3_connection() {
    let mut k = Kit::hub();
    k.feed(Msg::Connect {
        remote: crate::RemoteAddr::new("server"),
        token: Some("old".into()),
        filter: crate::Filter::all(),
    });
    k.dial(1, "server", "server");
    let cmds = k.feed(Msg::SetToken {
        remote: crate::RemoteAddr::new("server"),
        token: "fresh".into(),
    });
    assert!(messages(&cmds, 1).contains(&Message::Reauth {
        token: "fresh".into()
    }));
}

#[test]
fn new_rules_apply_to_the_next_decision() {
    let mut k = signed_hub();
    authenticate(
        &mut k,
        1,
        "alice",
        Verdict::Valid(credential("alice", None, None)),
    );
    assert!(readable(&mut k, 1, "d"));
    k.feed(Msg::Rules(crate::Rules::allow_all().with(
        Pattern::Exact("alice".into()),
        Pattern::Any,
        Access::NONE,
    )));
    assert!(!readable(&mut k, 1, "d"), "the old rules still decided");
}

#[test]
fn the_servers_own_peer_ids_need_a_credential_and_their_listeners_pass_the_node_wide_bound() {
    let mut c = Config::new("hub");
    c.internal_peers = Some("webhook-".into());
    c.tokens = vec!["any-peer".into()];
    c.bounds.listeners = 1;
    let mut k = Kit::new(c);
    // A static token that grants any peer id does not grant these.
    k.feed(Msg::ChannelAdded {
        channel: ChannelId(1),
        kind: ChannelKind::Network,
        remote: None,
    });
    let cmds = k.recv(1, Message::Hello(hello_of("webhook-1", "any-peer")));
    assert!(messages(&cmds, 1).iter().any(|m| matches!(
        m,
        Message::Error {
            code: ErrorCode::PermissionDenied,
            ..
        }
    )));
    assert!(closes(&cmds, 1));
    // Another client fills the node-wide listener bound.
    k.greet(2, Message::Hello(hello_of("alice", "any-peer")));
    let register = Message::ListenerRegister {
        filter: crate::Filter::all(),
        id: None,
    };
    let cmds = k.recv(2, register.clone());
    assert!(messages(&cmds, 2)
        .iter()
        .any(|m| matches!(m, Message::ListenerRegistered { .. })));
    // The server's own link, vouched for by the shell, still registers.
    let cmds = authenticate(
        &mut k,
        3,
        "webhook-1",
        Verdict::Valid(credential("webhook-1", None, None)),
    );
    assert!(bad_token(&cmds, 3).is_none());
    let cmds = k.recv(3, register);
    assert!(
        messages(&cmds, 3)
            .iter()
            .any(|m| matches!(m, Message::ListenerRegistered { .. })),
        "{:?}",
        messages(&cmds, 3)
    );
}
