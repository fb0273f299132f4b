//! The figures `/metrics` and the status page show, brought up to date
//! before each is drawn: the node's gauges counted now, each endpoint's
//! open connections, the Loro endpoint's rooms and joins.

use docweave_adapters::loro_protocol::LoroFigures;
use docweave_adapters::transport::{ConnectionLimit, HttpFigures};
use docweave_shell::{Metrics, Repo};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Where the figures come from.
#[derive(Clone)]
pub struct Figures {
    pub repo: Arc<Repo>,
    pub metrics: Metrics,
    pub loro: Arc<LoroFigures>,
    pub ws: ConnectionLimit,
    pub tcp: ConnectionLimit,
    /// The webhooks, if any.
    pub webhooks: Option<Arc<crate::webhooks::Webhooks>>,
}

impl Figures {
    /// Counts everything that is counted on demand, given what the HTTP
    /// endpoint holds now.
    pub async fn refresh(&self, http: HttpFigures) {
        if let Err(e) = self.repo.count_gauges().await {
            tracing::warn!("the node did not count its gauges: {e}");
        }
        let m = &self.metrics;
        m.set_connections("websocket", self.ws.open());
        m.set_connections("tcp", self.tcp.open());
        m.set_connections("http", http.connections);
        m.set_connections("http-session", http.sessions);
        m.set_loro(
            self.loro.rooms.load(Ordering::Relaxed),
            self.loro.joined.load(Ordering::Relaxed),
            self.loro.refused.load(Ordering::Relaxed),
        );
        for c in self.webhooks.iter().flat_map(|w| w.hooks.iter()) {
            let f = &c.figures;
            m.set_webhook(
                &c.hook.name,
                docweave_shell::HookCounts {
                    delivered: f.delivered.load(Ordering::Relaxed),
                    failures: f.failures.load(Ordering::Relaxed),
                    pending: f.pending.load(Ordering::Relaxed),
                    delivering: f.delivering.load(Ordering::Relaxed),
                },
            );
        }
    }
}
