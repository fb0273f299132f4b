//! What the node counts for its metrics as it runs: messages and bytes in
//! and out, refusals, the time from an update's arrival to its ack. None
//! of it changes what the node does.

use super::Node;
use crate::engine::DocEngine;
use crate::metrics::{gauge_value, Metrics};
use docweave_core::{AckStatus, BatchId, ChannelId, Message, Millis, Msg};
use prometheus_client::metrics::counter::Counter;
use std::collections::BTreeMap;

/// Most updates whose arrival time is kept for their ack's latency: past
/// it, later updates are not timed (a peer that never acks costs this).
const MOST_TIMED: usize = 65_536;

/// What the node keeps for counting: each message kind's counters, found
/// without a lock or an allocation per message, and when the updates not
/// yet acknowledged arrived.
#[derive(Default)]
pub(super) struct Counting {
    received: BTreeMap<&'static str, Counter>,
    sent: BTreeMap<&'static str, Counter>,
    arrivals: BTreeMap<(ChannelId, BatchId), Millis>,
}

/// The counter of `kind` in `cache`, taken from `family` the first time.
fn kind_counter<'a>(
    cache: &'a mut BTreeMap<&'static str, Counter>,
    kind: &'static str,
    make: impl FnOnce() -> Counter,
) -> &'a Counter {
    cache.entry(kind).or_insert_with(make)
}

impl<E: DocEngine> Node<E> {
    /// Counts into `metrics` from now on.
    pub fn set_metrics(&mut self, metrics: Metrics) {
        self.metrics = Some(metrics);
    }

    /// The metrics it counts into, if any.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }

    pub(super) fn count_frame_in(&self, len: usize) {
        if let Some(m) = &self.metrics {
            m.received_bytes.inc_by(len as u64);
        }
    }

    /// A step the core is about to take.
    pub(super) fn count_step(&mut self, msg: &Msg) {
        let Some(m) = &self.metrics else {
            return;
        };
        let (channel, message) = match msg {
            Msg::Received { channel, message }
            | Msg::Authenticated {
                channel, message, ..
            } => (*channel, message),
            Msg::ChannelRemoved { channel } => {
                let gone = *channel;
                self.counting.arrivals.retain(|(c, _), _| *c != gone);
                return;
            }
            _ => return,
        };
        // The store's answers reach the core as messages too; they are
        // not traffic.
        if Some(channel) == self.store {
            return;
        }
        let kind = message.name();
        kind_counter(&mut self.counting.received, kind, || {
            m.received_counter(kind)
        })
        .inc();
        if let Message::Update { batch, .. } = message {
            if self.counting.arrivals.len() < MOST_TIMED {
                self.counting.arrivals.insert((channel, *batch), self.now);
            }
        }
    }

    /// Messages about to go out on `channel` in a frame of `len` bytes.
    pub(super) fn count_out(&mut self, channel: ChannelId, messages: &[Message], len: usize) {
        let Some(m) = &self.metrics else {
            return;
        };
        m.sent_bytes.inc_by(len as u64);
        for message in messages {
            let kind = message.name();
            kind_counter(&mut self.counting.sent, kind, || m.sent_counter(kind)).inc();
            match message {
                Message::Error { code, .. } => m.count_refusal(format!("{code:?}")),
                Message::Ack { batch, status, .. } => {
                    if *status != AckStatus::Ok {
                        m.count_refusal(format!("{status:?}"));
                    }
                    if let Some(at) = self.counting.arrivals.remove(&(channel, *batch)) {
                        m.ack_latency.observe(seconds(self.now.saturating_sub(at)));
                    }
                }
                _ => {}
            }
        }
    }

    /// Sets the gauges from the model and the replicas, counted now.
    pub fn count_gauges(&self) {
        let Some(m) = &self.metrics else {
            return;
        };
        let g = self.model().gauges();
        m.documents_known.set(gauge_value(g.documents));
        m.documents_loading.set(gauge_value(g.loading));
        m.documents_resident.set(gauge_value(self.replicas.len()));
        m.documents_resident_bytes
            .set(gauge_value(self.replicas.estimated_bytes()));
        m.documents_asleep.set(gauge_value(self.replicas.dormant()));
        m.documents_reloading
            .set(gauge_value(self.waiting.reloads()));
        m.peers_connected.set(gauge_value(g.peers_connected));
        m.in_flight.set(gauge_value(g.in_flight));
        m.presence.set(gauge_value(g.presence_entries));
        m.listeners.set(gauge_value(g.listeners));
        m.remote_lag
            .set(i64::try_from(g.remote_lag).unwrap_or(i64::MAX));
    }
}

/// Milliseconds of the node's clock as seconds.
fn seconds(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}
