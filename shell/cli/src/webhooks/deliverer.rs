//! One hook's delivery loop. The hook is a client of the node like any
//! other: it says hello as its own peer, with a credential that lets it
//! read the documents it hears of, and keeps a durable listener (seed
//! 000's pull responder). That listener is the hook's outbox:
//!
//! ```text
//! deliverer                     node (listener in the store)       receiver
//!   | -- listener-pull --------> |                                    |
//!   | <-- strands: doc, version  |  one per document changed since    |
//!   |     acknowledged, version  |  the hook's last acknowledgement   |
//!   |     now ------------------ |  (changes coalesce in it)          |
//!   | -- POST event, signed ------------------------------------------>|
//!   | <-- 2xx ---------------------------------------------------------|
//!   | -- listener-ack ---------> |  saved: that event is never sent again
//! ```
//!
//! So an event is acknowledged only once its receiver took it: at least
//! once, across restarts (the listener is in the store, written in the
//! transaction of every change as its clock), in order per document (a
//! document's next event waits for the acknowledgement of the one
//! before, which it includes if that one failed). A failed attempt is
//! tried again after a backoff that doubles up to a bound, with jitter.

use super::config::Hook;
use super::event::{event, Event, Kind};
use super::{signature, HookFigures, Settings};
use crate::node_exchange::Exchange;
use docweave_adapters::transport::{request_capped, ApiAnswer, Connector};
use docweave_adapters::PostgresLease;
use docweave_core::{Clock, DocId, Filter, Message, Revision, RevisionStatus, Strand};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Strands pulled at once.
const PULL: u32 = 64;
/// Requests to one receiver at once (each about another document).
const IN_FLIGHT: usize = 8;
/// The largest answer read from a receiver (only its status counts).
const MOST_ANSWER: usize = 64 * 1024;
/// The wait after a first failed attempt; it doubles up to the bound.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The wait after the node or the store could not be reached.
const NODE_RETRY: Duration = Duration::from_secs(1);
/// How often a server that does not hold a hook's lease asks again.
const LEASE_RETRY: Duration = Duration::from_secs(2);

/// Who delivers a hook's events.
pub enum Lease {
    /// This server alone (its store is its own).
    Alone,
    /// The servers sharing a PostgreSQL: the one holding the lease.
    Shared {
        /// The store URL.
        url: String,
        /// The lease's name.
        key: i64,
        /// The lease, while held (boxed: a connection is large).
        held: Option<Box<PostgresLease>>,
    },
}

/// Whether this server delivers now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holding {
    /// Another server does.
    No,
    /// This one, as in the last round.
    Kept,
    /// This one, since now: another server may have moved the hook on.
    Taken,
}

impl Lease {
    /// Whether this server delivers now.
    async fn hold(&mut self) -> Result<Holding, String> {
        let Lease::Shared { url, key, held } = self else {
            return Ok(Holding::Kept);
        };
        if let Some(lease) = held.take() {
            let (lease, still) = smol::unblock(move || {
                let mut lease = lease;
                let still = lease.still_held();
                (lease, still)
            })
            .await;
            if still {
                *held = Some(lease);
                return Ok(Holding::Kept);
            }
            tracing::warn!("a webhook's lease was lost with its connection; taking it again");
        }
        let (url, key) = (url.clone(), *key);
        match smol::unblock(move || PostgresLease::try_take(&url, key)).await {
            Ok(Some(lease)) => {
                *held = Some(Box::new(lease));
                Ok(Holding::Taken)
            }
            Ok(None) => Ok(Holding::No),
            Err(e) => Err(format!("cannot ask the store for the webhook's lease: {e}")),
        }
    }
}

/// One hook's loop and what it remembers between rounds.
pub struct Deliverer {
    /// The hook.
    pub hook: Arc<Hook>,
    /// What every hook shares.
    pub settings: Arc<Settings>,
    /// Links into the node.
    pub connect: Connector,
    /// The hook's credential with the node.
    pub token: String,
    /// What the status page and metrics show.
    pub figures: Arc<HookFigures>,
    /// Who delivers.
    pub lease: Lease,
    /// The node, told to read the hook's listener again on a takeover.
    pub repo: Arc<docweave_shell::Repo>,
    /// Documents whose last attempt failed: attempts so far, and when the
    /// next may go. Only documents of the last pull are kept.
    backoff: BTreeMap<DocId, (u32, Instant)>,
    /// Jitter's generator.
    rng: u64,
    /// The lease was found lost during a round.
    lease_lost: bool,
}

/// What a round leaves to do.
enum Round {
    /// More is waiting: go on at once.
    Busy,
    /// Caught up (or waiting out a backoff): wait a window.
    Idle,
}

impl Deliverer {
    /// A deliverer for `hook`, not yet running.
    pub fn new(
        hook: Arc<Hook>,
        settings: Arc<Settings>,
        connect: Connector,
        token: String,
        figures: Arc<HookFigures>,
        lease: Lease,
        repo: Arc<docweave_shell::Repo>,
    ) -> Self {
        let rng = hook.listener.0 ^ now_ms() | 1;
        Self {
            hook,
            settings,
            connect,
            token,
            figures,
            lease,
            repo,
            backoff: BTreeMap::new(),
            rng,
            lease_lost: false,
        }
    }

    /// Delivers until the process ends.
    pub async fn run(mut self) {
        loop {
            let holding = match self.lease.hold().await {
                // Lost and taken again within a round: read it again too.
                Ok(Holding::Kept) if std::mem::take(&mut self.lease_lost) => Ok(Holding::Taken),
                other => other,
            };
            match holding {
                Ok(Holding::Kept) => self.figures.delivering.store(true, Ordering::Relaxed),
                Ok(Holding::Taken) => {
                    // What this node holds of the hook's listener may be
                    // older than what the last holder acknowledged: it is
                    // read again from the store.
                    if let Err(e) = self.repo.forget_listener(self.hook.listener).await {
                        self.note_error(format!("the node stopped: {e}"));
                        return;
                    }
                    self.figures.delivering.store(true, Ordering::Relaxed);
                }
                Ok(Holding::No) => {
                    self.figures.delivering.store(false, Ordering::Relaxed);
                    self.backoff.clear();
                    smol::Timer::after(LEASE_RETRY).await;
                    continue;
                }
                Err(why) => {
                    self.figures.delivering.store(false, Ordering::Relaxed);
                    self.note_error(why);
                    smol::Timer::after(NODE_RETRY).await;
                    continue;
                }
            }
            let wait = match self.round().await {
                Ok(Round::Busy) => continue,
                Ok(Round::Idle) => self.settings.window,
                Err(why) => {
                    self.note_error(why);
                    NODE_RETRY.max(self.settings.window)
                }
            };
            smol::Timer::after(wait).await;
        }
    }

    fn note_error(&self, why: String) {
        tracing::warn!("webhook {}: {why}", self.hook.name);
        *self
            .figures
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// One pull, its events sent, what was taken acknowledged.
    async fn round(&mut self) -> Result<Round, String> {
        let ex = Exchange::open(
            &self.connect,
            &self.hook.peer,
            Some(self.token.clone()),
            self.settings.max_message,
        )
        .map_err(said)?;
        let id = self.hook.listener;
        // Versions only: an event needs no document data, and a document
        // larger than a message must not stall the hook.
        let limit = PULL | docweave_core::PULL_VERSIONS_ONLY;
        ex.send(vec![Message::ListenerPull { id, limit }])
            .map_err(said)?;
        let pulled = ex
            .answer(|m| matches!(m, Message::Strands { id: got, .. } if *got == id))
            .await;
        let (strands, more) = match pulled {
            Ok(Message::Strands { strands, more, .. }) => (strands, more),
            Ok(other) => return Err(format!("the node answered a pull with {}", other.name())),
            Err(a) if a.status == 404 => {
                self.register(&ex).await?;
                return Ok(Round::Busy);
            }
            Err(a) => return Err(said(a)),
        };
        let pending = strands.len() as u64 + u64::from(more);
        self.figures.pending.store(pending, Ordering::Relaxed);
        let now = Instant::now();
        self.backoff
            .retain(|d, _| strands.iter().any(|s| &s.doc == d));
        let mut taken = Vec::new();
        let mut due = Vec::new();
        for s in strands {
            if !Kind::of(&s).wanted(&self.hook.events) {
                // Not an event this hook hears: passed over for good.
                taken.push(revision(&s));
            } else if self.backoff.get(&s.doc).is_none_or(|(_, at)| *at <= now) {
                due.push(s);
            }
        }
        let mut delivered = 0usize;
        // Failures are logged once a round (a receiver that is down fails
        // every event): how many, and the last.
        let mut failed = 0usize;
        let mut last_failure = None;
        for batch in due.chunks(IN_FLIGHT) {
            // A server that lost the lease mid-round stops at once: another
            // delivers now, and two would send one document's events out
            // of order.
            if !self.still_ours().await {
                return Ok(Round::Idle);
            }
            let at = now_ms();
            let tasks: Vec<_> = batch
                .iter()
                .map(|s| {
                    let e = event(s, at);
                    smol::spawn(post(self.hook.clone(), self.settings.clone(), e))
                })
                .collect();
            for (s, task) in batch.iter().zip(tasks) {
                match task.await {
                    Ok(()) => {
                        self.backoff.remove(&s.doc);
                        taken.push(revision(s));
                        delivered += 1;
                    }
                    Err(why) => {
                        self.figures.failures.fetch_add(1, Ordering::Relaxed);
                        let attempts = self.backoff.get(&s.doc).map_or(0, |(n, _)| *n) + 1;
                        let wait = self.backoff_after(attempts);
                        self.backoff
                            .insert(s.doc.clone(), (attempts, Instant::now() + wait));
                        failed += 1;
                        last_failure = Some(format!(
                            "{why} (event for {:?}, attempt {attempts}, next in {} ms)",
                            s.doc.as_str(),
                            wait.as_millis()
                        ));
                    }
                }
            }
        }
        let taken_count = taken.len();
        if let Some(last) = last_failure {
            self.note_error(match failed {
                1 => last,
                n => format!("{n} attempts failed; the last: {last}"),
            });
        }
        if !taken.is_empty() {
            if !self.still_ours().await {
                // Not acknowledged: the holder sends them again.
                return Ok(Round::Idle);
            }
            let n = taken.len();
            acknowledge(&ex, id, taken).await?;
            self.figures
                .delivered
                .fetch_add(delivered as u64, Ordering::Relaxed);
            self.figures
                .pending
                .store(pending.saturating_sub(n as u64), Ordering::Relaxed);
            if delivered > 0 {
                self.figures
                    .last_delivered_ms
                    .store(now_ms(), Ordering::Relaxed);
            }
        }
        // Events passed over (of kinds the hook does not hear) move it on too.
        let progress = taken_count > 0;
        Ok(if more && progress {
            Round::Busy
        } else {
            Round::Idle
        })
    }

    /// Whether this server still holds the hook's lease (always, alone).
    async fn still_ours(&mut self) -> bool {
        match self.lease.hold().await {
            Ok(Holding::Kept) => true,
            // Taken anew means it was lost in between: what this node
            // holds of the listener is read again first (next round).
            Ok(Holding::Taken) | Ok(Holding::No) | Err(_) => {
                self.figures.delivering.store(false, Ordering::Relaxed);
                self.lease_lost = true;
                false
            }
        }
    }

    /// The wait before attempt `attempts + 1`: doubling from a second up
    /// to the bound, less up to half at random (so receivers that come
    /// back are not hit by every server's retries at once).
    fn backoff_after(&mut self, attempts: u32) -> Duration {
        let doubled = FIRST_BACKOFF.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        let full = doubled.min(self.settings.max_backoff);
        // xorshift64: jitter needs no more.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = full / 2;
        let jitter = (self.rng % 1_000) as u32;
        half + half.mul_f64(f64::from(jitter) / 1_000.0)
    }

    /// Makes the hook's listener (the node forgot it, or it never was):
    /// its events start from what the store holds now. What was written
    /// before the hook existed is its starting point, not news.
    async fn register(&mut self, ex: &Exchange) -> Result<(), String> {
        let id = self.hook.listener;
        ex.send(vec![Message::ListenerRegister {
            filter: Filter::all(),
            id: Some(id),
        }])
        .map_err(said)?;
        match ex
            .answer(|m| matches!(m, Message::ListenerRegistered { .. }))
            .await
        {
            Ok(Message::ListenerRegistered { id: got }) if got == id => {}
            Ok(other) => {
                return Err(format!(
                    "the node did not register the hook's listener: {other:?}"
                ))
            }
            Err(a) => return Err(said(a)),
        }
        tracing::info!(
            "webhook {}: listener registered; events start from the store's documents now",
            self.hook.name
        );
        let mut clock = Clock(0);
        loop {
            ex.send(vec![Message::ChangesSince {
                clock,
                filter: Filter::all(),
            }])
            .map_err(said)?;
            let Message::Changes { docs, up_to, more } = ex
                .answer(|m| matches!(m, Message::Changes { .. }))
                .await
                .map_err(said)?
            else {
                return Err("the node answered changes-since with something else".into());
            };
            let revisions: Vec<Revision> = docs
                .into_iter()
                .map(|d| Revision {
                    doc: d.doc,
                    version: d.version,
                    clock: d.clock,
                    status: RevisionStatus::Ok,
                })
                .collect();
            if !revisions.is_empty() {
                acknowledge(ex, id, revisions).await?;
            }
            if !more || up_to <= clock {
                return Ok(());
            }
            clock = up_to;
        }
    }
}

/// Tells the node what the receiver took; waits until it is saved.
async fn acknowledge(
    ex: &Exchange,
    id: docweave_core::ListenerId,
    revisions: Vec<Revision>,
) -> Result<(), String> {
    ex.send(vec![Message::ListenerAck { id, revisions }])
        .map_err(said)?;
    ex.answer(|m| matches!(m, Message::ListenerAcked { id: got, .. } if *got == id))
        .await
        .map(|_| ())
        .map_err(said)
}

/// What acknowledges a strand: the version it brought.
fn revision(s: &Strand) -> Revision {
    Revision {
        doc: s.doc.clone(),
        version: s.version.clone(),
        clock: s.clock,
        status: RevisionStatus::Ok,
    }
}

/// One attempt at one event: taken when the receiver answers 2xx in time.
async fn post(hook: Arc<Hook>, settings: Arc<Settings>, e: Event) -> Result<(), String> {
    let signature =
        signature::sign(&settings.secret, now_ms() / 1000, &e.body).ok_or("cannot sign")?;
    let headers = [
        ("content-type", "application/json"),
        ("user-agent", "docweave-webhooks"),
        (signature::HEADER, signature.as_str()),
        ("x-docweave-event", e.kind.name()),
        ("x-docweave-delivery", e.id.as_str()),
    ];
    let sent = request_capped(
        "POST",
        &hook.target,
        &hook.path,
        &headers,
        e.body,
        MOST_ANSWER,
    );
    let timeout = async {
        smol::Timer::after(settings.timeout).await;
        Err(format!(
            "no answer within {} ms",
            settings.timeout.as_millis()
        ))
    };
    match futures_lite::future::or(sent, timeout).await {
        Ok((status, _)) if (200..300).contains(&status) => Ok(()),
        Ok((status, _)) => Err(format!("{} answered {status}", hook.shown)),
        Err(why) => Err(format!("{}: {why}", hook.shown)),
    }
}

/// The node's refusal, as text.
fn said(a: ApiAnswer) -> String {
    let body = String::from_utf8_lossy(&a.body);
    format!("the node answered {}: {body}", a.status)
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
