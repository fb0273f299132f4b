//! Whether a node still runs, and what stopped it: failures that no caller
//! waits for (a panic in the loop, a store thread that died, a recording that
//! could not be written) are kept here, so a server can fail its health check
//! and exit for its supervisor instead of staying half alive. Also whether
//! its store answers (for readiness: a node whose store fails is alive but
//! should not be sent clients).

use std::sync::{Arc, Mutex};

/// Shared by a [`crate::Repo`], its loop, its store thread and its recorder.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Closed when the node stops, which wakes whoever waits for that
    /// ([`Health::wait_stopped`]) without their looking every so often: an
    /// idle server that looked five times a second woke two threads each time.
    /// Nothing is ever sent on it.
    stopped_tx: async_channel::Sender<std::convert::Infallible>,
    stopped_rx: async_channel::Receiver<std::convert::Infallible>,
}

impl Default for Shared {
    fn default() -> Self {
        let (stopped_tx, stopped_rx) = async_channel::bounded(1);
        Shared {
            state: Mutex::default(),
            stopped_tx,
            stopped_rx,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    stopped: Option<String>,
    recording: Option<String>,
    /// Why the store's last job failed; `None` once one succeeds.
    store: Option<String>,
}

impl Health {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it leaves plain data: still readable.
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node can no longer run, for this reason (the first one stays).
    pub(crate) fn stop(&self, reason: String) {
        tracing::error!("the node stopped: {reason}");
        let mut s = self.state();
        if s.stopped.is_none() {
            s.stopped = Some(reason);
        }
        drop(s);
        self.0.stopped_tx.close();
    }

    /// The recording stopped, for this reason (the node goes on).
    pub(crate) fn recording_failed(&self, reason: String) {
        tracing::error!("the recording stopped: {reason}");
        let mut s = self.state();
        if s.recording.is_none() {
            s.recording = Some(reason);
        }
    }

    /// The store answered a job: `Some(reason)` when it failed.
    pub(crate) fn store_answered(&self, failure: Option<&str>) {
        let mut s = self.state();
        match (failure, &s.store) {
            (None, Some(_)) => {
                tracing::info!("the store answers again");
                s.store = None;
            }
            (Some(why), None) => s.store = Some(why.to_string()),
            _ => {}
        }
    }

    /// Why the store is failing (its last job failed), if it is.
    pub fn store_failing(&self) -> Option<String> {
        self.state().store.clone()
    }

    /// Why the node stopped, if it did.
    pub fn stopped(&self) -> Option<String> {
        self.state().stopped.clone()
    }

    /// Waits until the node stops; says why.
    pub async fn wait_stopped(&self) -> String {
        // The channel only ever closes (nothing is sent on it), and it is
        // closed after the reason is kept.
        let _closed = self.0.stopped_rx.recv().await;
        self.stopped().unwrap_or_default()
    }

    /// Why the recording stopped, if it did.
    pub fn recording_stopped(&self) -> Option<String> {
        self.state().recording.clone()
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Why the node stopped, if `health` says so within `limit`.
    fn stopped_within(health: &Health, limit: Duration) -> Option<String> {
        smol::block_on(futures_lite::future::or(
            async { Some(health.wait_stopped().await) },
            async {
                smol::Timer::after(limit).await;
                None
            },
        ))
    }

    #[test]
    fn a_wait_for_the_stop_ends_when_any_clone_stops_with_its_first_reason() {
        let health = Health::default();
        assert_eq!(stopped_within(&health, Duration::from_millis(50)), None);
        let waited = health.clone();
        let waiter = std::thread::spawn(move || stopped_within(&waited, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(50));
        health.stop("a store thread is gone".into());
        health.stop("a later reason".into());
        assert_eq!(
            waiter.join().unwrap().as_deref(),
            Some("a store thread is gone")
        );
        // Later waits end at once.
        assert_eq!(
            stopped_within(&health, Duration::from_secs(10)).as_deref(),
            Some("a store thread is gone")
        );
    }
}
