//! S3h: S3 on a hub that a webhook follows, what a hook's outbox costs the
//! fan-out. A consumer on the hub does what `serve --webhook` does with a
//! receiver that takes every event: it pulls its listener for versions only
//! every 100 ms and acknowledges all it was given (the node's share of a
//! hook; the HTTP requests to a receiver are S14's).

use docweave_adapters::transport::{request_hello, Outbound, PolledLink};
use docweave_core::{
    Filter, ListenerId, Message, PeerId, Revision, RevisionStatus, PULL_VERSIONS_ONLY,
};
use docweave_shell::Repo;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A hook's listener on a hub, followed until stopped.
pub struct Hook {
    stop: Arc<AtomicBool>,
    task: smol::Task<(u64, u64)>,
}

impl Hook {
    /// Registers a listener on `server` and follows it.
    pub fn follow(server: &Arc<Repo>) -> Hook {
        let link = (server.connector())();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = smol::spawn(async move { consume(link, stopped).await });
        Hook { stop, task }
    }

    /// Stops following: the pulls made and the strands acknowledged.
    pub async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await
    }
}

fn send(link: &PolledLink, messages: Vec<Message>) {
    let frame = docweave_core::encode(&messages).unwrap_or_else(|e| panic!("a frame: {e}"));
    if link.tx.send(frame).is_err() {
        panic!("the hub closed the hook's link");
    }
}

/// The first message `wanted` picks.
async fn answer(link: &PolledLink, wanted: impl Fn(&Message) -> bool) -> Message {
    loop {
        let Some(Outbound::Frame(f)) = link.rx.recv().await else {
            panic!("the hub closed the hook's link");
        };
        link.rx.written(&f);
        let messages = docweave_core::decode(&f, &docweave_core::Limits::default())
            .unwrap_or_else(|e| panic!("the hub's frame: {e}"));
        for m in messages {
            if let Message::Error { code, message } = &m {
                panic!("the hub refused the hook: {code:?} {message}");
            }
            if wanted(&m) {
                return m;
            }
        }
    }
}

async fn consume(link: PolledLink, stop: Arc<AtomicBool>) -> (u64, u64) {
    send(&link, vec![request_hello(PeerId::new("hook"), None)]);
    send(
        &link,
        vec![Message::ListenerRegister {
            filter: Filter::all(),
            id: None,
        }],
    );
    let Message::ListenerRegistered { id } =
        answer(&link, |m| matches!(m, Message::ListenerRegistered { .. })).await
    else {
        unreachable!("picked by the predicate")
    };
    let (mut pulls, mut acked) = (0u64, 0u64);
    // A last round once stopped: everything written before is told.
    loop {
        acked += round(&link, id).await;
        pulls += 1;
        if stop.load(Ordering::SeqCst) {
            return (pulls, acked);
        }
        smol::Timer::after(Duration::from_millis(100)).await;
    }
}

/// One pull for versions only, all of it acknowledged: how many strands.
async fn round(link: &PolledLink, id: ListenerId) -> u64 {
    let limit = 64 | PULL_VERSIONS_ONLY;
    send(link, vec![Message::ListenerPull { id, limit }]);
    let Message::Strands { strands, .. } =
        answer(link, |m| matches!(m, Message::Strands { .. })).await
    else {
        unreachable!("picked by the predicate")
    };
    let n = strands.len() as u64;
    if n > 0 {
        let revisions = strands
            .into_iter()
            .map(|s| Revision {
                doc: s.doc,
                version: s.version,
                clock: s.clock,
                status: RevisionStatus::Ok,
            })
            .collect();
        send(link, vec![Message::ListenerAck { id, revisions }]);
        answer(link, |m| matches!(m, Message::ListenerAcked { .. })).await;
    }
    n
}
