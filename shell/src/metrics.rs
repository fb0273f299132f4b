//! What a node counts for its operators, in Prometheus' terms: counters,
//! gauges and histograms registered once, shown as text by
//! [`Metrics::render`] (the server's `GET /metrics`).
//!
//! The node counts what it decides and sends; the store thread times its
//! appends; whoever runs the transports sets their connection gauges. The
//! core knows nothing of this: metrics never change what the node does.
//! Every metric is listed with its meaning in README's "Metrics".

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// A protocol message kind (`update`, `ack`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The kind, as the protocol names it.
    pub kind: String,
}

/// An error code, or an acknowledgement's status other than ok.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The code, as the protocol names it.
    pub code: String,
}

/// A transport (`websocket`, `loro`, `http`, `tcp`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabel {
    /// The transport.
    pub transport: String,
}

/// Seconds from 100 µs to about 100 s, a bucket per doubling.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

/// One node's metrics. Cheap to clone: every metric is shared.
#[derive(Clone)]
pub struct Metrics {
    registry: std::sync::Arc<Registry>,
    pub(crate) received: Family<KindLabel, Counter>,
    pub(crate) sent: Family<KindLabel, Counter>,
    pub(crate) received_bytes: Counter,
    pub(crate) sent_bytes: Counter,
    pub(crate) refusals: Family<CodeLabel, Counter>,
    pub(crate) ack_latency: Histogram,
    pub(crate) store_append: Histogram,
    pub(crate) append_batch: Histogram,
    pub(crate) store_failures: Counter,
    pub(crate) import: Histogram,
    pub(crate) export: Histogram,
    pub(crate) evicted: Counter,
    pub(crate) documents_known: Gauge,
    pub(crate) documents_resident: Gauge,
    pub(crate) documents_resident_bytes: Gauge,
    pub(crate) documents_asleep: Gauge,
    pub(crate) documents_reloading: Gauge,
    pub(crate) documents_loading: Gauge,
    pub(crate) peers_connected: Gauge,
    pub(crate) in_flight: Gauge,
    pub(crate) presence: Gauge,
    pub(crate) listeners: Gauge,
    pub(crate) remote_lag: Gauge,
    connections: Family<TransportLabel, Gauge>,
    loro_rooms: Gauge,
    loro_joins: Family<OutcomeLabel, Counter>,
    webhook_delivered: Family<HookLabel, Counter>,
    webhook_failures: Family<HookLabel, Counter>,
    webhook_pending: Family<HookLabel, Gauge>,
    webhook_delivering: Family<HookLabel, Gauge>,
    /// Taken while cumulative figures counted elsewhere are carried over,
    /// so two scrapes at once do not both add the same difference.
    carrying: std::sync::Arc<std::sync::Mutex<()>>,
}

/// A webhook, by the name the operator gave it (or its position).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabel {
    /// The hook's name.
    pub hook: String,
}

/// What one webhook has done, as [`Metrics::set_webhook`] takes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookCounts {
    /// Events its receiver took, since the start.
    pub delivered: u64,
    /// Attempts that failed, since the start.
    pub failures: u64,
    /// Events waiting at its last pull.
    pub pending: u64,
    /// Whether this server delivers it now.
    pub delivering: bool,
}

/// How a Loro join ended (`ok`, `refused`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// The outcome.
    pub outcome: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered and at zero.
    pub fn new() -> Self {
        let m = Self {
            registry: Default::default(),
            received: Family::default(),
            sent: Family::default(),
            received_bytes: Counter::default(),
            sent_bytes: Counter::default(),
            refusals: Family::default(),
            ack_latency: seconds(),
            store_append: seconds(),
            append_batch: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            store_failures: Counter::default(),
            import: seconds(),
            export: seconds(),
            evicted: Counter::default(),
            documents_known: Gauge::default(),
            documents_resident: Gauge::default(),
            documents_resident_bytes: Gauge::default(),
            documents_asleep: Gauge::default(),
            documents_reloading: Gauge::default(),
            documents_loading: Gauge::default(),
            peers_connected: Gauge::default(),
            in_flight: Gauge::default(),
            presence: Gauge::default(),
            listeners: Gauge::default(),
            remote_lag: Gauge::default(),
            connections: Family::default(),
            loro_rooms: Gauge::default(),
            loro_joins: Family::default(),
            webhook_delivered: Family::default(),
            webhook_failures: Family::default(),
            webhook_pending: Family::default(),
            webhook_delivering: Family::default(),
            carrying: Default::default(),
        };
        let mut r = Registry::with_prefix("docweave");
        r.register(
            "messages_received",
            "Protocol messages received from peers, by kind",
            m.received.clone(),
        );
        r.register(
            "messages_sent",
            "Protocol messages sent to peers, by kind",
            m.sent.clone(),
        );
        r.register_with_unit(
            "received",
            "Bytes of frames received from peers",
            Unit::Bytes,
            m.received_bytes.clone(),
        );
        r.register_with_unit(
            "sent",
            "Bytes of frames sent to peers",
            Unit::Bytes,
            m.sent_bytes.clone(),
        );
        r.register(
            "refusals",
            "Errors sent to peers and updates acknowledged as not taken, by code",
            m.refusals.clone(),
        );
        r.register_with_unit(
            "ack_latency",
            "From an update's arrival to its acknowledgement (durable when the node has a store)",
            Unit::Seconds,
            m.ack_latency.clone(),
        );
        r.register_with_unit(
            "store_append",
            "Time of one store append job (one transaction)",
            Unit::Seconds,
            m.store_append.clone(),
        );
        r.register(
            "store_append_changes",
            "Changes written by one store append job",
            m.append_batch.clone(),
        );
        r.register(
            "store_failures",
            "Store jobs that failed",
            m.store_failures.clone(),
        );
        r.register_with_unit(
            "import",
            "Time to import one update into a document",
            Unit::Seconds,
            m.import.clone(),
        );
        r.register_with_unit(
            "export",
            "Time to export a document's data for sending (shared exports count once)",
            Unit::Seconds,
            m.export.clone(),
        );
        r.register(
            "documents_evicted",
            "Document replicas dropped from memory or put to sleep",
            m.evicted.clone(),
        );
        r.register(
            "documents_known",
            "Documents whose metadata is in memory (the store may hold more: see --idle-metadata)",
            m.documents_known.clone(),
        );
        r.register(
            "documents_resident",
            "Document replicas in memory",
            m.documents_resident.clone(),
        );
        r.register(
            "documents_resident_bytes",
            "Memory of the document replicas, as estimated (those awake only under --memory-budget-mb), with the bytes of those asleep",
            m.documents_resident_bytes.clone(),
        );
        r.register(
            "documents_asleep",
            "Document replicas asleep as their bytes (idle, or evicted under a budget)",
            m.documents_asleep.clone(),
        );
        r.register(
            "documents_reloading",
            "Evicted replicas being read back from the store for commands that wait for them",
            m.documents_reloading.clone(),
        );
        r.register(
            "documents_loading",
            "Documents being read from the store",
            m.documents_loading.clone(),
        );
        r.register(
            "peers_connected",
            "Peers with a live connection that said hello",
            m.peers_connected.clone(),
        );
        r.register(
            "transmissions_in_flight",
            "Data sent and not yet acknowledged (to peers and the store)",
            m.in_flight.clone(),
        );
        r.register(
            "presence_entries",
            "Presence entries held, all rooms together",
            m.presence.clone(),
        );
        r.register(
            "listeners",
            "Registered listeners (backends following changes)",
            m.listeners.clone(),
        );
        r.register(
            "remote_lag",
            "Changes the dialed servers announced that this node has not pulled yet, summed",
            m.remote_lag.clone(),
        );
        r.register(
            "connections",
            "Open client connections, by transport",
            m.connections.clone(),
        );
        r.register(
            "loro_rooms",
            "Rooms joined by Loro-protocol clients, all connections together",
            m.loro_rooms.clone(),
        );
        r.register(
            "loro_joins",
            "Loro-protocol joins answered, by outcome (ok, refused)",
            m.loro_joins.clone(),
        );
        r.register(
            "webhook_delivered",
            "Webhook events their receiver took, by hook",
            m.webhook_delivered.clone(),
        );
        r.register(
            "webhook_failures",
            "Webhook attempts that failed (tried again later), by hook",
            m.webhook_failures.clone(),
        );
        r.register(
            "webhook_pending",
            "Webhook events waiting at the hook's last look, by hook",
            m.webhook_pending.clone(),
        );
        r.register(
            "webhook_delivering",
            "1 when this server delivers the hook (on a shared store, one server does), by hook",
            m.webhook_delivering.clone(),
        );
        Self {
            registry: std::sync::Arc::new(r),
            ..m
        }
    }

    /// Sets the Loro endpoint's figures: rooms joined now, and joins
    /// answered ok and refused since the start (counted by the bridge).
    pub fn set_loro(&self, rooms: usize, joined: u64, refused: u64) {
        self.loro_rooms.set(gauge_value(rooms));
        let _carrying = self
            .carrying
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (outcome, total) in [("ok", joined), ("refused", refused)] {
            let counter = self.loro_joins.get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            });
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// Sets one webhook's figures (its totals are counted by the
    /// deliverer since the start).
    pub fn set_webhook(&self, hook: &str, counts: HookCounts) {
        let label = HookLabel {
            hook: hook.to_string(),
        };
        let _carrying = self
            .carrying
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (family, total) in [
            (&self.webhook_delivered, counts.delivered),
            (&self.webhook_failures, counts.failures),
        ] {
            let counter = family.get_or_create(&label);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        self.webhook_pending
            .get_or_create(&label)
            .set(i64::try_from(counts.pending).unwrap_or(i64::MAX));
        self.webhook_delivering
            .get_or_create(&label)
            .set(i64::from(counts.delivering));
    }

    /// Sets the number of open connections of one transport.
    pub fn set_connections(&self, transport: &str, open: usize) {
        self.connections
            .get_or_create(&TransportLabel {
                transport: transport.to_string(),
            })
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// The metrics in the Prometheus text format (OpenMetrics).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoding error would be
        // a bug of the library, and the page then ends where it stopped.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("the metrics could not be written whole: {e}");
        }
        out
    }

    /// Every sample now, by its name as written with its labels
    /// (`docweave_connections{transport="tcp"}`), read back from the text
    /// format: for pages that show the figures.
    pub fn samples(&self) -> std::collections::BTreeMap<String, f64> {
        self.render()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect()
    }

    /// The counter of messages of `kind` received (to keep and reuse).
    pub(crate) fn received_counter(&self, kind: &str) -> Counter {
        self.received.get_or_create_owned(&KindLabel {
            kind: kind.to_string(),
        })
    }

    /// The counter of messages of `kind` sent (to keep and reuse).
    pub(crate) fn sent_counter(&self, kind: &str) -> Counter {
        self.sent.get_or_create_owned(&KindLabel {
            kind: kind.to_string(),
        })
    }

    pub(crate) fn count_refusal(&self, code: String) {
        self.refusals.get_or_create(&CodeLabel { code }).inc();
    }
}

/// A count as a gauge's value.
pub(crate) fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_each_metric_with_its_unit_and_labels() {
        let m = Metrics::new();
        m.received_counter("update").inc();
        m.received_counter("update").inc();
        m.count_refusal("TooLarge".into());
        m.ack_latency.observe(0.002);
        m.set_connections("websocket", 3);
        m.set_loro(2, 5, 1);
        m.set_loro(2, 7, 1);
        let text = m.render();
        assert!(text.contains("docweave_loro_joins_total{outcome=\"ok\"} 7"));
        assert!(text.contains("docweave_loro_rooms 2"));
        assert!(text.contains("docweave_messages_received_total{kind=\"update\"} 2"));
        assert!(text.contains("docweave_refusals_total{code=\"TooLarge\"} 1"));
        assert!(text.contains("docweave_ack_latency_seconds_count 1"));
        assert!(text.contains("docweave_connections{transport=\"websocket\"} 3"));
        assert!(text.contains("# TYPE docweave_received_bytes counter"));
        assert!(text.ends_with("# EOF\n"));
    }
}
