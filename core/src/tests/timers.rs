use super::kit::*;
use crate::{ChannelId, Clock, Cmd, Message, Msg, RemoteAddr};

fn wake(cmds: &[Cmd]) -> Option<u64> {
    cmds.iter().find_map(|c| match c {
        Cmd::WakeAt(t) => Some(*t),
        _ => None,
    })
}

#[test]
fn a_lost_connection_is_redialed_after_a_jittered_backoff() {
    let mut k = Kit::new(crate::Config::new("client"));
    k.dial(1, "hub", "hub");
    let cmds = k.feed(Msg::ChannelRemoved {
        channel: ChannelId(1),
    });
    let at = wake(&cmds).unwrap_or(u64::MAX);
    assert!(
        (250..=500).contains(&at),
        "first retry within [base/2, base]: {at}"
    );
    assert!(!k.tick(at - 1).iter().any(|c| matches!(c, Cmd::Dial { .. })));
    let cmds = k.tick(at);
    assert!(cmds.contains(&Cmd::Dial {
        remote: RemoteAddr::new("hub")
    }));
    // Failing again waits longer.
    let cmds = k.feed(Msg::ConnectFailed {
        remote: RemoteAddr::new("hub"),
    });
    assert!(wake(&cmds).is_some_and(|t| t - at >= 500));
}

#[test]
fn pulls_follow_the_schedule_and_are_skipped_right_after_a_push() {
    let mut k = Kit::new(crate::Config::new("client"));
    k.dial(1, "hub", "hub");
    let pulls = |cmds: &[Cmd]| {
        messages(cmds, 1)
            .iter()
            .filter(|m| matches!(m, Message::ChangesSince { .. }))
            .count()
    };
    k.recv(
        1,
        Message::Changes {
            docs: Vec::new(),
            up_to: Clock(0),
            more: false,
        },
    );
    assert_eq!(pulls(&k.tick(1_000)), 1);
    // Idle: the next pull waits twice as long.
    k.recv(
        1,
        Message::Changes {
            docs: Vec::new(),
            up_to: Clock(0),
            more: false,
        },
    );
    assert_eq!(pulls(&k.tick(2_500)), 0);
    // It pushed to us just now: the due pull is skipped.
    k.recv(
        1,
        Message::Update {
            doc: doc("d"),
            batch: crate::BatchId(1),
            data: crate::Payload::new(vec![1]),
            version: vv(&[(5, 1)]),
        },
    );
    assert_eq!(pulls(&k.tick(3_000)), 0);
}

#[test]
fn time_never_runs_backwards() {
    let mut k = Kit::hub();
    k.tick(5_000);
    k.tick(10);
    assert_eq!(k.model.now(), 5_000);
}

#[test]
fn a_silent_handshake_is_closed() {
    let mut k = Kit::hub();
    k.accept(1);
    let cmds = k.tick(20_000);
    assert!(closes(&cmds, 1));
}
